"""Window functionals of frame-level features, and the kernel ELM trained and applied on them."""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import pandas as pd

from avaffect.corpus.metrics import expr_scores, va_scores
from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_DIMENSIONS
from avaffect.media.timeline import (
    WINDOW_EDGE_TOLERANCE,
)
from avaffect.models.kelm import KernelELM, class_balance_weights, decode_scores, encode_targets, select_C
from avaffect.models.normalization import Normalizer
from avaffect.models.sequences import (
    StepSequence,
    prediction_table,
    require_finite_predictions,
    valid_labels,
    window_label,
)


def functionals(times: np.ndarray, features: np.ndarray, window_s: float) -> tuple[np.ndarray, np.ndarray]:
    """Mean, min and max of `features` (T, F) over non-overlapping windows [k*window_s, (k+1)*window_s).

    Rows holding any NaN (face not seen) are ignored, and windows left without a valid row are left out.
    Returns the window start times (W,) in ascending order and the (W, 3F) float32 matrix [mean | min | max].
    """
    times = np.asarray(times, dtype=np.float64).ravel()
    features = np.asarray(features)
    if features.ndim != 2 or len(features) != len(times):
        raise ValueError(f"functionals: features must be (len(times), F) = ({len(times)}, F), got {features.shape}")
    if not window_s > 0:
        raise ValueError(f"functionals: window_s must be positive, got {window_s}")
    n_features = features.shape[1]
    keep = np.isfinite(times) & ~np.isnan(features).any(axis=1)
    if not keep.any():
        return np.zeros(0), np.zeros((0, 3 * n_features), np.float32)
    window = np.floor(times[keep] / window_s + WINDOW_EDGE_TOLERANCE).astype(np.int64)
    # Accumulate in float64 so long windows of float32 embeddings do not lose precision in the mean.
    values = features[keep].astype(np.float64)
    order = np.argsort(window, kind="stable")
    window, values = window[order], values[order]
    starts = np.flatnonzero(np.concatenate([[True], window[1:] != window[:-1]]))
    counts = np.diff(np.append(starts, len(window)))
    mean = np.add.reduceat(values, starts, axis=0) / counts[:, None]
    low = np.minimum.reduceat(values, starts, axis=0)
    high = np.maximum.reduceat(values, starts, axis=0)
    return window[starts] * float(window_s), np.concatenate([mean, low, high], axis=1).astype(np.float32)


@dataclass(frozen=True)
class KelmSettings:
    window_s: float  # functionals over non-overlapping windows of this length
    kernel: str
    Cs: tuple[float, ...]
    weighted: bool  # EXPR: instance weights inversely proportional to class counts
    folds: int
    normalization: str = "zscore"


def window_labels(task: str, seq: StepSequence, starts: np.ndarray, window_s: float) -> np.ndarray:
    """A window's label: mean of the valid VA steps, or the most frequent valid class; invalid if none."""
    index = np.searchsorted(starts, seq.times, side="right") - 1
    inside = (index >= 0) & (seq.times < starts[np.clip(index, 0, None)] + window_s)
    ok = valid_labels(task, seq.labels) & inside
    out = np.full((len(starts), len(VA_DIMENSIONS)), np.nan) if task == "va" else np.full(len(starts), EXPR_INVALID)
    for w in np.unique(index[ok]):
        out[w] = window_label(task, seq.labels[ok & (index == w)])
    return out


def functional_rows(sequences: Sequence[StepSequence], inputs: Sequence[np.ndarray], window_s: float
                     ) -> list[tuple[np.ndarray, np.ndarray]]:
    """(window starts, functionals with a constant column) per sequence; the constant is the KELM's bias."""
    rows = []
    for seq, x in zip(sequences, inputs, strict=True):
        features = np.where(seq.present[:, None], x[:, :-1], np.nan)
        starts, matrix = functionals(seq.times, features, window_s)
        rows.append((starts, np.concatenate([matrix, np.ones((len(matrix), 1), np.float32)], axis=1)))
    return rows


