"""Feature normalisation fit on the training sequences: z-score, MinMax, or MinMax per video."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import torch

from avaffect.models.sequences import StepSequence

NORMALIZATIONS = ("zscore", "minmax", "per_video_minmax")


@dataclass(frozen=True)
class Normalizer:
    """Embedding normalisation; steps without an embedding become zeros and a presence flag says so.

    zscore and minmax use training-set statistics; per_video_minmax scales each video by its own range
    (it needs no labels, so test videos are scaled the same way), and each augmented copy of a video's audio
    by the copy's own range.
    """

    kind: str
    offset: np.ndarray | None = None
    scale: np.ndarray | None = None

    @classmethod
    def fit(cls, sequences: Sequence[StepSequence], kind: str) -> Normalizer:
        if kind not in NORMALIZATIONS:
            raise ValueError(f"unknown normalization '{kind}' (expected one of {', '.join(NORMALIZATIONS)})")
        if kind == "per_video_minmax":
            return cls(kind)
        stacked = np.concatenate([s.features[s.present] for s in sequences])
        if kind == "zscore":
            return cls(kind, stacked.mean(axis=0), np.maximum(stacked.std(axis=0), MIN_SCALE))
        low = stacked.min(axis=0)
        return cls(kind, low, np.maximum(stacked.max(axis=0) - low, MIN_SCALE))

    def transform(self, sequences: Sequence[StepSequence]) -> list[np.ndarray]:
        """Model inputs (steps, features + 1) of each sequence."""
        ranges = _video_ranges(sequences) if self.kind == "per_video_minmax" else {}
        out = []
        for seq in sequences:
            offset, scale = ranges.get((seq.video, seq.copy), (self.offset, self.scale))
            present = seq.present
            scaled = np.where(present[:, None], (seq.features - offset) / scale, 0.0)
            out.append(np.concatenate([scaled, present[:, None]], axis=1).astype(np.float32))
        return out

    def to_state(self) -> dict:
        """Tensors and plain values only, so checkpoints load with torch.load(weights_only=True)."""
        return {"kind": self.kind, "offset": _tensor(self.offset), "scale": _tensor(self.scale)}

    @classmethod
    def from_state(cls, state: dict) -> Normalizer:
        return cls(state["kind"], _array(state["offset"]), _array(state["scale"]))


def _tensor(values: np.ndarray | None) -> torch.Tensor | None:
    return None if values is None else torch.from_numpy(np.asarray(values, np.float32))


def _array(values: torch.Tensor | None) -> np.ndarray | None:
    return None if values is None else values.numpy()


MIN_SCALE = 1e-6


def _video_ranges(sequences: Sequence[StepSequence]
                  ) -> dict[tuple[str, str | None], tuple[np.ndarray, np.ndarray]]:
    """(offset, scale) of each (video, augmented copy): the SUN paper's per-video MinMax scales every video by its
    own min and max, which a test video is too. An augmented copy (noise, gain, polarity) is another recording of
    the video, so it gets its own range, as a test video recorded that way would; its original's range would put it
    where no test input ever lies, and a range pooled over the original and its copies would squash them all."""
    ranges = {}
    for key in {(s.video, s.copy) for s in sequences}:
        stacked = np.concatenate([s.features[s.present] for s in sequences if (s.video, s.copy) == key])
        if len(stacked) == 0:
            dim = sequences[0].features.shape[1]
            ranges[key] = (np.zeros(dim), np.ones(dim))
            continue
        low = stacked.min(axis=0)
        ranges[key] = (low, np.maximum(stacked.max(axis=0) - low, MIN_SCALE))
    return ranges
