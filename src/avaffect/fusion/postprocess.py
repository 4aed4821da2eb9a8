"""From window-rate predictions to one smoothed prediction per video frame."""

from __future__ import annotations

import math
from functools import partial

import numpy as np
import pandas as pd
from scipy.ndimage import convolve1d

from avaffect.media.timeline import frame_times, interpolate_columns


def _mean_per_time(times: np.ndarray, values: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """Sorted distinct times and the mean of the values given at each."""
    if (np.diff(times) > 0).all():  # the usual case, one sample per time in order: nothing to merge
        return times, values
    unique, inverse, counts = np.unique(times, return_inverse=True, return_counts=True)
    sums = np.zeros((unique.size, values.shape[1]))
    np.add.at(sums, inverse, values)
    return unique, sums / counts[:, None]


def _beyond_max_gap(times: np.ndarray, frame_times: np.ndarray, max_gap_s: float) -> np.ndarray:
    """(m,) mask of the frames, other than those on a sample, in a stretch without samples that leaves more
    than max_gap_s uncovered.

    A stretch runs between consecutive sorted `times`, or from the first frame to the first sample, or from the
    last sample to the last frame. What it leaves uncovered is its length less the samples' own spacing (their
    median interval): a model predicting at the 5 Hz label rate, or once per 2 s KELM window, covers its own
    spacing, so consecutive predictions are never a gap, whatever the model's rate.
    """
    intervals = np.diff(times)
    spacing = float(np.median(intervals)) if intervals.size else 0.0
    bounds = np.concatenate([[frame_times.min(initial=times[0])], times, [frame_times.max(initial=times[-1])]])
    stretch = np.searchsorted(times, frame_times, side="left")  # stretch k lies between bounds k and k + 1
    on_sample = times[np.minimum(stretch, len(times) - 1)] == frame_times
    return ~on_sample & (np.diff(bounds)[stretch] - spacing > max_gap_s)


def interpolate_to_frames(sample_times: np.ndarray, values: np.ndarray, frame_times: np.ndarray,
                          max_gap_s: float = math.inf) -> np.ndarray:
    """Linear interpolation of each column of `values` (n, d) onto `frame_times` (m,), as (m, d) float64.

    Rows holding NaN are dropped and values at repeated times averaged; frames outside the sampled span
    take the nearest sample's value. A stretch without samples that leaves more than `max_gap_s` uncovered
    (_beyond_max_gap; by default none does) is not bridged: its frames are NaN, since no prediction was made
    there (an audio model on unvoiced audio, a face model without a face). With no valid sample left the result
    is all NaN.
    """
    if not max_gap_s >= 0:
        raise ValueError(f"max_gap_s must be >= 0, got {max_gap_s}")
    sample_times = np.asarray(sample_times, dtype=np.float64)
    values = np.asarray(values, dtype=np.float64)
    frame_times = np.asarray(frame_times, dtype=np.float64)
    if values.ndim != 2 or sample_times.shape != values.shape[:1]:
        raise ValueError(f"values must be (n, d) with n = len(sample_times); got {values.shape} for "
                         f"{sample_times.shape} times")
    if not np.isfinite(sample_times).all():
        raise ValueError("sample_times must all be finite")
    keep = ~np.isnan(values).any(axis=1)
    out = np.full((frame_times.size, values.shape[1]), np.nan)
    if not keep.any():
        return out
    times, means = _mean_per_time(sample_times[keep], values[keep])
    out[:] = interpolate_columns(times, means, frame_times)
    out[_beyond_max_gap(times, frame_times, max_gap_s)] = np.nan
    return out


def hamming_window_frames(window_s: float, fps: float) -> int:
    """The odd window length in frames (at least 1) closest to `window_s` seconds; ties round up."""
    if window_s < 0:
        raise ValueError(f"window_s must be >= 0, got {window_s}")
    if not fps > 0:
        raise ValueError(f"fps must be > 0, got {fps}")
    half = int(np.floor((window_s * fps - 1) / 2 + 0.5))
    return 2 * max(half, 0) + 1


def _smooth(values: np.ndarray, kernel: np.ndarray) -> np.ndarray:
    """Centred weighted mean of each column under `kernel` over the valid (non-NaN) samples it covers.

    Dividing by the kernel mass that falls on valid samples keeps a constant signal constant at the
    edges and next to gaps. NaN positions stay NaN: a gap is where a model made no prediction, and
    smoothing must not spread the values beside it into it.
    """
    values = np.asarray(values, dtype=np.float64)
    if values.ndim != 2:
        raise ValueError(f"values must be (m, d), got shape {values.shape}")
    # np.convolve(x, kernel)[half:half + m] with half = (K - 1) // 2, on all columns at once: an even kernel
    # sits one sample off centre, which ndimage expresses as origin -1.
    convolve = partial(convolve1d, weights=kernel, axis=0, mode="constant", cval=0.0, origin=-(1 - kernel.size % 2))
    valid = ~np.isnan(values)
    if valid.all():  # the usual case, no gap: the masking below would change nothing
        return convolve(values) / convolve(np.ones((len(values), 1)))
    weighted = convolve(np.where(valid, values, 0.0))
    # Interpolated predictions are valid or NaN a whole row at a time: then one column's mass serves all.
    row_uniform = bool((valid == valid[:, :1]).all())
    mass = convolve((valid[:, :1] if row_uniform else valid).astype(np.float64))
    # A valid position has mass > 0 (both kernels are positive at their centre), so only gaps divide by 0.
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(valid, weighted / mass, np.nan)


def _check_window(window_frames: int, odd: bool) -> None:
    if window_frames < 1 or (odd and window_frames % 2 == 0):
        need = "odd and >= 1 so the window is centred" if odd else ">= 1"
        raise ValueError(f"window_frames must be {need}, got {window_frames}")


def hamming_smooth(values: np.ndarray, window_frames: int) -> np.ndarray:
    """Each column of (m, d) `values` smoothed by a centred, normalised Hamming window; same shape."""
    _check_window(window_frames, odd=True)
    return _smooth(values, np.hamming(window_frames))


def box_smooth(values: np.ndarray, window_frames: int) -> np.ndarray:
    """Each column of (m, d) `values` replaced by its moving average; same shape.

    An even length (Savchenko's 50 frames) reaches one frame further back than ahead.
    """
    _check_window(window_frames, odd=False)
    return _smooth(values, np.ones(window_frames))


def smooth(values: np.ndarray, fps: float, smoothing: dict) -> np.ndarray:
    """Hamming smoothing over `window_s` seconds, or a box filter over `frames` frames."""
    if smoothing["filter"] == "box":
        return box_smooth(values, smoothing["frames"])
    return hamming_smooth(values, hamming_window_frames(smoothing["window_s"], fps))


def smoothing_settings(smoothing: str, postprocess: dict) -> dict:
    """What `smooth` reads for a model's `smoothing` (config models.<name>.smoothing), from the config section
    postprocess: the box filter's frames, or the Hamming window's seconds."""
    if smoothing == "box":
        return {"filter": "box", "frames": postprocess["box_frames"]}
    return {"filter": "hamming", "window_s": postprocess["hamming_s"]}


def frame_level(raw: pd.DataFrame, videos: list[str], probes: dict[str, dict], columns: list[str],
                smoothing: dict, *, max_gap_s: float) -> pd.DataFrame:
    """Every frame of every video: label-rate predictions interpolated to frame times, then smoothed.

    A video without any prediction, and every stretch of a video that its predictions leave uncovered for more
    than max_gap_s (interpolate_to_frames), keep NaN rows, so that fusion can tell "no prediction" from a value.
    """
    parts = []
    by_video = dict(tuple(raw.groupby("video"))) if len(raw) else {}
    for video in videos:
        n_frames, fps = probes[video]["n_frames"], probes[video]["fps"]
        times = frame_times(n_frames, fps)
        samples = by_video.get(video)
        if samples is None:
            values = np.full((n_frames, len(columns)), np.nan)
        else:
            values = interpolate_to_frames(samples["time_s"].to_numpy(), samples[columns].to_numpy(float), times,
                                           max_gap_s)
            values = smooth(values, fps, smoothing)
        part = pd.DataFrame(values, columns=columns)
        part.insert(0, "frame", np.arange(1, n_frames + 1))
        part.insert(0, "video", video)
        parts.append(part)
    return pd.concat(parts, ignore_index=True)
