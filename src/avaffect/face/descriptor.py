"""A training-free geometric face descriptor from the key landmarks of the face mesh."""

from __future__ import annotations

import numpy as np
import pandas as pd

from avaffect.face.landmarks import KEY_LANDMARKS, points_from_table
from avaffect.media.timeline import sample_frames

FACE_DESCRIPTOR = (
    "roll", "interocular", "face_height", "center_x", "center_y", "mouth_open", "mouth_width",
    "eye_open_l", "eye_open_r", "brow_l", "brow_r", "yaw", "pitch", "smile",
)
"""Names of the landmark descriptor's columns, in order (see `face_descriptor`)."""
_KEY = {name: i for i, name in enumerate(KEY_LANDMARKS)}


def _dist(points: np.ndarray, a: str, b: str) -> np.ndarray:
    return np.linalg.norm(points[:, _KEY[a]] - points[:, _KEY[b]], axis=-1)


def face_descriptor(points: np.ndarray, width: int, height: int) -> np.ndarray:
    """(n, len(FACE_DESCRIPTOR)) float32 descriptor from (n, n_key, 2) key landmarks in frame pixels.

    Head pose and position are relative to the frame; shape measures are taken after undoing the roll
    and are divided by face size, so they describe the face, not the camera.
    """
    left, right = points[:, _KEY["eye_outer_l"]], points[:, _KEY["eye_outer_r"]]
    roll = np.arctan2(right[:, 1] - left[:, 1], right[:, 0] - left[:, 0])
    mid_eyes = (left + right) / 2
    cos, sin = np.cos(-roll)[:, None, None], np.sin(-roll)[:, None, None]
    rel = points - mid_eyes[:, None, :]
    upright = np.stack([cos[..., 0] * rel[..., 0] - sin[..., 0] * rel[..., 1],
                        sin[..., 0] * rel[..., 0] + cos[..., 0] * rel[..., 1]], axis=-1)
    interocular = _dist(points, "eye_outer_l", "eye_outer_r")
    face_height = _dist(points, "forehead", "chin")
    mouth_mid = (upright[:, _KEY["mouth_corner_l"]] + upright[:, _KEY["mouth_corner_r"]]) / 2
    lips_mid = (upright[:, _KEY["lip_upper_outer"]] + upright[:, _KEY["lip_lower_outer"]]) / 2
    columns = [
        roll,
        interocular / width,
        face_height / height,
        points[..., 0].mean(axis=1) / width,
        points[..., 1].mean(axis=1) / height,
        _dist(points, "lip_upper_inner", "lip_lower_inner") / face_height,
        _dist(points, "mouth_corner_l", "mouth_corner_r") / interocular,
        _dist(points, "eye_top_l", "eye_bottom_l") / _dist(points, "eye_outer_l", "eye_inner_l"),
        _dist(points, "eye_top_r", "eye_bottom_r") / _dist(points, "eye_outer_r", "eye_inner_r"),
        _dist(points, "brow_l", "eye_top_l") / face_height,
        _dist(points, "brow_r", "eye_top_r") / face_height,
        upright[:, _KEY["nose_tip"], 0] / interocular,
        upright[:, _KEY["nose_tip"], 1] / np.maximum(mouth_mid[:, 1], 1e-6),
        (mouth_mid[:, 1] - lips_mid[:, 1]) / face_height,
    ]
    return np.stack(columns, axis=1).astype(np.float32)


def landmark_embeddings(landmarks: pd.DataFrame, probe: dict, rate_hz: float
                        ) -> tuple[dict[str, np.ndarray], np.ndarray, np.ndarray]:
    """Extractor `landmarks`: the descriptor of a landmarks table at frames sampled at `rate_hz`. Returns the
    per-row columns (frame, time_s), the (rows, descriptor) matrix (zero without a face) and where a face is."""
    frames = sample_frames(probe["n_frames"], probe["fps"], rate_hz)
    points = points_from_table(landmarks.set_index("frame").reindex(frames).reset_index())
    present = ~np.isnan(points).any(axis=(1, 2))
    matrix = np.zeros((len(frames), len(FACE_DESCRIPTOR)), np.float32)
    matrix[present] = face_descriptor(points[present], probe["width"], probe["height"])
    return {"frame": frames, "time_s": (frames - 1) / probe["fps"]}, matrix, present
