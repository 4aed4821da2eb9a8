"""Dirichlet-weighted fusion: weights per model (SWF) or per model and column (DWF / MCWF), searched over
random draws with the scores of every fold computed at once."""

from __future__ import annotations

from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

import numpy as np
from threadpoolctl import threadpool_limits  # a dependency of scikit-learn

from avaffect.corpus.metrics import (
    MIN_CCC_VALUES,
    ccc_from_moments,
    check_classes,
    f1_per_class,
    macro_f1,
    valid_va,
)
from avaffect.corpus.tasks import EXPR_INVALID, VA_DIMENSIONS, check_task

METHODS = ("swf", "dwf", "rf")
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


def check_predictions(predictions: np.ndarray) -> np.ndarray:
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
    predictions = check_predictions(predictions)
    weights = _weights_per_column(weights, predictions.shape[0], predictions.shape[2])[:, None, :]
    present = ~np.isnan(predictions)
    total = np.sum(np.where(present, predictions, 0.0) * weights, axis=0)
    mass = np.sum(present * weights, axis=0)
    with np.errstate(invalid="ignore", divide="ignore"):
        return np.where(mass > 0, total / mass, np.nan)


def searched_rows(task: str, predictions: np.ndarray, target: np.ndarray) -> np.ndarray:
    """Rows the weight search scores, annotated and predicted by every model: VA (N, 2), each dimension on its
    own (a frame missing only valence still counts for arousal); EXPR (N,), every class present."""
    if task == "va":
        return valid_va(target) & ~np.isnan(predictions).any(axis=0)
    return (np.asarray(target) != EXPR_INVALID) & ~np.isnan(predictions).any(axis=(0, 2))


def weight_candidates(n_models: int, n_columns: int, n_draws: int, seed: int, per_column: bool) -> np.ndarray:
    """(n_draws, n_models, n_columns) candidate weights, one draw shared by all columns or one per column."""
    if not per_column:
        draws = dirichlet_draws(n_models, n_draws, seed)
        return np.repeat(draws[:, :, None], n_columns, axis=2)
    # Each column gets its own stream (seeds pass through SeedSequence, so seed + j streams are unrelated);
    # the fixed uniform and one-hot rows stay aligned across columns.
    return np.stack([dirichlet_draws(n_models, n_draws, seed + j) for j in range(n_columns)], axis=2)


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
    rows = searched_rows("va", predictions, target)
    return [_moment_sums(predictions[:, rows[:, j], j], target[rows[:, j], j], folds[rows[:, j]], n_folds)
            for j in range(n_dims)]


def _va_set_scores(sums: list[_MomentSums], use: np.ndarray, candidates: np.ndarray) -> np.ndarray:
    """P_VA of every (D, M, 2) candidate over the folds in `use`."""
    return np.mean([_ccc_of_sums(s, use, candidates[:, :, j], name)
                    for j, (s, name) in enumerate(zip(sums, VA_DIMENSIONS, strict=True))], axis=0)


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
    rows = searched_rows("expr", probabilities, target)
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


def set_scores(predictions: np.ndarray, target: np.ndarray, task: str, folds: np.ndarray, n_folds: int,
                candidates: np.ndarray, sets: Sequence[np.ndarray], n_jobs: int = 1) -> np.ndarray:
    """(len(sets), D) score of every candidate on each set of folds (boolean masks over the folds)."""
    if task == "va":
        sums = _va_sums(predictions, target, folds, n_folds)
        return np.stack([_va_set_scores(sums, use, candidates) for use in sets])
    counts = _expr_counts(predictions, target, folds, n_folds, candidates, n_jobs)
    return np.stack([_expr_set_scores(counts, use) for use in sets])


def best_index(scores: np.ndarray, task: str) -> int:
    if np.isnan(scores).all():
        raise ValueError(f"{task} search: every candidate scored NaN (constant predictions and target?)")
    return int(np.nanargmax(scores))


def _expr_search_score(probabilities: np.ndarray, target: np.ndarray, weights: np.ndarray) -> float:
    """Macro F1 in float64 of fused `weights` on the search rows (annotated, every model present)."""
    rows = searched_rows("expr", probabilities, target)
    return macro_f1(target[rows], fuse(probabilities[:, rows], weights).argmax(axis=1), probabilities.shape[2])


def search_weights(predictions: np.ndarray, target: np.ndarray, task: str, n_draws: int, seed: int,
                   per_column: bool = False, n_jobs: int = 1) -> tuple[np.ndarray, float]:
    """Best of `n_draws` Dirichlet weight candidates for fusing (M, N, d) predictions, and its score.

    task "va": target (N, 2), score P_VA. task "expr": predictions are class probabilities, target (N,)
    classes, score macro F1 of the fused argmax. Every candidate is scored on the rows where the target
    is annotated and all models have a value. per_column=True draws a weight vector per column and
    returns (M, d) weights, otherwise (M,). Selection and score are in-sample: see fit_fusion.
    """
    check_task(task)
    predictions = check_predictions(predictions)
    n_models, n_frames, n_columns = predictions.shape
    candidates = weight_candidates(n_models, n_columns, n_draws, seed, per_column)
    folds = np.zeros(n_frames, dtype=np.int64)
    scores = set_scores(predictions, target, task, folds, 1, candidates, [np.array([True])], n_jobs)[0]
    best = best_index(scores, task)
    weights = candidates[best] if per_column else candidates[best, :, 0]
    # VA scores are float64 moments already; EXPR candidates were ranked in SEARCH_DTYPE.
    score = float(scores[best]) if task == "va" else _expr_search_score(predictions, target, weights)
    return weights, score


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


def fit_weights(method: str, predictions: np.ndarray, target: np.ndarray, task: str, folds: np.ndarray,
                 n_folds: int, n_draws: int, seed: int, n_jobs: int, max_rows: int | None
                 ) -> tuple[list[np.ndarray], np.ndarray, dict]:
    """Weights chosen without each fold (one per fold) and on all folds, from one scoring pass over at most
    max_rows annotated frames that every model predicts (evenly spaced); also which rows were searched."""
    searched = searched_rows(task, predictions, target)
    rows = np.flatnonzero(searched.any(axis=1) if task == "va" else searched)
    available = len(rows)
    rows = evenly_spaced(rows, max_rows)
    predictions, target, folds = predictions[:, rows], np.asarray(target)[rows], folds[rows]
    n_models, _, n_columns = predictions.shape
    per_column = method == "dwf"
    candidates = weight_candidates(n_models, n_columns, n_draws, seed, per_column)
    sets = [np.arange(n_folds) != k for k in range(n_folds)] + [np.ones(n_folds, dtype=bool)]
    scores = set_scores(predictions, target, task, folds, n_folds, candidates, sets, n_jobs)
    chosen = [candidates[best_index(row, task)] for row in scores]
    if not per_column:
        chosen = [weights[:, 0] for weights in chosen]
    return chosen[:-1], chosen[-1], {"searched": len(rows), "available": available}
