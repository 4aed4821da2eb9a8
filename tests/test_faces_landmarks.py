from dataclasses import replace

import numpy as np
import pytest
import skimage.data

from avaffect.core.checkpoints import CheckpointError
from avaffect.corpus import demo
from avaffect.face.boxes import FaceBox, crop_box, iou
from avaffect.face.descriptor import FACE_DESCRIPTOR, face_descriptor
from avaffect.face.detectors import FallbackDetector, MediaPipeDetector, build_detector
from avaffect.face.landmarks import FaceMesh, landmarks_table, mouth_opening, points_from_table
from avaffect.face.tracking import appearance_distance, boxes_from_table, face_appearance, faces_table, track_person

NO_POINTS = np.full((5, 2), np.nan, np.float32)


def box(x, y, size=50.0, score=0.9):
    return FaceBox(x, y, x + size, y + size, score, NO_POINTS)


def test_tracker_keeps_the_person_and_marks_cutaways():
    main, other = box(100, 100), box(10, 10, size=80)
    frames = [[main], [box(104, 100)], [other], [other], [box(106, 102), other], []]
    track = track_person(frames, min_iou=0.3, max_gap=3)
    assert track[0] is main and track[1].x1 == 104
    assert track[2] is None and track[3] is None  # a cut-away to someone else is not swapped in
    assert track[4].x1 == 106 and track[5] is None


def test_tracker_restarts_after_long_absence():
    frames = [[box(100, 100)], [], [], [box(10, 10)]]
    assert track_person(frames, 0.3, max_gap=2)[3].x1 == 10


def test_two_person_tracks_follow_their_side():
    left, right = box(40, 100), box(300, 100)
    frames = [[right, left], [box(302, 101), box(42, 99)], [box(304, 100)], [box(44, 100), box(306, 100)]]
    left_track = track_person(frames, min_iou=0.3, max_gap=2, side="left", frame_width=400)
    right_track = track_person(frames, min_iou=0.3, max_gap=2, side="right", frame_width=400)
    assert [f.x1 if f else None for f in left_track] == [40, 42, None, 44]
    assert [f.x1 for f in right_track] == [300, 302, 304, 306]
    # The right person alone in view does not start the left track.
    assert track_person([[right], [left]], 0.3, 2, side="left", frame_width=400)[0] is None
    with pytest.raises(ValueError, match="middle"):
        track_person([[left]], 0.3, 2, side="middle", frame_width=400)


