"""The RetinaFace ResNet-50 detector without TensorFlow: the frame and reply protocol of its child process, the
parsing of the package's faces, the weights hand-over, config and resource checks, and the child run for real
with a stand-in for the retina-face package (tests/test_retinaface_resnet50_workflow.py, opt-in, runs the
package itself)."""

import io
import json
import sys
import textwrap

import cv2
import jsonschema
import numpy as np
import pytest
import yaml
from conftest import REPO
from test_workflow import make_workdir, snakemake

from avaffect.core.resources import Resource, ResourceError, load_manifest, verify
from avaffect.face.boxes import LANDMARK_NAMES
from avaffect.face.detectors import build_detector
from avaffect.face.retinaface_resnet50 import (
    WEIGHTS_FILE,
    ChildProtocolError,
    parse_reply,
    read_batches,
    serve,
    weights_home,
    write_frames,
)
from avaffect.tools.workdir import planned_jobs

SETTINGS = {"retinaface_resnet50": {"score_threshold": 0.9, "allow_upscaling": False},
            "mediapipe": {"model_selection": 1, "score_threshold": 0.5}}
# The package's answer for one face: landmarks named after the subject's sides, so the subject's right eye
# lies at the smaller image x.
PACKAGE_FACE = {"score": np.float32(0.99), "facial_area": [10, 20, 110, 140],
                "landmarks": {"right_eye": [40.0, 60.0], "left_eye": [80.0, 58.0], "nose": [60.0, 85.0],
                              "mouth_right": [45.0, 110.0], "mouth_left": [78.0, 112.0]}}


def test_frame_batches_go_through_a_stream_unchanged():
    rng = np.random.default_rng(0)
    batches = [rng.integers(0, 256, (3, 4, 5, 3), dtype=np.uint8), rng.integers(0, 256, (1, 7, 2, 3), dtype=np.uint8)]
    stream = io.BytesIO()
    for batch in batches:
        write_frames(stream, batch)
    stream.seek(0)
    received = list(read_batches(stream))
    assert len(received) == 2 and all(np.array_equal(a, b) for a, b in zip(received, batches, strict=True))


def test_a_truncated_batch_is_an_error():
    stream = io.BytesIO()
    write_frames(stream, np.zeros((2, 4, 4, 3), np.uint8))
    with pytest.raises(ChildProtocolError, match="ended after 50 of 96 bytes"):
        list(read_batches(io.BytesIO(stream.getvalue()[:-46])))


def test_serve_answers_each_batch_with_the_faces_of_its_bgr_frames():
    """The package reads OpenCV's BGR: a frame red in RGB must reach it with the red in the last channel."""
    requests = io.BytesIO()
    red, blue = np.zeros((1, 8, 8, 3), np.uint8), np.zeros((1, 8, 8, 3), np.uint8)
    red[..., 0], blue[..., 2] = 255, 255
    write_frames(requests, np.concatenate([red, blue]))
    write_frames(requests, red)
    requests.seek(0)
    replies = io.BytesIO()
    weaker = PACKAGE_FACE | {"score": 0.5}

    def detect(image):
        return {"face_1": weaker, "face_2": PACKAGE_FACE} if image[0, 0, 2] == 255 else {}

    assert serve(requests, replies, detect) == 3
    lines = replies.getvalue().splitlines()
    assert len(lines) == 2
    first = json.loads(lines[0])
    assert [len(faces) for faces in first] == [2, 0] and [f["score"] for f in first[0]] == pytest.approx([0.99, 0.5])


