import pytest

from avaffect.core.progress import EVERY_UNIT, Progress, counted, duration


class Clock:
    def __init__(self):
        self.now = 100.0

    def __call__(self):
        return self.now


@pytest.mark.parametrize(("seconds", "words"), [(0.4, "0 s"), (42, "42 s"), (185, "3 min 05 s"),
                                                (7620, "2 h 07 min"), (-3, "0 s")])
def test_duration_in_words(seconds, words):
    assert duration(seconds) == words


def test_progress_reports_at_most_every_interval_and_once_at_the_end():
    clock, lines = Clock(), []
    progress = Progress("detect_faces", "frame", 100, lines.append, every_s=30, clock=clock)
    for _ in range(40):  # 40 frames in 20 s: no line yet
        clock.now += 0.5
        progress.advance()
    assert lines == []
    for _ in range(20):  # 30 s reached at frame 60
        clock.now += 0.5
        progress.advance()
    assert lines == ["detect_faces: 60 of 100 frames (60%), 2.0 frames/s, 20 s left, 30 s so far"]
    for _ in range(40):
        clock.now += 0.5
        progress.advance()
    assert lines[1:] == ["detect_faces: 100 of 100 frames (100%), 2.0 frames/s, took 50 s"]
    progress.finish()  # complete work is not reported twice
    assert len(lines) == 2


def test_slow_units_are_reported_each_with_time_per_unit_and_an_upper_bound():
    clock, lines = Clock(), []
    progress = Progress("training", "epoch", 40, lines.append, EVERY_UNIT, upper_bound=True, clock=clock)
    clock.now += 12.0
    progress.advance()
    assert lines == ["training: 1 of at most 40 epochs (2%), 12.0 s per epoch, at most 7 min 48 s left, 12 s so far"]
    clock.now += 12.0
    progress.advance()
    progress.finish()  # early stopping after 2 epochs: the last line said it already
    assert lines[1:] == [
        "training: 2 of at most 40 epochs (5%), 12.0 s per epoch, at most 7 min 36 s left, 24 s so far"]


def test_counted_passes_items_unchanged_and_reports_an_unknown_total_at_the_end():
    clock, lines = Clock(), []
    progress = Progress("decoding", "frame", None, lines.append, every_s=60, clock=clock)

    def frames():
        for k in range(1, 4):
            clock.now += 1.0
            yield k, f"image {k}"

    assert list(counted(frames(), progress)) == [(1, "image 1"), (2, "image 2"), (3, "image 3")]
    assert lines == ["decoding: 3 frames, 1.0 frames/s, 3 s so far"]
