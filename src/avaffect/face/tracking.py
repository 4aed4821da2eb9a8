"""One person followed across frames by box overlap and appearance, and the per-video faces table."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import replace

import numpy as np
import pandas as pd

from avaffect.face.boxes import LANDMARK_NAMES, FaceBox, iou

APPEARANCE_BINS = (8, 4, 4)
"""Hue x saturation x value bins of the appearance histograms: coarse enough for a face of 30 px, fine
enough to tell skin, clothes and lighting of different shots apart."""
APPEARANCE_INNER = 0.2
"""Fraction of the face box cut from each side, so background and hair weigh little in the face part."""
TORSO_BELOW = (0.2, 1.5)
"""The torso part spans these multiples of the face height below the face, and one face width to each side
of its centre: clothes tell people apart where faces of the same lighting do not."""
HSV_RANGES = [0, 180, 0, 256, 0, 256]  # OpenCV's 8-bit HSV ranges


def _hsv_histogram(region: np.ndarray) -> np.ndarray:
    import cv2

    if region.size == 0:
        return np.zeros(int(np.prod(APPEARANCE_BINS)), np.float32)
    hsv = cv2.cvtColor(np.ascontiguousarray(region), cv2.COLOR_RGB2HSV)
    hist = cv2.calcHist([hsv], [0, 1, 2], None, list(APPEARANCE_BINS), HSV_RANGES).ravel().astype(np.float32)
    return hist / max(float(hist.sum()), 1.0)


def face_appearance(image: np.ndarray, box: FaceBox) -> np.ndarray:
    """Appearance of the person of a face box: HSV histograms of the inner face and of the torso below it,
    concatenated, each summing to 1 (the torso part is all zero where the frame ends below the face)."""
    height, width = image.shape[:2]
    w, h = box.x2 - box.x1, box.y2 - box.y1
    fx1, fy1 = int(max(0, box.x1 + APPEARANCE_INNER * w)), int(max(0, box.y1 + APPEARANCE_INNER * h))
    fx2, fy2 = int(min(width, box.x2 - APPEARANCE_INNER * w)), int(min(height, box.y2 - APPEARANCE_INNER * h))
    cx = box.center[0]
    tx1, tx2 = int(max(0, cx - w)), int(min(width, cx + w))
    ty1, ty2 = int(min(height, box.y2 + TORSO_BELOW[0] * h)), int(min(height, box.y2 + TORSO_BELOW[1] * h))
    face = _hsv_histogram(image[fy1:max(fy2, fy1 + 1), fx1:max(fx2, fx1 + 1)])
    torso = _hsv_histogram(image[ty1:ty2, tx1:tx2])
    return np.concatenate([face, torso])


def appearance_distance(a: np.ndarray | None, b: np.ndarray | None) -> float:
    """Bhattacharyya distance in [0, 1] between two appearances, over the parts (face, torso) seen in both;
    0 when either is unknown.

    A part is left out where one side lacks it (a close-up whose frame ends below the face has no torso),
    so that the same person framed tighter stays the same person.
    """
    if a is None or b is None:
        return 0.0
    coefficients = [np.sum(np.sqrt(part_a / part_a.sum() * (part_b / part_b.sum())))
                    for part_a, part_b in zip(np.split(a, 2), np.split(b, 2), strict=True)
                    if part_a.sum() > 0 and part_b.sum() > 0]
    if not coefficients:
        return 0.0
    return float(np.sqrt(max(0.0, 1.0 - np.mean(coefficients))))


def with_appearance(image: np.ndarray, faces: Sequence[FaceBox]) -> list[FaceBox]:
    return [replace(face, appearance=face_appearance(image, face)) for face in faces]


SIDES = ("left", "right")
"""Which person of a two-person video a track follows (Aff-Wild2's `<video>_left` / `<video>_right`)."""


def starting_face(faces: Sequence[FaceBox], side: str | None, frame_width: float) -> FaceBox | None:
    """The face a new track starts on: the largest confident one, or for a two-person video the face on
    `side`; a lone face counts for a side only when its centre lies in that half of the frame, so the
    other person alone in view does not start the track."""
    if not faces:
        return None
    if side is None:
        return max(faces, key=lambda face: face.score * (face.x2 - face.x1) * (face.y2 - face.y1))
    if side not in SIDES:
        raise ValueError(f"side must be one of {SIDES} or None, got '{side}'")
    chosen = min(faces, key=lambda face: face.center[0] if side == "left" else -face.center[0])
    if len(faces) == 1 and (chosen.center[0] < frame_width / 2) != (side == "left"):
        return None
    return chosen


def track_person(detections: Sequence[Sequence[FaceBox]], min_iou: float, max_gap: int,
                 side: str | None = None, frame_width: float = 0.0, max_appearance_distance: float = 1.0,
                 appearance_memory: float = 0.9) -> list[FaceBox | None]:
    """One face per frame that stays on the same person, or None where that person is not seen.

    The track starts on `starting_face` and continues with the face overlapping the last accepted box.
    Faces that carry an appearance must also look like the track (distance to a running mean of its
    appearances, which keeps `appearance_memory` of itself per frame): a shot cut to someone else in the
    same place is not continued, and after `max_gap` frames without the person only a face that looks like
    them restarts the track, so cut-aways to other people are marked absent rather than swapped in.
    """
    track: list[FaceBox | None] = []
    last: FaceBox | None = None
    model: np.ndarray | None = None
    missed = 0
    for faces in detections:
        alike = [face for face in faces if appearance_distance(face.appearance, model) <= max_appearance_distance]
        chosen = None
        if last is not None and alike:
            best = max(alike, key=lambda face: iou(face, last))
            chosen = best if iou(best, last) >= min_iou else None
        if chosen is None and (last is None or missed >= max_gap):
            chosen = starting_face(alike, side, frame_width)
        track.append(chosen)
        if chosen is None:
            missed += 1
            continue
        last, missed = chosen, 0
        if chosen.appearance is not None:
            model = chosen.appearance if model is None else (
                appearance_memory * model + (1 - appearance_memory) * chosen.appearance)
    return track


BOX_COLUMNS = ("x1", "y1", "x2", "y2")


def faces_table(numbers: Sequence[int], track: Sequence[FaceBox | None], counts: Sequence[int], fps: float
                ) -> pd.DataFrame:
    """One row per frame: the tracked face's box, score, detector and 5 landmarks (NaN when absent)."""
    rows = []
    for number, box, count in zip(numbers, track, counts, strict=True):
        row = {"frame": number, "time_s": (number - 1) / fps, "has_face": box is not None, "n_faces": count}
        row |= dict(zip(BOX_COLUMNS, (box.x1, box.y1, box.x2, box.y2) if box else (np.nan,) * 4, strict=True))
        row["score"] = box.score if box else np.nan
        row["detector"] = box.detector if box else ""
        points = box.landmarks if box else np.full((len(LANDMARK_NAMES), 2), np.nan)
        for name, (x, y) in zip(LANDMARK_NAMES, points, strict=True):
            row[f"{name}_x"], row[f"{name}_y"] = float(x), float(y)
        rows.append(row)
    return pd.DataFrame(rows)


def boxes_from_table(table: pd.DataFrame) -> dict[int, FaceBox]:
    """The tracked face of every frame that has one, keyed by frame number."""
    present = table[table["has_face"]]
    boxes = {}
    for row in present.itertuples(index=False):
        points = np.array([[getattr(row, f"{n}_x"), getattr(row, f"{n}_y")] for n in LANDMARK_NAMES], np.float32)
        boxes[int(row.frame)] = FaceBox(row.x1, row.y1, row.x2, row.y2, row.score, points, row.detector)
    return boxes
