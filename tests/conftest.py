import json
import os
from pathlib import Path

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
