"""Late fusion of several models' predictions with weights found by a Dirichlet random search."""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path

import numpy as np
import pandas as pd

from avaffect.corpus import (
    EXPR_CLASSES,
    EXPR_INVALID,
    TASKS,
    VA_DIMENSIONS,
    align_to_frames,
    annotation_path,
    read_annotation,
)
from avaffect.metrics import (
    MIN_CCC_VALUES,
    ccc_from_moments,
    check_classes,
    expr_scores,
    f1_per_class,
    va_scores,
    valid_va,
)

# Fused expression probabilities are built for this many floats at a time (32 MiB in float64).
CHUNK_ELEMENTS = 2**22


def dirichlet_draws(n_models: int, n_draws: int, seed: int, alpha: float = 1.0) -> np.ndarray:
    """(n_draws, n_models) weight vectors on the simplex: the uniform vector, each one-hot, then random.

    The fixed rows come first so that plain averaging and every single model are always candidates.
    """
    if n_models < 1:
        raise ValueError(f"n_models must be >= 1, got {n_models}")
    fixed = np.vstack([np.full((1, n_models), 1.0 / n_models), np.eye(n_models)])
    if n_draws < len(fixed):
        raise ValueError(f"n_draws must be >= {len(fixed)} (uniform + one per model), got {n_draws}")
    if not alpha > 0:
        raise ValueError(f"alpha must be > 0, got {alpha}")
    random = np.random.default_rng(seed).dirichlet(np.full(n_models, alpha), size=n_draws - len(fixed))
    return np.vstack([fixed, random])


def _check_predictions(predictions: np.ndarray) -> np.ndarray:
    predictions = np.asarray(predictions, dtype=np.float64)
    if predictions.ndim != 3:
        raise ValueError(f"predictions must be (n_models, N, d), got shape {predictions.shape}")
    return predictions


def _weights_per_column(weights: np.ndarray, n_models: int, n_columns: int) -> np.ndarray:
    """Weights as (n_models, n_columns), checked to be finite and non-negative."""
    weights = np.asarray(weights, dtype=np.float64)
    if weights.shape == (n_models,):
        weights = np.repeat(weights[:, None], n_columns, axis=1)
    elif weights.shape != (n_models, n_columns):
        raise ValueError(f"weights must be ({n_models},) or ({n_models}, {n_columns}), got {weights.shape}")
    if not np.isfinite(weights).all() or (weights < 0).any():
        raise ValueError("weights must be finite and >= 0")
    return weights


def fuse(predictions: np.ndarray, weights: np.ndarray) -> np.ndarray:
    """Weighted mean over models of (n_models, N, d) predictions, as (N, d).

    `weights` is (n_models,) or (n_models, d) for a weight per model and column. A NaN value is left
    out and the weights of the models that remain are renormalised; where no model with a positive
    weight has a value the result is NaN.
    """
    predictions = _check_predictions(predictions)
    weights = _weights_per_column(weights, predictions.shape[0], predictions.shape[2])[:, None, :]
    present = ~np.isnan(predictions)
    total = np.sum(np.where(present, predictions, 0.0) * weights, axis=0)
    mass = np.sum(present * weights, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, total / mass, np.nan)


def _candidates(n_models: int, n_columns: int, n_draws: int, seed: int, per_column: bool) -> np.ndarray:
    """(n_draws, n_models, n_columns) candidate weights, one draw shared by all columns or one per column."""
    if not per_column:
        draws = dirichlet_draws(n_models, n_draws, seed)
        return np.repeat(draws[:, :, None], n_columns, axis=2)
    # Each column gets its own stream (seeds pass through SeedSequence, so seed + j streams are unrelated);
    # the fixed uniform and one-hot rows stay aligned across columns.
    return np.stack([dirichlet_draws(n_models, n_draws, seed + j) for j in range(n_columns)], axis=2)