def test_a_reply_becomes_boxes_scores_and_landmarks_in_image_order():
    line = json.dumps([[{"score": 0.5, "facial_area": [0, 0, 5, 5], "landmarks": PACKAGE_FACE["landmarks"]},
                        {"score": 0.99, "facial_area": [10, 20, 110, 140], "landmarks": PACKAGE_FACE["landmarks"]}],
                       []]).encode()
    frames = parse_reply(line, 2)
    assert [len(faces) for faces in frames] == [2, 0]
    box, score, points = frames[0][0]
    assert box == (10, 20, 110, 140) and score == pytest.approx(0.99)
    # LANDMARK_NAMES: left_eye, right_eye, nose, mouth_left, mouth_right, "left" being the smaller image x.
    assert LANDMARK_NAMES[0] == "left_eye"
    assert points.tolist() == [[40, 60], [80, 58], [60, 85], [45, 110], [78, 112]]


@pytest.mark.parametrize(("line", "message"), [
    (b"Traceback (most recent call last):", "not a JSON reply"),
    (b"[[]]", "expected faces of 2 frames"),
    (json.dumps([[{"score": 0.9, "facial_area": [0, 0, 1, 1], "landmarks": {"nose": [0, 0]}}], []]).encode(),
     "five landmarks"),
])
def test_an_unreadable_reply_is_an_error(line, message):
    with pytest.raises(ChildProtocolError, match=message):
        parse_reply(line, 2)


def test_the_weights_are_linked_where_the_package_looks(tmp_path):
    weights = tmp_path / "mine.h5"
    weights.write_bytes(b"weights")
    home = weights_home(weights, tmp_path / "home")
    linked = home / ".deepface" / "weights" / WEIGHTS_FILE
    assert linked.is_symlink() and linked.resolve() == weights.resolve()


def test_the_detector_needs_its_weights_and_its_python():
    with pytest.raises(ValueError, match="resource retinaface_resnet50"):
        build_detector("mediapipe+retinaface_resnet50", SETTINGS, "cpu", {}, {"retinaface_resnet50": sys.executable})
    with pytest.raises(ValueError, match="envs/retinaface.yaml"):
        build_detector("retinaface_resnet50", SETTINGS, "cpu", {"retinaface_resnet50": "retinaface.h5"}, {})


def test_missing_or_unpinned_weights_are_refused_with_file_url_and_key(tmp_path):
    resource = load_manifest(REPO / "resources" / "manifest.yaml")["retinaface_resnet50"]
    assert resource.url.endswith("/retinaface.h5") and resource.file == "retinaface/retinaface.h5"
    with pytest.raises(ResourceError) as missing:
        verify(resource, tmp_path / resource.file)
    assert all(part in str(missing.value) for part in (str(tmp_path / resource.file), resource.url,
                                                       "retinaface_resnet50"))
    copy = tmp_path / "retinaface.h5"
    copy.write_bytes(b"not pinned")
    with pytest.raises(ResourceError, match="resources.accept_unpinned"):
        verify(resource, copy)
    assert verify(Resource(**resource.to_dict()), copy, accept_unpinned=True) == copy


def test_the_schema_knows_the_detector_and_its_settings():
    config = yaml.safe_load((REPO / "config" / "config.yaml").read_text())
    schema = yaml.safe_load((REPO / "config" / "schema.yaml").read_text())
    config["faces"]["detector"] = "retinaface_resnet50+mediapipe"
    jsonschema.validate(config, schema)
    for detector, settings in (("retinaface_resnet5", {}), ("retinaface_resnet50", {"allow_upscaling": "yes"})):
        bad = config | {"faces": config["faces"] | {"detector": detector}}
        bad["faces"]["retinaface_resnet50"] = config["faces"]["retinaface_resnet50"] | settings
        with pytest.raises(jsonschema.ValidationError):
            jsonschema.validate(bad, schema)


# A stand-in for the package's API as avaffect.face.retinaface_resnet50.main calls it: build_model reads the weights
# file where the package would, detect_faces finds one face in BGR images whose top-left pixel is red.
FAKE_PACKAGE = '''
import os

def build_model():
    path = os.path.join(os.environ["DEEPFACE_HOME"], ".deepface", "weights", "retinaface.h5")
    with open(path) as weights:
        if weights.read() != "good":
            raise ValueError(f"{path}: not the weights")
    return "model"

def detect_faces(image, threshold, model, allow_upscaling):
    assert model == "model" and threshold == 0.9 and allow_upscaling is False
    if tuple(image[0, 0]) != (0, 0, 255):
        return {}
    return {"face_1": FACE}
'''


