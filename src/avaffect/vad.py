"""Mouth-based voice activity: the target face's inner-lip opening, with hysteresis, per frame."""

from __future__ import annotations

import numpy as np
import pandas as pd
from scipy.ndimage import median_filter


def hysteresis(signal: np.ndarray, on: float, off: float) -> np.ndarray:
    """True from a sample above `on` until the first sample below `off`; NaN (no face) is always False."""
    active = np.zeros(len(signal), dtype=bool)
    state = False
    for i, value in enumerate(signal):
        if np.isnan(value):
            state = False
        elif state:
            state = value >= off
        else:
            state = value > on
        active[i] = state
    return active


def segments(flags: np.ndarray) -> list[tuple[int, int]]:
    """(start, end) index pairs, end exclusive, of the runs of True."""
    padded = np.concatenate([[False], flags.astype(bool), [False]])
    edges = np.flatnonzero(np.diff(padded.astype(np.int8)))
    return [(int(s), int(e)) for s, e in zip(edges[::2], edges[1::2], strict=True)]


def close_gaps(flags: np.ndarray, max_gap: int, keep_false: np.ndarray) -> np.ndarray:
    """Fill False runs of at most `max_gap` samples between two True runs, except where `keep_false`."""
    out = flags.copy()
    runs = segments(flags)
    for (_, end), (start, _) in zip(runs[:-1], runs[1:], strict=True):
        if start - end <= max_gap and not keep_false[end:start].any():
            out[end:start] = True
    return out


def drop_short(flags: np.ndarray, min_length: int) -> np.ndarray:
    out = flags.copy()
    for start, end in segments(flags):
        if end - start < min_length:
            out[start:end] = False
    return out


def mouth_vad(opening: np.ndarray, fps: float, baseline_percentile: float, on_delta: float, off_delta: float,
              smooth_s: float, min_gap_s: float, min_segment_s: float) -> np.ndarray:
    """Per-frame speaking flags from the mouth opening (NaN where the target face is not seen).

    Thresholds are relative to the video's own closed-mouth baseline (a low percentile of the opening),
    because resting lip gaps differ between people and camera angles.
    """
    speaking = np.zeros(len(opening), dtype=bool)
    seen = ~np.isnan(opening)
    if not seen.any():
        return speaking
    baseline = np.percentile(opening[seen], baseline_percentile)
    width = max(1, int(round(smooth_s * fps)) | 1)
    smoothed = np.full(len(opening), np.nan)
    smoothed[seen] = median_filter(opening[seen], size=width, mode="nearest")
    speaking = hysteresis(smoothed, baseline + on_delta, baseline + off_delta)
    speaking = close_gaps(speaking, int(round(min_gap_s * fps)), keep_false=~seen)
    return drop_short(speaking, max(1, int(round(min_segment_s * fps))))


def vad_table(frames: np.ndarray, fps: float, opening: np.ndarray, speaking: np.ndarray) -> pd.DataFrame:
    """One row per frame: mouth opening, speaking flag, and the voiced segment it belongs to (-1: none)."""
    segment = np.full(len(frames), -1, np.int64)
    for i, (start, end) in enumerate(segments(speaking)):
        segment[start:end] = i
    return pd.DataFrame({"frame": frames, "time_s": (frames - 1) / fps, "mouth_open": opening,
                         "speaking": speaking, "segment": segment})


def segments_seconds(table: pd.DataFrame, fps: float) -> list[tuple[float, float]]:
    """(start, end) seconds of each voiced segment of a vad table; a segment ends where its last frame ends."""
    voiced = table[table["segment"] >= 0].groupby("segment")["frame"].agg(["min", "max"])
    return [((lo - 1) / fps, hi / fps) for lo, hi in zip(voiced["min"], voiced["max"], strict=True)]
