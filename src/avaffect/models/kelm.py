"""Kernel extreme learning machine (KELM) on window functionals, with grouped selection of C.

Unweighted KELM (Huang et al. 2012): beta = (I/C + K)^-1 T, prediction f(x) = k(x, X) beta.
Weighted KELM (Zong et al. 2013): beta = (I/C + W K)^-1 W T with W = diag(sample_weight).
This is kernel ridge regression with alpha = 1/C; the weighted form counts a row w times in the loss.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass

import numpy as np
import scipy.linalg
from sklearn.model_selection import GroupKFold

from avaffect.corpus.metrics import check_classes, macro_f1, p_va, valid_va
from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_DIMENSIONS, check_task

KERNELS = ("linear", "rbf")
DEFAULT_C = 1.0
DEFAULT_CS = (1e-4, 1e-3, 1e-2, 1e-1, 1.0, 1e1, 1e2, 1e3)
"""C grid for `select_C`: log-spaced, since the useful C moves by decades with the kernel's scale."""
DEFAULT_MAX_TRAIN = 20000
"""Most training rows for the RBF kernel: its n x n float64 system needs 8 n^2 bytes (3.2 GB at 20000)."""
DEFAULT_N_FOLDS = 5
MIN_FOLDS = 2
PREDICT_CHUNK_ROWS = 4096
"""Test rows per kernel block in dual prediction, so k(X_test, X_train) never needs n_test x n_train memory."""
ONE_HOT_ON = 1.0
ONE_HOT_OFF = -1.0
VA_RANGE = (-1.0, 1.0)


def linear_kernel(a: np.ndarray, b: np.ndarray) -> np.ndarray:
    """(len(a), len(b)) inner products a @ b.T."""
    return np.asarray(a, dtype=np.float64) @ np.asarray(b, dtype=np.float64).T


def rbf_kernel(a: np.ndarray, b: np.ndarray, gamma: float) -> np.ndarray:
    """(len(a), len(b)) Gaussian kernel exp(-gamma * ||a_i - b_j||^2)."""
    a = np.asarray(a, dtype=np.float64)
    b = np.asarray(b, dtype=np.float64)
    # ||a||^2 + ||b||^2 - 2 a.b needs one matrix product instead of an (n, m, F) difference tensor.
    out = a @ b.T
    out *= -2.0
    out += np.einsum("ij,ij->i", a, a)[:, None]
    out += np.einsum("ij,ij->i", b, b)[None, :]
    # Cancellation can leave tiny negative squared distances.
    np.maximum(out, 0.0, out=out)
    out *= -gamma
    return np.exp(out, out=out)


@dataclass
class _System:
    """The C-independent part of a KELM fit: beta = (I/C + gram)^-1 rhs."""

    gram: np.ndarray
    rhs: np.ndarray
    symmetric: bool

    def solve(self, C: float) -> np.ndarray:
        if not C > 0:
            raise ValueError(f"C must be positive, got {C}")
        a = self.gram.copy()
        a[np.diag_indices_from(a)] += 1.0 / C
        # I/C + a symmetric positive semi-definite matrix is positive definite: Cholesky is safe and twice as fast.
        return scipy.linalg.solve(a, self.rhs, assume_a="pos" if self.symmetric else "gen",
                                  overwrite_a=True, check_finite=False)


