"""The per-frame table that `avaffect predict` writes for a video, whatever made the predictions."""

from __future__ import annotations

import numpy as np
import pandas as pd

from avaffect.corpus.tasks import EXPR_CLASSES, VA_DIMENSIONS

PROBABILITY_COLUMNS = tuple(f"p_{name}" for name in EXPR_CLASSES)
FRAME_COLUMNS = ("frame", "time_s", *VA_DIMENSIONS, *PROBABILITY_COLUMNS, "expression", "has_face", "voiced")
"""Columns in order: valence and arousal in [-1, 1], the eight ABAW class probabilities, the arg-max class's
name, whether the tracked person's face was found and whether they were speaking. A value that the predictor
does not give (VA of an expression-only model, a frame without any prediction) is NaN; `expression` is then
empty."""


def frame_table(fps: float, valence: np.ndarray, arousal: np.ndarray, probabilities: np.ndarray,
                has_face: np.ndarray, voiced: np.ndarray) -> pd.DataFrame:
    """The table of a video of `len(has_face)` frames. `probabilities` is (frames, 8) in ABAW order (NaN rows
    where nothing was predicted); the other arrays have one value per frame."""
    n_frames = len(has_face)
    probabilities = np.asarray(probabilities, dtype=float)
    columns = {"valence": valence, "arousal": arousal, "has_face": has_face, "voiced": voiced}
    for name, values in columns.items():
        if len(values) != n_frames:
            raise ValueError(f"frame table: {name} has {len(values)} values for {n_frames} frames")
    if probabilities.shape != (n_frames, len(EXPR_CLASSES)):
        raise ValueError(f"frame table: probabilities have shape {probabilities.shape}, expected "
                         f"({n_frames}, {len(EXPR_CLASSES)})")
    predicted = np.isfinite(probabilities).all(axis=1)
    best = np.argmax(np.where(predicted[:, None], probabilities, -np.inf), axis=1)
    table = pd.DataFrame({"frame": np.arange(n_frames), "time_s": np.arange(n_frames) / fps,
                          "valence": np.asarray(valence, dtype=float), "arousal": np.asarray(arousal, dtype=float)})
    for name, column in zip(PROBABILITY_COLUMNS, probabilities.T, strict=True):
        table[name] = column
    table["expression"] = np.where(predicted, np.asarray(EXPR_CLASSES)[best], "")
    table["has_face"] = np.asarray(has_face, dtype=bool)
    table["voiced"] = np.asarray(voiced, dtype=bool)
    return table[list(FRAME_COLUMNS)]


PERSONS = ("left", "right", "largest")
"""Whom a prediction follows: the person on one side of a two-person video, or (as the workflow does for a
one-person sample) the largest confident face a track starts on."""
BOX_COLUMNS = ("frame", "has_face", "x0", "y0", "x1", "y1")
"""The tracked face per frame that a predictor returns beside its frame table: 0-based frame, pixels as shown."""


def side_of_person(person: str) -> str | None:
    """The tracker's side for a `--person` choice (None: it starts on the largest face)."""
    if person not in PERSONS:
        raise ValueError(f"person must be one of {', '.join(PERSONS)}, got '{person}'")
    return None if person == "largest" else person


def box_table(faces: pd.DataFrame) -> pd.DataFrame:
    """The BOX_COLUMNS of a faces table (avaffect.face.tracking.faces_table: 1-based frames, x1..y2)."""
    return pd.DataFrame({"frame": faces["frame"].to_numpy() - 1, "has_face": faces["has_face"].to_numpy(bool),
                         "x0": faces["x1"], "y0": faces["y1"], "x1": faces["x2"], "y1": faces["y2"]})