@pytest.fixture
def fake_package(tmp_path, monkeypatch):
    package = tmp_path / "fake" / "retinaface"
    package.mkdir(parents=True)
    (package / "__init__.py").write_text("")
    face = PACKAGE_FACE | {"score": 0.99}
    (package / "RetinaFace.py").write_text(textwrap.dedent(FAKE_PACKAGE) + f"\nFACE = {face!r}\n")
    monkeypatch.setenv("PYTHONPATH", str(tmp_path / "fake"))
    weights = tmp_path / "retinaface.h5"
    weights.write_text("good")
    return weights


def test_the_child_detects_and_mediapipe_falls_back_where_it_finds_nothing(fake_package, shared):
    photo = cv2.cvtColor(cv2.imread(str(shared / "media" / "photos" / "biden.jpg")), cv2.COLOR_BGR2RGB)
    marked = np.zeros((160, 160, 3), np.uint8)
    marked[0, 0] = (255, 0, 0)  # red in RGB
    detector = build_detector("retinaface_resnet50+mediapipe", SETTINGS, "cpu",
                              {"retinaface_resnet50": fake_package}, {"retinaface_resnet50": sys.executable})
    assert detector.name == "retinaface_resnet50+mediapipe"
    first = detector.detect_batch([marked, photo])
    second = detector.detect_batch([marked])
    resnet50 = detector.detectors[0]
    resnet50.close()
    assert [[face.detector for face in faces] for faces in first] == [["retinaface_resnet50"], ["mediapipe"]]
    face = first[0][0]
    assert (face.x1, face.y1, face.x2, face.y2) == (10, 20, 110, 140) and face.landmarks[0].tolist() == [40, 60]
    assert len(second[0]) == 1


def test_a_failing_child_is_an_error_with_its_stderr(fake_package):
    fake_package.write_text("corrupt")
    detector = build_detector("retinaface_resnet50", SETTINGS, "cpu", {"retinaface_resnet50": fake_package},
                              {"retinaface_resnet50": sys.executable})
    with pytest.raises(RuntimeError, match="(?s)ResNet-50 child .* stopped without answering .*not the weights"):
        detector.detect_batch([np.zeros((8, 8, 3), np.uint8)])
    detector.close()


def test_a_resnet50_chain_plans_its_venv_and_weights(tmp_path):
    workdir = make_workdir(tmp_path)
    result = snakemake(workdir, "-n", "-p", "results/faces/demo01.parquet", "--config",
                       "faces={'detector': 'retinaface_resnet50+mediapipe'}")
    assert planned_jobs(result.stdout) == {"build_demo_corpus": 1, "ingest_video": 1, "fetch_resource": 1,
                                           "build_venv": 1, "detect_faces": 1}
    assert "resources/retinaface/retinaface.h5" in result.stdout and ".snakemake/venvs/retinaface" in result.stdout


def test_the_env_pins_are_exact_and_share_the_main_library_pins():
    from avaffect.core.venvs import pip_pins, python_version

    pins = dict(pin.split("==") for pin in pip_pins(REPO / "envs" / "retinaface.yaml"))
    main = dict(pin.split("==") for pin in pip_pins(REPO / "envs" / "main.yaml"))
    spleeter = dict(pin.split("==") for pin in pip_pins(REPO / "envs" / "spleeter.yaml"))
    assert python_version(REPO / "envs" / "retinaface.yaml") == "3.11"
    assert pins["retina-face"] == "0.0.19" and pins["tensorflow"] == spleeter["tensorflow"] == "2.12.1"
    assert {name: pins[name] for name in ("av", "pyyaml")} == {name: main[name] for name in ("av", "pyyaml")}