class KernelELM:
    """Kernel extreme learning machine with a linear or RBF kernel.

    The linear kernel with more rows than features is solved in the primal,
    coef = (I/C + X^T W X)^-1 X^T W T, which equals the dual solution (push-through identity) in O(F^2) memory.
    """

    def __init__(self, kernel: str = "linear", C: float = DEFAULT_C, gamma: float | None = None,
                 max_train: int = DEFAULT_MAX_TRAIN) -> None:
        if kernel not in KERNELS:
            raise ValueError(f"kernel must be one of {KERNELS}, got {kernel!r}")
        if not C > 0:
            raise ValueError(f"C must be positive, got {C}")
        if gamma is not None and not gamma > 0:
            raise ValueError(f"gamma must be positive or None, got {gamma}")
        self.kernel = kernel
        self.C = C
        self.gamma = gamma
        self.max_train = max_train

    def fit(self, X: np.ndarray, T: np.ndarray, sample_weight: np.ndarray | None = None) -> KernelELM:
        """Fit on X (n, F) and targets T (n,) or (n, n_outputs); sample_weight (n,) >= 0 gives weighted KELM."""
        self.beta_ = self._prepare(X, T, sample_weight).solve(self.C)
        return self

    def predict(self, X: np.ndarray) -> np.ndarray:
        """(n, n_outputs) raw scores."""
        X = self._check_X(X)
        if self.primal_:
            return X @ self.beta_
        out = np.empty((len(X), self.beta_.shape[1]))
        for start in range(0, len(X), PREDICT_CHUNK_ROWS):
            block = slice(start, start + PREDICT_CHUNK_ROWS)
            out[block] = self._design(X[block]) @ self.beta_
        return out

    def to_state(self) -> dict:
        """Tensors and plain values only, so a checkpoint loads with torch.load(weights_only=True)."""
        import torch

        train = None if self.X_train_ is None else torch.from_numpy(self.X_train_)
        return {"kernel": self.kernel, "C": self.C, "gamma": self.gamma_, "max_train": self.max_train,
                "beta": torch.from_numpy(self.beta_), "primal": self.primal_, "X_train": train,
                "n_features": self.n_features_in_}

    @classmethod
    def from_state(cls, state: dict) -> KernelELM:
        model = cls(state["kernel"], state["C"], state["gamma"], state["max_train"])
        model.beta_, model.primal_ = state["beta"].numpy(), state["primal"]
        model.X_train_ = None if state["X_train"] is None else state["X_train"].numpy()
        model.gamma_, model.n_features_in_ = state["gamma"], state["n_features"]
        return model

    def _check_X(self, X: np.ndarray) -> np.ndarray:
        if not hasattr(self, "beta_"):
            raise RuntimeError("KernelELM is not fitted: call fit first")
        X = np.asarray(X, dtype=np.float64)
        if X.ndim != 2 or X.shape[1] != self.n_features_in_:
            raise ValueError(f"X must be (n, {self.n_features_in_}), got {X.shape}")
        return X

    def _design(self, X: np.ndarray) -> np.ndarray:
        """What beta multiplies: X itself in the primal, k(X, X_train) in the dual."""
        if self.primal_:
            return X
        if self.kernel == "linear":
            return linear_kernel(X, self.X_train_)
        return rbf_kernel(X, self.X_train_, self.gamma_)

    def _prepare(self, X: np.ndarray, T: np.ndarray, sample_weight: np.ndarray | None) -> _System:
        """Check the data, remember what prediction needs, and build the C-independent system."""
        X = np.asarray(X, dtype=np.float64)
        T = np.asarray(T, dtype=np.float64)
        if T.ndim == 1:
            T = T[:, None]
        if X.ndim != 2 or T.ndim != 2 or len(X) != len(T):
            raise ValueError(f"X must be (n, F) and T (n,) or (n, n_outputs), got {X.shape} and {T.shape}")
        if len(X) == 0:
            raise ValueError("cannot fit on 0 rows")
        # A NaN label or feature would silently turn every coefficient into NaN.
        if not (np.isfinite(X).all() and np.isfinite(T).all()):
            raise ValueError("X and T must be finite: drop rows with missing features or invalid labels first")
        n, n_features = X.shape
        if self.kernel == "rbf" and n > self.max_train:
            raise ValueError(f"KernelELM(kernel='rbf') refuses {n} training rows, more than max_train="
                             f"{self.max_train} (the n x n system needs {8 * n * n / 1e9:.1f} GB); subsample or "
                             f"cluster the rows yourself, or pass a larger max_train to KernelELM")
        weights = None
        if sample_weight is not None:
            weights = np.asarray(sample_weight, dtype=np.float64).ravel()
            if len(weights) != n or not np.isfinite(weights).all() or (weights < 0).any():
                raise ValueError(f"sample_weight must be {n} finite non-negative values")
        self.n_features_in_ = n_features
        self.gamma_ = self.gamma if self.gamma is not None else 1.0 / n_features
        self.primal_ = self.kernel == "linear" and n > n_features
        if self.primal_:
            self.X_train_ = None
            weighted_x = X if weights is None else X * weights[:, None]
            # X^T W X is symmetric PSD for any W >= 0, so the primal always takes the Cholesky path.
            return _System(weighted_x.T @ X, weighted_x.T @ T, symmetric=True)
        self.X_train_ = X
        gram = self._design(X)
        if weights is None:
            return _System(gram, T, symmetric=True)
        # W K is not symmetric, hence the general solver.
        return _System(gram * weights[:, None], T * weights[:, None], symmetric=False)



