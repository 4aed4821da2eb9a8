"""Face boxes with their five landmarks, their overlap, and the crops cut around them."""

from __future__ import annotations

from collections.abc import Callable, Iterable, Iterator
from dataclasses import dataclass
from typing import TypeVar

import numpy as np

LANDMARK_NAMES = ("left_eye", "right_eye", "nose", "mouth_left", "mouth_right")
"""Five-point landmarks in image coordinates; "left" is the smaller x in the image."""


@dataclass(frozen=True)
class FaceBox:
    """One detected face in pixel coordinates of the frame it was found in."""

    x1: float
    y1: float
    x2: float
    y2: float
    score: float
    landmarks: np.ndarray  # (5, 2) float32 in LANDMARK_NAMES order; NaN where a detector has none
    detector: str = ""
    appearance: np.ndarray | None = None  # `face_appearance` of the face, for tracking across shot cuts

    @property
    def center(self) -> tuple[float, float]:
        return ((self.x1 + self.x2) / 2, (self.y1 + self.y2) / 2)

    @property
    def size(self) -> float:
        return max(self.x2 - self.x1, self.y2 - self.y1)


def iou(a: FaceBox, b: FaceBox) -> float:
    ix = max(0.0, min(a.x2, b.x2) - max(a.x1, b.x1))
    iy = max(0.0, min(a.y2, b.y2) - max(a.y1, b.y1))
    inter = ix * iy
    union = (a.x2 - a.x1) * (a.y2 - a.y1) + (b.x2 - b.x1) * (b.y2 - b.y1) - inter
    return inter / union if union > 0 else 0.0


def crop_box(box: FaceBox, width: int, height: int, margin_px: float, margin_fraction: float = 0.0
             ) -> tuple[int, int, int, int]:
    """Integer crop (x1, y1, x2, y2) around a face: a fixed margin plus a fraction of the box size,
    clipped to the frame."""
    pad_x = margin_px + margin_fraction * (box.x2 - box.x1)
    pad_y = margin_px + margin_fraction * (box.y2 - box.y1)
    x1 = int(np.floor(max(0.0, box.x1 - pad_x)))
    y1 = int(np.floor(max(0.0, box.y1 - pad_y)))
    x2 = int(np.ceil(min(float(width), box.x2 + pad_x)))
    y2 = int(np.ceil(min(float(height), box.y2 + pad_y)))
    return x1, y1, x2, y2


Measured = TypeVar("Measured")


def on_tracked_faces(frames: Iterable[tuple[int, np.ndarray]], boxes: dict[int, FaceBox],
                     measure: Callable[[np.ndarray, FaceBox], Measured]) -> Iterator[tuple[int, Measured]]:
    """(frame number, measure(image, box)) for every decoded frame that has a tracked face."""
    for number, image in frames:
        box = boxes.get(number)
        if box is not None:
            yield number, measure(image, box)
