"""MediaPipe face mesh on the tracked face: the key landmarks and the mouth opening per frame."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.core.progress import Progress, counted
from avaffect.face.boxes import FaceBox, crop_box, on_tracked_faces
from avaffect.face.tracking import boxes_from_table
from avaffect.media.video import iter_frames

# Face-mesh indices of the points the workflow keeps (of 468); the descriptor in `features` uses them.
KEY_LANDMARKS = {
    "forehead": 10,
    "chin": 152,
    "nose_tip": 1,
    "eye_outer_l": 33,
    "eye_inner_l": 133,
    "eye_top_l": 159,
    "eye_bottom_l": 145,
    "eye_outer_r": 263,
    "eye_inner_r": 362,
    "eye_top_r": 386,
    "eye_bottom_r": 374,
    "brow_l": 105,
    "brow_r": 334,
    "mouth_corner_l": 61,
    "mouth_corner_r": 291,
    "lip_upper_outer": 0,
    "lip_lower_outer": 17,
    "lip_upper_inner": 13,
    "lip_lower_inner": 14,
}
LANDMARK_COLUMNS = [f"{name}_{axis}" for name in KEY_LANDMARKS for axis in ("x", "y")]


def mouth_opening(points: np.ndarray) -> np.ndarray:
    """Inner-lip gap divided by face height (forehead to chin), for (..., n_key, 2) key landmarks."""
    names = list(KEY_LANDMARKS)
    gap = np.linalg.norm(points[..., names.index("lip_lower_inner"), :]
                         - points[..., names.index("lip_upper_inner"), :], axis=-1)
    face = np.linalg.norm(points[..., names.index("chin"), :] - points[..., names.index("forehead"), :], axis=-1)
    return gap / face


class FaceMesh:
    """MediaPipe face mesh (bundled with the mediapipe 0.10.14 wheel) run on a crop around one face."""

    def __init__(self, crop_margin: float, min_confidence: float = 0.5):
        import mediapipe as mp

        self.crop_margin = crop_margin
        self._mesh = mp.solutions.face_mesh.FaceMesh(
            static_image_mode=True, max_num_faces=1, refine_landmarks=False,
            min_detection_confidence=min_confidence,
        )

    def key_points(self, image: np.ndarray, box: FaceBox) -> np.ndarray | None:
        """(n_key, 2) key landmarks in frame pixels, or None when the mesh finds no face in the crop."""
        height, width = image.shape[:2]
        x1, y1, x2, y2 = crop_box(box, width, height, 0.0, self.crop_margin)
        crop = np.ascontiguousarray(image[y1:y2, x1:x2])
        found = self._mesh.process(crop).multi_face_landmarks
        if not found:
            return None
        marks = found[0].landmark
        rel = np.array([(marks[i].x, marks[i].y) for i in KEY_LANDMARKS.values()], np.float32)
        return rel * np.array([x2 - x1, y2 - y1], np.float32) + np.array([x1, y1], np.float32)


N_BLENDSHAPES = 52
"""Scores the Face Landmarker gives per face (ARKit-style names, `_neutral` first), in the model's order."""


class FaceBlendshapes:
    """MediaPipe Face Landmarker (task file: resource mediapipe_face_landmarker) on a crop around one face:
    its 52 blendshape scores, a training-free expression descriptor."""

    def __init__(self, task_file: Path, crop_margin: float, min_confidence: float = 0.5):
        import mediapipe as mp
        from mediapipe.tasks.python import BaseOptions, vision

        self._mp = mp
        self.crop_margin = crop_margin
        options = vision.FaceLandmarkerOptions(
            base_options=BaseOptions(model_asset_path=str(task_file)),
            running_mode=vision.RunningMode.IMAGE, num_faces=1, output_face_blendshapes=True,
            min_face_detection_confidence=min_confidence,
        )
        self._landmarker = vision.FaceLandmarker.create_from_options(options)

    def scores(self, image: np.ndarray, box: FaceBox) -> np.ndarray | None:
        """(N_BLENDSHAPES,) float32 scores, or None when the landmarker finds no face in the crop."""
        height, width = image.shape[:2]
        x1, y1, x2, y2 = crop_box(box, width, height, 0.0, self.crop_margin)
        crop = self._mp.Image(image_format=self._mp.ImageFormat.SRGB, data=np.ascontiguousarray(image[y1:y2, x1:x2]))
        found = self._landmarker.detect(crop).face_blendshapes
        if not found:
            return None
        return np.array([category.score for category in found[0]], np.float32)


def landmarks_table(numbers: Sequence[int], points: dict[int, np.ndarray | None], fps: float) -> pd.DataFrame:
    """One row per frame: key landmarks in frame pixels and the mouth opening (NaN without a face mesh)."""
    matrix = np.full((len(numbers), len(KEY_LANDMARKS), 2), np.nan, np.float32)
    for i, number in enumerate(numbers):
        found = points.get(number)
        if found is not None:
            matrix[i] = found
    table = pd.DataFrame({"frame": np.asarray(numbers, np.int64), "time_s": (np.asarray(numbers) - 1) / fps})
    table["has_landmarks"] = ~np.isnan(matrix[:, 0, 0])
    table["mouth_open"] = mouth_opening(matrix)
    return pd.concat([table, pd.DataFrame(matrix.reshape(len(numbers), -1), columns=LANDMARK_COLUMNS)], axis=1)


def points_from_table(table: pd.DataFrame) -> np.ndarray:
    """(n_frames, n_key, 2) key landmarks of a landmarks table, NaN where there are none."""
    return table[LANDMARK_COLUMNS].to_numpy(np.float32).reshape(len(table), len(KEY_LANDMARKS), 2)


def tracked_landmarks(video: Path, faces: pd.DataFrame, fps: float, crop_margin: float,
                      report: Callable[[str], None], every_s: float) -> pd.DataFrame:
    """The landmarks table of a video's tracked face: the face mesh (FaceMesh) on every frame of the faces
    table (tracking.faces_table) that has a face; progress lines go to `report` every `every_s` seconds."""
    boxes = boxes_from_table(faces)
    mesh = FaceMesh(crop_margin)
    frames = counted(iter_frames(Path(video), boxes), Progress("face mesh", "frame", len(boxes), report, every_s))
    points = dict(on_tracked_faces(frames, boxes, mesh.key_points))
    return landmarks_table(faces["frame"].tolist(), points, fps)
