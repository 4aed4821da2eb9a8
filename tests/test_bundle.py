"""The model bundle: what `make demo` bundles predicts, in a fresh process, what the workflow submitted; a
tampered bundle is refused naming the file; the fitted fusions (forests included) are stored without pickle."""

import json
import pickle
import subprocess
import sys
import tarfile
from pathlib import Path

import numpy as np
import pandas as pd
import pytest
import torch
import yaml
from conftest import REPO
from test_make import made_demo

from avaffect.app.bundle import (
    ARCHIVE_ROOT,
    CONFIG_FILE,
    INFO_FILE,
    MANIFEST_FILE,
    BundleError,
    load_bundle,
    write_bundle,
    write_manifest,
)
from avaffect.core.checkpoints import CheckpointError
from avaffect.corpus.tasks import EXPR_CLASSES
from avaffect.fusion.forest import fit_forest, forest_arrays, forest_from_arrays, forest_predict
from avaffect.fusion.selection import FittedFusion, fit_fusion, read_fitted_fusion, write_fitted_fusion
from avaffect.fusion.submission import read_submission

TEST_VIDEOS = ("demo12", "demo13", "demo14")

PREDICT = """
import sys
from pathlib import Path
from avaffect.app.bundle import load_bundle

bundle, out, videos = load_bundle(Path(sys.argv[1])), Path(sys.argv[2]), Path(sys.argv[3])
for video in sys.argv[4:]:
    frames, boxes = bundle.predict_video(videos / f"{video}.mp4", "largest", print)
    frames.to_parquet(out / f"{video}.frames.parquet")
    boxes.to_parquet(out / f"{video}.boxes.parquet")
"""


@pytest.fixture(scope="module")
def demo_run(tmp_path_factory) -> Path:
    return made_demo(tmp_path_factory).workdir  # `make demo` in a copy, shared with test_make.py


@pytest.mark.workflow
def test_the_bundle_predicts_in_a_fresh_process_what_the_workflow_submitted(demo_run, tmp_path):
    results = demo_run / "results"
    info = json.loads((results / "bundle" / INFO_FILE).read_text())
    for task in ("va", "expr"):
        choice = json.loads((results / f"submission_{task}.json").read_text())
        assert info["tasks"][task]["system"] == choice["system"]
        assert sorted(info["models"][task]) == sorted(choice["models"])  # only the models the system fuses
    # The archive, unpacked by load_bundle, in a process that has imported nothing of the workflow's run.
    command = [sys.executable, "-c", PREDICT, str(results / "bundle.tar.gz"), str(tmp_path),
               str(results / "demo_corpus" / "videos"), *TEST_VIDEOS]
    done = subprocess.run(command, capture_output=True, text=True, cwd=tmp_path)
    assert done.returncode == 0, done.stderr[-4000:]
    assert "fused" in done.stdout  # progress lines reached the callable

    va = read_submission(results / "submission_va.txt", "va")
    expr = read_submission(results / "submission_expr.txt", "expr")
    for video in TEST_VIDEOS:
        frames = pd.read_parquet(tmp_path / f"{video}.frames.parquet")
        rows = va["image_location"].str.startswith(f"{video}/").to_numpy()
        assert rows.sum() == len(frames)
        np.testing.assert_allclose(frames[["valence", "arousal"]].to_numpy(),
                                   va.loc[rows, ["valence", "arousal"]].to_numpy(), atol=1e-5, rtol=0)
        submitted = expr.loc[expr["image_location"].str.startswith(f"{video}/"), "label"].to_numpy()
        assert (frames["expression"].map(EXPR_CLASSES.index).to_numpy() == submitted).all(), video
        # the same tracked face as the workflow's, frame for frame
        boxes = pd.read_parquet(tmp_path / f"{video}.boxes.parquet")
        tracked = pd.read_parquet(results / "faces" / f"{video}.parquet")
        assert (boxes["frame"].to_numpy() == tracked["frame"].to_numpy() - 1).all()
        assert (boxes["has_face"] == tracked["has_face"]).all() and frames["has_face"].equals(boxes["has_face"])
        np.testing.assert_array_equal(boxes[["x0", "y0", "x1", "y1"]].to_numpy(),
                                      tracked[["x1", "y1", "x2", "y2"]].to_numpy())
        vad = pd.read_parquet(results / "vad" / f"{video}.parquet")
        assert (frames["voiced"].to_numpy() == vad["speaking"].to_numpy()).all()


