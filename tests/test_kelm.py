import numpy as np
import pytest
from sklearn.kernel_ridge import KernelRidge
from sklearn.model_selection import GroupKFold

from avaffect.corpus.tasks import EXPR_CLASSES, EXPR_INVALID
from avaffect.models import kelm
from avaffect.models.functionals import functionals
from avaffect.models.kelm import (
    KernelELM,
    class_balance_weights,
    decode_scores,
    encode_targets,
    linear_kernel,
    rbf_kernel,
    select_C,
)

TOL = 1e-8


def test_functionals_hand_made_example_with_nan_rows_and_empty_window():
    times = np.array([0.0, 0.4, 0.8, 1.2, 1.6, 2.2, 3.0, 3.4])
    nan = np.nan
    features = np.array([[1, 10], [nan, nan], [3, 30], [nan, nan], [nan, nan], [5, -5], [2, 0], [4, 8]],
                        dtype=np.float32)
    starts, matrix = functionals(times, features, 1.0)
    # Window [1, 2) has only NaN rows and is left out.
    assert np.array_equal(starts, [0.0, 2.0, 3.0])
    assert matrix.dtype == np.float32 and matrix.shape == (3, 6)
    expected = [[2, 20, 1, 10, 3, 30],
                [5, -5, 5, -5, 5, -5],
                [3, 4, 2, 0, 4, 8]]
    assert np.array_equal(matrix, np.array(expected, np.float32))


def test_functionals_unsorted_times_boundaries_and_no_valid_row():
    # 3 * 0.2 = 0.6000000000000001, and 0.6 / that is just below 1: the row must still open window 1.
    times = np.arange(6) / 5
    features = np.arange(6, dtype=np.float32)[:, None]
    starts, matrix = functionals(times[::-1], features[::-1], 3 * 0.2)
    assert np.allclose(starts, [0.0, 0.6])
    assert np.array_equal(matrix, [[1, 0, 2], [4, 3, 5]])
    starts, matrix = functionals(times, np.full((6, 2), np.nan), 2.0)
    assert starts.shape == (0,) and matrix.shape == (0, 6)


def test_kernels_match_sklearn():
    from sklearn.metrics.pairwise import rbf_kernel as sk_rbf

    rng = np.random.default_rng(0)
    a, b = rng.normal(size=(7, 4)), rng.normal(size=(5, 4))
    assert np.allclose(linear_kernel(a, b), a @ b.T, atol=TOL)
    assert np.allclose(rbf_kernel(a, b, 0.3), sk_rbf(a, b, gamma=0.3), atol=TOL)


@pytest.mark.parametrize(("kernel", "n", "n_features"), [("linear", 60, 10), ("linear", 30, 50), ("rbf", 80, 5)])
def test_unweighted_kelm_equals_kernel_ridge(kernel, n, n_features):
    rng = np.random.default_rng(1)
    X, X_test = rng.normal(size=(n, n_features)), rng.normal(size=(20, n_features))
    T = rng.normal(size=(n, 3))
    C, gamma = 2.5, 0.2
    ours = KernelELM(kernel, C=C, gamma=gamma).fit(X, T).predict(X_test)
    params = {"gamma": gamma} if kernel == "rbf" else {}
    ridge = KernelRidge(alpha=1 / C, kernel=kernel, **params).fit(X, T).predict(X_test)
    assert ours.shape == (20, 3)
    assert np.allclose(ours, ridge, rtol=0, atol=TOL)


def test_rbf_default_gamma_is_one_over_n_features():
    rng = np.random.default_rng(2)
    X, T = rng.normal(size=(40, 8)), rng.normal(size=40)
    ours = KernelELM("rbf").fit(X, T)
    assert ours.gamma_ == 1 / 8
    ridge = KernelRidge(alpha=1.0, kernel="rbf", gamma=1 / 8).fit(X, T)
    assert np.allclose(ours.predict(X)[:, 0], ridge.predict(X), atol=TOL)


@pytest.mark.parametrize("weighted", [False, True])
def test_linear_primal_equals_dual(weighted):
    rng = np.random.default_rng(3)
    X, X_test, T = rng.normal(size=(120, 15)), rng.normal(size=(25, 15)), rng.normal(size=(120, 2))
    w = rng.uniform(0.2, 3.0, size=120) if weighted else np.ones(120)
    C = 0.7
    model = KernelELM("linear", C=C).fit(X, T, w if weighted else None)
    assert model.primal_
    dual_beta = np.linalg.solve(np.eye(120) / C + w[:, None] * (X @ X.T), w[:, None] * T)
    assert np.allclose(model.predict(X_test), X_test @ X.T @ dual_beta, rtol=0, atol=TOL)
    # And the other way round: few rows take the dual path, checked against the primal formula.
    X_wide, X_wide_test = rng.normal(size=(12, 40)), rng.normal(size=(25, 40))
    w_wide, T_wide = w[:12], T[:12]
    model = KernelELM("linear", C=C).fit(X_wide, T_wide, w_wide if weighted else None)
    assert not model.primal_
    weighted_x = w_wide[:, None] * X_wide
    coef = np.linalg.solve(np.eye(40) / C + X_wide.T @ weighted_x, weighted_x.T @ T_wide)
    assert np.allclose(model.predict(X_wide_test), X_wide_test @ coef, rtol=0, atol=TOL)


@pytest.mark.parametrize(("kernel", "n", "n_features"), [("linear", 60, 10), ("linear", 30, 50), ("rbf", 50, 6)])
def test_all_ones_weights_equal_unweighted(kernel, n, n_features):
    rng = np.random.default_rng(4)
    X, T = rng.normal(size=(n, n_features)), rng.normal(size=(n, 2))
    plain = KernelELM(kernel, C=3.0).fit(X, T).predict(X)
    weighted = KernelELM(kernel, C=3.0).fit(X, T, np.ones(n)).predict(X)
    assert np.allclose(plain, weighted, rtol=0, atol=TOL)


