from pathlib import Path

import numpy as np
import pytest

from avaffect.corpus import demo
from avaffect.media.video import iter_frames, probe_video, read_ahead
from avaffect.media.wav import extract_audio, read_wav, write_wav


@pytest.fixture(scope="module")
def ntsc_video(tmp_path_factory) -> tuple[Path, demo.DemoVideo]:
    spec = demo.DemoVideo("probe", "train", demo.NTSC_FPS, 3.0, 5)
    path = tmp_path_factory.mktemp("media") / "probe.mp4"
    demo.write_video(path, spec)
    return path, spec


def test_probe_counts_decoded_frames_and_audio(ntsc_video):
    path, spec = ntsc_video
    info = probe_video(path)
    assert info.n_frames == demo.frame_count(spec) == 90
    assert info.fps == pytest.approx(30000 / 1001)
    assert (info.width, info.height) == (192, 192)
    assert info.has_audio and info.audio_sample_rate == 44100


def test_iter_frames_selects_one_based_numbers(ntsc_video):
    path, _ = ntsc_video
    frames = dict(iter_frames(path, [1, 45, 90]))
    assert sorted(frames) == [1, 45, 90]
    assert frames[1].shape == (192, 192, 3) and frames[1].dtype == np.uint8


@pytest.mark.parametrize("depth", [0, 1, 4])
def test_read_ahead_yields_the_frames_in_order(ntsc_video, depth):
    path, _ = ntsc_video
    expected = list(iter_frames(path, range(1, 91, 7)))
    found = list(read_ahead(iter_frames(path, range(1, 91, 7)), depth))
    assert [n for n, _ in found] == [n for n, _ in expected] == list(range(1, 91, 7))
    assert all(np.array_equal(a, b) for (_, a), (_, b) in zip(found, expected, strict=True))


def test_read_ahead_raises_the_producers_error_after_what_it_produced():
    def failing():
        yield from (1, 2)
        raise ValueError("corrupt frame 3")

    got = []
    with pytest.raises(ValueError, match="corrupt frame 3"):
        for item in read_ahead(failing(), 4):
            got.append(item)
    assert got == [1, 2]


def test_stopping_early_closes_the_source():
    closed = []

    def source():
        try:
            yield from range(1000)
        finally:
            closed.append(True)

    ahead = read_ahead(source(), 2)
    assert next(ahead) == 0
    ahead.close()
    assert closed == [True]


def test_extract_audio_resamples_to_mono(ntsc_video, tmp_path):
    path, spec = ntsc_video
    samples = extract_audio(path, 16000)
    assert abs(len(samples) - spec.duration_s * 16000) < 0.05 * 16000
    write_wav(tmp_path / "a.wav", samples, 16000)
    back, rate = read_wav(tmp_path / "a.wav")
    assert rate == 16000 and np.allclose(back, samples, atol=1 / 32768)


def test_video_without_audio_gives_none(tmp_path):
    spec = demo.DemoVideo("silent", "train", demo.Fraction(25), 1.0, 3, audio_rate=None)
    demo.write_video(tmp_path / "silent.mp4", spec)
    assert not probe_video(tmp_path / "silent.mp4").has_audio
    assert extract_audio(tmp_path / "silent.mp4", 16000) is None
