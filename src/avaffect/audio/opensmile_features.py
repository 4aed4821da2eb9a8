"""openSMILE features (audEERING's `opensmile` package): the low-level descriptors of a standard feature set,
pooled to label-rate steps inside the audio windows laid on the voiced segments.

Each step holds the mean and standard deviation of the descriptor frames centred within half a step of its
time: the log-mel extractor's statistics over the same span, so a step of every audio extractor holds the same
audio. Descriptors rather than the set's functionals: the functionals (eGeMAPS's 88, ComParE's 6373)
summarise an utterance (voiced segment lengths, peaks per second, slopes) and degenerate on a 0.2 s step, and
they would need one openSMILE run per step; the descriptors come from one run per window.
"""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np

from avaffect.media.timeline import slot_of_steps, window_steps
from avaffect.media.wav import PCM16_SCALE

FEATURE_SETS = {"egemaps": "eGeMAPSv02", "compare": "ComParE_2016"}
"""Extractor name -> the openSMILE feature set whose low-level descriptors it pools (25 for eGeMAPSv02, 65 for
ComParE_2016)."""


def descriptor_extractor(extractor: str):
    """An `opensmile.Smile` computing the low-level descriptors of the extractor's feature set."""
    import opensmile

    if extractor not in FEATURE_SETS:
        raise ValueError(f"unknown openSMILE extractor '{extractor}': choose one of {sorted(FEATURE_SETS)}")
    return opensmile.Smile(feature_set=opensmile.FeatureSet[FEATURE_SETS[extractor]],
                           feature_level=opensmile.FeatureLevel.LowLevelDescriptors)


def pcm16_range(samples: np.ndarray) -> np.ndarray:
    """A mono signal in [-1, 1] clipped to what openSMILE reads: it casts samples times 32768 to 16-bit PCM,
    where a full-scale 1.0 would wrap to -32768."""
    return np.clip(samples, -1.0, (PCM16_SCALE - 1) / PCM16_SCALE)


def descriptor_frames(smile, signal: np.ndarray, sample_rate: int, start_s: float, end_s: float
                      ) -> tuple[np.ndarray, np.ndarray]:
    """(frame centre times (s, from start_s), (n_frames, descriptors)) of one openSMILE run on the span
    [start_s, end_s) of a mono signal in `pcm16_range`."""
    table = smile.process_signal(signal, sample_rate, start=start_s, end=end_s)
    starts = table.index.get_level_values("start").total_seconds().to_numpy()
    ends = table.index.get_level_values("end").total_seconds().to_numpy()
    # Every frame has the same length, but the table gives its last frame the span's end as its end.
    centres = starts - start_s + (ends[0] - starts[0]) / 2
    return centres, table.to_numpy(np.float32)


def step_statistics(frame_times_s: np.ndarray, frames: np.ndarray, n_steps: int, step_s: float) -> np.ndarray:
    """(n_steps, 2 x descriptors) mean and standard deviation of the frames centred (`frame_times_s`, from the
    window's start) within half a step of each step's time k step_s; a step without a frame is zeros, as in
    the log-mel extractor.

    Descriptor frames every 10 ms centred 10 ms after their start put a frame exactly on every step boundary
    (at 5 Hz): `slot_of_steps` gives it to the later step, whatever the rounding of its time, as PDEM's pooling
    does."""
    slot = slot_of_steps(np.asarray(frame_times_s) + step_s / 2, 0.0, step_s)
    out = np.zeros((n_steps, 2 * frames.shape[1]), np.float32)
    for step in range(n_steps):
        chunk = frames[slot == step]
        if len(chunk):
            out[step] = np.concatenate([chunk.mean(axis=0), chunk.std(axis=0)])
    return out


def opensmile_window_embeddings(smile, samples: np.ndarray, sample_rate: int,
                                windows: Sequence[tuple[float, float]], rate_hz: float) -> np.ndarray:
    """(sum of window steps, 2 x descriptors) `step_statistics` of the `rate_hz` steps of each window (the rows
    of `audio_window_grid`), window after window; one openSMILE run per window, as the window's model input is
    that window's audio alone. `samples` are a mono signal in [-1, 1]."""
    signal = pcm16_range(samples)  # once: a window's run reads only its span of the recording
    pooled = [np.zeros((0, 2 * len(smile.feature_names)), np.float32)]
    for start, end in windows:
        times, frames = descriptor_frames(smile, signal, sample_rate, start, end)
        pooled.append(step_statistics(times, frames, len(window_steps(start, end, rate_hz)), 1.0 / rate_hz))
    return np.concatenate(pooled)
