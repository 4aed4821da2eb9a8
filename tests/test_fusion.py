import numpy as np
import pytest

from avaffect.corpus import EXPR_INVALID, VA_INVALID
from avaffect.fusion import _batched_ccc, _batched_macro_f1, dirichlet_draws, fuse, search_weights
from avaffect.metrics import ccc, macro_f1, p_va

N_CLASSES = 8


def va_models(seed, n=2000):
    """Target VA, a model equal to it plus small noise, and a pure-noise model."""
    rng = np.random.default_rng(seed)
    target = np.clip(np.cumsum(rng.normal(0, 0.05, (n, 2)), axis=0), -1, 1)
    good = target + rng.normal(0, 0.1, target.shape)
    noise = rng.uniform(-1, 1, target.shape)
    return target, np.stack([noise, good])


def expr_models(seed, n=3000):
    """Target classes and class probabilities of a strong and a weak model."""
    rng = np.random.default_rng(seed)
    target = rng.integers(0, N_CLASSES, n)
    onehot = np.eye(N_CLASSES)[target]
    logits = [2.0 * onehot + rng.normal(0, 1, onehot.shape), 0.5 * onehot + rng.normal(0, 1, onehot.shape)]
    probs = np.exp(logits)
    return target, probs / probs.sum(axis=2, keepdims=True)


@pytest.mark.parametrize("n_models", [1, 2, 3, 5])
def test_draws_sum_to_one_and_start_with_uniform_and_one_hots(n_models):
    draws = dirichlet_draws(n_models, 100, seed=0)
    assert draws.shape == (100, n_models)
    np.testing.assert_allclose(draws.sum(axis=1), 1.0, atol=1e-12)
    assert (draws >= 0).all()
    np.testing.assert_allclose(draws[0], np.full(n_models, 1 / n_models))
    np.testing.assert_array_equal(draws[1:n_models + 1], np.eye(n_models))


def test_draws_reproducible_and_seed_dependent():
    np.testing.assert_array_equal(dirichlet_draws(3, 50, seed=4), dirichlet_draws(3, 50, seed=4))
    assert not np.array_equal(dirichlet_draws(3, 50, seed=4), dirichlet_draws(3, 50, seed=5))


@pytest.mark.parametrize(("args", "message"), [((0, 10, 0), "n_models"), ((3, 3, 0), "n_draws"),
                                               ((3, 10, 0, 0.0), "alpha")])
def test_draws_errors(args, message):
    with pytest.raises(ValueError, match=message):
        dirichlet_draws(*args)


def test_fuse_one_hot_equals_that_model():
    predictions = np.random.default_rng(0).normal(size=(3, 20, 2))
    np.testing.assert_array_equal(fuse(predictions, np.array([0.0, 1.0, 0.0])), predictions[1])


def test_fuse_weighted_mean_and_per_column_weights():
    predictions = np.random.default_rng(1).normal(size=(2, 10, 2))
    np.testing.assert_allclose(fuse(predictions, np.array([0.25, 0.75])),
                               0.25 * predictions[0] + 0.75 * predictions[1])
    per_column = np.array([[1.0, 0.0], [0.0, 1.0]])
    fused = fuse(predictions, per_column)
    np.testing.assert_array_equal(fused[:, 0], predictions[0, :, 0])
    np.testing.assert_array_equal(fused[:, 1], predictions[1, :, 1])


def test_fuse_renormalises_around_missing_models():
    predictions = np.array([[[0.0, 0.0], [np.nan, np.nan], [np.nan, np.nan]],
                            [[1.0, 1.0], [0.8, -0.8], [np.nan, np.nan]]])
    fused = fuse(predictions, np.array([0.5, 0.5]))
    np.testing.assert_allclose(fused[0], [0.5, 0.5])
    np.testing.assert_allclose(fused[1], [0.8, -0.8])
    assert np.isnan(fused[2]).all()


def test_fuse_only_zero_weight_model_present_gives_nan():
    predictions = np.array([[[np.nan]], [[0.3]]])
    assert np.isnan(fuse(predictions, np.array([1.0, 0.0]))).all()


@pytest.mark.parametrize(("weights", "message"), [(np.ones(3), "weights must be"), (np.ones((2, 3)), "weights must be"),
                                                  (np.array([0.5, -0.5]), ">= 0"),
                                                  (np.array([np.nan, 1.0]), "finite")])
