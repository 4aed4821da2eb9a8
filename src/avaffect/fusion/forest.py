"""Random-forest stacking of the models' outputs, its tree count chosen by out-of-bag error."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor
from sklearn.ensemble._forest import _generate_unsampled_indices  # the bags sklearn's own OOB score uses
from sklearn.metrics import accuracy_score, r2_score
from sklearn.tree import DecisionTreeClassifier, DecisionTreeRegressor
from sklearn.tree._tree import NODE_DTYPE, Tree

from avaffect.corpus.metrics import (
    valid_va,
)
from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_DIMENSIONS
from avaffect.fusion.dirichlet import check_predictions, evenly_spaced, fuse

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


def stacking_features(predictions: np.ndarray) -> np.ndarray:
    """(N, M*d + M) float32 features: the M models' values, model-major, then a presence flag per model (1 where
    it has every column, 0 where not); a model's missing value takes the mean of the models present.

    The fill keeps a frame that some model misses (no face, no voice) usable with the information the others
    give, and the flags let the forest learn what a model's absence means rather than read the fill as that
    model's evidence. A frame where no model has a value for some column keeps NaN there and is neither fit
    nor predicted.
    """
    predictions = check_predictions(predictions)
    n_models, n_frames, n_columns = predictions.shape
    n_values = n_models * n_columns
    features = np.empty((n_frames, n_values + n_models), dtype=np.float32)
    # Written through a (N, M, d) view of the value columns (splitting their last axis needs no copy), so no
    # float64 copy of all the predictions is made on the way.
    features[:, :n_values].reshape(n_frames, n_models, n_columns)[...] = predictions.transpose(1, 0, 2)
    present = ~np.isnan(predictions).any(axis=2)  # (M, N)
    features[:, n_values:] = present.T
    # Only frames that some model misses need the mean of the others; fuse works frame by frame, so fusing
    # just those frames gives them the values fusing all frames would.
    gaps = np.flatnonzero(~present.all(axis=0))
    if len(gaps):
        part = predictions[:, gaps]
        filled = np.where(np.isnan(part), fuse(part, np.ones(n_models))[None], part)
        features[gaps, :n_values] = filled.transpose(1, 0, 2).reshape(len(gaps), n_values)
    return features


def _labelled(task: str, target: np.ndarray) -> np.ndarray:
    """Rows whose target is usable: both VA dimensions annotated (the forest is multi-output), or a class."""
    return valid_va(target).all(axis=1) if task == "va" else np.asarray(target) != EXPR_INVALID


class _OobTally:
    """Out-of-bag predictions of a forest summed tree by tree, for the OOB score sklearn's oob_score=True gives.

    sklearn recomputes the OOB sums over every tree at each warm-start fit (10 + 25 + ... + 400 trees for the
    default grid, config fusion.rf_trees, one tree at a time on one thread); adding only the trees grown since
    the last call, in the same order, gives the same sums bit for bit, hence the same score. A row that no tree
    has left out of its bag counts with a prediction of zero, as in sklearn (which warns about it).
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


def forest_rows(features: np.ndarray, target: np.ndarray, task: str, max_rows: int | None
                 ) -> tuple[np.ndarray, int]:
    """Rows a forest is fit on, annotated and with every feature, at most max_rows (None: all) of them evenly
    spaced over the frames in order so that every video keeps its share; and how many rows were usable."""
    rows = np.flatnonzero(_labelled(task, target) & ~np.isnan(features).any(axis=1))
    available = len(rows)
    rows = evenly_spaced(rows, max_rows)
    if len(rows) < RF_MIN_ROWS:
        raise ValueError(f"rf: {len(rows)} frames are annotated and predicted, need at least {RF_MIN_ROWS}")
    return rows, available


def fit_forest(features: np.ndarray, target: np.ndarray, task: str, seed: int, tree_grid: Sequence[int],
                min_samples_leaf: int, n_jobs: int, max_rows: int | None, max_samples: float | None = None
                ) -> tuple[Forest, list[dict], dict]:
    """Forest on the usable rows, its size the smallest measured count in `tree_grid` whose OOB error is within
    RF_OOB_TOLERANCE of the best measured; returns it, the OOB curve and which rows it was fit on. Each tree's
    bootstrap draws max_samples times as many rows as there are (None: as many).

    Trees are added with warm_start, so the first n trees of the largest forest are exactly the forest of
    n trees the curve measured, and the forest is cut back to them. The grid stops growing at a plateau: once
    the next grid count is expected to lower the best OOB error by no more than RF_OOB_TOLERANCE
    (_next_step_gain), it is not fit (the curve ends there). Rows: see forest_rows.
    """
    rows, available = forest_rows(features, target, task, max_rows)
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


