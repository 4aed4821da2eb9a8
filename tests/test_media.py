from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

from avaffect.corpus import demo
from avaffect.media.video import MediaError, iter_frames, probe_video, read_ahead
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


def corners_picture(height: int = 48, width: int = 80) -> np.ndarray:
    """A picture that every turn and mirror changes: a different colour in three corners."""
    picture = np.zeros((height, width, 3), np.uint8)
    picture[:8, :16] = (255, 0, 0)
    picture[:8, -16:] = (0, 255, 0)
    picture[-8:, -16:] = (0, 0, 255)
    return picture


def write_with_display_matrix(path: Path, stored: np.ndarray, degrees: int, hflip: bool = False,
                              vflip: bool = False) -> None:
    """Three frames of `stored` (lossless 4:4:4) under the display matrix of PyAV's set_display_rotation."""
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=Fraction(25))
        stream.height, stream.width = stored.shape[:2]
        stream.pix_fmt = "yuv444p"
        stream.options = {"crf": "0"}
        stream.set_display_rotation(degrees, hflip=hflip, vflip=vflip)
        for _ in range(3):
            container.mux(stream.encode(av.VideoFrame.from_ndarray(stored, format="rgb24")))
        container.mux(stream.encode(None))


@pytest.mark.parametrize(("degrees", "hflip", "vflip", "rotation", "mirrored"), [
    (0, False, False, 0, False), (90, False, False, 90, False), (180, False, False, 180, False),
    (-90, False, False, 270, False), (0, True, False, 0, True), (90, True, False, 90, True),
    (0, False, True, 180, True), (270, True, True, 90, False),
], ids=["upright", "90", "180", "270", "mirrored", "90-mirrored", "flipped-upside-down", "270-both-flips"])
def test_frames_come_out_as_players_show_them(tmp_path, degrees, hflip, vflip, rotation, mirrored):
    stored = corners_picture()
    path = tmp_path / "phone.mp4"
    write_with_display_matrix(path, stored, degrees, hflip, vflip)
    # set_display_rotation's meaning: turn counter-clockwise, then mirror (FFmpeg 9's command line, which turns
    # pictures by the display matrix itself, gives these same pictures for all sixteen combinations)
    shown = np.rot90(stored, degrees // 90)
    shown = shown[::-1] if vflip else shown
    shown = shown[:, ::-1] if hflip else shown
    info = probe_video(path)
    assert (info.rotation, info.mirrored) == (rotation, mirrored)
    assert (info.height, info.width) == shown.shape[:2]
    for _, frame in iter_frames(path):
        assert frame.shape == shown.shape and frame.flags.c_contiguous
        assert np.abs(frame.astype(int) - shown).max() <= 2


def test_a_turn_that_is_not_a_quarter_is_named(tmp_path):
    path = tmp_path / "tilted clip.mp4"
    write_with_display_matrix(path, corners_picture(), 30)
    with pytest.raises(MediaError, match=f"{path}: display matrix turns the picture by 30 degrees"):
        probe_video(path)
    with pytest.raises(MediaError, match="tilted clip.mp4"):
        next(iter_frames(path))