def _imbalanced(rng, n_major, n_minor):
    X = np.vstack([rng.normal(0.0, 1.0, (n_major, 2)), rng.normal(1.5, 1.0, (n_minor, 2))])
    return X, np.r_[np.zeros(n_major, np.int64), np.ones(n_minor, np.int64)]


def test_weighted_kelm_improves_minority_recall():
    rng = np.random.default_rng(5)
    X, y = _imbalanced(rng, 950, 50)
    X_test, y_test = _imbalanced(rng, 500, 500)
    T = encode_targets("expr", y)
    recalls = []
    for weights in (None, class_balance_weights(y, 2)):
        scores = KernelELM("rbf", C=10.0, gamma=0.5).fit(X, T, weights).predict(X_test)
        predicted = scores[:, :2].argmax(axis=1)
        recalls.append(np.mean(predicted[y_test == 1] == 1))
    assert recalls[1] > recalls[0] + 0.3


def test_class_balance_weights():
    labels = np.array([0, 0, 0, 1, 2, 2])
    w = class_balance_weights(labels, 4)
    assert np.isclose(w.mean(), 1.0)
    totals = np.bincount(labels, weights=w)
    assert np.allclose(totals, totals[0])


def test_encode_decode_round_trip():
    labels = np.array([3, 0, 7, 1, 2, 4, 5, 6, 3])
    targets = encode_targets("expr", labels)
    assert targets.shape == (9, len(EXPR_CLASSES))
    assert set(np.unique(targets)) == {-1.0, 1.0} and np.all((targets == 1).sum(axis=1) == 1)
    probabilities = decode_scores("expr", targets)
    assert np.allclose(probabilities.sum(axis=1), 1.0)
    assert np.array_equal(probabilities.argmax(axis=1), labels)
    with pytest.raises(ValueError):
        encode_targets("expr", np.array([0, EXPR_INVALID]))

    va = np.array([[0.5, -0.2], [-1.0, 1.0], [0.0, 0.3]])
    assert np.array_equal(decode_scores("va", encode_targets("va", va)), va)
    assert np.array_equal(decode_scores("va", np.array([[1.7, -3.0]])), [[1.0, -1.0]])
    with pytest.raises(ValueError):
        encode_targets("au", va)


def test_max_train_refusal_message():
    rng = np.random.default_rng(6)
    X, T = rng.normal(size=(11, 3)), rng.normal(size=11)
    with pytest.raises(ValueError, match=r"refuses 11 training rows.*max_train=10.*larger max_train"):
        KernelELM("rbf", max_train=10).fit(X, T)
    KernelELM("rbf", max_train=11).fit(X, T)
    # The linear kernel's primal solution needs no such limit.
    KernelELM("linear", max_train=10).fit(X, T)


def _va_problem(rng, n_videos=20, per_video=15, n_features=6):
    groups = np.repeat(np.arange(n_videos), per_video)
    X = rng.normal(size=(n_videos * per_video, n_features))
    va = np.clip(0.3 * X @ rng.normal(size=(n_features, 2)) + 0.05 * rng.normal(size=(len(X), 2)), -1, 1)
    return X, va, groups


class _SpyGroupKFold(GroupKFold):
    splits: list[tuple[np.ndarray, np.ndarray, np.ndarray]] = []

    def split(self, X, y=None, groups=None):
        for train, held_out in super().split(X, y, groups):
            type(self).splits.append((train, held_out, np.asarray(groups)))
            yield train, held_out


def test_select_c_grid_groups_and_invalid_rows(monkeypatch):
    rng = np.random.default_rng(7)
    X, va, groups = _va_problem(rng)
    va[:10, 0] = np.nan
    monkeypatch.setattr(kelm, "GroupKFold", _SpyGroupKFold)
    _SpyGroupKFold.splits = []
    grid = (1e-6, 1e-2, 1.0, 100.0)
    best, scores = select_C(X, va, groups, "va", grid, n_folds=4)
    assert best in grid and set(scores) == set(grid)
    assert len(_SpyGroupKFold.splits) == 4
    held_out_rows = np.concatenate([held_out for _, held_out, _ in _SpyGroupKFold.splits])
    # Invalid rows were dropped, and every remaining row was held out exactly once.
    assert np.array_equal(np.sort(held_out_rows), np.arange(len(X) - 10))
    for train, held_out, fold_groups in _SpyGroupKFold.splits:
        assert not set(fold_groups[train]) & set(fold_groups[held_out])
    # Tiny C shrinks every prediction towards 0 and underfits.
    assert best >= 1e-2 and scores[best] > 0.8 and scores[best] > scores[1e-6] + 0.5


def test_select_c_expr_weighted_and_few_groups():
    rng = np.random.default_rng(8)
    n = 240
    X = rng.normal(size=(n, 5))
    labels = (X[:, :3] @ rng.normal(size=(3, len(EXPR_CLASSES)))).argmax(axis=1)
    labels[:7] = EXPR_INVALID
    groups = np.repeat(np.arange(3), n // 3)
    # 3 groups < 5 folds: use 3 folds.
    best, scores = select_C(X, labels, groups, "expr", (1e-3, 1.0), kernel="rbf", weighted=True)
    assert best in (1e-3, 1.0) and all(0 <= s <= 1 for s in scores.values())
    with pytest.raises(ValueError, match="at least 2 groups"):
        select_C(X, labels, np.zeros(n), "expr", (1.0,))
    with pytest.raises(ValueError, match="expr"):
        select_C(X, labels, groups, "va", (1.0,), weighted=True)
