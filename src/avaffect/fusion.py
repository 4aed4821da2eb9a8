"""Late fusion of several models' frame-level predictions, chosen and scored without leakage.

Methods (METHODS):
- "swf": one Dirichlet weight per model, the best of `n_draws` random draws;
- "dwf": a Dirichlet weight per model and column (per VA dimension; per EXPR class, i.e. MCWF);
- "rf": random-forest stacking on the M*d model outputs of a frame.

`fit_fusion` chooses them by grouped K-fold over the validation videos: each fold's weights or forest are
chosen on the other videos and predict the held-out ones, and those out-of-fold predictions give the
reported validation score. The final parameters are then fit on every validation frame, and their in-sample
score is reported beside it, so the optimism of scoring on the frames one selected on stays visible.
"""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import numpy as np
import pandas as pd
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.ensemble._forest import _generate_unsampled_indices  # the bags sklearn's own OOB score uses
from sklearn.metrics import accuracy_score, r2_score
from sklearn.model_selection import GroupKFold
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from avaffect.corpus import (
    EXPR_CLASSES,
    EXPR_INVALID,
    TASKS,
    VA_DIMENSIONS,
    align_to_frames,
    annotation_path,
    read_annotation,
    video_of,
)
from avaffect.metrics import (
    MIN_CCC_VALUES,
    best_reported_fusion,
    ccc_from_moments,
    check_classes,
    expr_scores,
    f1_per_class,
    macro_f1,
    va_scores,
    valid_va,
)

METHODS = ("swf", "dwf", "rf")
DEFAULT_FOLDS = 5
MIN_FOLDS = 2
SEARCH_DTYPE = np.float32
"""EXPR candidates are fused in float32 (half the memory traffic of float64). A (frame, draw) pair whose
top two classes are within FLOAT32_MARGIN is decided again in float64 exactly as `fuse` computes, so the
counts, and the choice, equal those of fuse(...).argmax."""
FLOAT32_MARGIN = 1e-5
"""Float32 fused values are trusted to order two classes only when they differ by more than this times the
largest |value|: far above float32 rounding (~1e-7), and rarely reached, so float64 recounts are few."""
SEARCH_BLOCK = 2**21
"""(class, frame, draw) fused values formed at a time in the EXPR search (8 MiB in float32): large enough
that numpy's per-call overhead is small; measured fastest on 2 cores among 2**16..2**22."""
FRAME_BLOCK = 1024
"""Most frames per EXPR search block; win counts of a block are summed in uint16, so it must stay < 2**16."""
RF_TREE_GRID = (25, 50, 100, 200, 400)
"""Forest sizes whose out-of-bag error is measured; the forest keeps the smallest good one."""
RF_OOB_TOLERANCE = 0.005
"""A tree count is good when its OOB error (1 - accuracy, or 1 - mean R^2 for VA) is within this of the best.
The tree grid also stops growing once the next grid step is expected to lower the best OOB error by no more
than this (see _next_step_gain): growing it (and predicting with twice the trees) costs more than all the steps
before, for a gain too small to make a larger count the chosen one."""
RF_MIN_SAMPLES_LEAF = 5
"""Leaves of at least this many frames: bounds the forest's size, which grows with the frames per leaf."""
RF_MAX_FEATURES = "sqrt"
RF_MIN_ROWS = 2
"""Fewest frames a forest is fit on: a bootstrap of one frame leaves nothing out of bag."""
RF_PREDICT_ROWS = 2**17
"""Frames predicted by the forest at a time, so per-tree buffers stay small on a whole test set."""

Forest = RandomForestRegressor | RandomForestClassifier


def _check_task(task: str) -> None:
    if task not in TASKS:
        raise ValueError(f"task must be one of {TASKS}, got '{task}'")


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


