"""ABAW challenge metrics: CCC for valence/arousal, macro F1 and accuracy for expressions."""

from __future__ import annotations

from collections.abc import Mapping

import numpy as np

from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_DIMENSIONS, VA_INVALID

CPM_F1_WEIGHT = 0.67
CPM_ACCURACY_WEIGHT = 0.33
MIN_CCC_VALUES = 2
PRIMARY_METRIC = {"va": "p_va", "expr": "macro_f1"}
"""Each task's challenge score: what models, window lengths and fusion weights are chosen and ranked by."""

ArrayOrFloat = np.ndarray | float


def ccc(y_true: np.ndarray, y_pred: np.ndarray) -> float:
    """Concordance correlation coefficient with population (ddof=0) moments.

    NaN when both series are the same constant (0/0), as audmetric.concordance_cc does.
    """
    t = np.asarray(y_true, dtype=np.float64).ravel()
    p = np.asarray(y_pred, dtype=np.float64).ravel()
    if t.size != p.size:
        raise ValueError(f"ccc: y_true has {t.size} values but y_pred has {p.size}")
    if t.size < MIN_CCC_VALUES:
        raise ValueError(f"ccc: needs at least {MIN_CCC_VALUES} values, got {t.size}")
    return ccc_from_moments(t.mean(), t.var(), p.mean(), p.var(), np.mean((t - t.mean()) * (p - p.mean())))


def ccc_from_moments(mean_true: ArrayOrFloat, var_true: ArrayOrFloat, mean_pred: ArrayOrFloat,
                     var_pred: ArrayOrFloat, cov: ArrayOrFloat) -> ArrayOrFloat:
    """2*cov / (var_t + var_p + (mean_t - mean_p)^2) on scalars or broadcastable arrays."""
    # A zero denominator forces cov == 0 (|cov| <= sd_t * sd_p), so 0/0 gives the documented NaN.
    with np.errstate(invalid="ignore"):
        result = np.true_divide(2 * cov, var_true + var_pred + (mean_true - mean_pred) ** 2)
    return float(result) if np.ndim(result) == 0 else result


def valid_va(true_va: np.ndarray) -> np.ndarray:
    """Mask of annotated values: neither VA_INVALID nor NaN (one column per dimension)."""
    true_va = np.asarray(true_va, dtype=np.float64)
    return ~np.isnan(true_va) & (true_va != VA_INVALID)


def _check_va_shapes(true_va: np.ndarray, pred_va: np.ndarray) -> None:
    expected = (len(true_va), len(VA_DIMENSIONS))
    if true_va.shape != expected or pred_va.shape != expected:
        raise ValueError(f"VA arrays must both have shape (N, {len(VA_DIMENSIONS)}), "
                         f"got {true_va.shape} and {pred_va.shape}")


def va_scores(true_va: np.ndarray, pred_va: np.ndarray) -> dict[str, float]:
    """CCC of valence and of arousal over annotated rows of each, and their mean P_VA."""
    true_va = np.asarray(true_va, dtype=np.float64)
    pred_va = np.asarray(pred_va, dtype=np.float64)
    _check_va_shapes(true_va, pred_va)
    valid = valid_va(true_va)
    scores = {
        f"ccc_{name}": ccc(true_va[valid[:, j], j], pred_va[valid[:, j], j])
        for j, name in enumerate(VA_DIMENSIONS)
    }
    scores["p_va"] = float(np.mean(list(scores.values())))
    return scores


def p_va(true_va: np.ndarray, pred_va: np.ndarray) -> float:
    """Mean of CCC(valence) and CCC(arousal), the ABAW VA challenge score."""
    return va_scores(true_va, pred_va)["p_va"]


def check_classes(labels: np.ndarray, n_classes: int, name: str) -> np.ndarray:
    """`labels` as int64, checked to be class indices 0..n_classes-1."""
    labels = np.asarray(labels)
    if labels.size and (not np.array_equal(labels, np.round(labels)) or labels.min() < 0
                        or labels.max() >= n_classes):
        raise ValueError(f"{name} must hold integer classes 0..{n_classes - 1} on annotated rows")
    return labels.astype(np.int64)


def _valid_expr(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int) -> tuple[np.ndarray, np.ndarray]:
    """Labels of annotated rows, checked to be class indices."""
    y_true = np.asarray(y_true).ravel()
    y_pred = np.asarray(y_pred).ravel()
    if y_true.size != y_pred.size:
        raise ValueError(f"y_true has {y_true.size} labels but y_pred has {y_pred.size}")
    keep = y_true != EXPR_INVALID
    if not keep.any():
        raise ValueError(f"no annotated rows: every y_true is {EXPR_INVALID}")
    return check_classes(y_true[keep], n_classes, "y_true"), check_classes(y_pred[keep], n_classes, "y_pred")


def f1_per_class(true_count: np.ndarray, pred_count: np.ndarray, hits: np.ndarray) -> np.ndarray:
    """F1 = 2TP / (support + predicted), 0 where a class is neither annotated nor predicted."""
    denominator = true_count + pred_count
    return np.where(denominator > 0, 2 * hits / np.maximum(denominator, 1), 0.0)


def macro_f1(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(EXPR_CLASSES)) -> float:
    """Unweighted mean F1 over all classes 0..n_classes-1, rows labelled EXPR_INVALID left out."""
    y_true, y_pred = _valid_expr(y_true, y_pred, n_classes)
    confusion = np.bincount(y_true * n_classes + y_pred, minlength=n_classes**2).reshape(n_classes, n_classes)
    f1 = f1_per_class(confusion.sum(axis=1), confusion.sum(axis=0), np.diag(confusion))
    return float(f1.mean())


def accuracy(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(EXPR_CLASSES)) -> float:
    """Share of annotated rows predicted correctly."""
    y_true, y_pred = _valid_expr(y_true, y_pred, n_classes)
    return float(np.mean(y_true == y_pred))


def cpm(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(EXPR_CLASSES)) -> float:
    """Weighted combination of macro F1 and accuracy."""
    return expr_scores(y_true, y_pred, n_classes)["cpm"]


def expr_scores(y_true: np.ndarray, y_pred: np.ndarray, n_classes: int = len(EXPR_CLASSES)
                ) -> dict[str, float]:
    """Macro F1, accuracy and their weighted combination CPM."""
    f1 = macro_f1(y_true, y_pred, n_classes)
    acc = accuracy(y_true, y_pred, n_classes)
    return {"macro_f1": f1, "accuracy": acc, "cpm": CPM_F1_WEIGHT * f1 + CPM_ACCURACY_WEIGHT * acc}


def best_reported_fusion(reports: Mapping[str, dict], task: str) -> str:
    """best_fusion from each method's report (a FittedFusion's, or the "fusion" entry of the method's
    metrics.json): what the submission and the report take as the fused prediction."""
    metric = PRIMARY_METRIC[task]

    def score(method: str) -> float:
        value = reports[method]["out_of_fold"][metric]
        return -np.inf if np.isnan(value) else value

    return max(reports, key=score)
