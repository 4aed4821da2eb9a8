"""Per-frame annotation files: parsing, with errors that name the file and line, and alignment to the
decoded frames."""

from __future__ import annotations

from pathlib import Path

import numpy as np

from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_DIMENSIONS, VA_INVALID

HEADERS = {"va": ",".join(VA_DIMENSIONS), "expr": ",".join(EXPR_CLASSES)}


class AnnotationError(ValueError):
    """An annotation file that cannot be used; the message names the file and the line."""


def read_annotation(path: Path, task: str) -> np.ndarray:
    """Per-frame labels: VA as (n, 2) float with NaN for invalid frames, EXPR as (n,) int with -1."""
    path = Path(path)
    try:
        lines = path.read_text().splitlines()
    except OSError as err:
        raise AnnotationError(f"{path}: cannot read annotation ({err})") from err
    if not lines or lines[0].strip().replace(" ", "") != HEADERS[task]:
        raise AnnotationError(f"{path}: first line must be '{HEADERS[task]}'")
    rows = [line.strip() for line in lines[1:]]
    while rows and not rows[-1]:
        rows.pop()
    if not rows:
        raise AnnotationError(f"{path}: no label lines after the header")
    return _parse_va(path, rows) if task == "va" else _parse_expr(path, rows)


def _parse_va(path: Path, rows: list[str]) -> np.ndarray:
    values = np.empty((len(rows), len(VA_DIMENSIONS)))
    for i, row in enumerate(rows):
        try:
            values[i] = [float(x) for x in row.split(",")]
        except ValueError as err:
            raise AnnotationError(f"{path}: line {i + 2}: expected 'valence,arousal', got '{row}'") from err
    invalid = (values == VA_INVALID).any(axis=1)
    if (np.abs(values[~invalid]) > 1).any():
        line = int(np.flatnonzero((np.abs(values) > 1).any(axis=1) & ~invalid)[0]) + 2
        raise AnnotationError(f"{path}: line {line}: values must lie in [-1, 1] or be {VA_INVALID:g}")
    values[invalid] = np.nan
    return values


def _parse_expr(path: Path, rows: list[str]) -> np.ndarray:
    try:
        labels = np.array([int(row) for row in rows], dtype=np.int64)
    except ValueError as err:
        raise AnnotationError(f"{path}: every line after the header must be one integer class") from err
    bad = (labels != EXPR_INVALID) & ((labels < 0) | (labels >= len(EXPR_CLASSES)))
    if bad.any():
        line = int(np.flatnonzero(bad)[0]) + 2
        raise AnnotationError(f"{path}: line {line}: class must be 0..{len(EXPR_CLASSES) - 1} or {EXPR_INVALID}")
    return labels


def align_to_frames(labels: np.ndarray, n_frames: int) -> np.ndarray:
    """Labels for exactly `n_frames` frames: extra lines are dropped, missing frames are invalid.

    Frame k always takes line k: a length mismatch never shifts labels in time.
    """
    if len(labels) >= n_frames:
        return labels[:n_frames]
    pad_shape = (n_frames - len(labels), *labels.shape[1:])
    pad = np.full(pad_shape, np.nan) if labels.dtype.kind == "f" else np.full(pad_shape, EXPR_INVALID)
    return np.concatenate([labels, pad.astype(labels.dtype)])
