import numpy as np
import pytest

from avaffect.audio.augment import (
    WaveformAugmentation,
    add_white_noise,
    augment_waveform,
    change_volume,
    copy_generator,
    invert_polarity,
)

ALWAYS = WaveformAugmentation(polarity_p=1.0, noise_p=1.0, noise_snr_db=(20.0, 20.0), gain_p=1.0,
                              gain_db=(-6.0, -6.0))
NEVER = WaveformAugmentation(polarity_p=0.0, noise_p=0.0, noise_snr_db=(20.0, 20.0), gain_p=0.0, gain_db=(0.0, 0.0))


def tone(seconds: float = 1.0, rate: int = 16000) -> np.ndarray:
    t = np.arange(int(seconds * rate)) / rate
    return (0.5 * np.sin(2 * np.pi * 220 * t)).astype(np.float32)


def test_polarity_and_volume():
    x = tone()
    assert np.array_equal(invert_polarity(x), -x)
    assert np.allclose(change_volume(x, -6.0), x * 10 ** (-6 / 20))


@pytest.mark.parametrize("snr_db", [0.0, 10.0, 30.0])
def test_white_noise_has_the_asked_snr(snr_db):
    x = tone(4.0).astype(np.float64)
    noise = add_white_noise(x, snr_db, np.random.default_rng(0)) - x
    measured = 10 * np.log10(np.mean(x ** 2) / np.mean(noise ** 2))
    assert measured == pytest.approx(snr_db, abs=0.1)


def test_silence_stays_silent():
    assert not add_white_noise(np.zeros(100), 10.0, np.random.default_rng(0)).any()
    assert len(add_white_noise(np.zeros(0), 10.0, np.random.default_rng(0))) == 0


def test_augment_applies_each_step_and_keeps_range_and_dtype():
    x = tone()
    out = augment_waveform(x, ALWAYS, np.random.default_rng(1))
    assert out.dtype == x.dtype and out.shape == x.shape and np.abs(out).max() <= 1.0
    # inverted and 6 dB quieter, plus noise 20 dB below the signal
    residual = out - (-x * 10 ** (-6 / 20))
    assert np.sqrt(np.mean(residual ** 2)) == pytest.approx(np.sqrt(np.mean(x ** 2)) * 10 ** (-26 / 20), rel=0.05)
    assert np.array_equal(augment_waveform(x, NEVER, np.random.default_rng(1)), x)


def test_loud_input_is_clipped():
    loud = WaveformAugmentation(0.0, 0.0, (20.0, 20.0), 1.0, (12.0, 12.0))
    assert np.abs(augment_waveform(tone(), loud, np.random.default_rng(0))).max() == pytest.approx(1.0)


def test_copies_are_reproducible_and_differ_by_copy_and_sample():
    x = tone()
    settings = WaveformAugmentation(0.5, 1.0, (10.0, 30.0), 1.0, (-6.0, 6.0))
    a = augment_waveform(x, settings, copy_generator(0, 1, "demo01"))
    assert np.array_equal(a, augment_waveform(x, settings, copy_generator(0, 1, "demo01")))
    assert not np.array_equal(a, augment_waveform(x, settings, copy_generator(0, 2, "demo01")))
    assert not np.array_equal(a, augment_waveform(x, settings, copy_generator(0, 1, "demo02")))


def test_from_config():
    section = {"copies": 2, "seed": 0, "polarity_p": 0.5, "noise_p": 0.5, "noise_snr_db": [15, 40], "gain_p": 0.5,
               "gain_db": [-6, 6]}
    assert WaveformAugmentation.from_config(section) == WaveformAugmentation(0.5, 0.5, (15, 40), 0.5, (-6, 6))
