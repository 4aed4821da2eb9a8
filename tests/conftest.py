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