def _searched_rows(task: str, predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rows the weight search scores, annotated and predicted by every model: VA (N, 2), each dimension on its
    own (a frame missing only valence still counts for arousal); EXPR (N,), every class present."""
    if task == "va":
        return valid_va(target) & ~np.isnan(predictions).any(axis=0)
    return (np.asarray(target) != EXPR_INVALID) & ~np.isnan(predictions).any(axis=(0, 2))


def _candidates(n_models: int, n_columns: int, n_draws: int, seed: int, per_column: bool) -> np.ndarray:
    """(n_draws, n_models, n_columns) candidate weights, one draw shared by all columns or one per column."""
    if not per_column:
        draws = dirichlet_draws(n_models, n_draws, seed)
        return np.repeat(draws[:, :, None], n_columns, axis=2)
    # Each column gets its own stream (seeds pass through SeedSequence, so seed + j streams are unrelated);
    # the fixed uniform and one-hot rows stay aligned across columns.
    return np.stack([dirichlet_draws(n_models, n_draws, seed + j) for j in range(n_columns)], axis=2)


# --- VA: CCC of every candidate from per-fold moment sums -------------------------------------------------

@dataclass(frozen=True)
class _MomentSums:
    """Per-fold sums of z = [model values; target] - centre over the rows of one VA column.

    Sums add over folds, so the moments of any set of folds (all but one, or all) come without a pass
    over the frames; centring first keeps sum(z z^T) / n - mean mean^T accurate.
    """

    centre: np.ndarray  # (M + 1,)
    counts: np.ndarray  # (K,)
    first: np.ndarray  # (K, M + 1)
    second: np.ndarray  # (K, M + 1, M + 1)


def _moment_sums(values: np.ndarray, target: np.ndarray, folds: np.ndarray, n_folds: int) -> _MomentSums:
    """Sums for (M, n) model values and (n,) target values, rows assigned to folds 0..n_folds-1."""
    z = np.vstack([values, target[None, :]])
    centre = z.mean(axis=1) if z.shape[1] else np.zeros(len(z))
    z = z - centre[:, None]
    first = np.zeros((n_folds, len(z)))
    second = np.zeros((n_folds, len(z), len(z)))
    for k in range(n_folds):
        part = z[:, folds == k]
        first[k] = part.sum(axis=1)
        second[k] = part @ part.T
    return _MomentSums(centre, np.bincount(folds, minlength=n_folds), first, second)


def _ccc_of_sums(sums: _MomentSums, use: np.ndarray, weights: np.ndarray, name: str) -> np.ndarray:
    """CCC with the target of every fused series weights[i] @ values, over the folds in `use`, as (D,).

    Mean, variance and covariance of a weighted sum are linear or quadratic in the weights, so they follow
    from the models' own moments and no fused series is ever formed.
    """
    n = int(sums.counts[use].sum())
    if n < MIN_CCC_VALUES:
        raise ValueError(f"VA search: fewer than {MIN_CCC_VALUES} {name} rows are annotated "
                         "and predicted by every model")
    mean = sums.first[use].sum(axis=0) / n
    cov = sums.second[use].sum(axis=0) / n - np.outer(mean, mean)
    mean = mean + sums.centre
    fused_var = np.einsum("dm,mk,dk->d", weights, cov[:-1, :-1], weights)
    return ccc_from_moments(mean[-1], cov[-1, -1], weights @ mean[:-1], fused_var, weights @ cov[:-1, -1])


def _batched_ccc(weights: np.ndarray, predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """CCC with `target` (n,) of every fused series weights[i] @ predictions, for (D, M) weights."""
    sums = _moment_sums(predictions, target, np.zeros(target.size, dtype=np.int64), 1)
    return _ccc_of_sums(sums, np.array([True]), weights, "target")


def _va_sums(predictions: np.ndarray, target: np.ndarray, folds: np.ndarray, n_folds: int
             ) -> list[_MomentSums]:
    """Moment sums per VA dimension over rows where the target is annotated and every model has a value."""
    target = np.asarray(target, dtype=np.float64)
    n_dims = len(VA_DIMENSIONS)
    if predictions.shape[2] != n_dims or target.shape != (predictions.shape[1], n_dims):
        raise ValueError(f"VA search needs predictions (M, N, {n_dims}) and target (N, {n_dims}), "
                         f"got {predictions.shape} and {target.shape}")
    # Rows are shared by all candidates so that every candidate is judged on the same frames.
    rows = _searched_rows("va", predictions, target)
    return [_moment_sums(predictions[:, rows[:, j], j], target[rows[:, j], j], folds[rows[:, j]], n_folds)
            for j in range(n_dims)]


def _va_set_scores(sums: list[_MomentSums], use: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """P_VA of every (D, M, 2) candidate over the folds in `use`."""
    return np.mean([_ccc_of_sums(s, use, candidates[:, :, j], name)
                    for j, (s, name) in enumerate(zip(sums, VA_DIMENSIONS, strict=True))], axis=0)


# --- EXPR: macro F1 of every candidate from per-fold win counts --------------------------------------------

@dataclass(frozen=True)
class _WinCounts:
    """Per-fold class counts of the search rows: annotated (K, C), and per candidate predicted and hit (D, K, C)."""

    true: np.ndarray
    predicted: np.ndarray
    hits: np.ndarray


def _batched_macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> np.ndarray:
    """Macro F1 of each row of (D, n) predicted classes against (n,) true classes, as (D,)."""
    n_sets = y_pred.shape[0]
    offsets = (np.arange(n_sets) * n_classes)[:, None]
    pred_count = np.bincount((y_pred + offsets).ravel(), minlength=n_sets * n_classes)
    hits = np.bincount((y_true + offsets)[y_pred == y_true], minlength=n_sets * n_classes)
    true_count = np.bincount(y_true, minlength=n_classes)
    shape = (n_sets, n_classes)
    return f1_per_class(true_count, pred_count.reshape(shape), hits.reshape(shape)).mean(axis=1)


def _can_win(probabilities: np.ndarray, margin: float) -> np.ndarray:
    """(n, C) mask of the classes that some convex combination of the (M, n, C) models can make the argmax.

    A convex combination of the models' values for a class lies between their minimum and maximum, so a
    class whose maximum is below another class's minimum loses whatever the weights (Dirichlet weights sum
    to one). Most frames keep a few of the eight classes, and a frame that keeps one is decided for all draws.
    """
    low = probabilities.min(axis=0)
    high = probabilities.max(axis=0)
    return high >= low.max(axis=1, keepdims=True) - margin


def _run_bounds(keys: Sequence[np.ndarray]) -> tuple[np.ndarray, np.ndarray]:
    """Starts and stops of the runs of consecutive rows on which every key is constant."""
    n = len(keys[0])
    change = np.zeros(n, dtype=bool)
    change[:1] = True
    for key in keys:
        change[1:] |= key[1:] != key[:-1]
    starts = np.flatnonzero(change)
    return starts, np.append(starts[1:], n)


def _exact_winners(weights: np.ndarray, frames: np.ndarray, classes: np.ndarray) -> np.ndarray:
    """(P,) index into `classes` of the argmax for P (frame, draw) pairs: (C, M, P) weights, (k, P, M) frames.

    Float64, computed as `fuse` does (sum of value * weight over the models in order, divided by the sum
    of the weights); ties go to the first class, as np.argmax does.
    """
    fused = np.empty((len(classes), frames.shape[1]))
    for j, c in enumerate(classes):
        total, mass = frames[j, :, 0] * weights[c, 0], weights[c, 0]
        for m in range(1, frames.shape[2]):
            total, mass = total + frames[j, :, m] * weights[c, m], mass + weights[c, m]
        fused[j] = total / mass
    return fused.argmax(axis=0)


def _count_wins(weights: np.ndarray, frames: np.ndarray, classes: np.ndarray, margin: float,
                exact_weights: np.ndarray, exact_frames: np.ndarray) -> np.ndarray:
    """(k, D) how often each of `classes` is the argmax, for (C, M, D) weights and (k, r, M) frames.

    Frames x draws products ((r, M) @ (M, D)) suit BLAS far better than draws x frames with M = 3. A class
    wins a frame when it is within `margin` of the max, so the max plus one comparison per class replace
    argmax's index bookkeeping; the few (frame, draw) pairs that two classes win that way are decided
    exactly on the float64 weights and frames.
    """
    n_classes, n_rows = len(classes), frames.shape[1]
    fused = np.empty((n_classes, n_rows, weights.shape[2]), dtype=SEARCH_DTYPE)
    for j, c in enumerate(classes):
        np.matmul(frames[j], weights[c], out=fused[j])
    threshold = fused.max(axis=0)
    threshold -= SEARCH_DTYPE(margin)
    near_best = fused >= threshold
    wins = np.add.reduce(near_best.view(np.uint8), axis=1, dtype=np.uint16).astype(np.int64)
    unsure = np.flatnonzero(wins.sum(axis=0) != n_rows)
    if len(unsure):
        near = near_best[:, :, unsure]
        ambiguous = near.sum(axis=0) > 1  # (r, u)
        wins[:, unsure] = (near & ~ambiguous).sum(axis=1)
        rows, draws = np.nonzero(ambiguous)
        winners = _exact_winners(exact_weights[:, :, unsure[draws]], exact_frames[:, rows], classes)
        np.add.at(wins, (winners, unsure[draws]), 1)
    return wins


@dataclass(frozen=True)
class _Run:
    """Search rows start:stop, sorted to share a fold, a true class and the classes that can win."""

    fold: int
    true_class: int
    classes: np.ndarray
    start: int
    stop: int


def _count_runs(runs: list[_Run], frames: tuple[np.ndarray, np.ndarray], weights: tuple[np.ndarray, np.ndarray],
                margin: float, predicted: np.ndarray, hits: np.ndarray) -> None:
    """Add the win counts on every run to `predicted` and `hits` (D, K, C).

    frames: (C, n, M) search rows in SEARCH_DTYPE and float64; weights: (C, M, D) in SEARCH_DTYPE and float64.
    """
    n_draws = weights[0].shape[2]
    for run in runs:
        k, t, classes = run.fold, run.true_class, run.classes
        if len(classes) == 1:  # decided whatever the weights
            predicted[:, k, classes[0]] += run.stop - run.start
            hits[:, k, t] += (run.stop - run.start) * (classes[0] == t)
            continue
        n_rows = min(run.stop - run.start, FRAME_BLOCK)
        n_block = max(1, SEARCH_BLOCK // (len(classes) * n_rows))
        for row in range(run.start, run.stop, n_rows):
            block = slice(row, min(row + n_rows, run.stop))
            fast, exact = frames[0][classes, block], frames[1][classes, block]
            for d in range(0, n_draws, n_block):
                draws = slice(d, d + n_block)
                wins = _count_wins(weights[0][:, :, draws], fast, classes, margin, weights[1][:, :, draws], exact)
                predicted[draws, k, classes] += wins.T
                hits[draws, k, t] += wins[classes == t].sum(axis=0)


def _expr_counts(probabilities: np.ndarray, target: np.ndarray, folds: np.ndarray, n_folds: int,
                 candidates: np.ndarray, n_jobs: int = 1) -> _WinCounts:
    """Per-fold win counts of every (D, M, C) candidate on rows annotated and predicted by every model.

    One pass over draws x frames serves all folds, and the counts equal those of fuse(...).argmax (see
    SEARCH_DTYPE). Rows are sorted by (fold, true class, classes that can win), so each run of rows shares
    its true class and only the classes that can win on it are fused. n_jobs threads share the draws.
    """
    target = np.asarray(target)
    n_classes = probabilities.shape[2]
    if target.shape != probabilities.shape[1:2]:
        raise ValueError(f"expr search needs target (N,) for predictions (M, N, d), "
                         f"got {target.shape} and {probabilities.shape}")
    rows = _searched_rows("expr", probabilities, target)
    if not rows.any():
        raise ValueError("expr search: no row is annotated and predicted by every model")
    y_true = check_classes(target[rows], n_classes, "expr search: target")
    fold = folds[rows]
    probs = probabilities[:, rows]
    margin = FLOAT32_MARGIN * max(1.0, float(np.abs(probs).max()))
    can_win = _can_win(probs, margin)
    packed = np.packbits(can_win, axis=1)
    order = np.lexsort((*packed.T[::-1], y_true, fold))
    y_true, fold, can_win, packed = y_true[order], fold[order], can_win[order], packed[order]
    runs = [_Run(int(fold[start]), int(y_true[start]), np.flatnonzero(can_win[start]), int(start), int(stop))
            for start, stop in zip(*_run_bounds([fold, y_true, *packed.T]), strict=True)]
    exact_frames = np.ascontiguousarray(probs[:, order].transpose(2, 1, 0))  # (C, n, M)
    exact_weights = np.ascontiguousarray(candidates.transpose(2, 1, 0), dtype=np.float64)  # (C, M, D)
    frames = (exact_frames.astype(SEARCH_DTYPE), exact_frames)
    true = np.bincount(fold * n_classes + y_true, minlength=n_folds * n_classes).reshape(n_folds, n_classes)
    predicted = np.zeros((len(candidates), n_folds, n_classes), dtype=np.int64)
    hits = np.zeros_like(predicted)
    shares = [slice(d[0], d[-1] + 1) for d in np.array_split(np.arange(len(candidates)), n_jobs) if len(d)]

    def count_share(share: slice) -> None:
        weights = (exact_weights[:, :, share].astype(SEARCH_DTYPE), exact_weights[:, :, share])
        _count_runs(runs, frames, weights, margin, predicted[share], hits[share])

    # numpy releases the GIL in its loops, so threads share the draws; BLAS keeps to one thread per share.
    with threadpool_limits(1), ThreadPoolExecutor(len(shares)) as pool:
        list(pool.map(count_share, shares))
    return _WinCounts(true, predicted, hits)


def _expr_set_scores(counts: _WinCounts, use: np.ndarray) -> np.ndarray:
    """Macro F1 of every candidate over the folds in `use`."""
    if not counts.true[use].any():
        raise ValueError("expr search: no row is annotated and predicted by every model")
    return f1_per_class(counts.true[use].sum(axis=0), counts.predicted[:, use].sum(axis=1),
                        counts.hits[:, use].sum(axis=1)).mean(axis=1)


def _set_scores(predictions: np.ndarray, target: np.ndarray, task: str, folds: np.ndarray, n_folds: int,
                candidates: np.ndarray, sets: Sequence[np.ndarray], n_jobs: int = 1) -> np.ndarray:
    """(len(sets), D) score of every candidate on each set of folds (boolean masks over the folds)."""
    if task == "va":
        sums = _va_sums(predictions, target, folds, n_folds)
        return np.stack([_va_set_scores(sums, use, candidates) for use in sets])
    counts = _expr_counts(predictions, target, folds, n_folds, candidates, n_jobs)
    return np.stack([_expr_set_scores(counts, use) for use in sets])


def _best(scores: np.ndarray, task: str) -> int:
    if np.isnan(scores).all():
        raise ValueError(f"{task} search: every candidate scored NaN (constant predictions and target?)")
    return int(np.nanargmax(scores))


def _expr_search_score(probabilities: np.ndarray, target: np.ndarray, weights: np.ndarray) -> float:
    """Macro F1 in float64 of fused `weights` on the search rows (annotated, every model present)."""
    rows = _searched_rows("expr", probabilities, target)
    return macro_f1(target[rows], fuse(probabilities[:, rows], weights).argmax(axis=1), probabilities.shape[2])


def search_weights(predictions: np.ndarray, target: np.ndarray, task: str, n_draws: int, seed: int,
                   per_column: bool = False, n_jobs: int = 1) -> tuple[np.ndarray, float]:
    """Best of `n_draws` Dirichlet weight candidates for fusing (M, N, d) predictions, and its score.

    task "va": target (N, 2), score P_VA. task "expr": predictions are class probabilities, target (N,)
    classes, score macro F1 of the fused argmax. Every candidate is scored on the rows where the target
    is annotated and all models have a value. per_column=True draws a weight vector per column and
    returns (M, d) weights, otherwise (M,). Selection and score are in-sample: see fit_fusion.
    """
    _check_task(task)
    predictions = _check_predictions(predictions)
    n_models, n_frames, n_columns = predictions.shape
    candidates = _candidates(n_models, n_columns, n_draws, seed, per_column)
    folds = np.zeros(n_frames, dtype=np.int64)
    scores = _set_scores(predictions, target, task, folds, 1, candidates, [np.array([True])], n_jobs)[0]
    best = _best(scores, task)
    weights = candidates[best] if per_column else candidates[best, :, 0]
    # VA scores are float64 moments already; EXPR candidates were ranked in SEARCH_DTYPE.
    score = float(scores[best]) if task == "va" else _expr_search_score(predictions, target, weights)
    return weights, score


# --- Random-forest stacking -----------------------------------------------------------------------------

def stacking_features(predictions: np.ndarray) -> np.ndarray:
    """(N, M*d) float32 features, model-major; a model's missing value takes the mean of the models present.

    The fill keeps a frame that some model misses (no face for it) usable with the information the others
    give. A frame where no model has a value for some column keeps NaN there and is neither fit nor predicted.
    """
    predictions = _check_predictions(predictions)
    n_models, n_frames, n_columns = predictions.shape
    features = np.ascontiguousarray(predictions.transpose(1, 0, 2).reshape(n_frames, n_models * n_columns),
                                    dtype=np.float32)
    # Only frames that some model misses need the mean of the others; fuse works frame by frame, so fusing
    # just those frames gives them the values fusing all frames would.
    gaps = np.flatnonzero(np.isnan(features).any(axis=1))
    if len(gaps):
        part = predictions[:, gaps]
        filled = np.where(np.isnan(part), fuse(part, np.ones(n_models))[None], part)
        features[gaps] = filled.transpose(1, 0, 2).reshape(len(gaps), n_models * n_columns)
    return features


def _labelled(task: str, target: np.ndarray) -> np.ndarray:
    """Rows whose target is usable: both VA dimensions annotated (the forest is multi-output), or a class."""
    return valid_va(target).all(axis=1) if task == "va" else np.asarray(target) != EXPR_INVALID


def evenly_spaced(rows: np.ndarray, max_rows: int | None) -> np.ndarray:
    """At most max_rows of `rows` (None: all), evenly spaced over them in order, so every video keeps its share.

    Validation frames at the video rate repeat one another (predictions are interpolated from 5 fps and
    smoothed), so evenly spaced frames carry nearly all that the full set tells a fit.
    """
    if max_rows is None or len(rows) <= max_rows:
        return rows
    if max_rows < 1:
        raise ValueError(f"max_rows must be >= 1 or None, got {max_rows}")
    return rows[np.linspace(0, len(rows) - 1, max_rows).round().astype(np.int64)]


class _OobTally:
    """Out-of-bag predictions of a forest summed tree by tree, for the OOB score sklearn's oob_score=True gives.

    sklearn recomputes the OOB sums over every tree at each warm-start fit (25 + 50 + ... + 400 trees for the
    grid RF_TREE_GRID, one tree at a time on one thread); adding only the trees grown since the last call,
    in the same order, gives the same sums bit for bit, hence the same score. A row that no tree has left out
    of its bag counts with a prediction of zero, as in sklearn (which warns about it).
    """

    def __init__(self, forest: Forest, x: np.ndarray, y: np.ndarray):
        self.forest, self.x = forest, x
        n_outputs = 1 if y.ndim == 1 else y.shape[1]
        if isinstance(forest, RandomForestClassifier):  # y as sklearn keeps it: class indices, (n, 1) float64
            classes, codes = np.unique(y, return_inverse=True)
            self.y = codes.reshape(-1, 1).astype(np.float64)
            shape = (len(y), len(classes), n_outputs)
        else:
            self.y = np.ascontiguousarray(y, dtype=np.float64).reshape(len(y), n_outputs)
            shape = (len(y), 1, n_outputs)
        self.sums = np.zeros(shape)
        self.counts = np.zeros((len(y), n_outputs), dtype=np.int64)
        self.n_trees = 0

    def add_new_trees(self) -> float:
        """Add the trees grown since the last call; returns the OOB error of all of them (1 - oob_score_)."""
        forest, n_rows = self.forest, len(self.x)
        for tree in forest.estimators_[self.n_trees:]:
            left_out = _generate_unsampled_indices(tree.random_state, n_rows, forest._n_samples_bootstrap,
                                                   forest._sample_weight)
            self.sums[left_out, ...] += forest._get_oob_predictions(tree, self.x[left_out, :])
            self.counts[left_out, :] += 1
        self.n_trees = len(forest.estimators_)
        mean, counts = self.sums.copy(), self.counts.copy()
        for k in range(mean.shape[-1]):  # as BaseForest._compute_oob_predictions
            counts[counts == 0] = 1
            mean[..., k] /= counts[..., [k]]
        if isinstance(forest, RandomForestClassifier):
            score = accuracy_score(self.y, np.argmax(mean[..., 0] if mean.shape[-1] == 1 else mean, axis=1))
        else:
            prediction = mean.squeeze(axis=1)
            score = r2_score(self.y, prediction[:, 0] if prediction.shape[-1] == 1 else prediction)
        return 1.0 - float(score)


def _next_step_gain(counts: Sequence[int], errors: Sequence[float], next_count: int) -> float:
    """How far growing the forest from counts[-1] to next_count trees is expected to lower the best OOB error,
    projected from the last measured step; infinite while fewer than two counts are measured.

    The OOB error of n trees behaves as e_inf + c / n (averaging n trees divides their variance by n; exact in
    expectation for the squared error), so a step from n0 to n1 trees gains c (1/n0 - 1/n1): a doubling gains
    half what the doubling before it gained. c comes from the last step's fall below the best error before it
    (none when it did not fall), which stops the grid as soon as a step fails to improve.
    """
    if len(errors) < 2:
        return float("inf")
    fall = max(min(errors[:-1]) - errors[-1], 0.0)
    per_inverse_tree = fall / (1 / counts[-2] - 1 / counts[-1])
    return per_inverse_tree * (1 / counts[-1] - 1 / next_count)


def _forest_rows(features: np.ndarray, target: np.ndarray, task: str, max_rows: int | None
                 ) -> tuple[np.ndarray, int]:
    """Rows a forest is fit on, annotated and with every feature, at most max_rows (None: all) of them evenly
    spaced over the frames in order so that every video keeps its share; and how many rows were usable."""
    rows = np.flatnonzero(_labelled(task, target) & ~np.isnan(features).any(axis=1))
    available = len(rows)
    rows = evenly_spaced(rows, max_rows)
    if len(rows) < RF_MIN_ROWS:
        raise ValueError(f"rf: {len(rows)} frames are annotated and predicted, need at least {RF_MIN_ROWS}")
    return rows, available


def _fit_forest(features: np.ndarray, target: np.ndarray, task: str, seed: int, tree_grid: Sequence[int],
                min_samples_leaf: int, n_jobs: int, max_rows: int | None, max_samples: float | None = None
                ) -> tuple[Forest, list[dict], dict]:
    """Forest on the usable rows, its size the smallest measured count in `tree_grid` whose OOB error is within
    RF_OOB_TOLERANCE of the best measured; returns it, the OOB curve and which rows it was fit on. Each tree's
    bootstrap draws max_samples times as many rows as there are (None: as many).

    Trees are added with warm_start, so the first n trees of the largest forest are exactly the forest of
    n trees the curve measured, and the forest is cut back to them. The grid stops growing at a plateau: once
    the next grid count is expected to lower the best OOB error by no more than RF_OOB_TOLERANCE
    (_next_step_gain), it is not fit (the curve ends there). Rows: see _forest_rows.
    """
    rows, available = _forest_rows(features, target, task, max_rows)
    grid = sorted({int(n) for n in tree_grid})
    if not grid or grid[0] < 1:
        raise ValueError(f"tree_grid must hold positive tree counts, got {tree_grid}")
    x = features[rows]
    y = np.asarray(target, dtype=np.float64)[rows] if task == "va" else np.asarray(target)[rows].astype(np.int64)
    forest_type = RandomForestRegressor if task == "va" else RandomForestClassifier
    # oob_score=False: the same trees (the OOB score is computed after they are grown), scored by _OobTally.
    forest = forest_type(n_estimators=grid[0], min_samples_leaf=min_samples_leaf, max_features=RF_MAX_FEATURES,
                         bootstrap=True, max_samples=max_samples, oob_score=False, warm_start=True,
                         random_state=seed, n_jobs=n_jobs)
    tally = None
    curve = []
    for n_trees, next_count in zip(grid, [*grid[1:], None], strict=True):
        forest.set_params(n_estimators=n_trees)
        forest.fit(x, y)
        if tally is None:
            tally = _OobTally(forest, x, y)
        curve.append({"n_trees": n_trees, "oob_error": tally.add_new_trees()})
        if next_count is None or _next_step_gain(grid[:len(curve)], [p["oob_error"] for p in curve],
                                                 next_count) <= RF_OOB_TOLERANCE:
            break
    best = min(point["oob_error"] for point in curve)
    chosen = next(p["n_trees"] for p in curve if p["oob_error"] <= best + RF_OOB_TOLERANCE)
    forest.estimators_ = forest.estimators_[:chosen]
    forest.set_params(n_estimators=chosen, warm_start=False)
    return forest, curve, {"fit": len(rows), "available": available}


def _forest_predict(forest: Forest, features: np.ndarray, task: str) -> np.ndarray:
    """(N, d) forest output; EXPR probabilities over all classes (0 for a class absent from training).
    Rows with a missing feature stay NaN."""
    n_columns = len(VA_DIMENSIONS) if task == "va" else len(EXPR_CLASSES)
    out = np.full((len(features), n_columns), np.nan)
    rows = np.flatnonzero(~np.isnan(features).any(axis=1))
    for start in range(0, len(rows), RF_PREDICT_ROWS):
        part = rows[start:start + RF_PREDICT_ROWS]
        if task == "va":
            out[part] = forest.predict(features[part]).reshape(len(part), n_columns)
        else:
            proba = np.zeros((len(part), n_columns))
            proba[:, forest.classes_.astype(np.int64)] = forest.predict_proba(features[part])
            out[part] = proba
    return out


# --- Fitting and scoring by grouped cross-validation -----------------------------------------------------

@dataclass
class FittedFusion:
    """A fusion chosen by `fit_fusion`: weights ("swf": (M,), "dwf": (M, d)) or a forest, and its report."""

    method: str
    task: str
    weights: np.ndarray | None = None
    forest: Forest | None = None
    n_trees: int | None = None
    report: dict = field(default_factory=dict)
    out_of_fold: np.ndarray | None = None  # (N, d) predictions of each validation frame by its fold's fusion

    def apply(self, predictions: np.ndarray) -> np.ndarray:
        """(N, d) fused (M, N, d) predictions; NaN where no model predicts (the caller fills those frames)."""
        if self.weights is not None:
            return fuse(predictions, self.weights)
        if self.forest is None:
            raise ValueError(f"FittedFusion '{self.method}' holds neither weights nor a forest")
        predictions = _check_predictions(predictions)
        return _forest_predict(self.forest, stacking_features(predictions), self.task)


def video_folds(groups: np.ndarray, n_folds: int = DEFAULT_FOLDS) -> tuple[np.ndarray, int]:
    """Fold (0..n-1) of every frame, by GroupKFold over its video; n = n_folds, or the number of videos if fewer.

    Every frame of a video lands in the same fold, so no video is ever on both sides of a split.
    """
    groups = np.asarray(groups).ravel()
    n_splits = min(n_folds, len(np.unique(groups)))
    if n_splits < MIN_FOLDS:
        raise ValueError(f"grouped cross-validation needs at least {MIN_FOLDS} videos (groups), got {n_splits}")
    folds = np.empty(len(groups), dtype=np.int64)
    for k, (_, held_out) in enumerate(GroupKFold(n_splits=n_splits).split(groups, groups=groups)):
        folds[held_out] = k
    return folds, n_splits


def _scores(task: str, labels: np.ndarray, predictions: np.ndarray) -> dict[str, float]:
    """Scores on the frames that have a prediction, with the share of labelled frames they cover."""
    covered = ~np.isnan(predictions).any(axis=1)
    labelled = valid_va(labels).all(axis=1) if task == "va" else labels != EXPR_INVALID
    scores = (va_scores(labels[covered], predictions[covered]) if task == "va"
              else expr_scores(labels[covered], predictions[covered].argmax(axis=1)))
    return scores | {"coverage": float((covered & labelled).sum() / max(labelled.sum(), 1))}


def _fit_weights(method: str, predictions: np.ndarray, target: np.ndarray, task: str, folds: np.ndarray,
                 n_folds: int, n_draws: int, seed: int, n_jobs: int, max_rows: int | None
                 ) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Weights chosen without each fold (one per fold) and on all folds, from one scoring pass over at most
    max_rows annotated frames that every model predicts (evenly spaced); also which rows were searched."""
    searched = _searched_rows(task, predictions, target)
    rows = np.flatnonzero(searched.any(axis=1) if task == "va" else searched)
    available = len(rows)
    rows = evenly_spaced(rows, max_rows)
    predictions, target, folds = predictions[:, rows], np.asarray(target)[rows], folds[rows]
    n_models, _, n_columns = predictions.shape
    per_column = method == "dwf"
    candidates = _candidates(n_models, n_columns, n_draws, seed, per_column)
    sets = [np.arange(n_folds) != k for k in range(n_folds)] + [np.ones(n_folds, dtype=bool)]
    scores = _set_scores(predictions, target, task, folds, n_folds, candidates, sets, n_jobs)
    chosen = [candidates[_best(row, task)] for row in scores]
    if not per_column:
        chosen = [weights[:, 0] for weights in chosen]
    return chosen[:-1], chosen[-1], {"searched": len(rows), "available": available}


