import numpy as np
import pandas as pd
import pytest

from avaffect.fusion.postprocess import (
    box_smooth,
    frame_level,
    hamming_smooth,
    hamming_window_frames,
    interpolate_to_frames,
)
from avaffect.media.timeline import frame_times

FPS = 30.0


def test_frame_times():
    assert frame_times(4, 2.0).tolist() == [0.0, 0.5, 1.0, 1.5]
    assert frame_times(0, FPS).shape == (0,)


@pytest.mark.parametrize(("n", "fps"), [(-1, FPS), (3, 0.0), (3, -25.0)])
def test_frame_times_errors(n, fps):
    with pytest.raises(ValueError):
        frame_times(n, fps)


def test_linear_ramp_is_interpolated_exactly():
    samples = np.arange(0.0, 10.0, 0.25)
    values = np.stack([2 * samples - 1, -samples], axis=1)
    frames = frame_times(280, FPS)
    out = interpolate_to_frames(samples, values, frames)
    inside = frames <= samples[-1]
    assert out.dtype == np.float64 and out.shape == (280, 2)
    np.testing.assert_allclose(out[inside, 0], 2 * frames[inside] - 1, atol=1e-12)
    np.testing.assert_allclose(out[inside, 1], -frames[inside], atol=1e-12)


def test_edges_take_nearest_sample():
    frames = np.array([0.0, 0.5, 1.5, 3.0])
    out = interpolate_to_frames(np.array([1.0, 2.0]), np.array([[0.2], [0.6]]), frames)
    np.testing.assert_allclose(out[:, 0], [0.2, 0.2, 0.4, 0.6])
    assert not np.isnan(out).any()


def test_unsorted_samples_and_duplicates_averaged():
    times = np.array([2.0, 0.0, 1.0, 1.0])
    values = np.array([[2.0], [0.0], [0.5], [1.5]])
    out = interpolate_to_frames(times, values, np.array([0.0, 0.5, 1.0, 1.5, 2.0]))
    np.testing.assert_allclose(out[:, 0], [0.0, 0.5, 1.0, 1.5, 2.0])


def test_nan_rows_dropped_before_interpolating():
    times = np.array([0.0, 1.0, 2.0])
    values = np.array([[0.0, 0.0], [np.nan, 5.0], [2.0, 2.0]])
    out = interpolate_to_frames(times, values, np.array([1.0]))
    np.testing.assert_allclose(out, [[1.0, 1.0]])


def test_no_valid_sample_gives_all_nan():
    out = interpolate_to_frames(np.array([0.0, 1.0]), np.full((2, 2), np.nan), frame_times(5, FPS))
    assert out.shape == (5, 2) and np.isnan(out).all()


def test_interpolate_errors():
    with pytest.raises(ValueError, match="values must be"):
        interpolate_to_frames(np.zeros(3), np.zeros(3), np.zeros(2))
    with pytest.raises(ValueError, match="values must be"):
        interpolate_to_frames(np.zeros(3), np.zeros((4, 1)), np.zeros(2))
    with pytest.raises(ValueError, match="finite"):
        interpolate_to_frames(np.array([0.0, np.nan]), np.zeros((2, 1)), np.zeros(2))


@pytest.mark.parametrize(("window_s", "fps", "expected"), [
    (0.5, 30.0, 15), (1.0, 30.0, 31), (0.0, 30.0, 1), (0.01, 30.0, 1), (0.1, 30.0, 3), (2 / 30, 30.0, 3),
    (1.0, 25.0, 25), (0.32, 25.0, 9),
])
def test_hamming_window_frames_is_nearest_odd(window_s, fps, expected):
    n = hamming_window_frames(window_s, fps)
    assert n == expected and n % 2 == 1


def test_hamming_window_frames_errors():
    with pytest.raises(ValueError, match="window_s"):
        hamming_window_frames(-1.0, FPS)
    with pytest.raises(ValueError, match="fps"):
        hamming_window_frames(1.0, 0.0)


@pytest.mark.parametrize("smooth", [hamming_smooth, box_smooth])
@pytest.mark.parametrize("window", [1, 3, 15, 51, 301])
def test_constant_preserved_and_length_kept(smooth, window):
    values = np.full((100, 2), [0.3, -0.7])
    out = smooth(values, window)
    assert out.shape == values.shape
    np.testing.assert_allclose(out, values, atol=1e-12)


@pytest.mark.parametrize("smooth", [hamming_smooth, box_smooth])
def test_window_one_is_identity(smooth):
    values = np.random.default_rng(0).normal(size=(50, 3))
    np.testing.assert_array_equal(smooth(values, 1), values)


