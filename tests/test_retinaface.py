import re

import cv2
import numpy as np
import pytest
import torch

from avaffect.core.checkpoints import CheckpointError
from avaffect.face.boxes import FaceBox
from avaffect.face.retinaface import RetinaFace, RetinaFaceDetector, load_retinaface, nms, prior_boxes

# The `shared` fixture (tests/conftest.py) resolves Path(__file__).resolve().parents[2] / "shared", or
# $AVAFFECT_SHARED, and skips with the path it looked at when the fixtures are not there.
WEIGHTS = "weights/retinaface/mobilenet0.25_Final.pth"
ONE_FACE = ["biden.jpg", "obama.jpg", "obama2.jpg", "obama-240p.jpg", "alex-lacamoire.png",
            "lin-manuel-miranda.png"]
SCORE_THRESHOLD = 0.8
LANDMARK_SLACK_PX = 5.0


def read_rgb(path) -> np.ndarray:
    image = cv2.imread(str(path))
    assert image is not None, f"cannot read {path}"
    return cv2.cvtColor(image, cv2.COLOR_BGR2RGB)


@pytest.fixture(scope="module")
def weights(shared):
    path = shared / WEIGHTS
    if not path.is_file():
        pytest.skip(f"RetinaFace weights not found at {path}")
    return path


@pytest.fixture(scope="module")
def detector(weights):
    return RetinaFaceDetector(weights, device="cpu", score_threshold=SCORE_THRESHOLD)


def check_face(face: FaceBox, image: np.ndarray) -> None:
    height, width = image.shape[:2]
    assert face.score >= SCORE_THRESHOLD and face.detector == "retinaface"
    assert 0 <= face.x1 < face.x2 <= width and 0 <= face.y1 < face.y2 <= height
    points = face.landmarks
    assert points.shape == (5, 2) and points.dtype == np.float32
    left_eye, right_eye, _, mouth_left, mouth_right = points
    assert left_eye[0] < right_eye[0] and mouth_left[0] < mouth_right[0]
    assert max(left_eye[1], right_eye[1]) < min(mouth_left[1], mouth_right[1])
    low = np.array([face.x1, face.y1]) - LANDMARK_SLACK_PX
    high = np.array([face.x2, face.y2]) + LANDMARK_SLACK_PX
    assert np.all((points >= low) & (points <= high))


def test_anchor_count_matches_network_output_for_odd_sizes():
    model = RetinaFace().eval()
    with torch.inference_mode():
        loc, conf, landms = model(torch.zeros(1, 3, 101, 157))
    assert loc.shape == (1, len(prior_boxes(101, 157)), 4)
    assert conf.shape[2] == 2 and landms.shape[2] == 10
    assert torch.allclose(conf.sum(-1), torch.ones(1))


def test_nms_keeps_best_of_overlapping_boxes():
    boxes = torch.tensor([[0, 0, 10, 10], [1, 1, 10, 10], [20, 20, 30, 30]], dtype=torch.float32)
    assert nms(boxes, torch.tensor([0.5, 0.9, 0.7]), 0.4).tolist() == [1, 2]
    assert nms(torch.zeros(0, 4), torch.zeros(0), 0.4).numel() == 0


def test_two_people(detector, shared):
    image = read_rgb(shared / "media/photos/two_people.jpg")
    faces = detector.detect_batch([image])[0]
    assert len(faces) == 2
    assert faces[0].score >= faces[1].score
    for face in faces:
        check_face(face, image)


@pytest.mark.parametrize("name", ONE_FACE)
def test_one_face(detector, shared, name):
    image = read_rgb(shared / "media/photos" / name)
    faces = detector.detect_batch([image])[0]
    assert len(faces) == 1
    check_face(faces[0], image)


def test_batch_equals_single(detector, shared):
    image = read_rgb(shared / "media/photos/obama-240p.jpg")
    mirrored = np.ascontiguousarray(image[:, ::-1])
    other_size = read_rgb(shared / "media/photos/alex-lacamoire.png")
    batched = detector.detect_batch([image, other_size, mirrored])
    single = [detector.detect_batch([one])[0] for one in (image, other_size, mirrored)]
    for got, expected in zip(batched, single, strict=True):
        assert len(got) == len(expected) == 1
        for a, b in zip(got, expected, strict=True):
            assert np.allclose([a.x1, a.y1, a.x2, a.y2], [b.x1, b.y1, b.x2, b.y2], atol=1e-3)
            assert np.allclose(a.landmarks, b.landmarks, atol=1e-3)
            assert a.score == pytest.approx(b.score, abs=1e-5)
    assert detector.detect_batch([]) == []


def test_missing_weights_name_the_path(tmp_path):
    missing = tmp_path / "absent.pth"
    with pytest.raises(CheckpointError, match=re.escape(str(missing))):
        load_retinaface(missing, "cpu")


def test_corrupt_weights_name_the_path(tmp_path):
    corrupt = tmp_path / "corrupt.pth"
    corrupt.write_bytes(np.random.default_rng(0).bytes(4096))
    with pytest.raises(ValueError, match=re.escape(str(corrupt))):
        load_retinaface(corrupt, "cpu")


def test_wrong_state_dict_names_the_path(tmp_path):
    wrong = tmp_path / "wrong.pth"
    torch.save({"body.stage1.0.0.weight": torch.zeros(1)}, wrong)
    with pytest.raises(ValueError, match=re.escape(str(wrong))):
        load_retinaface(wrong, "cpu")
