"""Late fusion of several models' frame-level predictions, chosen and scored without leakage.

Methods (METHODS, and NO_FUSION of fusion.systems):
- "none": one model's predictions, passed through unfused and scored as a fusion is, so that a single-model
  system ranks beside fused ones;
- "swf": one Dirichlet weight per model, the best of `n_draws` random draws (fusion.dirichlet);
- "dwf": a Dirichlet weight per model and column (per VA dimension; per EXPR class, i.e. MCWF);
- "rf": random-forest stacking on the M*d model outputs of a frame (fusion.forest).

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
from safetensors import SafetensorError, safe_open
from safetensors.numpy import save_file
from sklearn.model_selection import GroupKFold

from avaffect.core.tables import atomic_write
from avaffect.corpus.annotations import align_to_frames, read_annotation
from avaffect.corpus.layout import annotation_path, video_of
from avaffect.corpus.metrics import (
    best_reported_fusion,
    expr_scores,
    va_scores,
    valid_va,
)
from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, check_task
from avaffect.fusion.dirichlet import check_predictions, fit_weights, fuse
from avaffect.fusion.forest import (
    RF_MIN_SAMPLES_LEAF,
    Forest,
    fit_forest,
    forest_arrays,
    forest_from_arrays,
    forest_predict,
    forest_rows,
    stacking_features,
)
from avaffect.fusion.systems import NO_FUSION, SYSTEM_METHODS

DEFAULT_FOLDS = 5
MIN_FOLDS = 2



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
        predictions = check_predictions(predictions)
        return forest_predict(self.forest, stacking_features(predictions), self.task)


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


def fit_fusion(method: str, predictions: np.ndarray, target: np.ndarray, groups: np.ndarray, task: str,
               n_draws: int, seed: int, n_folds: int = DEFAULT_FOLDS, *, search_max_rows: int | None = None,
               rf_max_rows: int | None = None, rf_max_samples: float | None = None,
               tree_grid: Sequence[int] | None = None, min_samples_leaf: int = RF_MIN_SAMPLES_LEAF,
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
    rf_max_samples times its frames (None: as many). n_draws is used by "swf"/"dwf" only, tree_grid (the
    forest sizes whose OOB error is measured, config fusion.rf_trees), rf_max_samples and min_samples_leaf
    by "rf" only. n_jobs: threads for the EXPR weight search, and for the forests: n_jobs of the
    n_folds + 1 forests grow at a time, each on n_jobs threads.

    "none" takes exactly one model: its predictions are the out-of-fold and the in-sample ones, since
    nothing is chosen on the validation frames.
    """
    check_task(task)
    if method not in SYSTEM_METHODS:
        raise ValueError(f"method must be one of {SYSTEM_METHODS}, got '{method}'")
    predictions = check_predictions(predictions)
    target = np.asarray(target)
    if len(target) != predictions.shape[1] or len(groups) != predictions.shape[1]:
        raise ValueError(f"target and groups must have one row per frame ({predictions.shape[1]}), "
                         f"got {len(target)} and {len(groups)}")
    if rf_max_samples is not None and not 0 < rf_max_samples <= 1:
        raise ValueError(f"rf_max_samples must be in (0, 1] or None, got {rf_max_samples}")
    report: dict = {"method": method}
    if method == NO_FUSION:
        if predictions.shape[0] != 1:
            raise ValueError(f"method {NO_FUSION} passes one model through, got {predictions.shape[0]} models")
        fitted = FittedFusion(method, task, weights=np.ones(1))
        fitted.out_of_fold = predictions[0].copy()
        scores = _scores(task, target, fitted.out_of_fold)
        fitted.report = report | {"weights": [1.0], "in_sample_frames": "all", "out_of_fold": scores,
                                  "in_sample": scores}
        return fitted
    if method == "rf" and not tree_grid:
        raise ValueError("rf: tree_grid (config fusion.rf_trees) must name the forest sizes to measure")
    folds, n_splits = video_folds(groups, n_folds)
    out_of_fold = np.full((predictions.shape[1], predictions.shape[2]), np.nan)
    if method == "rf":
        features = stacking_features(predictions)
        fit_rows, _ = forest_rows(features, target, task, rf_max_rows)

        def fit_part(k: int) -> tuple[Forest, list[dict], dict, np.ndarray]:
            """Forest of fold k, fit without its videos, and its predictions of them; k = n_splits: the forest
            of all videos and its predictions of the frames it was fit on."""
            train = folds != k
            forest, curve, rows = fit_forest(features[train], target[train], task, seed, tree_grid,
                                              min_samples_leaf, n_jobs, rf_max_rows, rf_max_samples)
            held_out = features[~train] if k < n_splits else features[fit_rows]
            return forest, curve, rows, forest_predict(forest, held_out, task)

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
        fold_weights, weights, rows = fit_weights(method, predictions, target, task, folds, n_splits, n_draws,
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
                    rf_max_rows: int | None = None, rf_max_samples: float | None = None,
                    tree_grid: Sequence[int] | None = None, n_jobs: int = 1
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
                                 rf_max_samples=rf_max_samples, tree_grid=tree_grid, n_jobs=n_jobs)
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
    """Rows per task: every model's frame-level validation scores, then every system's out-of-fold and
    in-sample scores, so the optimism of in-sample selection stays visible.

    reports: the metrics.json of each (task, system) fuse job: compare_fusions' report with the "system", its
    "method" and its "models".
    """
    rows, seen = [], set()
    for report, task in zip(reports, tasks, strict=True):
        for model, scores in report["validation"].items():
            if (task, model) not in seen:
                seen.add((task, model))
                rows.append({"task": task, "name": model, "kind": "model", "estimate": "validation"} | scores)
        fused = report["fusion"][report["method"]]
        for estimate in ("out_of_fold", "in_sample"):
            rows.append({"task": task, "name": report["system"], "kind": "system", "method": report["method"],
                         "models": " ".join(report["models"]), "estimate": estimate} | fused[estimate])
    return pd.DataFrame(rows).reindex(columns=["task", "name", "kind", "method", "models", "estimate",
                                               *METRIC_COLUMNS, "coverage"])