def encode_targets(task: str, labels: np.ndarray) -> np.ndarray:
    """KELM targets: VA (n, 2) values as they are; EXPR one-hot in {-1, +1} over the classes (valid labels only)."""
    check_task(task)
    if task == "va":
        values = np.asarray(labels, dtype=np.float64)
        if values.ndim != 2 or values.shape[1] != len(VA_DIMENSIONS):
            raise ValueError(f"VA labels must be (n, {len(VA_DIMENSIONS)}), got {values.shape}")
        return values
    classes = check_classes(np.asarray(labels).ravel(), len(EXPR_CLASSES), "EXPR labels")
    out = np.full((len(classes), len(EXPR_CLASSES)), ONE_HOT_OFF)
    out[np.arange(len(classes)), classes] = ONE_HOT_ON
    return out


def decode_scores(task: str, scores: np.ndarray) -> np.ndarray:
    """VA: scores clipped to [-1, 1]. EXPR: softmax over the class scores.

    The EXPR output sums to one per row but is a normalised score, not a calibrated probability:
    KELM scores are least-squares fits to {-1, +1} targets, not log-odds.
    """
    check_task(task)
    scores = np.asarray(scores, dtype=np.float64)
    if task == "va":
        return np.clip(scores, *VA_RANGE)
    shifted = np.exp(scores - scores.max(axis=1, keepdims=True))
    return shifted / shifted.sum(axis=1, keepdims=True)


def class_balance_weights(labels: np.ndarray, n_classes: int) -> np.ndarray:
    """Per-row weights proportional to 1 / count(class of the row), normalised to mean 1."""
    classes = check_classes(np.asarray(labels).ravel(), n_classes, "labels")
    if len(classes) == 0:
        return np.zeros(0)
    weights = 1.0 / np.bincount(classes, minlength=n_classes)[classes]
    return weights / weights.mean()


def _valid_rows(task: str, labels: np.ndarray) -> np.ndarray:
    # KELM fits all outputs jointly, so a VA row needs both dimensions annotated.
    if task == "va":
        return valid_va(labels).all(axis=1)
    return np.asarray(labels).ravel() != EXPR_INVALID


def _score(task: str, labels: np.ndarray, scores: np.ndarray) -> float:
    decoded = decode_scores(task, scores)
    if task == "va":
        return p_va(labels, decoded)
    return macro_f1(labels, decoded.argmax(axis=1))


def select_C(X: np.ndarray, labels: np.ndarray, groups: np.ndarray, task: str, Cs: Sequence[float] = DEFAULT_CS,
             kernel: str = "linear", gamma: float | None = None, weighted: bool = False,
             n_folds: int = DEFAULT_N_FOLDS, max_train: int = DEFAULT_MAX_TRAIN) -> tuple[float, dict[float, float]]:
    """Best C by grouped cross-validation, and the score of every C.

    Folds come from GroupKFold on `groups` (video ids), so no video is on both sides of a split. Rows with
    invalid labels are dropped first. Each C is scored once, with the task metric (P_VA or macro F1) on the
    concatenated out-of-fold predictions. `weighted` uses class-balanced weights (EXPR only). Ties and NaN
    scores go to the smallest C, the most regularised model.
    """
    check_task(task)
    if weighted and task != "expr":
        raise ValueError("weighted=True needs classes: it applies to task 'expr' only")
    if not Cs:
        raise ValueError("Cs must hold at least one C")
    X = np.asarray(X)
    labels = np.asarray(labels)
    groups = np.asarray(groups).ravel()
    if not len(X) == len(labels) == len(groups):
        raise ValueError(f"X, labels and groups must have the same length, got {len(X)}, {len(labels)}, {len(groups)}")
    keep = _valid_rows(task, labels)
    X, labels, groups = X[keep], labels[keep], groups[keep]
    n_splits = min(n_folds, len(np.unique(groups)))
    if n_splits < MIN_FOLDS:
        raise ValueError(f"select_C needs at least {MIN_FOLDS} groups with valid labels, got {n_splits}")
    targets = encode_targets(task, labels)
    Cs = sorted(float(C) for C in Cs)
    oof = {C: np.empty(targets.shape) for C in Cs}
    for train, held_out in GroupKFold(n_splits=n_splits).split(X, targets, groups):
        weights = class_balance_weights(labels[train], len(EXPR_CLASSES)) if weighted else None
        model = KernelELM(kernel, Cs[0], gamma, max_train)
        # The Gram matrix and the held-out design do not depend on C: build them once per fold.
        system = model._prepare(X[train], targets[train], weights)
        design = model._design(np.asarray(X[held_out], dtype=np.float64))
        for C in Cs:
            oof[C][held_out] = design @ system.solve(C)
    scores = {C: _score(task, labels, oof[C]) for C in Cs}
    best = max(Cs, key=lambda C: (not np.isnan(scores[C]), scores[C] if not np.isnan(scores[C]) else 0.0, -C))
    return best, scores