@pytest.mark.workflow
def test_the_archive_holds_the_bundle_folder(demo_run):
    with tarfile.open(demo_run / "results" / "bundle.tar.gz") as tar:
        names = {member.name for member in tar.getmembers() if member.isfile()}
    folder = demo_run / "results" / "bundle"
    assert names == {f"{ARCHIVE_ROOT}/{p.relative_to(folder).as_posix()}" for p in folder.rglob("*") if p.is_file()}
    manifest = json.loads((folder / MANIFEST_FILE).read_text())["sha256"]
    assert {CONFIG_FILE, INFO_FILE} <= set(manifest) and not any(name.endswith((".pkl", ".joblib")) for name in names)


class _RunsCode:
    """Pickles to a call of exec: what torch.load without weights_only would run."""

    def __init__(self, marker: Path):
        self.marker = marker

    def __reduce__(self):
        return exec, (f"open({str(self.marker)!r}, 'w').write('ran')",)


def small_bundle(root: Path, tmp_path: Path) -> Path:
    """A bundle of the default config with one VA model (a random transformer checkpoint, the format rule train
    writes) fused by `none`: enough to load, and to tamper with."""
    from avaffect.models.families import ModelConfig, build_model
    from avaffect.models.normalization import Normalizer

    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    model_config = ModelConfig(family="transformer", n_features=14, n_outputs=2, d_model=16, n_layers=1,
                               n_heads=2, dropout=0.0)
    normalizer = Normalizer("zscore", np.zeros(14, np.float32), np.ones(14, np.float32))
    checkpoint = tmp_path / "checkpoint.pt"
    torch.save({"task": "va", "config": model_config.to_dict(), "state_dict": build_model(model_config).state_dict(),
                "normalizer": normalizer.to_state(), "window": 10, "hop": 10}, checkpoint)
    fusion = tmp_path / "fusion.safetensors"
    write_fitted_fusion(FittedFusion("none", "va", weights=np.ones(1)), [0.0, 0.0], fusion)
    info = {"tasks": {"va": {"system": "sys1", "method": "none", "models": ["visual"],
                             "fusion": "fusion/va/fusion.safetensors"}},
            "models": {"va": {"visual": {"checkpoint": "models/visual/va/checkpoint.pt", "window_s": 2.0}}},
            "detector_weights": {}, "extractor_weights": {}}
    write_bundle(root, {"models/visual/va/checkpoint.pt": checkpoint, "fusion/va/fusion.safetensors": fusion},
                 info, config)
    return root


def test_a_bundle_loads_and_refuses_a_person_it_cannot_follow(tmp_path):
    bundle = load_bundle(small_bundle(tmp_path / "bundle", tmp_path))
    assert list(bundle.tasks) == ["va"] and bundle.tasks["va"].fusion.method == "none"
    with pytest.raises(ValueError, match="person must be one of left, right, largest"):
        bundle.predict_video(tmp_path / "any.mp4", "middle", print)


@pytest.mark.parametrize("tamper, message", [
    (lambda root: (root / "models/visual/va/checkpoint.pt").write_bytes(b"changed"), "is not the manifest's"),
    (lambda root: (root / "fusion/va/fusion.safetensors").unlink(), "listed in the bundle's manifest but missing"),
    (lambda root: (root / "models/visual/va/extra.pt").write_bytes(b"x"), "not in the bundle's manifest"),
])
def test_a_changed_missing_or_extra_file_is_refused_by_name(tmp_path, tamper, message):
    root = small_bundle(tmp_path / "bundle", tmp_path)
    tamper(root)
    with pytest.raises(BundleError, match=message) as refused:
        load_bundle(root)
    assert str(root) in str(refused.value)
    assert any(name in str(refused.value) for name in ("checkpoint.pt", "fusion.safetensors", "extra.pt"))


