"""Writing files so that no half-written one survives; standard library only, so that every environment
of the workflow (the Spleeter one has neither pandas 2 nor pyarrow) can use it."""

from __future__ import annotations

import glob
import os
from collections.abc import Callable
from pathlib import Path


def atomic_write(path: Path, write: Callable[[Path], None]) -> None:
    """Write through a temporary file in the same folder and rename it, so no half-written file survives."""
    path = Path(path)
    path.parent.mkdir(parents=True, exist_ok=True)
    # Not mkstemp: its private 0600 file would keep other users of a shared results folder out.
    tmp = path.with_name(f".{path.name}.{os.getpid()}.tmp")
    try:
        write(tmp)
        os.replace(tmp, path)
    finally:
        tmp.unlink(missing_ok=True)
    # A writer killed outright (SIGKILL, power loss) cannot remove its temporary file; the next complete
    # write of the same path does.
    for stale in path.parent.glob(f".{glob.escape(path.name)}.*.tmp"):
        stale.unlink(missing_ok=True)