def _kelm_data(task: str, sequences: Sequence[StepSequence], normalizer: Normalizer, window_s: float
               ) -> tuple[np.ndarray, np.ndarray, np.ndarray, np.ndarray]:
    """Functionals, labels, videos and start times (s) of the windows with a valid label."""
    X, labels, groups, times = [], [], [], []
    for seq, (starts, matrix) in zip(sequences, functional_rows(sequences, normalizer.transform(sequences),
                                                                 window_s), strict=True):
        X.append(matrix)
        labels.append(window_labels(task, seq, starts, window_s))
        groups += [seq.video] * len(matrix)
        times.append(starts)
    labels_all = np.concatenate(labels)
    keep = valid_labels(task, labels_all)
    return np.concatenate(X)[keep], labels_all[keep], np.array(groups)[keep], np.concatenate(times)[keep]


def train_kelm(task: str, train_set: Sequence[StepSequence], validation_set: Sequence[StepSequence],
               settings: KelmSettings, log, *, what: str) -> dict:
    """Functionals + kernel ELM: C chosen by cross-validation over training videos, then fit on all of them.
    A NaN validation prediction is an error naming `what` (model, task, window)."""
    normalizer = Normalizer.fit(train_set, settings.normalization)
    X, labels, groups, _ = _kelm_data(task, train_set, normalizer, settings.window_s)
    weighted = settings.weighted and task == "expr"
    C, cv_scores = select_C(X, labels, groups, task, settings.Cs, settings.kernel, weighted=weighted,
                            n_folds=settings.folds)
    log(f"C by grouped {settings.folds}-fold cross-validation: {C:g} ({cv_scores})")
    weights = class_balance_weights(labels, len(EXPR_CLASSES)) if weighted else None
    model = KernelELM(settings.kernel, C).fit(X, encode_targets(task, labels), weights)
    checkpoint = {"family": "kelm", "task": task, "kelm": model.to_state(), "normalizer": normalizer.to_state(),
                  "window_s": settings.window_s, "C": C,
                  "cv_scores": {f"{c:g}": float(v) for c, v in cv_scores.items()}}
    val_X, val_labels, val_videos, val_times = _kelm_data(task, validation_set, normalizer, settings.window_s)
    outputs = decode_scores(task, model.predict(val_X))
    require_finite_predictions(what, outputs, val_videos, val_times)
    scores = window_scores(task, val_labels, outputs)
    checkpoint["scores"] = scores
    return checkpoint


def window_scores(task: str, labels: np.ndarray, outputs: np.ndarray) -> dict[str, float]:
    scores = va_scores(labels, outputs) if task == "va" else expr_scores(labels, outputs.argmax(axis=1))
    return {k: float(v) for k, v in scores.items()}


def predict_kelm(checkpoint: dict, sequences: Sequence[StepSequence], columns: list[str], *, what: str
                 ) -> pd.DataFrame:
    """Rows (video, frame, time_s, outputs) at the centre of every functional window with a face. A NaN prediction
    is an error naming `what` (model, task, window) and the video."""
    model = KernelELM.from_state(checkpoint["kelm"])
    normalizer = Normalizer.from_state(checkpoint["normalizer"])
    window_s = checkpoint["window_s"]
    outputs, steps = [], []
    for seq, (starts, matrix) in zip(sequences, functional_rows(sequences, normalizer.transform(sequences),
                                                                 window_s), strict=True):
        if len(matrix) == 0:
            continue
        centres = starts + window_s / 2
        frames = np.interp(centres, seq.times, seq.frames).round().astype(np.int64)
        decoded = decode_scores(checkpoint["task"], model.predict(matrix))
        require_finite_predictions(what, decoded, np.full(len(decoded), seq.video), centres)
        outputs.append(decoded)
        steps.append(StepSequence(seq.video, frames, centres, np.zeros((len(centres), 1), np.float32)))
    return prediction_table(steps, outputs, columns)
