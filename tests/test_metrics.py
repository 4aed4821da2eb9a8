import audmetric
import numpy as np
import pytest
from sklearn.metrics import accuracy_score, f1_score

from avaffect.corpus.metrics import (
    CPM_ACCURACY_WEIGHT,
    CPM_F1_WEIGHT,
    accuracy,
    ccc,
    cpm,
    expr_scores,
    macro_f1,
    p_va,
    va_scores,
)
from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID, VA_INVALID

N_CLASSES = len(EXPR_CLASSES)
SEEDS = [0, 1, 2, 3, 4]


def sk_macro_f1(y_true, y_pred):
    return f1_score(y_true, y_pred, average="macro", labels=range(N_CLASSES), zero_division=0)


@pytest.mark.parametrize("seed", SEEDS)
def test_ccc_matches_audmetric(seed):
    rng = np.random.default_rng(seed)
    t = rng.uniform(-1, 1, 500)
    p = 0.6 * t + rng.normal(0.1, 0.3, 500)
    assert ccc(t, p) == pytest.approx(audmetric.concordance_cc(t, p), abs=1e-9)


def test_ccc_perfect_and_anti():
    t = np.linspace(-1, 1, 50)
    assert ccc(t, t) == pytest.approx(1.0, abs=1e-12)
    assert ccc(t, -t) == pytest.approx(-1.0, abs=1e-12)


def test_ccc_penalises_bias_unlike_pearson():
    t = np.linspace(-1, 1, 50)
    assert ccc(t, t + 0.5) < 1.0


def test_ccc_same_constant_is_nan():
    assert np.isnan(ccc(np.ones(5), np.ones(5)))


@pytest.mark.parametrize(("t", "p"), [([0.1, 0.2, 0.3], [0.1, 0.2]), ([0.5], [0.5]), ([], [])])
def test_ccc_errors(t, p):
    with pytest.raises(ValueError, match="ccc"):
        ccc(np.array(t), np.array(p))


@pytest.mark.parametrize("seed", SEEDS)
def test_p_va_matches_audmetric_with_invalid_rows(seed):
    rng = np.random.default_rng(seed)
    true = rng.uniform(-1, 1, (400, 2))
    pred = np.clip(true + rng.normal(0, 0.4, true.shape), -1, 1)
    true[rng.random(400) < 0.1, 0] = VA_INVALID
    true[rng.random(400) < 0.1, 1] = np.nan
    scores = va_scores(true, pred)
    expected = []
    for j, key in enumerate(["ccc_valence", "ccc_arousal"]):
        keep = ~np.isnan(true[:, j]) & (true[:, j] != VA_INVALID)
        expected.append(audmetric.concordance_cc(true[keep, j], pred[keep, j]))
        assert scores[key] == pytest.approx(expected[-1], abs=1e-9)
    assert scores["p_va"] == pytest.approx(np.mean(expected), abs=1e-9)
    assert p_va(true, pred) == scores["p_va"]


def test_p_va_invalid_rows_are_ignored_whatever_is_predicted():
    rng = np.random.default_rng(7)
    true = rng.uniform(-1, 1, (100, 2))
    pred = true.copy()
    true[:10] = VA_INVALID
    pred[:10] = rng.uniform(-1, 1, (10, 2))
    assert p_va(true, pred) == pytest.approx(1.0, abs=1e-12)


def test_p_va_shape_error():
    with pytest.raises(ValueError, match="shape"):
        p_va(np.zeros((4, 2)), np.zeros((4, 3)))


def random_labels(seed, n=1000, classes=range(N_CLASSES)):
    rng = np.random.default_rng(seed)
    true = rng.choice(list(classes), n)
    pred = np.where(rng.random(n) < 0.5, true, rng.choice(list(classes), n))
    return true, pred


@pytest.mark.parametrize("seed", SEEDS)
def test_macro_f1_and_accuracy_match_sklearn(seed):
    true, pred = random_labels(seed)
    assert macro_f1(true, pred) == pytest.approx(sk_macro_f1(true, pred), abs=1e-9)
    assert accuracy(true, pred) == pytest.approx(accuracy_score(true, pred), abs=1e-9)


@pytest.mark.parametrize("seed", SEEDS)
def test_macro_f1_counts_absent_classes_as_zero(seed):
    true, pred = random_labels(seed, classes=[0, 2, 4])
    pred[:5] = 6  # predicted but never annotated
    assert macro_f1(true, pred) == pytest.approx(sk_macro_f1(true, pred), abs=1e-9)
    assert macro_f1(true, pred) < 3 / N_CLASSES


def test_expr_invalid_rows_excluded():
    true, pred = random_labels(11)
    all_true = np.concatenate([true, np.full(50, EXPR_INVALID)])
    all_pred = np.concatenate([pred, np.zeros(50, dtype=int)])
    assert macro_f1(all_true, all_pred) == pytest.approx(sk_macro_f1(true, pred), abs=1e-9)
    assert accuracy(all_true, all_pred) == pytest.approx(accuracy_score(true, pred), abs=1e-9)


def test_perfect_expression_prediction():
    labels = np.arange(N_CLASSES).repeat(3)
    assert expr_scores(labels, labels) == pytest.approx({"macro_f1": 1.0, "accuracy": 1.0, "cpm": 1.0})


def test_cpm_weights():
    true, pred = random_labels(3)
    expected = CPM_F1_WEIGHT * sk_macro_f1(true, pred) + CPM_ACCURACY_WEIGHT * accuracy_score(true, pred)
    assert cpm(true, pred) == pytest.approx(expected, abs=1e-9)
    assert expr_scores(true, pred)["cpm"] == pytest.approx(expected, abs=1e-9)


@pytest.mark.parametrize(
    ("true", "pred", "message"),
    [
        ([0, 1, 2], [0, 1], "labels"),
        ([EXPR_INVALID, EXPR_INVALID], [0, 1], "no annotated rows"),
        ([0, 1, 8], [0, 1, 2], "y_true"),
        ([0, 1, 2], [0, 1, -1], "y_pred"),
        ([0, 1, 2], [0, 1.5, 2], "y_pred"),
    ],
)
def test_expr_errors(true, pred, message):
    with pytest.raises(ValueError, match=message):
        macro_f1(np.array(true), np.array(pred))