def test_fuse_weight_errors(weights, message):
    with pytest.raises(ValueError, match=message):
        fuse(np.zeros((2, 4, 2)), weights)


def test_batched_ccc_equals_ccc_of_fused_series():
    rng = np.random.default_rng(2)
    predictions = rng.normal(size=(3, 500))
    target = 0.5 * predictions[0] + rng.normal(0, 0.5, 500)
    weights = dirichlet_draws(3, 20, seed=2)
    batched = _batched_ccc(weights, predictions, target)
    expected = [ccc(target, w @ predictions) for w in weights]
    np.testing.assert_allclose(batched, expected, atol=1e-9)


def test_batched_macro_f1_equals_macro_f1():
    rng = np.random.default_rng(3)
    y_true = rng.integers(0, N_CLASSES, 400)
    y_pred = np.where(rng.random((10, 400)) < 0.4, y_true, rng.integers(0, N_CLASSES, (10, 400)))
    y_pred[3] = 0  # a single predicted class: the other classes score 0
    batched = _batched_macro_f1(y_true, y_pred, N_CLASSES)
    np.testing.assert_allclose(batched, [macro_f1(y_true, row) for row in y_pred], atol=1e-12)


@pytest.mark.parametrize("per_column", [False, True])
def test_va_search_prefers_the_good_model(per_column):
    target, predictions = va_models(0)
    weights, score = search_weights(predictions, target, "va", n_draws=500, seed=0, per_column=per_column)
    assert weights.shape == ((2, 2) if per_column else (2,))
    assert (weights[1] > 0.8).all()
    assert score == pytest.approx(p_va(target, fuse(predictions, weights)), abs=1e-9)
    assert score >= p_va(target, predictions[1]) - 1e-12


def test_va_search_ignores_invalid_targets_and_missing_predictions():
    target, predictions = va_models(1)
    target[:100] = VA_INVALID
    target[100:200, 1] = np.nan
    predictions[0, 200:300] = np.nan
    weights, score = search_weights(predictions, target, "va", n_draws=200, seed=0)
    # p_va leaves out the invalid targets itself; rows a model misses must be left out by hand.
    keep = np.ones(len(target), dtype=bool)
    keep[200:300] = False
    assert score == pytest.approx(p_va(target[keep], fuse(predictions[:, keep], weights)), abs=1e-9)


@pytest.mark.parametrize("per_column", [False, True])
def test_expr_search_beats_the_weaker_model(per_column):
    target, probabilities = expr_models(0)
    target[:50] = EXPR_INVALID
    weights, score = search_weights(probabilities, target, "expr", n_draws=200, seed=0, per_column=per_column)
    assert weights.shape == ((2, N_CLASSES) if per_column else (2,))
    weak = macro_f1(target, probabilities[1].argmax(axis=1))
    strong = macro_f1(target, probabilities[0].argmax(axis=1))
    assert score > weak and score >= strong - 1e-12
    assert score == pytest.approx(macro_f1(target, fuse(probabilities, weights).argmax(axis=1)), abs=1e-12)


@pytest.mark.parametrize("task", ["va", "expr"])
def test_search_is_reproducible(task):
    target, predictions = va_models(2) if task == "va" else expr_models(2)
    first = search_weights(predictions, target, task, n_draws=100, seed=7, per_column=True)
    second = search_weights(predictions, target, task, n_draws=100, seed=7, per_column=True)
    np.testing.assert_array_equal(first[0], second[0])
    assert first[1] == second[1]


def test_search_errors():
    target, predictions = va_models(3, n=50)
    with pytest.raises(ValueError, match="task"):
        search_weights(predictions, target, "au", n_draws=10, seed=0)
    with pytest.raises(ValueError, match="VA search needs"):
        search_weights(predictions, target[:, :1], "va", n_draws=10, seed=0)
    with pytest.raises(ValueError, match="fewer than"):
        search_weights(predictions, np.full_like(target, VA_INVALID), "va", n_draws=10, seed=0)
    labels, probabilities = expr_models(3, n=50)
    with pytest.raises(ValueError, match="no row"):
        search_weights(probabilities, np.full_like(labels, EXPR_INVALID), "expr", n_draws=10, seed=0)
    with pytest.raises(ValueError, match="target must hold"):
        search_weights(probabilities, labels + N_CLASSES, "expr", n_draws=10, seed=0)