def test_a_pickle_in_place_of_a_state_dict_is_refused_and_never_run(tmp_path):
    root = small_bundle(tmp_path / "bundle", tmp_path)
    marker = tmp_path / "ran"
    target = root / "models/visual/va/checkpoint.pt"
    target.write_bytes(pickle.dumps({"state_dict": _RunsCode(marker)}))
    write_manifest(root)  # a consistent manifest: only the refusal to unpickle stands in the way
    with pytest.raises(CheckpointError, match="not a readable torch checkpoint") as refused:
        load_bundle(root)
    assert str(target) in str(refused.value)
    assert not marker.exists()


def test_a_bundle_of_another_avaffect_version_or_an_unsupported_extractor_is_refused(tmp_path):
    root = small_bundle(tmp_path / "bundle", tmp_path)
    info = json.loads((root / INFO_FILE).read_text())
    (root / INFO_FILE).write_text(json.dumps(info | {"avaffect": "7.3.0"}))
    write_manifest(root)
    with pytest.raises(BundleError, match="written by avaffect 7.3.0, which this avaffect .* cannot read"):
        load_bundle(root)
    (root / INFO_FILE).write_text(json.dumps(info))
    config = yaml.safe_load((root / CONFIG_FILE).read_text())
    config["models"]["visual"]["extractor"] = "static"
    (root / CONFIG_FILE).write_text(yaml.safe_dump(config))
    write_manifest(root)
    with pytest.raises(BundleError, match="model 'visual' .* extractor 'static', which is not supported in a bundle"):
        load_bundle(root)


def test_the_archive_is_loaded_like_its_folder_and_a_foreign_one_refused(tmp_path):
    root = small_bundle(tmp_path / ARCHIVE_ROOT, tmp_path)
    archive = tmp_path / "bundle.tar.gz"
    with tarfile.open(archive, "w:gz") as tar:
        tar.add(root, arcname=ARCHIVE_ROOT)
    assert list(load_bundle(archive).tasks) == ["va"]
    other = tmp_path / "other.tar.gz"
    with tarfile.open(other, "w:gz") as tar:
        tar.add(root, arcname="elsewhere")
    with pytest.raises(BundleError, match="holds one folder 'bundle'"):
        load_bundle(other)


@pytest.mark.parametrize("task", ["va", "expr"])
def test_a_forest_as_arrays_predicts_what_the_fitted_forest_predicts(task):
    rng = np.random.default_rng(3)
    features = rng.random((400, 9)).astype(np.float32)
    target = rng.uniform(-1, 1, (400, 2)) if task == "va" else rng.choice([0, 2, 4, 7], 400)
    forest, _, _ = fit_forest(features, target, task, 0, [10, 25], 5, 1, None, 0.5)
    rebuilt = forest_from_arrays(forest_arrays(forest), task)
    unseen = rng.random((300, 9)).astype(np.float32)
    unseen[5, 2] = np.nan  # a frame without every feature stays NaN
    expected = forest_predict(forest, unseen, task)
    np.testing.assert_array_equal(forest_predict(rebuilt, unseen, task), expected)
    assert np.isnan(expected[5]).all() and not np.isnan(expected[6]).any()


@pytest.mark.parametrize("method", ["rf", "dwf"])
def test_a_stored_fusion_fuses_as_the_fitted_one(tmp_path, method):
    rng = np.random.default_rng(4)
    predictions = rng.uniform(-1, 1, (3, 600, 2))
    predictions[1, :50] = np.nan  # a model missing some frames
    target = np.clip(predictions[0] * 0.5 + predictions[2] * 0.5 + rng.normal(0, 0.1, (600, 2)), -1, 1)
    groups = np.repeat(np.arange(6), 100)
    fitted = fit_fusion(method, predictions, target, groups, "va", 50, 0, 3, tree_grid=[10])
    path = tmp_path / "fusion.safetensors"
    write_fitted_fusion(fitted, [0.1, 0.2], path)
    stored, prior = read_fitted_fusion(path)
    assert stored.method == method and prior.tolist() == [0.1, 0.2]
    np.testing.assert_array_equal(stored.apply(predictions), fitted.apply(predictions))


def test_an_unreadable_fusion_file_is_named(tmp_path):
    path = tmp_path / "fusion.safetensors"
    path.write_bytes(b"not safetensors")
    with pytest.raises(ValueError, match=f"{path}: not a readable fitted-fusion file"):
        read_fitted_fusion(path)
