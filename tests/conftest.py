import json
import os
from collections.abc import Iterable
from fractions import Fraction
from pathlib import Path

import av
import numpy as np
import pytest

REPO = Path(__file__).resolve().parents[1]


@pytest.fixture(scope="session")
def shared() -> Path:
    """The fixtures folder `../shared` beside the checkout (or $AVAFFECT_SHARED); tests skip without it."""
    path = Path(os.environ.get("AVAFFECT_SHARED", REPO.parent / "shared"))
    if not (path / "SHA256SUMS").is_file():
        pytest.skip(f"shared fixtures not found at {path}")
    return path


def small_pdem_config(shared: Path, folder: Path, layers: int = 2) -> Path:
    """The PDEM release's config shrunk to `layers` layers of width 64 (for models with random weights)."""
    config = json.loads((shared / "weights" / "pdem-config" / "config.json").read_text())
    config |= {"num_hidden_layers": layers, "hidden_size": 64, "intermediate_size": 128, "num_attention_heads": 4,
               "conv_dim": [32] * 7, "num_conv_pos_embeddings": 16}
    (folder / "config.json").write_text(json.dumps(config))
    (folder / "preprocessor_config.json").write_bytes(
        (shared / "weights" / "pdem-config" / "preprocessor_config.json").read_bytes())
    return folder


def write_turned(path: Path, upright: Iterable[np.ndarray], fps: Fraction, rotation: int) -> None:
    """The upright RGB pictures stored as a phone stores them: each turned `rotation` degrees clockwise, with a
    display matrix that tells players to turn it back (`rotation` counter-clockwise). H.264, no audio."""
    stored = [np.ascontiguousarray(np.rot90(image, -rotation // 90)) for image in upright]
    with av.open(str(path), "w") as container:
        stream = container.add_stream("libx264", rate=fps)
        stream.height, stream.width = stored[0].shape[:2]
        stream.pix_fmt = "yuv420p"
        stream.options = {"crf": "12", "preset": "veryfast", "x264-params": "mbtree=0"}  # the same bytes every run
        stream.set_display_rotation(rotation)
        for image in stored:
            container.mux(stream.encode(av.VideoFrame.from_ndarray(image, format="rgb24")))
        container.mux(stream.encode(None))