def _batched_ccc(weights: np.ndarray, predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """CCC with `target` (n,) of every fused series weights[i] @ predictions, for (D, M) weights.

    Mean, variance and covariance of a weighted sum are linear or quadratic in the weights, so they
    follow from the models' own moments and no fused series of length n is ever formed.
    """
    n = target.size
    means = predictions.mean(axis=1)
    centred = predictions - means[:, None]
    model_cov = centred @ centred.T / n
    target_cov = centred @ (target - target.mean()) / n
    fused_var = np.einsum("dm,mk,dk->d", weights, model_cov, weights)
    return ccc_from_moments(target.mean(), target.var(), weights @ means, fused_var, weights @ target_cov)


def _va_candidate_scores(predictions: np.ndarray, target: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """P_VA of every candidate over rows where the target is annotated and every model has a value."""
    target = np.asarray(target, dtype=np.float64)
    n_dims = len(VA_DIMENSIONS)
    if predictions.shape[2] != n_dims or target.shape != (predictions.shape[1], n_dims):
        raise ValueError(f"VA search needs predictions (M, N, {n_dims}) and target (N, {n_dims}), "
                         f"got {predictions.shape} and {target.shape}")
    # Rows are shared by all candidates so that every candidate is judged on the same frames.
    rows = valid_va(target) & ~np.isnan(predictions).any(axis=0)
    per_dim = []
    for j, name in enumerate(VA_DIMENSIONS):
        if rows[:, j].sum() < MIN_CCC_VALUES:
            raise ValueError(f"VA search: fewer than {MIN_CCC_VALUES} {name} rows are annotated "
                             "and predicted by every model")
        keep = rows[:, j]
        per_dim.append(_batched_ccc(candidates[:, :, j], predictions[:, keep, j], target[keep, j]))
    return np.mean(per_dim, axis=0)


def _batched_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro F1 of each row of (D, n) predicted classes against (n,) true classes, as (D,)."""
    n_sets = y_pred.shape[0]
    offsets = (np.arange(n_sets) * n_classes)[:, None]
    pred_count = np.bincount((y_pred + offsets).ravel(), minlength=n_sets * n_classes)
    hits = np.bincount((y_true + offsets)[y_pred == y_true], minlength=n_sets * n_classes)
    true_count = np.bincount(y_true, minlength=n_classes)
    shape = (n_sets, n_classes)
    return f1_per_class(true_count, pred_count.reshape(shape), hits.reshape(shape)).mean(axis=1)


def _expr_candidate_scores(probabilities: np.ndarray, target: np.ndarray, candidates: np.ndarray
                           ) -> np.ndarray:
    """Macro F1 of the argmax of every candidate's fused probabilities, chunk by chunk of candidates."""
    target = np.asarray(target)
    n_classes = probabilities.shape[2]
    if target.shape != probabilities.shape[1:2]:
        raise ValueError(f"expr search needs target (N,) for predictions (M, N, d), "
                         f"got {target.shape} and {probabilities.shape}")
    rows = (target != EXPR_INVALID) & ~np.isnan(probabilities).any(axis=(0, 2))
    if not rows.any():
        raise ValueError("expr search: no row is annotated and predicted by every model")
    y_true = check_classes(target[rows], n_classes, "expr search: target")
    # Class-major layout turns fusion into one batched matrix product per chunk: (C, k, M) @ (C, M, n).
    by_class = np.ascontiguousarray(probabilities[:, rows].transpose(2, 0, 1))
    weights = candidates.transpose(2, 0, 1)
    chunk = max(1, CHUNK_ELEMENTS // (rows.sum() * n_classes))
    scores = np.empty(len(candidates))
    for start in range(0, len(candidates), chunk):
        fused = np.matmul(weights[:, start:start + chunk], by_class)
        scores[start:start + chunk] = _batched_macro_f1(y_true, fused.argmax(axis=0), n_classes)
    return scores


def search_weights(predictions: np.ndarray, target: np.ndarray, task: str, n_draws: int, seed: int,
                   per_column: bool = False) -> tuple[np.ndarray, float]:
    """Best of `n_draws` Dirichlet weight candidates for fusing (M, N, d) predictions, and its score.

    task "va": target (N, 2), score P_VA. task "expr": predictions are class probabilities, target (N,)
    classes, score macro F1 of the fused argmax. Every candidate is scored on the rows where the target
    is annotated and all models have a value. per_column=True draws a weight vector per column and
    returns (M, d) weights, otherwise (M,).
    """
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got '{task}'")
    predictions = _check_predictions(predictions)
    n_models, _, n_columns = predictions.shape
    candidates = _candidates(n_models, n_columns, n_draws, seed, per_column)
    score_candidates = _va_candidate_scores if task == "va" else _expr_candidate_scores
    scores = score_candidates(predictions, target, candidates)
    if np.isnan(scores).all():
        raise ValueError(f"{task} search: every candidate scored NaN (constant predictions and target?)")
    best = int(np.nanargmax(scores))
    weights = candidates[best] if per_column else candidates[best, :, 0]
    return weights, float(scores[best])


def _stack(tables: Sequence[pd.DataFrame], columns: list[str], models: Sequence[str]) -> np.ndarray:
    """(n_models, n_frames, n_columns) predictions; every model must cover the same frames in order."""
    keys = tables[0][["video", "frame"]]
    for model, table in zip(models, tables, strict=True):
        if not table[["video", "frame"]].reset_index(drop=True).equals(keys.reset_index(drop=True)):
            raise ValueError(f"predictions of model '{model}' do not cover the same frames as '{models[0]}'")
    return np.stack([table[columns].to_numpy(np.float64) for table in tables])


def frame_labels(table: pd.DataFrame, task: str, split: str, corpus: Path, probes: dict[str, dict], log
                 ) -> np.ndarray:
    """Labels of the (video, frame) rows of a frame-level table, aligned as in training."""
    parts = []
    for video, rows in table.groupby("video", sort=False):
        path = annotation_path(corpus, task, split, video)
        labels = read_annotation(path, task)
        n_frames = probes[video]["n_frames"]
        if len(labels) != n_frames:
            log(f"{path}: {len(labels)} label lines for {n_frames} decoded frames; frame k takes line k")
        parts.append(align_to_frames(labels, n_frames)[rows["frame"].to_numpy() - 1])
    return np.concatenate(parts)


def _scores(task: str, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Scores on the frames that have a prediction, with the share of labelled frames they cover."""
    covered = ~np.isnan(predictions).any(axis=1)
    labelled = valid_va(labels).all(axis=1) if task == "va" else labels != EXPR_INVALID
    scores = (va_scores(labels[covered], predictions[covered]) if task == "va"
              else expr_scores(labels[covered], predictions[covered].argmax(axis=1)))
    return scores | {"coverage": float((covered & labelled).sum() / max(labelled.sum(), 1))}


def label_prior(task: str, labels: np.ndarray) -> np.ndarray:
    """What to predict where no model predicts: mean VA, or the class frequencies."""
    if task == "va":
        return np.nanmean(labels, axis=0)
    valid = labels[labels != EXPR_INVALID]
    return np.bincount(valid, minlength=len(EXPR_CLASSES)) / max(len(valid), 1)


def choose_fusion(tables: Sequence[pd.DataFrame], labels: np.ndarray, task: str, columns: list[str],
                  models: Sequence[str], n_draws: int, seed: int) -> tuple[np.ndarray, dict]:
    """Dirichlet weights that score best on the validation frames, and every model's and the fusion's scores.

    The weights are chosen on the same frames they are scored on, so the fused score is in-sample.
    """
    stacked = _stack(tables, columns, models)
    weights, _ = search_weights(stacked, labels, task, n_draws, seed)
    report = {name: _scores(task, labels, stacked[i]) for i, name in enumerate(models)}
    report["fusion (in-sample)"] = _scores(task, labels, fuse(stacked, weights))
    return weights, {"validation": report, "prior": label_prior(task, labels).tolist(), "draws": n_draws}


def apply_fusion(tables: Sequence[pd.DataFrame], weights: np.ndarray, columns: list[str], prior: list[float]
                 ) -> tuple[pd.DataFrame, int]:
    """Fused frame-level table; frames that no model predicts take the prior. Returns the number filled."""
    fused = fuse(_stack(tables, columns, [str(i) for i in range(len(tables))]), weights)
    empty = np.isnan(fused).any(axis=1)
    fused[empty] = np.asarray(prior)
    table = tables[0][["video", "frame"]].reset_index(drop=True).copy()
    table[columns] = fused
    return table, int(empty.sum())
