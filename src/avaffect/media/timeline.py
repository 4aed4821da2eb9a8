"""Time grids: frames sampled at the label rate, sliding windows, and audio windows on voiced segments."""

from __future__ import annotations

import numpy as np

WINDOW_EDGE_TOLERANCE = 1e-9
"""Slack, in window lengths, when assigning times to windows: a time computed as frame / fps that should sit on
a window edge (0.6 / 0.2 = 2.9999999999999996) still opens the later window."""


def frame_times(n_frames: int, fps: float) -> np.ndarray:
    """Times in seconds of frames 1..n_frames: frame k is shown at (k - 1) / fps."""
    if n_frames < 0:
        raise ValueError(f"n_frames must be >= 0, got {n_frames}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    return np.arange(n_frames) / fps


def sample_frames(n_frames: int, fps: float, rate: float) -> np.ndarray:
    """1-based frame numbers nearest to a `rate` Hz grid (every frame when the video is slower)."""
    if fps <= rate:
        return np.arange(1, n_frames + 1)
    times = np.arange(0.0, n_frames / fps, 1.0 / rate)
    return np.unique(np.clip(np.round(times * fps).astype(np.int64) + 1, 1, n_frames))


def covering_hop(window: int, hop: int) -> int:
    """The hop between windows of `window` steps that leaves no step outside every window: `hop`, or `window` when
    the hop is longer (the Aff-Wild2 sweep's 1 s window with its 2 s hop), whose gaps would be steps that training
    never sees and that prediction has no window for."""
    return min(hop, window)


def sliding_starts(length: int, window: int, hop: int) -> np.ndarray:
    """Start indices of windows of `window` steps every `covering_hop(window, hop)` steps, so that every step is
    in a window; the last window ends at `length`."""
    if length <= window:
        return np.zeros(1, dtype=np.int64)
    starts = np.arange(0, length - window + 1, covering_hop(window, hop))
    if starts[-1] + window < length:
        starts = np.append(starts, length - window)
    return starts


def window_centres(times: np.ndarray, starts: np.ndarray, window: int) -> np.ndarray:
    """Times (s) halfway between the first and last step of each window of `window` steps at `starts` over steps
    at `times`; a window that the sequence's end cuts short is centred on the steps it has."""
    times = np.asarray(times, dtype=np.float64)
    stops = np.minimum(np.asarray(starts) + window, len(times)) - 1
    return (times[starts] + times[stops]) / 2


def interpolate_columns(sample_times: np.ndarray, values: np.ndarray, times: np.ndarray) -> np.ndarray:
    """Each column of `values` (n, d), given at ascending `sample_times` (n,), linearly interpolated at `times`
    (m,), as (m, d) float64; times outside the sampled span take the nearest sample's value."""
    out = np.empty((len(times), values.shape[1]))
    for j in range(values.shape[1]):
        out[:, j] = np.interp(times, sample_times, values[:, j])
    return out


def voiced_windows(segments_s: list[tuple[float, float]], duration_s: float, window_s: float, step_s: float
                   ) -> list[tuple[float, float]]:
    """(start, end) seconds of windows that cover each voiced segment, inside [0, duration_s].

    A segment shorter than a window gets one window centred on it (shifted to stay inside the recording);
    a longer one gets windows every `step_s` and a last one ending at the segment's end. A segment is first
    cut at `duration_s`, and one that starts after it has no window.
    """
    windows: list[tuple[float, float]] = []
    for start, segment_end in segments_s:
        # Segments come from the video, which can outlast the audio. A window past the audio's end would hold
        # steps with labels but no audio, and a shorter model input than its steps say; cut at the end, the
        # last window moves back to end there, so every step keeps its own audio and the label at its time.
        end = min(segment_end, duration_s)
        if end <= start:
            continue
        if end - start <= window_s:
            begin = min(max(0.0, (start + end - window_s) / 2), max(0.0, duration_s - window_s))
            windows.append((begin, min(begin + window_s, duration_s)))
            continue
        begins = list(np.arange(start, end - window_s + 1e-9, step_s))
        if begins[-1] + window_s < end - 1e-9:
            begins.append(end - window_s)
        windows.extend((float(b), float(b) + window_s) for b in begins)
    return sorted(set(windows))


def window_steps(start_s: float, end_s: float, rate_hz: float) -> np.ndarray:
    """Times (s) of the label-rate steps of a window: 4 s at 5 Hz gives 20 steps, start included. A step's
    features are those of the audio within half a step of its time."""
    return start_s + np.arange(int(round((end_s - start_s) * rate_hz))) / rate_hz


def audio_window_grid(voiced_s: list[tuple[float, float]], duration_s: float, n_frames: int, fps: float,
                      rate_hz: float, window_s: float, step_s: float
                      ) -> tuple[list[tuple[float, float]], dict[str, np.ndarray]]:
    """Windows laid on the voiced segments, and one row per label-rate step of each: window index, the video
    frame at the step's time (1-based) and the step's time (s), the centre of the audio its features hold."""
    windows = voiced_windows(voiced_s, duration_s, window_s, step_s)
    steps = [window_steps(start, end, rate_hz) for start, end in windows]
    window = np.concatenate([np.full(len(t), i, np.int64) for i, t in enumerate(steps)]) if steps else \
        np.zeros(0, np.int64)
    times = np.concatenate(steps) if steps else np.zeros(0)
    frames = np.clip(np.round(times * fps).astype(np.int64) + 1, 1, n_frames)
    return windows, {"window": window, "frame": frames, "time_s": times}


def majority_per_slot(frame_labels: np.ndarray, fps: float, start_s: float, n_slots: int, slot_s: float,
                      invalid: int) -> np.ndarray:
    """Most frequent valid class of the video frames in each slot [start + k slot_s, start + (k+1) slot_s).

    `frame_labels` holds one class per video frame (frame k at (k - 1) / fps); `invalid` labels are left out
    of the count, and a slot without a valid frame is `invalid`. Ties go to the lowest class.
    """
    slot = slot_of_steps(np.arange(len(frame_labels)) / fps, start_s, slot_s)
    out = np.full(n_slots, invalid, np.int64)
    for k in range(n_slots):
        chosen = frame_labels[(slot == k) & (frame_labels != invalid)]
        if len(chosen):
            out[k] = np.bincount(chosen).argmax()
    return out


def slot_of_steps(step_times: np.ndarray, start_s: float, slot_s: float) -> np.ndarray:
    """Index of the slot [start + k slot_s, ...) each step time falls in."""
    return np.floor((np.asarray(step_times) - start_s) / slot_s + WINDOW_EDGE_TOLERANCE).astype(np.int64)
