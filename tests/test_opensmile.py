"""openSMILE extractors (egemaps, compare) on real speech: the steps hold the statistics of openSMILE's own
descriptor table of each window, on the log-mel extractor's grid."""

import numpy as np
import opensmile
import pytest

from avaffect.audio.logmel import audio_window_embeddings
from avaffect.audio.opensmile_features import descriptor_extractor, opensmile_window_embeddings
from avaffect.media.timeline import audio_window_grid
from avaffect.media.wav import extract_audio

RATE = 16000
STEP_HZ = 5.0
STEP_MS = 200
FPS = 25.0
EGEMAPS_FRAME_S = 0.02
"""eGeMAPSv02's descriptors come in 20 ms frames every 10 ms (its configuration's frameSize and frameStep)."""


@pytest.fixture(scope="module")
def speech(shared):
    return extract_audio(shared / "media" / "videos" / "WDA_KatieHill_000.mp4", RATE)  # 8 s of speech


@pytest.fixture(scope="module")
def egemaps():
    return descriptor_extractor("egemaps")


def test_egemaps_steps_are_the_mean_and_deviation_of_opensmiles_descriptors_of_each_window(speech, egemaps):
    windows, columns = audio_window_grid([(0.3, 2.9), (4.0, 7.0)], len(speech) / RATE, 200, FPS, STEP_HZ, 2.0, 1.0)
    matrix = opensmile_window_embeddings(egemaps, speech, RATE, windows, STEP_HZ)
    assert len(egemaps.feature_names) == 25 and matrix.shape == (len(columns["time_s"]), 50)
    reference = opensmile.Smile(feature_set=opensmile.FeatureSet.eGeMAPSv02,
                                feature_level=opensmile.FeatureLevel.LowLevelDescriptors)
    for index, (start, end) in enumerate(windows):
        table = reference.process_signal(speech, RATE, start=start, end=end)
        starts = table.index.get_level_values("start").total_seconds().to_numpy()
        assert np.allclose(np.diff(starts), 0.01)
        # in whole milliseconds from the window's start, so that a frame centred on a step boundary (one is on
        # each) goes to the later step exactly
        centres_ms = np.round((starts - start + EGEMAPS_FRAME_S / 2) * 1000).astype(int)
        rows = np.flatnonzero(columns["window"] == index)
        for step, row in enumerate(rows):
            offset_ms = centres_ms - step * STEP_MS
            frames = table.to_numpy()[(offset_ms >= -STEP_MS // 2) & (offset_ms < STEP_MS // 2)]
            # 20 frames a step; the window's first has only its later half (centres 10 to 90 ms)
            assert len(frames) == (9 if step == 0 else 20), (start, step)
            assert np.allclose(matrix[row], np.concatenate([frames.mean(axis=0), frames.std(axis=0)]),
                               rtol=1e-4, atol=1e-5), (start, step)

def test_opensmile_steps_lie_on_the_logmel_grid_and_unvoiced_time_has_no_step(speech, egemaps):
    voiced = [(0.5, 1.5), (5.2, 6.0)]
    duration = len(speech) / RATE
    n_frames = int(duration * FPS)
    logmel_columns, logmel = audio_window_embeddings(speech, RATE, voiced, n_frames, FPS, STEP_HZ, 2.0, 1.0, 40,
                                                     0.025, 0.01, 50, 7600)
    windows, columns = audio_window_grid(voiced, duration, n_frames, FPS, STEP_HZ, 2.0, 1.0)
    matrix = opensmile_window_embeddings(egemaps, speech, RATE, windows, STEP_HZ)
    assert len(matrix) == len(logmel)
    for name in ("window", "frame", "time_s"):
        assert np.array_equal(columns[name], logmel_columns[name])
    # a step only inside a window around a voiced segment, as in the log-mel table: none in 2.1 to 4.1 s
    assert not ((columns["time_s"] > 2.1) & (columns["time_s"] < 4.1)).any()
    assert np.isfinite(matrix).all() and (matrix != 0).any(axis=1).all()


def test_compare_pools_its_65_descriptors_and_a_louder_copy_changes_the_loudness_statistics(speech):
    compare = descriptor_extractor("compare")
    windows = [(1.0, 3.0)]
    quiet = opensmile_window_embeddings(compare, 0.25 * speech, RATE, windows, STEP_HZ)
    loud = opensmile_window_embeddings(compare, speech, RATE, windows, STEP_HZ)
    assert quiet.shape == loud.shape == (10, 130)
    loudness = compare.feature_names.index("pcm_RMSenergy_sma")
    assert (loud[:, loudness] > quiet[:, loudness]).all()


def test_full_scale_samples_do_not_wrap_and_an_unknown_extractor_is_refused(egemaps):
    tone = np.sin(2 * np.pi * 220 * np.arange(RATE) / RATE).astype(np.float32)
    clipped = np.clip(2 * tone, -1.0, 1.0)  # augmented copies are clipped to [-1, 1]: full scale is common
    loudness = egemaps.feature_names.index("Loudness_sma3")
    full, below = (opensmile_window_embeddings(egemaps, x, RATE, [(0.0, 1.0)], STEP_HZ)[1:-1, loudness]
                   for x in (clipped, 0.999 * clipped))
    # 1.0 times 32768 cast to int16 would be -32768: clicks that more than double the loudness
    assert np.allclose(full, below, rtol=0.01)
    with pytest.raises(ValueError, match="unknown openSMILE extractor 'gemaps'"):
        descriptor_extractor("gemaps")
