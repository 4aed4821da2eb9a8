"""Torch files on disk: trained checkpoints and downloaded weights, read with errors that name the file and
written atomically, so that a killed job never leaves a half-written checkpoint behind."""

from __future__ import annotations

import pickle
import zipfile
from pathlib import Path

import torch

from avaffect.core.tables import atomic_write


class CheckpointError(ValueError):
    """A torch file that is missing or cannot be read; the message names the file and what is wrong."""


def read_torch_file(path: Path, what: str = "checkpoint") -> object:
    """The object saved in `path` (tensors and plain containers only: `weights_only`), on the CPU."""
    path = Path(path)
    if not path.is_file():
        raise CheckpointError(f"{path}: {what} file not found")
    try:
        return torch.load(path, map_location="cpu", weights_only=True)
    except pickle.UnpicklingError as err:
        # Not torch's message: it suggests weights_only=False, which would run code from a broken file.
        raise CheckpointError(f"{path}: not a readable torch {what} (corrupt or truncated: not a torch file, "
                              "or one holding more than tensors and plain values)") from err
    except (RuntimeError, EOFError, zipfile.BadZipFile, OSError, ValueError) as err:
        reason = str(err).splitlines()[0] if str(err) else type(err).__name__
        raise CheckpointError(f"{path}: not a readable torch {what} (corrupt or truncated: {reason})") from err


def read_checkpoint(path: Path) -> dict:
    """A checkpoint written by `write_checkpoint`."""
    checkpoint = read_torch_file(path)
    if not isinstance(checkpoint, dict):
        raise CheckpointError(f"{path}: expected a checkpoint dict, got {type(checkpoint).__name__}")
    return checkpoint


def write_checkpoint(checkpoint: dict, path: Path) -> None:
    atomic_write(Path(path), lambda tmp: torch.save(checkpoint, tmp))


def state_copy(module: torch.nn.Module) -> dict[str, torch.Tensor]:
    """The module's weights, copied to the CPU: a snapshot later training steps do not change."""
    return {k: v.detach().cpu().clone() for k, v in module.state_dict().items()}
