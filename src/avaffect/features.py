"""Training-free features: a geometric face descriptor from landmarks, and log-mel statistics of audio."""

from __future__ import annotations

import numpy as np

from avaffect.landmarks import KEY_LANDMARKS
from avaffect.windows import WINDOW_EDGE_TOLERANCE, audio_window_grid

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


def mel_filterbank(sample_rate: int, n_fft: int, n_mels: int, f_min: float, f_max: float) -> np.ndarray:
    """(n_mels, n_fft // 2 + 1) triangular filters on the HTK mel scale."""
    def to_mel(f: np.ndarray) -> np.ndarray:
        return 2595.0 * np.log10(1.0 + f / 700.0)

    def to_hz(m: np.ndarray) -> np.ndarray:
        return 700.0 * (10 ** (m / 2595.0) - 1.0)

    edges = to_hz(np.linspace(to_mel(np.array(f_min)), to_mel(np.array(f_max)), n_mels + 2))
    bins = np.fft.rfftfreq(n_fft, 1.0 / sample_rate)
    lower, centre, upper = edges[:-2, None], edges[1:-1, None], edges[2:, None]
    rising = (bins[None] - lower) / (centre - lower)
    falling = (upper - bins[None]) / (upper - centre)
    return np.clip(np.minimum(rising, falling), 0, None)


def log_mel(samples: np.ndarray, sample_rate: int, win_s: float, hop_s: float, n_mels: int,
            f_min: float, f_max: float) -> tuple[np.ndarray, np.ndarray]:
    """(frame centre times, (n_frames, n_mels) log-mel energies) of a mono signal."""
    win, hop = int(round(win_s * sample_rate)), int(round(hop_s * sample_rate))
    if len(samples) < win:
        return np.zeros(0), np.zeros((0, n_mels), np.float32)
    n = 1 + (len(samples) - win) // hop
    frames = np.lib.stride_tricks.sliding_window_view(samples, win)[::hop][:n] * np.hanning(win)
    power = np.abs(np.fft.rfft(frames, axis=1)) ** 2
    mel = power @ mel_filterbank(sample_rate, win, n_mels, f_min, f_max).T
    times = (np.arange(n) * hop + win / 2) / sample_rate
    return times, np.log(mel + 1e-10).astype(np.float32)


def logmel_statistics(times: np.ndarray, logmel: np.ndarray, centres: np.ndarray, half_span_s: float
                      ) -> np.ndarray:
    """(len(centres), 2 * n_mels): mean and standard deviation of the log-mel frames around each centre."""
    out = np.zeros((len(centres), 2 * logmel.shape[1]), np.float32)
    lo = np.searchsorted(times, centres - half_span_s)
    hi = np.searchsorted(times, centres + half_span_s)
    for i, (a, b) in enumerate(zip(lo, hi, strict=True)):
        if b > a:
            chunk = logmel[a:b]
            out[i] = np.concatenate([chunk.mean(axis=0), chunk.std(axis=0)])
    return out


def audio_window_embeddings(samples: np.ndarray, sample_rate: int, voiced_s: list[tuple[float, float]],
                            n_frames: int, fps: float, rate_hz: float, window_s: float, step_s: float,
                            n_mels: int, stft_window_s: float, stft_hop_s: float, f_min_hz: float,
                            f_max_hz: float) -> tuple[dict[str, np.ndarray], np.ndarray]:
    """Log-mel statistics at `rate_hz` steps inside windows laid on the voiced segments.

    Returns per-step columns (window index, frame, time_s) and the (n_steps, 2 * n_mels) embeddings.
    """
    duration = min(len(samples) / sample_rate, n_frames / fps)
    times, logmel = log_mel(samples, sample_rate, stft_window_s, stft_hop_s, n_mels, f_min_hz, f_max_hz)
    _, columns = audio_window_grid(voiced_s, duration, n_frames, fps, rate_hz, window_s, step_s)
    centres = columns["time_s"]
    matrix = logmel_statistics(times, logmel, centres, 0.5 / rate_hz)
    if len(matrix) == 0:
        matrix = np.zeros((0, 2 * n_mels), np.float32)
    return columns, matrix


def functionals(times: np.ndarray, features: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean, min and max of `features` (T, F) over non-overlapping windows [k*window_s, (k+1)*window_s).

    Rows holding any NaN (face not seen) are ignored, and windows left without a valid row are left out.
    Returns the window start times (W,) in ascending order and the (W, 3F) float32 matrix [mean | min | max].
    """
    times = np.asarray(times, dtype=np.float64).ravel()
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != len(times):
        raise ValueError(f"functionals: features must be (len(times), F) = ({len(times)}, F), got {features.shape}")
    if not window_s > 0:
        raise ValueError(f"functionals: window_s must be positive, got {window_s}")
    n_features = features.shape[1]
    keep = np.isfinite(times) & ~np.isnan(features).any(axis=1)
    if not keep.any():
        return np.zeros(0), np.zeros((0, 3 * n_features), np.float32)
    window = np.floor(times[keep] / window_s + WINDOW_EDGE_TOLERANCE).astype(np.int64)
    # Accumulate in float64 so long windows of float32 embeddings do not lose precision in the mean.
    values = features[keep].astype(np.float64)
    order = np.argsort(window, kind="stable")
    window, values = window[order], values[order]
    starts = np.flatnonzero(np.concatenate([[True], window[1:] != window[:-1]]))
    counts = np.diff(np.append(starts, len(window)))
    mean = np.add.reduceat(values, starts, axis=0) / counts[:, None]
    low = np.minimum.reduceat(values, starts, axis=0)
    high = np.maximum.reduceat(values, starts, axis=0)
    return window[starts] * float(window_s), np.concatenate([mean, low, high], axis=1).astype(np.float32)