def test_tracker_does_not_continue_through_a_cut_to_someone_else():
    red, blue = np.zeros((40, 40, 3), np.uint8), np.zeros((40, 40, 3), np.uint8)
    red[..., 0], blue[..., 2] = 200, 200
    person, other = face_appearance(red, box(0, 0, 20)), face_appearance(blue, box(0, 0, 20))
    assert appearance_distance(person, person) == pytest.approx(0, abs=1e-6)
    assert appearance_distance(person, other) > 0.9
    # A close-up whose frame ends below the face has no torso part: it is still the same person.
    close_up = face_appearance(red, box(0, 0, red.shape[0]))
    assert not close_up[close_up.size // 2:].any()
    assert appearance_distance(close_up, close_up) == pytest.approx(0, abs=1e-6)
    assert appearance_distance(close_up, person) == pytest.approx(0, abs=1e-6)
    frames = [[replace(box(100, 100), appearance=person)], [replace(box(101, 100), appearance=other)],
              [replace(box(10, 10), appearance=other)], [replace(box(12, 10), appearance=person)]]
    track = track_person(frames, 0.3, max_gap=1, max_appearance_distance=0.5)
    assert [f.x1 if f else None for f in track] == [100, None, None, 12]
    # Without the appearance check the cut at frame 2 is continued as if it were the same person.
    assert track_person(frames, 0.3, max_gap=1, max_appearance_distance=1.0)[1].x1 == 101


def test_crop_is_clipped_and_has_margin():
    assert crop_box(box(10, 20), 100, 100, 15) == (0, 5, 75, 85)
    assert iou(box(0, 0), box(0, 0)) == 1.0 and iou(box(0, 0), box(100, 100)) == 0.0


def test_faces_table_round_trip():
    found = FaceBox(1, 2, 30, 40, 0.8, np.arange(10, dtype=np.float32).reshape(5, 2), "mediapipe")
    table = faces_table([1, 2], [found, None], [1, 0], fps=25.0)
    assert table["has_face"].tolist() == [True, False] and table["time_s"].tolist() == [0.0, 0.04]
    back = boxes_from_table(table)
    assert list(back) == [1] and back[1].detector == "mediapipe"
    assert np.array_equal(back[1].landmarks, found.landmarks)


def test_unknown_detector_and_missing_weights_are_clear(tmp_path):
    with pytest.raises(ValueError, match="dlib"):
        build_detector("dlib", {}, "cpu")
    settings = {"retinaface": {"score_threshold": 0.8, "nms_threshold": 0.4}}
    with pytest.raises(ValueError, match="retinaface_mobilenet025"):
        build_detector("retinaface", settings, "cpu")
    missing = tmp_path / "nope.pth"
    with pytest.raises(CheckpointError, match="nope.pth"):
        build_detector("retinaface", settings, "cpu", {"retinaface": missing})


@pytest.fixture(scope="module")
def rendered():
    """Demo renderings of the astronaut: neutral, tilted/zoomed/shifted with an open mouth."""
    source = skimage.data.astronaut()
    neutral = demo.render_frame(source, 0.0, 0.0, 3.5, 0.0, True)
    posed = demo.render_frame(source, 0.8, 0.8, 0.0, 1.0, True)
    hidden = demo.render_frame(source, 0.0, 0.0, 3.5, 0.0, False)
    return neutral, posed, hidden


def test_mediapipe_and_mesh_follow_the_rendered_signals(rendered):
    neutral, posed, hidden = rendered
    detector = MediaPipeDetector(model_selection=1, score_threshold=0.5)
    found = detector.detect_batch([neutral, posed, hidden])
    assert len(found[0]) == 1 and len(found[1]) == 1 and found[2] == []
    left_eye, right_eye = found[0][0].landmarks[0], found[0][0].landmarks[1]
    assert left_eye[0] < right_eye[0]
    mesh = FaceMesh(crop_margin=0.25)
    points = np.stack([mesh.key_points(neutral, found[0][0]), mesh.key_points(posed, found[1][0])])
    opening = mouth_opening(points)
    assert opening[1] > opening[0] + 0.03
    desc = face_descriptor(points, 192, 192)
    col = {name: desc[:, i] for i, name in enumerate(FACE_DESCRIPTOR)}
    # valence 0.8 is a 20 degree roll; arousal 0.8 a 20 % zoom; class 0 sits left of centre
    assert np.degrees(abs(col["roll"][1] - col["roll"][0])) == pytest.approx(20, abs=3)
    assert col["interocular"][1] / col["interocular"][0] == pytest.approx(1.2, abs=0.06)
    assert col["center_x"][1] < col["center_x"][0] - 0.1
    table = landmarks_table([1, 2, 3], {1: points[0], 2: None, 3: points[1]}, fps=25.0)
    assert table["has_landmarks"].tolist() == [True, False, True]
    assert np.allclose(points_from_table(table)[[0, 2]], points)


class FindsNothing:
    name = "blind"

    def detect_batch(self, images):
        return [[] for _ in images]


def test_fallback_asks_the_next_detector_only_where_the_first_found_nothing(rendered, shared):
    neutral, _, hidden = rendered
    settings = {"retinaface": {"score_threshold": 0.8, "nms_threshold": 0.4},
                "mediapipe": {"model_selection": 1, "score_threshold": 0.5}}
    weights = {"retinaface": shared / "weights" / "retinaface" / "mobilenet0.25_Final.pth"}
    both = build_detector("retinaface+mediapipe", settings, "cpu", weights)
    found = both.detect_batch([neutral, hidden])
    assert [f.detector for f in found[0]] == ["retinaface"] and found[1] == []
    fallback = FallbackDetector([FindsNothing(), MediaPipeDetector(1, 0.5)])
    (faces,) = fallback.detect_batch([neutral])
    assert [f.detector for f in faces] == ["mediapipe"]
    retina, mediapipe = found[0][0], faces[0]
    # the two detectors agree on where the face is (box centres within 10 % of the face size)
    assert np.hypot(*np.subtract(retina.center, mediapipe.center)) < 0.1 * retina.size
