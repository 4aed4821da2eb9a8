"""Phone videos stored sideways: a real talking head (../shared/media), cropped to a portrait picture as a phone
films it, stored turned with a display matrix that turns it back, decodes upright, and the configured face
detector finds the face where it finds it in the same clip stored upright."""

from fractions import Fraction

import numpy as np
import pytest
import yaml
from conftest import REPO, write_turned

from avaffect.face.detectors import build_detector, detect_all
from avaffect.media.video import iter_frames, probe_video

CLIP = "WDA_KatieHill_000.mp4"  # 512x512, 25 fps, one frontal face
FRAMES = range(1, 26)  # its first second
PORTRAIT_COLUMNS = slice(64, 448)  # a 384-wide, 512-high picture around the face
MEAN_CODEC_NOISE = 3.0  # mean absolute difference (0-255) between two H.264 encodings at crf 12 of one picture
BOX_TOLERANCE = 0.05
"""Box corners may differ by this fraction of the box width (mean: a third of it): codec noise alone moves them
that much (the upright encoding's boxes differ from those of the uncompressed pictures by up to 2.5 %, 0.5 % on
average, on this clip's 310-pixel-wide face)."""


@pytest.fixture(scope="module")
def portrait(shared) -> list[np.ndarray]:
    return [image[:, PORTRAIT_COLUMNS] for _, image in iter_frames(shared / "media" / "videos" / CLIP, FRAMES)]


@pytest.fixture(scope="module")
def stored(portrait, tmp_path_factory):
    """The portrait clip stored at each turn (0: upright)."""
    folder = tmp_path_factory.mktemp("rotated")
    paths = {rotation: folder / f"turned {rotation}.mp4" for rotation in (0, 90, 180, 270)}
    for rotation, path in paths.items():
        write_turned(path, portrait, Fraction(25), rotation)
    return paths


@pytest.fixture(scope="module")
def detector():
    faces = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["faces"]
    return build_detector(faces["detector"], faces, "cpu")


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_a_turned_clip_probes_and_decodes_upright(stored, portrait, rotation):
    info = probe_video(stored[rotation])
    assert (info.rotation, info.mirrored, info.width, info.height) == (rotation, False, 384, 512)
    assert info.n_frames == len(FRAMES)
    upright = dict(iter_frames(stored[0]))
    for number, frame in iter_frames(stored[rotation]):
        assert frame.shape == (512, 384, 3)
        assert np.abs(frame.astype(float) - portrait[number - 1]).mean() < MEAN_CODEC_NOISE
        assert np.abs(frame.astype(float) - upright[number]).mean() < MEAN_CODEC_NOISE


@pytest.mark.parametrize("rotation", [90, 180, 270])
def test_the_detector_finds_the_face_of_a_turned_clip_where_it_is_upright(stored, detector, rotation):
    _, upright = detect_all(iter_frames(stored[0]), detector, len(FRAMES))
    _, turned = detect_all(iter_frames(stored[rotation]), detector, len(FRAMES))
    assert [len(faces) for faces in turned] == [len(faces) for faces in upright] == [1] * len(FRAMES)
    boxes = {name: np.array([[f[0].x1, f[0].y1, f[0].x2, f[0].y2] for f in found])
             for name, found in (("upright", upright), ("turned", turned))}
    width = np.mean(boxes["upright"][:, 2] - boxes["upright"][:, 0])
    difference = np.abs(boxes["turned"] - boxes["upright"])
    assert difference.max() < BOX_TOLERANCE * width and difference.mean() < BOX_TOLERANCE / 3 * width
