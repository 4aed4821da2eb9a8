import numpy as np
import pytest

from avaffect.audio.vad import (
    close_gaps,
    combine,
    frames_in_segments,
    hysteresis,
    mouth_vad,
    segments,
    segments_seconds,
    vad_table,
)
from avaffect.corpus.tasks import EXPR_INVALID
from avaffect.media.timeline import majority_per_slot, sample_frames, sliding_starts, voiced_windows, window_steps
from avaffect.models.sequences import StepSequence, attach_window_labels


def test_hysteresis_holds_between_thresholds():
    signal = np.array([0, 0.5, 1.0, 0.6, 0.4, 0.2, np.nan, 0.6])
    assert hysteresis(signal, on=0.7, off=0.3).tolist() == [False, False, True, True, True, False, False, False]


def test_segments_and_gap_closing():
    flags = np.array([1, 1, 0, 1, 0, 0, 0, 1], bool)
    assert segments(flags) == [(0, 2), (3, 4), (7, 8)]
    closed = close_gaps(flags, 1, keep_false=np.zeros(8, bool))
    assert segments(closed) == [(0, 4), (7, 8)]


def test_mouth_vad_finds_talking_stretch_and_never_voices_absent_face():
    fps = 25.0
    t = np.arange(250) / fps
    opening = 0.05 + np.where((t > 2) & (t < 6), 0.05 * (0.5 + 0.5 * np.abs(np.sin(np.pi * 4 * t))), 0.0)
    opening[200:] = np.nan
    speaking = mouth_vad(opening, fps, 10, 0.02, 0.012, 0.2, 0.3, 0.25)
    runs = segments(speaking)
    assert len(runs) == 1
    start, end = runs[0]
    assert abs(start / fps - 2) < 0.3 and abs(end / fps - 6) < 0.3
    assert not speaking[200:].any()
    table = vad_table(np.arange(1, 251), fps, speaking, {"mouth_open": opening})
    ((s, e),) = segments_seconds(table, fps)
    assert s == pytest.approx(start / fps) and e == pytest.approx(end / fps)


def test_sample_frames_at_label_rate():
    assert sample_frames(50, 25.0, 5.0).tolist() == [1, 6, 11, 16, 21, 26, 31, 36, 41, 46]
    assert sample_frames(10, 4.0, 5.0).tolist() == list(range(1, 11))
    ntsc = sample_frames(300, 30000 / 1001, 5.0)
    assert len(ntsc) == 51 - 1 or len(ntsc) == 51
    assert ntsc[0] == 1 and ntsc[-1] <= 300


def test_sliding_starts_cover_the_end():
    assert sliding_starts(5, 20, 10).tolist() == [0]
    assert sliding_starts(45, 20, 10).tolist() == [0, 10, 20, 25]


def test_sliding_windows_shorter_than_the_hop_still_cover_every_step():
    # the Aff-Wild2 sweep's 1 s window (5 steps) with the 2 s hop (10 steps)
    starts = sliding_starts(32, 5, 10)
    covered = np.zeros(32, bool)
    for start in starts:
        covered[start:start + 5] = True
    assert covered.all() and starts.tolist() == [0, 5, 10, 15, 20, 25, 27]


def test_voiced_windows():
    assert voiced_windows([(1.0, 2.0)], 10.0, 4.0, 2.0) == [(0.0, 4.0)]
    assert voiced_windows([(8.5, 9.5)], 10.0, 4.0, 2.0) == [(6.0, 10.0)]
    assert voiced_windows([(0.0, 9.0)], 10.0, 4.0, 2.0) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (5.0, 9.0)]
    assert voiced_windows([(0.0, 1.0)], 2.0, 4.0, 2.0) == [(0.0, 2.0)]


def test_voiced_windows_stay_inside_the_audio():
    # the video (10 s) outlasts the audio (9 s): the last window of a segment that runs to the video's end
    # ends at the audio's end, and a segment wholly past it has no window
    assert voiced_windows([(3.0, 10.0)], 9.0, 4.0, 2.0) == [(3.0, 7.0), (5.0, 9.0)]
    assert voiced_windows([(7.0, 12.0)], 9.0, 4.0, 2.0) == [(5.0, 9.0)]
    assert voiced_windows([(9.2, 14.0)], 9.0, 4.0, 2.0) == []


def test_frames_in_segments_use_frame_centres_and_both_needs_both():
    frames = np.arange(1, 11)  # 10 fps: frame k covers [(k-1)/10, k/10)
    voice = frames_in_segments(frames, 10.0, [(0.2, 0.5), (0.9, 2.0)])
    assert np.flatnonzero(voice).tolist() == [2, 3, 4, 9]
    mouth = np.zeros(10, bool)
    mouth[3:] = True
    assert np.flatnonzero(combine("both", mouth, voice)).tolist() == [3, 4, 9]
    assert combine("voice", None, voice) is voice and combine("mouth", mouth, None) is mouth
    with pytest.raises(ValueError, match="unknown vad method 'lips'"):
        combine("lips", mouth, voice)


def test_window_steps_at_label_rate():
    steps = window_steps(2.0, 6.0, 5.0)
    assert len(steps) == 20 and steps[0] == 2.0 and steps[-1] == pytest.approx(5.8)


def test_majority_per_second_leaves_invalid_labels_out():
    fps = 25.0
    # a 4 s window from 2 s: second 0 is 20 frames of class 3 and 5 of class 1; second 1 is 24 invalid
    # frames and one class 5; second 2 has no valid frame; second 3 ties 2 and 4 (lowest class wins)
    labels = np.full(int(8 * fps), 0, np.int64)
    window = np.concatenate([[3] * 20 + [1] * 5, [EXPR_INVALID] * 24 + [5], [EXPR_INVALID] * 25,
                             [4] * 12 + [2] * 12 + [EXPR_INVALID]])
    labels[50:150] = window
    assert majority_per_slot(labels, fps, 2.0, 4, 1.0, EXPR_INVALID).tolist() == [3, 5, EXPR_INVALID, 2]


def test_audio_window_labels_expr_per_second_and_va_per_step():
    fps, rate = 25.0, 5.0
    times = window_steps(2.0, 6.0, rate)
    frames = np.round(times * fps).astype(np.int64) + 1
    expr = np.full(200, 6, np.int64)
    expr[75:100] = EXPR_INVALID  # the window's second second has no valid frame
    expr[100:125] = 1
    seq = StepSequence("v", frames, times, np.zeros((20, 1), np.float32))
    labels = attach_window_labels(seq, expr, fps, 1.0).labels
    assert labels.tolist() == [6] * 5 + [EXPR_INVALID] * 5 + [1] * 5 + [6] * 5
    va = np.stack([np.linspace(-1, 1, 200), np.linspace(1, -1, 200)], axis=1)
    va[frames[3] - 1] = np.nan  # an invalid (-5) line stays invalid, it is never averaged with its neighbours
    seq = StepSequence("v", frames, times, np.zeros((20, 1), np.float32))
    labels = attach_window_labels(seq, va, fps, 1.0).labels
    assert labels.shape == (20, 2) and np.isnan(labels[3]).all()
    keep = np.arange(20) != 3
    assert np.array_equal(labels[keep], va[frames[keep] - 1])


def test_voiced_windows_four_seconds_every_two():
    windows = voiced_windows([(1.0, 11.0)], 20.0, 4.0, 2.0)
    assert windows == [(1.0, 5.0), (3.0, 7.0), (5.0, 9.0), (7.0, 11.0)]