def fit_fusion(method: str, predictions: np.ndarray, target: np.ndarray, groups: np.ndarray, task: str,
               n_draws: int, seed: int, n_folds: int = DEFAULT_FOLDS, *, search_max_rows: int | None = None,
               rf_max_rows: int | None = None, rf_max_samples: float | None = None,
               tree_grid: Sequence[int] = RF_TREE_GRID, min_samples_leaf: int = RF_MIN_SAMPLES_LEAF,
               n_jobs: int = 1) -> FittedFusion:
    """Fusion `method` of (M, N, d) validation predictions, chosen and scored by grouped K-fold over videos.

    target: VA (N, 2) with NaN (or VA_INVALID) invalid, EXPR (N,) classes with EXPR_INVALID; groups: (N,)
    video ids. In each fold the weights (best of n_draws Dirichlet draws, P_VA or macro F1) or the forest
    are chosen on the other videos and predict the held-out videos; report["out_of_fold"] scores those
    predictions (also kept as FittedFusion.out_of_fold). The returned parameters are then chosen on all
    frames and report["in_sample"] scores them in-sample: weights on every validation frame, the final forest
    on the frames it was fit on (report["in_sample_frames"]: "all" or "fit").

    Choosing may look at fewer frames than scoring: search_max_rows ("swf"/"dwf") and rf_max_rows ("rf")
    cap the annotated frames, evenly spaced in time (evenly_spaced; None: all), that weights are searched or
    forests grown on, while the out-of-fold score always covers every validation frame. The search costs about
    n_draws x frames; a forest about 2 us per frame drawn per tree on one core, each tree's bootstrap drawing
    rf_max_samples times its frames (None: as many). n_draws is used by "swf"/"dwf" only, tree_grid,
    rf_max_samples and min_samples_leaf by "rf" only. n_jobs: threads for the EXPR weight search, and for the
    forests: n_jobs of the n_folds + 1 forests grow at a time, each on n_jobs threads.
    """
    _check_task(task)
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got '{method}'")
    predictions = _check_predictions(predictions)
    target = np.asarray(target)
    if len(target) != predictions.shape[1] or len(groups) != predictions.shape[1]:
        raise ValueError(f"target and groups must have one row per frame ({predictions.shape[1]}), "
                         f"got {len(target)} and {len(groups)}")
    if rf_max_samples is not None and not 0 < rf_max_samples <= 1:
        raise ValueError(f"rf_max_samples must be in (0, 1] or None, got {rf_max_samples}")
    folds, n_splits = video_folds(groups, n_folds)
    out_of_fold = np.full((predictions.shape[1], predictions.shape[2]), np.nan)
    report: dict = {"method": method}
    if method == "rf":
        features = stacking_features(predictions)
        fit_rows, _ = _forest_rows(features, target, task, rf_max_rows)

        def fit_part(k: int) -> tuple[Forest, list[dict], dict, np.ndarray]:
            """Forest of fold k, fit without its videos, and its predictions of them; k = n_splits: the forest
            of all videos and its predictions of the frames it was fit on."""
            train = folds != k
            forest, curve, rows = _fit_forest(features[train], target[train], task, seed, tree_grid,
                                              min_samples_leaf, n_jobs, rf_max_rows, rf_max_samples)
            held_out = features[~train] if k < n_splits else features[fit_rows]
            return forest, curve, rows, _forest_predict(forest, held_out, task)

        # The forests are independent, so n_jobs of them grow at a time, each on n_jobs threads: one forest's
        # single-threaded steps (OOB sums, its predictions' bookkeeping) then overlap another's trees.
        with ThreadPoolExecutor(max(1, min(n_jobs, n_splits + 1))) as pool:
            parts = list(pool.map(fit_part, range(n_splits + 1)))
        for k, (_, _, _, predicted) in enumerate(parts[:-1]):
            out_of_fold[folds == k] = predicted
        forest, curve, rows, fit_predicted = parts[-1]
        fitted = FittedFusion(method, task, forest=forest, n_trees=len(forest.estimators_))
        # In-sample on the frames the final forest was fit on: where it is most optimistic, and a pass of every
        # tree over the other validation frames (their near-copies at the video rate) is saved.
        in_sample = _scores(task, target[fit_rows], fit_predicted)
        report |= {"n_trees": fitted.n_trees, "oob_curve": curve,
                   "fold_n_trees": [len(part[0].estimators_) for part in parts[:-1]], "rows": rows,
                   "min_samples_leaf": min_samples_leaf, "max_samples": rf_max_samples, "in_sample_frames": "fit"}
    else:
        fold_weights, weights, rows = _fit_weights(method, predictions, target, task, folds, n_splits, n_draws,
                                                   seed, n_jobs, search_max_rows)
        for k, w in enumerate(fold_weights):
            out_of_fold[folds == k] = fuse(predictions[:, folds == k], w)
        fitted = FittedFusion(method, task, weights=weights)
        in_sample = _scores(task, target, fitted.apply(predictions))
        report |= {"weights": weights.tolist(), "fold_weights": [w.tolist() for w in fold_weights],
                   "draws": n_draws, "rows": rows, "in_sample_frames": "all"}
    report |= {"folds": n_splits, "out_of_fold": _scores(task, target, out_of_fold), "in_sample": in_sample}
    fitted.report = report
    fitted.out_of_fold = out_of_fold
    return fitted


