import json
import warnings

import numpy as np
import pandas as pd
import pytest
import yaml
from conftest import REPO
from sklearn.ensemble import RandomForestClassifier, RandomForestRegressor

from avaffect.corpus.metrics import best_reported_fusion, ccc, macro_f1, p_va, valid_va
from avaffect.corpus.tasks import EXPR_INVALID, VA_INVALID
from avaffect.fusion.dirichlet import (
    METHODS,
    _batched_ccc,
    _batched_macro_f1,
    dirichlet_draws,
    evenly_spaced,
    fuse,
    search_weights,
    set_scores,
    weight_candidates,
)
from avaffect.fusion.forest import (
    RF_OOB_TOLERANCE,
    _next_step_gain,
    fit_forest,
    forest_predict,
    forest_rows,
    stacking_features,
)
from avaffect.fusion.selection import (
    _scores,
    apply_fitted_fusion,
    best_fusion,
    compare_fusions,
    filled_table,
    fit_fusion,
    metrics_table,
    video_folds,
)

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


# --- Grouped cross-validation: fit_fusion and its helpers ---------------------------------------------

SMALL_GRID = (5, 10, 20)


def video_data(task, seed, n_videos=6, n_frames=400, n_noise=2):
    """Frames of several videos: target, a good model and `n_noise` models unrelated to the target."""
    rng = np.random.default_rng(seed)
    n = n_videos * n_frames
    groups = np.repeat([f"video{i}" for i in range(n_videos)], n_frames)
    if task == "va":
        target = np.clip(np.cumsum(rng.normal(0, 0.05, (n, 2)), axis=0), -1, 1)
        good = np.clip(target + rng.normal(0, 0.1, target.shape), -1, 1)
        noise = [rng.uniform(-1, 1, target.shape) for _ in range(n_noise)]
    else:
        target = np.repeat(rng.integers(0, N_CLASSES, n // 20), 20)
        logits = 3.0 * np.eye(N_CLASSES)[target] + rng.normal(0, 1, (n, N_CLASSES))
        good = np.exp(logits) / np.exp(logits).sum(axis=1, keepdims=True)
        noise = [rng.dirichlet(np.ones(N_CLASSES), n) for _ in range(n_noise)]
    return np.stack([*noise, good]), target, groups


def perturbed(task, target, groups, video, seed):
    """Labels with those of one video replaced by other valid labels."""
    rng = np.random.default_rng(seed)
    changed = target.copy()
    rows = groups == video
    if task == "va":
        changed[rows] = rng.uniform(-1, 1, changed[rows].shape)
    else:
        changed[rows] = (changed[rows] + rng.integers(1, N_CLASSES, rows.sum())) % N_CLASSES
    return changed


def primary(task, scores):
    return scores["p_va" if task == "va" else "macro_f1"]


def fit(method, predictions, target, groups, task, **options):
    options = {"tree_grid": SMALL_GRID} | options
    return fit_fusion(method, predictions, target, groups, task, n_draws=200, seed=0, n_folds=3, **options)


def test_video_folds_keep_videos_whole_and_shrink_to_the_number_of_videos():
    groups = np.repeat(["a", "b", "c", "d", "e", "f", "g"], [5, 1, 3, 8, 2, 2, 4])
    folds, n = video_folds(groups, 5)
    assert n == 5 and set(folds) == set(range(5))
    for video in np.unique(groups):
        assert len(set(folds[groups == video])) == 1
    folds, n = video_folds(groups[:9], 5)  # videos a, b, c
    assert n == 3 and sorted(set(folds)) == [0, 1, 2]
    with pytest.raises(ValueError, match="at least 2 videos"):
        video_folds(np.array(["a", "a", "a"]), 5)


@pytest.mark.parametrize("task", ["va", "expr"])
@pytest.mark.parametrize("method", ["swf", "dwf", "rf"])
def test_out_of_fold_predictions_of_a_video_ignore_its_own_labels(task, method):
    predictions, target, groups = video_data(task, 1)
    first = fit(method, predictions, target, groups, task)
    video = "video2"
    second = fit(method, predictions, perturbed(task, target, groups, video, 5), groups, task)
    held = groups == video
    np.testing.assert_array_equal(first.out_of_fold[held], second.out_of_fold[held])
    assert first.report["folds"] == 3
    if method == "rf":  # the changed labels did reach the forests of the other folds
        assert not np.array_equal(first.out_of_fold[~held], second.out_of_fold[~held])


@pytest.mark.parametrize("task", ["va", "expr"])
@pytest.mark.parametrize("method", ["swf", "dwf"])
def test_fold_weights_are_those_searched_on_the_other_videos_only(task, method):
    predictions, target, groups = video_data(task, 13)
    fitted = fit(method, predictions, target, groups, task)
    folds, n = video_folds(groups, 3)
    for k in range(n):
        train = folds != k
        weights, _ = search_weights(predictions[:, train], target[train], task, n_draws=200, seed=0,
                                    per_column=method == "dwf")
        np.testing.assert_array_equal(fitted.report["fold_weights"][k], weights)
        np.testing.assert_array_equal(fitted.out_of_fold[~train], fuse(predictions[:, ~train], weights))
    weights, _ = search_weights(predictions, target, task, n_draws=200, seed=0, per_column=method == "dwf")
    np.testing.assert_array_equal(fitted.weights, weights)


def test_rf_on_noise_scores_chance_out_of_fold_but_high_in_sample():
    rng = np.random.default_rng(3)
    n_videos, n_frames = 8, 300
    groups = np.repeat(np.arange(n_videos), n_frames)
    target = rng.integers(0, N_CLASSES, n_videos * n_frames)
    predictions = rng.dirichlet(np.ones(N_CLASSES), (3, len(target)))
    fitted = fit("rf", predictions, target, groups, "expr", min_samples_leaf=1)
    out_of_fold, in_sample = fitted.report["out_of_fold"], fitted.report["in_sample"]
    assert abs(out_of_fold["accuracy"] - 1 / N_CLASSES) < 0.05
    assert out_of_fold["macro_f1"] < 0.2
    assert in_sample["macro_f1"] > 0.8  # what an in-sample report would have claimed
    assert in_sample["macro_f1"] - out_of_fold["macro_f1"] > 0.6


def test_rf_on_noise_va_gap():
    rng = np.random.default_rng(4)
    groups = np.repeat(np.arange(6), 300)
    target = rng.uniform(-1, 1, (len(groups), 2))
    predictions = rng.uniform(-1, 1, (3, len(groups), 2))
    report = fit("rf", predictions, target, groups, "va", min_samples_leaf=1).report
    assert abs(report["out_of_fold"]["p_va"]) < 0.1
    assert report["in_sample"]["p_va"] > 0.5


@pytest.mark.parametrize("task", ["va", "expr"])
def test_oob_selection_returns_a_grid_value(task):
    predictions, target, groups = video_data(task, 2)
    report = fit("rf", predictions, target, groups, task).report
    curve = report["oob_curve"]
    assert [point["n_trees"] for point in curve] == list(SMALL_GRID)
    assert report["n_trees"] in SMALL_GRID and set(report["fold_n_trees"]) <= set(SMALL_GRID)
    best = min(point["oob_error"] for point in curve)
    good = [p["n_trees"] for p in curve if p["oob_error"] <= best + RF_OOB_TOLERANCE]
    assert report["n_trees"] == good[0]


def test_forest_is_cut_back_to_the_chosen_trees():
    predictions, target, groups = video_data("expr", 2)
    fitted = fit("rf", predictions, target, groups, "expr")
    assert len(fitted.forest.estimators_) == fitted.n_trees == fitted.forest.n_estimators


@pytest.mark.parametrize("task", ["va", "expr"])
@pytest.mark.parametrize("method", ["swf", "dwf", "rf"])
def test_methods_recover_the_good_model_among_noisy_ones(task, method):
    predictions, target, groups = video_data(task, 6)
    fitted = fit(method, predictions, target, groups, task)
    good = primary(task, _scores(task, target, predictions[-1]))
    noisy = max(primary(task, _scores(task, target, p)) for p in predictions[:-1])
    out_of_fold = primary(task, fitted.report["out_of_fold"])
    assert out_of_fold > good - 0.05
    assert out_of_fold > noisy + 0.3
    if method == "swf":
        assert fitted.weights.shape == (3,) and fitted.weights[-1] > 0.8
    if method == "dwf":
        assert fitted.weights.shape == (3, 2 if task == "va" else N_CLASSES)
        assert (fitted.weights[-1] > 0.5).all()


@pytest.mark.parametrize("task", ["va", "expr"])
@pytest.mark.parametrize("method", ["swf", "dwf", "rf"])
def test_apply_shapes_and_missing_models(task, method):
    predictions, target, groups = video_data(task, 7, n_videos=4, n_frames=200)
    fitted = fit(method, predictions, target, groups, task)
    fresh = predictions[:, :50].copy()
    fresh[:, 0] = np.nan  # no model predicts frame 0
    fresh[0, 1] = np.nan  # one model misses frame 1
    fused = fitted.apply(fresh)
    assert fused.shape == (50, predictions.shape[2])
    assert np.isnan(fused[0]).all()
    assert np.isfinite(fused[1:]).all()
    if task == "expr" and method == "rf":
        np.testing.assert_allclose(fused[1:].sum(axis=1), 1.0)


def test_stacking_features_fill_a_missing_model_with_the_mean_of_the_others():
    predictions = np.array([[[0.1, 0.2], [np.nan, np.nan], [np.nan, np.nan]],
                            [[0.3, 0.4], [0.5, 0.6], [np.nan, np.nan]],
                            [[0.5, 0.0], [0.7, 0.2], [np.nan, np.nan]]])
    features = stacking_features(predictions)
    assert features.shape == (3, 9) and features.dtype == np.float32  # 6 values, then 3 presence flags
    np.testing.assert_allclose(features[0, :6], [0.1, 0.2, 0.3, 0.4, 0.5, 0.0], rtol=1e-6)
    np.testing.assert_allclose(features[1, :6], [0.6, 0.4, 0.5, 0.6, 0.7, 0.2], rtol=1e-6)
    assert np.isnan(features[2, :6]).all()


def test_stacking_features_mark_each_models_absence():
    predictions = np.array([[[0.1, 0.2], [np.nan, np.nan], [np.nan, np.nan], [0.9, np.nan]],
                            [[0.3, 0.4], [0.5, 0.6], [np.nan, np.nan], [0.1, 0.3]]])
    features = stacking_features(predictions)
    assert features.shape == (4, 6)
    np.testing.assert_array_equal(features[:, 4:], [[1, 1], [0, 1], [0, 0], [0, 1]])
    np.testing.assert_allclose(features[1, :4], [0.5, 0.6, 0.5, 0.6], rtol=1e-6)  # filled, and flagged absent
    assert np.isnan(features[2, :4]).all()


def test_the_forest_learns_what_a_models_absence_means():
    """An audio model is absent where nobody speaks, and those frames are Neutral: with presence flags the forest
    tells an absent model from one that agrees with the others, and scores clearly better than without them."""
    rng = np.random.default_rng(0)
    n = 2400
    silent = (np.arange(n) % 100) < 50
    target = np.repeat(rng.integers(1, N_CLASSES, n // 10), 10)
    target[silent] = 0
    logits = [s * np.eye(N_CLASSES)[target] + rng.normal(0, 1, (n, N_CLASSES)) for s in (0.5, 1.5)]
    face, audio = (np.exp(x) / np.exp(x).sum(axis=1, keepdims=True) for x in logits)
    audio[silent] = np.nan
    features = stacking_features(np.stack([face, audio]))
    train = np.arange(n) < 1600
    scores = []
    for x in (features, features[:, :2 * N_CLASSES]):  # with the flags, and the values alone
        forest, _, _ = fit_forest(x[train], target[train], "expr", 0, SMALL_GRID, 5, 1, None)
        scores.append(macro_f1(target[~train], forest_predict(forest, x[~train], "expr").argmax(axis=1), N_CLASSES))
    assert scores[0] > scores[1] + 0.05


@pytest.mark.parametrize("task", ["va", "expr"])
@pytest.mark.parametrize("method", ["swf", "dwf"])
def test_weighted_fusion_equals_the_present_model_where_the_other_is_missing(task, method):
    """Two useful models, each missing on its own stretches (no face, no voice): where one is missing the fusion
    is the other one, in and out of fold; where both are, the submission takes the prior."""
    _, target, groups = video_data(task, 20, n_videos=4, n_frames=300, n_noise=0)
    rng = np.random.default_rng(20)
    if task == "va":
        predictions = np.stack([np.clip(target + rng.normal(0, 0.2, target.shape), -1, 1) for _ in range(2)])
    else:
        logits = 2.0 * np.eye(N_CLASSES)[target] + rng.normal(0, 1, (2, len(target), N_CLASSES))
        predictions = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    frame = np.arange(len(target)) % 300
    only_second, only_first, neither = frame < 60, (frame >= 100) & (frame < 160), (frame >= 200) & (frame < 210)
    predictions[0, only_second | neither] = np.nan
    predictions[1, only_first | neither] = np.nan
    fitted = fit(method, predictions, target, groups, task)
    assert (np.asarray(fitted.weights) > 0).all()
    for fused in (fitted.apply(predictions), fitted.out_of_fold):
        np.testing.assert_allclose(fused[only_second], predictions[1, only_second], rtol=1e-12, atol=1e-15)
        np.testing.assert_allclose(fused[only_first], predictions[0, only_first], rtol=1e-12, atol=1e-15)
        assert np.isnan(fused[neither]).all() and not np.isnan(fused[~neither]).any()
    columns = [f"c{i}" for i in range(predictions.shape[2])]
    prior = np.full(len(columns), 0.25)
    table, filled = apply_fitted_fusion(tables_of(predictions, groups, columns), fitted, columns, prior)
    assert filled == neither.sum() and np.isfinite(table[columns].to_numpy()).all()
    np.testing.assert_array_equal(table.loc[neither, columns].to_numpy(float), np.tile(prior, (filled, 1)))


def test_rf_gives_zero_probability_to_classes_absent_from_training():
    predictions, target, groups = video_data("expr", 8, n_videos=4, n_frames=200)
    target = np.where(target == 3, 0, target)
    target[:20] = EXPR_INVALID
    fitted = fit("rf", predictions, target, groups, "expr")
    fused = fitted.apply(predictions)
    assert fused.shape == (len(target), N_CLASSES)
    assert (fused[:, 3] == 0).all()


@pytest.mark.parametrize("per_column", [False, True])
@pytest.mark.parametrize("n_jobs", [1, 2])
def test_expr_fold_scores_equal_brute_force_with_ties(per_column, n_jobs):
    rng = np.random.default_rng(9)
    n, n_folds = 900, 3
    target = rng.integers(0, N_CLASSES, n)
    logits = 1.5 * np.eye(N_CLASSES)[target] + rng.normal(0, 1, (3, n, N_CLASSES))
    probabilities = np.exp(logits) / np.exp(logits).sum(axis=2, keepdims=True)
    probabilities[:, :100] = 1 / N_CLASSES  # every model undecided: all classes tie
    probabilities[1, 100:200] = probabilities[0, 100:200]  # two models agree exactly
    probabilities[2, 200:260] = np.nan
    target[260:300] = EXPR_INVALID
    folds = rng.integers(0, n_folds, n)
    candidates = weight_candidates(3, N_CLASSES, 150, 0, per_column)
    sets = [np.arange(n_folds) != k for k in range(n_folds)] + [np.ones(n_folds, dtype=bool)]
    scores = set_scores(probabilities, target, "expr", folds, n_folds, candidates, sets, n_jobs)
    rows = (target != EXPR_INVALID) & ~np.isnan(probabilities).any(axis=(0, 2))
    for use, row in zip(sets, scores, strict=True):
        keep = rows & use[folds]
        expected = [macro_f1(target[keep], fuse(probabilities[:, keep], w).argmax(axis=1)) for w in candidates]
        np.testing.assert_allclose(row, expected, atol=1e-12)


def test_va_fold_scores_equal_brute_force():
    target, predictions = va_models(5, n=600)
    target[:50] = VA_INVALID
    predictions[1, 50:80, 0] = np.nan
    folds = np.random.default_rng(5).integers(0, 3, len(target))
    candidates = weight_candidates(2, 2, 40, 0, True)
    sets = [np.arange(3) != k for k in range(3)] + [np.ones(3, dtype=bool)]
    scores = set_scores(predictions, target, "va", folds, 3, candidates, sets)
    rows = valid_va(target).all(axis=1) & ~np.isnan(predictions).any(axis=(0, 2))
    # Row 50..79 miss only valence for model 1: arousal keeps them, so score each dimension on its own rows.
    for use, row in zip(sets, scores, strict=True):
        expected = []
        for w in candidates:
            fused = fuse(predictions, w)
            per_dim = []
            for j in range(2):
                keep = valid_va(target)[:, j] & ~np.isnan(predictions[:, :, j]).any(axis=0) & use[folds]
                per_dim.append(ccc(target[keep, j], fused[keep, j]))
            expected.append(np.mean(per_dim))
        np.testing.assert_allclose(row, expected, atol=1e-9)
    assert rows.sum() < len(target)


def test_evenly_spaced_keeps_ends_order_and_everything_under_the_cap():
    rows = np.arange(10, 110, 2)  # 50 rows
    np.testing.assert_array_equal(evenly_spaced(rows, None), rows)
    np.testing.assert_array_equal(evenly_spaced(rows, 50), rows)
    picked = evenly_spaced(rows, 5)
    np.testing.assert_array_equal(picked, rows[[0, 12, 24, 37, 49]])
    with pytest.raises(ValueError, match="max_rows"):
        evenly_spaced(rows, 0)


@pytest.mark.parametrize("task", ["va", "expr"])
@pytest.mark.parametrize("method", ["swf", "dwf"])
def test_weights_searched_on_spaced_rows_are_scored_on_every_frame(task, method):
    predictions, target, groups = video_data(task, 21)
    if task == "va":
        target[:100] = VA_INVALID
    else:
        target[:100] = EXPR_INVALID
    fitted = fit(method, predictions, target, groups, task, search_max_rows=300)
    usable = np.arange(100, len(target))
    assert fitted.report["rows"] == {"searched": 300, "available": len(usable)}
    spaced = evenly_spaced(usable, 300)
    weights, _ = search_weights(predictions[:, spaced], target[spaced], task, n_draws=200, seed=0,
                                per_column=method == "dwf")
    np.testing.assert_array_equal(fitted.weights, weights)
    # Choosing saw 300 frames; both scores and the out-of-fold predictions cover all of them.
    assert not np.isnan(fitted.out_of_fold).any()
    assert fitted.report["out_of_fold"]["coverage"] == fitted.report["in_sample"]["coverage"] == 1.0
    whole = fit(method, predictions, target, groups, task)
    assert whole.report["rows"] == {"searched": len(usable), "available": len(usable)}


def test_fit_fusion_report_is_json_and_names_its_parts():
    predictions, target, groups = video_data("expr", 10, n_videos=3, n_frames=200)
    for method in METHODS:
        report = fit(method, predictions, target, groups, "expr").report
        json.dumps(report)
        assert report["method"] == method and report["folds"] == 3
        assert {"macro_f1", "accuracy", "cpm", "coverage"} <= set(report["out_of_fold"]) & set(report["in_sample"])
        assert ("weights" in report) != ("n_trees" in report and "oob_curve" in report)


def test_fit_fusion_errors():
    predictions, target, groups = video_data("va", 11, n_videos=2, n_frames=50)
    with pytest.raises(ValueError, match="method"):
        fit("mean", predictions, target, groups, "va")
    with pytest.raises(ValueError, match="task"):
        fit("swf", predictions, target, groups, "au")
    with pytest.raises(ValueError, match="one row per frame"):
        fit("swf", predictions, target[:-1], groups, "va")
    with pytest.raises(ValueError, match="at least 2 videos"):
        fit("swf", predictions, target, np.zeros(len(target)), "va")


def test_best_reported_fusion_takes_the_best_out_of_fold_score_and_never_a_nan_one():
    reports = {"swf": {"out_of_fold": {"macro_f1": float("nan")}}, "dwf": {"out_of_fold": {"macro_f1": 0.3}},
               "rf": {"out_of_fold": {"macro_f1": 0.3}}}
    assert best_reported_fusion(reports, "expr") == "dwf"
    reports["rf"]["out_of_fold"]["macro_f1"] = 0.4
    assert best_reported_fusion(reports, "expr") == "rf"


def tables_of(predictions, groups, columns):
    frames = np.concatenate([np.arange(1, (groups == g).sum() + 1) for g in dict.fromkeys(groups)])
    return [pd.DataFrame({"video": groups, "frame": frames} | dict(zip(columns, p.T, strict=True)))
            for p in predictions]


def test_compare_fusions_reports_models_and_methods_and_applies_the_selected_one():
    predictions, target, groups = video_data("va", 12, n_videos=3, n_frames=150)
    columns = ["valence", "arousal"]
    tables = tables_of(predictions, groups, columns)
    fitted, report = compare_fusions(tables, target, "va", columns, ["n1", "n2", "good"], ["swf", "rf"],
                                     n_draws=50, seed=0, n_folds=3, tree_grid=SMALL_GRID)
    assert set(report["validation"]) == {"n1", "n2", "good"} and set(report["fusion"]) == {"swf", "rf"}
    assert report["selected"] == best_fusion(fitted, "va")
    json.dumps(report)
    test = tables_of(predictions[:, :150], groups[:150], columns)
    for table in test:
        table.loc[3, columns] = np.nan
    table, filled = apply_fitted_fusion(test, fitted[report["selected"]], columns, report["prior"])
    assert filled == 1 and list(table.columns) == ["video", "frame", *columns]
    np.testing.assert_allclose(table.loc[3, columns].to_numpy(float), report["prior"])
    assert np.isfinite(table[columns].to_numpy()).all()


@pytest.mark.parametrize("task", ["va", "expr"])
def test_no_fusion_passes_its_one_model_through_and_scores_it_as_a_fusion(task):
    predictions, target, groups = video_data(task, 21, n_videos=3, n_frames=100)
    good = predictions[-1:].copy()
    good[0, 7] = np.nan  # a frame the model misses stays missing, for the prior to fill
    fitted = fit("none", good, target, groups, task)
    np.testing.assert_array_equal(fitted.out_of_fold, good[0])
    np.testing.assert_array_equal(fitted.apply(good), good[0])
    assert fitted.report["out_of_fold"] == fitted.report["in_sample"] == _scores(task, target, good[0])
    json.dumps(fitted.report)
    with pytest.raises(ValueError, match="one model through, got 3"):
        fit("none", predictions, target, groups, task)


def test_rf_needs_a_tree_grid():
    predictions, target, groups = video_data("va", 22, n_videos=3, n_frames=100)
    with pytest.raises(ValueError, match="fusion.rf_trees"):
        fit("rf", predictions, target, groups, "va", tree_grid=None)


def test_the_configured_tree_grid_starts_at_the_papers_ten_trees():
    grid = yaml.safe_load((REPO / "config" / "config.yaml").read_text())["fusion"]["rf_trees"]
    predictions, target, groups = video_data("expr", 23)
    report = fit("rf", predictions, target, groups, "expr", tree_grid=grid).report
    assert min(grid) == 10 and report["oob_curve"][0]["n_trees"] == 10
    assert report["n_trees"] in grid and set(report["fold_n_trees"]) <= set(grid)


def test_metrics_table_lists_each_model_once_and_every_system_out_of_fold_and_in_sample():
    predictions, target, groups = video_data("va", 24, n_videos=3, n_frames=100)
    columns = ["valence", "arousal"]
    tables = tables_of(predictions, groups, columns)
    reports = []
    for system, method, models in (("sys1", "none", [2]), ("sys2", "swf", [0, 2]), ("sys3", "dwf", [0, 1, 2])):
        names = [f"m{i}" for i in models]
        _, report = compare_fusions([tables[i] for i in models], target, "va", columns, names, [method],
                                    n_draws=20, seed=0, n_folds=3)
        reports.append(report | {"system": system, "method": method, "models": names})
    table = metrics_table(reports, ["va"] * 3)
    models = table[table["kind"] == "model"]
    assert models["name"].tolist() == ["m2", "m0", "m1"]
    systems = table[table["kind"] == "system"]
    assert list(zip(systems["name"], systems["method"], systems["models"], systems["estimate"], strict=True)) == [
        (s, m, names, e) for s, m, names in (("sys1", "none", "m2"), ("sys2", "swf", "m0 m2"),
                                             ("sys3", "dwf", "m0 m1 m2")) for e in ("out_of_fold", "in_sample")]
    assert systems["p_va"].notna().all()


def test_filled_table_fills_empty_rows_with_the_prior_and_leaves_its_input_alone():
    predictions, target, groups = video_data("expr", 14, n_videos=3, n_frames=100)
    fitted = fit("swf", predictions, target, groups, "expr")
    out_of_fold = fitted.out_of_fold.copy()
    out_of_fold[5] = np.nan
    frames = pd.DataFrame({"video": groups, "frame": np.tile(np.arange(1, 101), 3)})
    prior = np.full(N_CLASSES, 1 / N_CLASSES)
    columns = [f"c{i}" for i in range(N_CLASSES)]
    table, filled = filled_table(frames, out_of_fold, columns, prior)
    assert filled == 1 and np.isnan(out_of_fold[5]).all()
    np.testing.assert_allclose(table.loc[5, columns].to_numpy(float), prior)
    np.testing.assert_array_equal(table.loc[6, columns].to_numpy(float), fitted.out_of_fold[6])


# --- Random-forest stacking: OOB curve, plateau rule, features -----------------------------------------

def sklearn_oob_curve(task, x, y, grid, seed=0, min_samples_leaf=5, max_samples=None):
    """OOB errors of a warm-started forest scored by sklearn itself (oob_score=True) at every grid count."""
    forest_type = RandomForestRegressor if task == "va" else RandomForestClassifier
    forest = forest_type(n_estimators=grid[0], min_samples_leaf=min_samples_leaf, max_features="sqrt",
                         max_samples=max_samples, oob_score=True, warm_start=True, random_state=seed)
    errors = []
    for n_trees in grid:
        forest.set_params(n_estimators=n_trees)
        with warnings.catch_warnings():
            warnings.filterwarnings("ignore", message="Some inputs do not have OOB scores")
            forest.fit(x, y)
        errors.append(1.0 - float(forest.oob_score_))
    return errors


@pytest.mark.parametrize("task", ["va", "expr"])
@pytest.mark.parametrize(("n_frames", "grid", "max_samples"), [(400, (1, 2, 3, 5, 8), None),
                                                               (1200, (5, 10, 20, 40), None),
                                                               (1200, (5, 10, 20, 40), 0.5)])
def test_oob_curve_equals_sklearns_oob_score_bit_for_bit(task, n_frames, grid, max_samples):
    """Summing only the new trees' OOB predictions gives sklearn's score exactly, also with rows never left out
    and with bootstraps smaller than the rows."""
    predictions, target, _ = video_data(task, 15, n_videos=1, n_frames=n_frames)
    features = stacking_features(predictions)
    forest, curve, _ = fit_forest(features, target, task, 0, grid, 5, 1, None, max_samples)
    assert forest.max_samples == max_samples
    x = features
    y = target if task == "va" else target.astype(np.int64)
    expected = sklearn_oob_curve(task, x, y, list(grid), max_samples=max_samples)
    assert [p["oob_error"] for p in curve] == expected[:len(curve)]


def test_next_step_gain_is_unknown_before_two_counts():
    assert _next_step_gain([25], [0.30], 50) == float("inf")


def test_next_step_gain_follows_error_falling_as_one_over_the_trees():
    limit, spread = 0.12, 0.6
    counts = [25, 50, 100, 200]
    errors = [limit + spread / n for n in counts]
    # Each projection, from the two counts before, is the fall that the next count really shows.
    for i in range(2, len(counts)):
        assert _next_step_gain(counts[:i], errors[:i], counts[i]) == pytest.approx(errors[i - 1] - errors[i])
    assert _next_step_gain(counts[:2], errors[:2], 100) == pytest.approx((errors[0] - errors[1]) / 2)
    assert _next_step_gain([10, 20], [0.30, 0.28], 40) == pytest.approx(0.01)
    assert _next_step_gain([10, 30], [0.30, 0.28], 40) == pytest.approx(0.02 * (1 / 30 - 1 / 40) / (1 / 10 - 1 / 30))


@pytest.mark.parametrize(("errors", "gain"), [
    ([0.30, 0.31], 0.0),  # a step that did not improve projects no gain: the grid stops
    ([0.30, 0.29, 0.31], 0.0),
    ([0.30, 0.20, 0.24, 0.199], 0.0005),  # judged against the best before it (0.20), not the last (0.24)
    ([0.30, 0.20, 0.24, 0.15], 0.025),
])
def test_next_step_gain_measures_the_fall_below_the_best_so_far(errors, gain):
    counts = [25 * 2**i for i in range(len(errors))]
    assert _next_step_gain(counts, errors, 2 * counts[-1]) == pytest.approx(gain)


@pytest.mark.parametrize("task", ["va", "expr"])
def test_forest_grid_stops_at_the_first_plateau_and_keeps_the_smallest_good_count(task):
    grid = (8, 16, 32, 64, 128, 256, 512)
    predictions, target, _ = video_data(task, 16, n_videos=1, n_frames=600)
    features = stacking_features(predictions)
    forest, curve, _ = fit_forest(features, target, task, 0, grid, 5, 1, None)
    errors = [p["oob_error"] for p in curve]
    counts = [p["n_trees"] for p in curve]
    assert counts == list(grid[:len(curve)])

    def stops(i):
        return _next_step_gain(counts[:i], errors[:i], grid[i]) <= RF_OOB_TOLERANCE

    # It grew until the next count was first expected to gain no more than the tolerance, never past it.
    assert not any(stops(i) for i in range(1, len(curve)))
    assert len(curve) == len(grid) or stops(len(curve))
    assert len(curve) < len(grid)  # these curves flatten well before 512 trees
    # The measured prefix is sklearn's own curve, and the choice rule is unchanged on it.
    y = target if task == "va" else target.astype(np.int64)
    assert errors == sklearn_oob_curve(task, features, y, list(grid[:len(curve)]))
    best = min(errors)
    assert forest.n_estimators == len(forest.estimators_) == next(
        p["n_trees"] for p in curve if p["oob_error"] <= best + RF_OOB_TOLERANCE)


@pytest.mark.parametrize("task", ["va", "expr"])
def test_rf_forests_grown_concurrently_equal_those_grown_one_by_one(task):
    predictions, target, groups = video_data(task, 17, n_videos=5, n_frames=200)
    one = fit("rf", predictions, target, groups, task, n_jobs=1)
    two = fit("rf", predictions, target, groups, task, n_jobs=2)
    for key in ("n_trees", "oob_curve", "fold_n_trees", "rows"):
        assert one.report[key] == two.report[key]
    # sklearn sums the trees' predictions in the order its threads finish: equal up to rounding.
    np.testing.assert_allclose(one.out_of_fold, two.out_of_fold, rtol=0, atol=1e-12)
    np.testing.assert_allclose(one.apply(predictions), two.apply(predictions), rtol=0, atol=1e-12)


def test_stacking_features_equal_filling_every_frame():
    rng = np.random.default_rng(18)
    for n_models, n_columns in ((3, 8), (3, 2), (1, 2), (4, 3)):
        predictions = rng.normal(size=(n_models, 3000, n_columns)) * 10.0 ** rng.uniform(-6, 3, (1, 3000, 1))
        predictions[rng.random(predictions.shape) < 0.05] = np.nan
        predictions[:, :20] = np.nan
        predictions[:, 20:30, 0] = np.nan
        filled = np.where(np.isnan(predictions), fuse(predictions, np.ones(n_models))[None], predictions)
        expected = filled.transpose(1, 0, 2).reshape(3000, n_models * n_columns).astype(np.float32)
        features = stacking_features(predictions)
        assert features.dtype == np.float32 and features.flags.c_contiguous
        np.testing.assert_array_equal(features[:, :n_models * n_columns], expected)


@pytest.mark.parametrize("task", ["va", "expr"])
def test_rf_in_sample_scores_the_frames_the_final_forest_was_fit_on(task):
    predictions, target, groups = video_data(task, 19, n_videos=4, n_frames=300)
    fitted = fit("rf", predictions, target, groups, task, rf_max_rows=200)
    rows, available = forest_rows(stacking_features(predictions), target, task, 200)
    assert len(rows) == 200 and fitted.report["rows"] == {"fit": 200, "available": available}
    assert fitted.report["in_sample_frames"] == "fit"
    assert fitted.report["in_sample"] == _scores(task, target[rows], fitted.apply(predictions[:, rows]))
    # Other frames score lower than the fit ones (they were not fit), and the out-of-fold score covers them all.
    assert primary(task, fitted.report["in_sample"]) > primary(task, _scores(task, target, fitted.apply(predictions)))
    assert not np.isnan(fitted.out_of_fold).any()
    assert fit("dwf", predictions, target, groups, task).report["in_sample_frames"] == "all"


@pytest.mark.parametrize("task", ["va", "expr"])
def test_rf_max_samples_reaches_every_forest_and_the_report(task):
    predictions, target, groups = video_data(task, 20, n_videos=4, n_frames=200)
    whole = fit("rf", predictions, target, groups, task)
    half = fit("rf", predictions, target, groups, task, rf_max_samples=0.5)
    assert whole.report["max_samples"] is None and half.report["max_samples"] == 0.5
    assert half.forest.max_samples == 0.5
    # Each tree drew half as many frames, so it was grown on fewer distinct ones.
    n_fit = half.report["rows"]["fit"]
    assert half.forest._n_samples_bootstrap == round(n_fit / 2)
    assert whole.forest._n_samples_bootstrap == n_fit
    assert not np.array_equal(whole.out_of_fold, half.out_of_fold)
    for bad in (0.0, 1.5):
        with pytest.raises(ValueError, match="rf_max_samples"):
            fit("rf", predictions, target, groups, task, rf_max_samples=bad)
