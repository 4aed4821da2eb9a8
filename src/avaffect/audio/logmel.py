"""Training-free audio features: log-mel statistics at label-rate steps inside the audio windows."""

from __future__ import annotations

import numpy as np

from avaffect.media.timeline import audio_window_grid


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