@pytest.mark.parametrize("smooth", [hamming_smooth, box_smooth])
def test_slow_sinusoid_nearly_unchanged(smooth):
    t = frame_times(3000, FPS)
    values = np.sin(2 * np.pi * 0.05 * t)[:, None]  # 20 s period, window of 0.5 s
    window = 15
    out = smooth(values, window)
    # Within half a window of either end the one-sided window lags a sloped signal by design.
    interior = slice(window, -window)
    np.testing.assert_allclose(out[interior], values[interior], atol=1e-2)


@pytest.mark.parametrize("smooth", [hamming_smooth, box_smooth])
def test_noise_is_reduced(smooth):
    noise = np.random.default_rng(1).normal(size=(5000, 1))
    assert smooth(noise, 31).std() < 0.5 * noise.std()


def test_hamming_matches_direct_weighted_mean():
    values = np.random.default_rng(2).normal(size=(40, 1))
    window = 7
    kernel = np.hamming(window)
    out = hamming_smooth(values, window)
    for i in [0, 2, 20, 39]:
        lo, hi = max(0, i - 3), min(40, i + 4)
        k = kernel[lo - i + 3:hi - i + 3]
        assert out[i, 0] == pytest.approx(np.sum(k * values[lo:hi, 0]) / k.sum())


@pytest.mark.parametrize("smooth", [hamming_smooth, box_smooth])
def test_nan_column_stays_nan(smooth):
    values = np.stack([np.linspace(0, 1, 30), np.full(30, np.nan)], axis=1)
    out = smooth(values, 5)
    assert np.isnan(out[:, 1]).all() and not np.isnan(out[:, 0]).any()


@pytest.mark.parametrize("window", [0, 2, 10, -3])
def test_even_or_empty_hamming_window_rejected(window):
    with pytest.raises(ValueError, match="odd"):
        hamming_smooth(np.zeros((10, 1)), window)


@pytest.mark.parametrize("window", [0, -3])
def test_empty_box_window_rejected(window):
    with pytest.raises(ValueError, match=">= 1"):
        box_smooth(np.zeros((10, 1)), window)


def test_even_box_window_averages_its_frames():
    values = np.arange(10, dtype=float)[:, None]
    out = box_smooth(values, 4)
    assert out[4, 0] == pytest.approx(np.mean([2, 3, 4, 5]))


def test_frame_level_interpolates_smooths_and_keeps_unpredicted_videos_empty():
    raw = pd.DataFrame({"video": ["a", "a"], "frame": [1, 11], "time_s": [0.0, 0.4], "valence": [0.0, 0.4],
                        "arousal": [1.0, 1.0]})
    probes = {"a": {"n_frames": 20, "fps": 25.0}, "b": {"n_frames": 3, "fps": 25.0}}
    table = frame_level(raw, ["a", "b"], probes, ["valence", "arousal"], {"filter": "box", "frames": 1},
                        max_gap_s=2.0)
    assert table["frame"].tolist() == list(range(1, 21)) + [1, 2, 3]
    a = table[table["video"] == "a"]
    assert a["valence"].to_numpy()[:11] == pytest.approx(np.arange(11) * 0.04)
    assert (a["valence"].to_numpy()[11:] == 0.4).all() and (a["arousal"] == 1.0).all()
    assert table[table["video"] == "b"][["valence", "arousal"]].isna().all().all()
    smoothed = frame_level(raw, ["a"], probes, ["valence", "arousal"], {"filter": "hamming", "window_s": 0.5},
                           max_gap_s=2.0)
    assert smoothed["arousal"].to_numpy() == pytest.approx(1.0)


@pytest.mark.parametrize("smooth", [hamming_smooth, box_smooth])
def test_gap_free_values_smooth_as_with_a_gap_elsewhere(smooth):
    """Values without NaN take a shortcut; it gives what masking gives, bit for bit."""
    values = np.random.default_rng(3).normal(size=(200, 3))
    with_gap = np.hstack([values, np.full((200, 1), 0.5)])
    with_gap[50:60, 3] = np.nan
    np.testing.assert_array_equal(smooth(values, 15), smooth(with_gap, 15)[:, :3])