def best_fusion(fitted: dict[str, FittedFusion], task: str) -> str:
    """The method whose out-of-fold score (PRIMARY_METRIC) is highest; the first listed on a tie."""
    return best_reported_fusion({method: fit.report for method, fit in fitted.items()}, task)


# --- Frame-level tables ---------------------------------------------------------------------------------

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


def label_prior(task: str, labels: np.ndarray) -> np.ndarray:
    """What to predict where no model predicts: mean VA, or the class frequencies."""
    if task == "va":
        return np.nanmean(np.where(valid_va(labels), labels, np.nan), axis=0)
    valid = labels[labels != EXPR_INVALID]
    return np.bincount(valid, minlength=len(EXPR_CLASSES)) / max(len(valid), 1)


def compare_fusions(tables: Sequence[pd.DataFrame], labels: np.ndarray, task: str, columns: list[str],
                    models: Sequence[str], methods: Sequence[str], n_draws: int, seed: int,
                    n_folds: int = DEFAULT_FOLDS, *, search_max_rows: int | None = None,
                    rf_max_rows: int | None = None, rf_max_samples: float | None = None, n_jobs: int = 1
                    ) -> tuple[dict[str, FittedFusion], dict]:
    """Each method fit by `fit_fusion` on the validation tables (videos are the groups), and a report.

    report: "validation" (every model's own scores), "fusion" (each method's FittedFusion report, with
    out-of-fold and in-sample scores), "selected" (best_fusion: the best out-of-fold score) and "prior".
    """
    stacked = _stack(tables, columns, models)
    # The two people of a two-person video share scenes and often labels: they stay in one fold.
    groups = tables[0]["video"].map(video_of).to_numpy()
    fitted = {method: fit_fusion(method, stacked, labels, groups, task, n_draws, seed, n_folds,
                                 search_max_rows=search_max_rows, rf_max_rows=rf_max_rows,
                                 rf_max_samples=rf_max_samples, n_jobs=n_jobs)
              for method in methods}
    report = {"validation": {name: _scores(task, labels, stacked[i]) for i, name in enumerate(models)},
              "fusion": {method: fit.report for method, fit in fitted.items()},
              "selected": best_fusion(fitted, task), "prior": label_prior(task, labels).tolist()}
    return fitted, report


