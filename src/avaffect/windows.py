"""Time grids: frames sampled at the label rate, sliding windows, and audio windows on voiced segments."""

from __future__ import annotations

import numpy as np


def sample_frames(n_frames: int, fps: float, rate: float) -> np.ndarray:
    """1-based frame numbers nearest to a `rate` Hz grid (every frame when the video is slower)."""
    if fps <= rate:
        return np.arange(1, n_frames + 1)
    times = np.arange(0.0, n_frames / fps, 1.0 / rate)
    return np.unique(np.clip(np.round(times * fps).astype(np.int64) + 1, 1, n_frames))


def sliding_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Start indices of windows of `window` steps every `hop` steps; the last window ends at `length`."""
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, hop)
    if starts[-1] + window < length:
        starts = np.append(starts, length - window)
    return starts


def voiced_windows(segments_s: list[tuple[float, float]], duration_s: float, window_s: float, step_s: float
                   ) -> list[tuple[float, float]]:
    """(start, end) seconds of windows that cover each voiced segment.

    A segment shorter than a window gets one window centred on it (shifted to stay inside the recording);
    a longer one gets windows every `step_s` and a last one ending at the segment's end.
    """
    windows: list[tuple[float, float]] = []
    for start, end in segments_s:
        if end - start <= window_s:
            begin = min(max(0.0, (start + end - window_s) / 2), max(0.0, duration_s - window_s))
            windows.append((begin, min(begin + window_s, duration_s)))
            continue
        begins = list(np.arange(start, end - window_s + 1e-9, step_s))
        if begins[-1] + window_s < end - 1e-9:
            begins.append(end - window_s)
        windows.extend((float(b), float(b) + window_s) for b in begins)
    return sorted(set(windows))
