"""Waveform augmentations of the SUN audio models: polarity inversion, white noise, volume change.

The audio models train on frozen embeddings, so an augmentation acts before the extractor: each augmented
copy of a training sample's audio is embedded once (rule audio_embeddings_augmented) and its windows join the
training set with the original's labels. Every copy draws its own augmentations from a generator seeded by
the config seed, the copy number and the sample name, so reruns give the same copies.
"""

from __future__ import annotations

import zlib
from collections.abc import Iterator
from dataclasses import dataclass

import numpy as np


@dataclass(frozen=True)
class WaveformAugmentation:
    """Each augmentation is applied with its probability; noise level and gain are drawn uniformly."""

    polarity_p: float
    noise_p: float
    noise_snr_db: tuple[float, float]
    gain_p: float
    gain_db: tuple[float, float]

    @classmethod
    def from_config(cls, section: dict) -> WaveformAugmentation:
        return cls(section["polarity_p"], section["noise_p"], tuple(section["noise_snr_db"]), section["gain_p"],
                   tuple(section["gain_db"]))


def copy_generator(seed: int, copy: int, sample: str) -> np.random.Generator:
    return np.random.default_rng([seed, copy, zlib.crc32(sample.encode("utf-8"))])


def invert_polarity(samples: np.ndarray) -> np.ndarray:
    return -samples


def add_white_noise(samples: np.ndarray, snr_db: float, rng: np.random.Generator) -> np.ndarray:
    """Gaussian noise at `snr_db` below the signal's RMS; silence stays silent (no level to refer to)."""
    rms = float(np.sqrt(np.mean(np.square(samples, dtype=np.float64)))) if len(samples) else 0.0
    if rms == 0.0:
        return samples.copy()
    return samples + rng.standard_normal(len(samples)) * (rms / 10 ** (snr_db / 20))


def change_volume(samples: np.ndarray, gain_db: float) -> np.ndarray:
    return samples * 10 ** (gain_db / 20)


def augment_waveform(samples: np.ndarray, settings: WaveformAugmentation, rng: np.random.Generator
                     ) -> np.ndarray:
    """One augmented copy of a mono waveform in [-1, 1], clipped back to that range, same dtype."""
    out = samples.astype(np.float64)
    if rng.random() < settings.polarity_p:
        out = invert_polarity(out)
    if rng.random() < settings.noise_p:
        out = add_white_noise(out, rng.uniform(*settings.noise_snr_db), rng)
    if rng.random() < settings.gain_p:
        out = change_volume(out, rng.uniform(*settings.gain_db))
    return np.clip(out, -1.0, 1.0).astype(samples.dtype)


def augmented_copy(samples: np.ndarray, section: dict, copy: int, sample: str) -> np.ndarray:
    """Copy number `copy` (from 1) of a sample's audio under the config's `augmentation` section."""
    return augment_waveform(samples, WaveformAugmentation.from_config(section),
                            copy_generator(section["seed"], copy, sample))


def augmented_copy_numbers(section: dict) -> range:
    return range(1, section["copies"] + 1)


def waveforms_to_embed(samples: np.ndarray, section: dict | None, sample: str
                       ) -> Iterator[tuple[int | None, np.ndarray]]:
    """(copy number, waveform) for each output of an embedding job: the recording itself (copy None) without an
    `augmentation` section, else each of its augmented copies, drawn one at a time so that one long recording's copies
    are never all in memory together."""
    if not section:
        yield None, samples
        return
    for copy in augmented_copy_numbers(section):
        yield copy, augmented_copy(samples, section, copy, sample)