def test_a_long_gap_is_left_missing_and_a_short_one_bridged():
    """Predictions at the 5 Hz label rate, a 0.6 s pause and a 4 s pause: only the short one is interpolated."""
    times = np.concatenate([np.arange(5) * 0.2, [1.4, 1.6, 5.6, 5.8]])
    values = np.stack([times, -times], axis=1)
    frames = frame_times(70, 10.0)  # 0.0 .. 6.9 s
    out = interpolate_to_frames(times, values, frames, max_gap_s=2.0)
    short = (frames > 0.8) & (frames < 1.4)
    np.testing.assert_allclose(out[short, 0], frames[short], atol=1e-12)
    long = (frames > 1.6) & (frames < 5.6)
    assert long.sum() == 39 and np.isnan(out[long]).all()
    # Frames on a prediction keep it, beside a long gap too.
    at_sample = np.isclose(frames[:, None], times[None, :]).any(axis=1)
    np.testing.assert_allclose(out[at_sample, 0], frames[at_sample], atol=1e-12)
    # The 1.1 s of video after the last prediction is a short stretch: it keeps that prediction's value.
    np.testing.assert_allclose(out[frames > 5.8, 0], 5.8, atol=1e-12)


def test_a_long_stretch_before_the_first_or_after_the_last_prediction_is_missing():
    frames = frame_times(100, 10.0)  # 0.0 .. 9.9 s
    times = 3.0 + np.arange(15) * 0.2
    out = interpolate_to_frames(times, times[:, None], frames, max_gap_s=2.0)
    assert np.isnan(out[frames < 3.0]).all() and np.isnan(out[frames > 5.8 + 1e-9]).all()
    assert not np.isnan(out[(frames >= 3.0) & (frames <= 5.8 + 1e-9)]).any()
    out = interpolate_to_frames(times - 1.5, times[:, None], frames[:60], max_gap_s=2.0)
    np.testing.assert_allclose(out[frames[:60] < 1.5, 0], 3.0)  # 1.5 s before the first: held
    np.testing.assert_allclose(out[frames[:60] > 4.3 + 1e-9, 0], 5.8)  # 1.6 s after the last: held


def test_a_gap_is_measured_beyond_the_models_own_spacing():
    """A KELM model predicts once per 2 s window; consecutive windows leave nothing uncovered, a missing
    window leaves 2 s uncovered, and only more than max_gap_s of that is a gap."""
    centres = np.array([1.0, 3.0, 5.0, 9.0, 11.0, 17.0])
    frames = frame_times(180, 10.0)
    out = interpolate_to_frames(centres, np.arange(6.0)[:, None], frames, max_gap_s=2.0)
    assert not np.isnan(out[(frames >= 1.0) & (frames <= 11.0)]).any()
    assert np.isnan(out[(frames > 11.0) & (frames < 17.0)]).all()


def test_max_gap_must_not_be_negative():
    with pytest.raises(ValueError, match="max_gap_s"):
        interpolate_to_frames(np.zeros(1), np.zeros((1, 1)), np.zeros(2), max_gap_s=-1.0)


@pytest.mark.parametrize("smooth", [hamming_smooth, box_smooth])
def test_smoothing_leaves_missing_frames_missing(smooth):
    """Smoothing averages the valid frames next to a gap, and puts no value into the gap itself."""
    values = np.random.default_rng(4).normal(size=(120, 2))
    values[40:80] = np.nan
    out = smooth(values, 15)
    assert np.isnan(out[40:80]).all()
    assert not np.isnan(out[:40]).any() and not np.isnan(out[80:]).any()
    # Beside the gap each frame is the mean over the valid frames alone, as at the ends of the video.
    np.testing.assert_allclose(out[:40], smooth(values[:40], 15), atol=1e-12)
    np.testing.assert_allclose(out[80:], smooth(values[80:], 15), atol=1e-12)


def test_frame_level_leaves_frames_far_from_any_prediction_missing():
    """An audio model predicts on two voiced stretches 6 s apart: the unvoiced frames between stay NaN."""
    times = np.concatenate([np.arange(20) * 0.2, 10.0 + np.arange(20) * 0.2])
    raw = pd.DataFrame({"video": "a", "frame": np.round(times * 25).astype(int) + 1, "time_s": times,
                        "valence": 0.5, "arousal": -0.5})
    probes = {"a": {"n_frames": 350, "fps": 25.0}}
    table = frame_level(raw, ["a"], probes, ["valence", "arousal"], {"filter": "hamming", "window_s": 0.5},
                        max_gap_s=2.0)
    t = frame_times(350, 25.0)
    silent = (t > 3.8 + 1e-9) & (t < 10.0 - 1e-9)
    assert table.loc[silent, ["valence", "arousal"]].isna().all().all()
    np.testing.assert_allclose(table.loc[~silent, ["valence", "arousal"]].to_numpy(), [[0.5, -0.5]] * (~silent).sum())
