"""The challenge's tasks: expression classes and valence-arousal dimensions, their invalid-label
markers, and the splits."""

from __future__ import annotations

from typing import TYPE_CHECKING

if TYPE_CHECKING:
    import torch


VA_DIMENSIONS = ("valence", "arousal")
EXPR_CLASSES = ("Neutral", "Anger", "Disgust", "Fear", "Happiness", "Sadness", "Surprise", "Other")
VA_INVALID = -5.0
EXPR_INVALID = -1
TASKS = ("va", "expr")
SPLITS = ("train", "validation", "test")
LABELLED_SPLITS = ("train", "validation")
PREDICTION_COLUMNS = {"va": VA_DIMENSIONS, "expr": EXPR_CLASSES}


def check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got '{task}'")


def output_activation(task: str, raw: torch.Tensor) -> torch.Tensor:
    """VA in [-1, 1]; EXPR as class probabilities. Tensor methods only, so that this module needs no torch
    import: the Snakefile imports the corpus package at every start."""
    return raw.tanh() if task == "va" else raw.softmax(dim=-1)
