from pathlib import Path

import numpy as np
import pytest

from avaffect import demo
from avaffect.media import extract_audio, iter_frames, probe_video, read_wav, write_wav


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