def forest_predict(forest: Forest, features: np.ndarray, task: str) -> np.ndarray:
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


TREE_PREFIX = "tree."
"""Names of a forest's arrays among others (forest_arrays): `tree.<field>` per node field of sklearn's trees,
concatenated over the trees, `tree.values`, `tree.node_counts`, `tree.max_depths` and `tree.classes`."""


def forest_arrays(forest: Forest) -> dict[str, np.ndarray]:
    """A fitted forest as plain arrays (no pickle: safetensors stores them): the node table and the node values
    of every tree, concatenated, with each tree's node count and depth, and the classes of a classifier
    (empty for a regressor). forest_from_arrays rebuilds the same forest, with the same predictions."""
    states = [tree.tree_.__getstate__() for tree in forest.estimators_]
    nodes = np.concatenate([state["nodes"] for state in states])
    arrays = {f"{TREE_PREFIX}{name}": np.ascontiguousarray(nodes[name]) for name in NODE_DTYPE.names}
    arrays[f"{TREE_PREFIX}values"] = np.concatenate([state["values"] for state in states])
    arrays[f"{TREE_PREFIX}node_counts"] = np.array([state["node_count"] for state in states], np.int64)
    arrays[f"{TREE_PREFIX}max_depths"] = np.array([state["max_depth"] for state in states], np.int64)
    classes = forest.classes_ if isinstance(forest, RandomForestClassifier) else np.zeros(0)
    arrays[f"{TREE_PREFIX}classes"] = np.asarray(classes, np.int64)
    arrays[f"{TREE_PREFIX}n_features"] = np.array([forest.n_features_in_], np.int64)
    return arrays


def forest_from_arrays(arrays: dict[str, np.ndarray], task: str) -> Forest:
    """The forest of forest_arrays: a regressor for VA, a classifier for EXPR, of sklearn's own trees, so that
    forest_predict runs sklearn's prediction code on it. A ValueError names what is missing or inconsistent."""
    names = (*NODE_DTYPE.names, "values", "node_counts", "max_depths", "classes", "n_features")
    missing = [name for name in names if f"{TREE_PREFIX}{name}" not in arrays]
    if missing:
        raise ValueError(f"forest: arrays {missing} are missing")
    field = {name: arrays[f"{TREE_PREFIX}{name}"] for name in names}
    counts, values = field["node_counts"], field["values"]
    n_features, n_outputs = int(field["n_features"][0]), values.shape[1]
    if counts.sum() != len(values) or any(len(field[name]) != len(values) for name in NODE_DTYPE.names):
        raise ValueError(f"forest: {counts.sum()} nodes by node_counts, but {len(values)} node values and node "
                         f"fields of lengths {sorted({len(field[name]) for name in NODE_DTYPE.names})}")
    nodes = np.empty(len(values), NODE_DTYPE)
    for name in NODE_DTYPE.names:
        nodes[name] = field[name]
    classifier = task != "va"
    classes = field["classes"]
    n_classes = np.array([len(classes) if classifier else 1] * n_outputs, np.intp)
    tree_type, forest_type = ((DecisionTreeClassifier, RandomForestClassifier) if classifier
                              else (DecisionTreeRegressor, RandomForestRegressor))
    estimators = []
    for start, count, depth in zip(np.cumsum(counts) - counts, counts, field["max_depths"], strict=True):
        tree = tree_type(min_samples_leaf=RF_MIN_SAMPLES_LEAF, max_features=RF_MAX_FEATURES)
        tree.tree_ = Tree(n_features, n_classes, n_outputs)
        tree.tree_.__setstate__({"max_depth": int(depth), "node_count": int(count),
                                 "nodes": nodes[start:start + count], "values": values[start:start + count]})
        tree.n_features_in_, tree.n_outputs_ = n_features, n_outputs
        if classifier:
            tree.classes_, tree.n_classes_ = classes.astype(np.float64), len(classes)
        estimators.append(tree)
    forest = forest_type(n_estimators=len(estimators), min_samples_leaf=RF_MIN_SAMPLES_LEAF,
                         max_features=RF_MAX_FEATURES)
    forest.estimators_, forest.estimator_ = estimators, estimators[0]
    forest.n_features_in_, forest.n_outputs_ = n_features, n_outputs
    if classifier:
        forest.classes_, forest.n_classes_ = classes, len(classes)
    return forest
