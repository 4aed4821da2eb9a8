import numpy as np
import pytest

from avaffect.vad import close_gaps, hysteresis, mouth_vad, segments, segments_seconds, vad_table
from avaffect.windows import sample_frames, sliding_starts, voiced_windows


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
    table = vad_table(np.arange(1, 251), fps, opening, speaking)
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


def test_voiced_windows():
    assert voiced_windows([(1.0, 2.0)], 10.0, 4.0, 2.0) == [(0.0, 4.0)]
    assert voiced_windows([(8.5, 9.5)], 10.0, 4.0, 2.0) == [(6.0, 10.0)]
    assert voiced_windows([(0.0, 9.0)], 10.0, 4.0, 2.0) == [(0.0, 4.0), (2.0, 6.0), (4.0, 8.0), (5.0, 9.0)]
    assert voiced_windows([(0.0, 1.0)], 2.0, 4.0, 2.0) == [(0.0, 2.0)]