FUSION_FORMAT = "1"
"""Version of the fitted-fusion files (write_fitted_fusion); a reader refuses any other."""


def write_fitted_fusion(fusion: FittedFusion, prior: Sequence[float], path: Path) -> None:
    """What applying `fusion` needs, as safetensors (plain arrays, no pickle): its weights or its forest's
    trees (forest.forest_arrays), and the prior that frames without any prediction take."""
    arrays = {"prior": np.asarray(prior, np.float64)}
    if fusion.weights is not None:
        arrays["weights"] = np.asarray(fusion.weights, np.float64)
    if fusion.forest is not None:
        arrays |= forest_arrays(fusion.forest)
    metadata = {"format": FUSION_FORMAT, "method": fusion.method, "task": fusion.task}
    atomic_write(Path(path), lambda tmp: save_file(arrays, str(tmp), metadata=metadata))


def read_fitted_fusion(path: Path) -> tuple[FittedFusion, np.ndarray]:
    """The fusion of write_fitted_fusion and its prior; a ValueError names the file and what is wrong."""
    path = Path(path)
    try:
        with safe_open(path, "numpy") as file:
            arrays = {name: file.get_tensor(name) for name in file.keys()}  # noqa: SIM118 (not a dict)
            metadata = file.metadata() or {}
    except (OSError, SafetensorError, ValueError) as err:
        raise ValueError(f"{path}: not a readable fitted-fusion file ({err})") from err
    if metadata.get("format") != FUSION_FORMAT:
        raise ValueError(f"{path}: fitted-fusion format {metadata.get('format')!r}, this avaffect reads "
                         f"{FUSION_FORMAT!r}")
    method, task = metadata.get("method"), metadata.get("task")
    check_task(task)
    try:
        forest = forest_from_arrays(arrays, task) if method == "rf" else None
    except ValueError as err:
        raise ValueError(f"{path}: {err}") from err
    if forest is None and "weights" not in arrays:
        raise ValueError(f"{path}: method {method} needs fusion weights, the file has none")
    fusion = FittedFusion(method, task, weights=arrays.get("weights"), forest=forest,
                          n_trees=None if forest is None else len(forest.estimators_))
    return fusion, arrays["prior"]

