"""The torch device a job runs on, from config."""

from __future__ import annotations


def resolve_device(device: str) -> str:
    """`auto` picks CUDA when torch sees a GPU; anything else is used as given."""
    if device != "auto":
        return device
    import torch

    return "cuda" if torch.cuda.is_available() else "cpu"