def filled_table(frames: pd.DataFrame, fused: np.ndarray, columns: list[str], prior: Sequence[float]
                 ) -> tuple[pd.DataFrame, int]:
    """Table (video, frame, *columns) of (N, d) fused values for the rows of `frames`; rows with a NaN take
    the prior. Returns it and the number of rows filled."""
    fused = np.array(fused, dtype=np.float64)
    empty = np.isnan(fused).any(axis=1)
    fused[empty] = np.asarray(prior)
    table = frames[["video", "frame"]].reset_index(drop=True).copy()
    table[columns] = fused
    return table, int(empty.sum())


def apply_fitted_fusion(tables: Sequence[pd.DataFrame], fusion: FittedFusion, columns: list[str],
                        prior: Sequence[float]) -> tuple[pd.DataFrame, int]:
    """Frame-level table fused by `fusion`; frames that no model predicts take the prior. Returns the number filled."""
    fused = fusion.apply(_stack(tables, columns, [str(i) for i in range(len(tables))]))
    return filled_table(tables[0], fused, columns, prior)


METRIC_COLUMNS = ("ccc_valence", "ccc_arousal", "p_va", "macro_f1", "accuracy", "cpm")


def metrics_table(reports: Sequence[dict], tasks: Sequence[str]) -> pd.DataFrame:
    """Rows per task: every model's frame-level validation scores, then every fusion method's out-of-fold
    and in-sample scores, so the optimism of in-sample selection stays visible."""
    rows, seen = [], set()
    for report, task in zip(reports, tasks, strict=True):
        for model, scores in report["validation"].items():
            if (task, model) not in seen:
                seen.add((task, model))
                rows.append({"task": task, "name": model, "kind": "model", "estimate": "validation"} | scores)
        for method, fused in report["fusion"].items():
            for estimate in ("out_of_fold", "in_sample"):
                rows.append({"task": task, "name": method, "kind": "fusion", "estimate": estimate}
                            | fused[estimate])
    return pd.DataFrame(rows).reindex(columns=["task", "name", "kind", "estimate", *METRIC_COLUMNS, "coverage"])
