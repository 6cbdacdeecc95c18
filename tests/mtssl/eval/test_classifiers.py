"""The probe's classifiers (``mtssl.eval.classifiers``) on synthetic features with a known answer."""

from __future__ import annotations

import warnings

import numpy as np
import pytest
import sklearn.linear_model  # loaded before the thread limit below, so that its BLAS is limited too

from mtssl.eval.classifiers import (
    Scores,
    knn_probe,
    learn_eval_lasso,
    linear_probe,
    mix,
    row_space,
    standardise,
    topk_accuracy,
)

pytestmark = pytest.mark.usefixtures("one_thread")


def projection_task(n: int, dims: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """Gaussian features; the label is the argmax of a fixed random linear projection (a linear signal)."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dims)).astype(np.float32)
    projection = np.random.default_rng(1234).normal(size=(dims, classes))
    return x, (x @ projection).argmax(axis=1).astype(np.int64)


def clustered_task(n: int, dims: int, classes: int, seed: int) -> tuple[np.ndarray, np.ndarray]:
    """One tight Gaussian cluster per class around well-separated random centres."""
    rng = np.random.default_rng(seed)
    centres = np.random.default_rng(99).normal(size=(classes, dims)) * 3
    y = rng.integers(0, classes, n).astype(np.int64)
    return (centres[y] + rng.normal(size=(n, dims))).astype(np.float32), y


def halves(x: np.ndarray, y: np.ndarray, train: int):
    return x[:train], y[:train], x[train:], y[train:]


# ---- recovering a signal, and chance on shuffled labels ----------------------------------------------------


def test_linear_probe_recovers_a_linear_signal():
    x, y = projection_task(500, 16, 3, seed=0)
    scores = linear_probe(*halves(x, y, 300), classes=3)
    assert scores.top1 > 0.85
    assert scores.top5 is None  # 3 classes: no top-5
    assert scores.detail in {float(c) for c in np.logspace(-4, 2, 7)}  # the C chosen by cross-validation


def test_knn_probe_recovers_clusters():
    x, y = clustered_task(300, 16, 4, seed=0)
    scores = knn_probe(*halves(x, y, 200), classes=4)
    assert scores.top1 > 0.95
    assert scores.detail == 20.0


@pytest.mark.parametrize("probe", ["linear", "knn"])
def test_shuffled_labels_give_chance(probe):
    """Labels independent of the features: the mean accuracy over seeds is within 0.1 of 1/classes."""
    classes, accs = 3, []
    for seed in range(3):
        rng = np.random.default_rng(seed + 10)
        x, y = clustered_task(360, 16, classes, seed=seed)
        y = rng.permutation(y)  # breaks the link between features and labels
        split = halves(x, y, 180)
        scores = linear_probe(*split, classes=classes, seed=seed) if probe == "linear" else knn_probe(*split, classes)
        accs.append(scores.top1)
    assert abs(np.mean(accs) - 1 / classes) < 0.1, accs


def test_the_same_inputs_give_the_same_scores():
    x, y = projection_task(120, 8, 3, seed=5)
    assert linear_probe(*halves(x, y, 60), classes=3) == linear_probe(*halves(x, y, 60), classes=3)
    assert knn_probe(*halves(x, y, 60), classes=3) == knn_probe(*halves(x, y, 60), classes=3)


# ---- row space: an exact speed-up ------------------------------------------------------------------------


def fit_decision(train_x, train_y, val_x, c: float) -> np.ndarray:
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")
        model = sklearn.linear_model.LogisticRegression(C=c, tol=1e-12, max_iter=20000)
        return model.fit(train_x, train_y).decision_function(val_x)


@pytest.mark.parametrize("c", [0.01, 1.0])
def test_row_space_leaves_the_logistic_regression_scores_unchanged(c):
    x, y = projection_task(70, 120, 3, seed=2)  # D = 120 > n = 40 train samples
    train_x, val_x = standardise(x[:40].astype(np.float64), x[40:].astype(np.float64))
    small_train, small_val = row_space(train_x, val_x)
    assert small_train.shape == (40, 39)  # standardised: centred, so rank n - 1
    assert small_val.shape == (30, 39)
    full = fit_decision(train_x, y[:40], val_x, c)
    projected = fit_decision(small_train, y[:40], small_val, c)
    assert np.abs(full).max() > 0.1  # the model says something
    np.testing.assert_allclose(projected, full, atol=1e-5 * np.abs(full).max())
    assert (projected.argmax(1) == full.argmax(1)).all()


def test_row_space_keeps_tall_data_as_it_is():
    x = np.random.default_rng(0).normal(size=(50, 10))
    train, val = x[:30], x[30:]  # D = 10 <= n = 30: nothing to gain
    assert row_space(train, val) == (train, val)


def test_constant_features_wider_than_the_train_split_do_not_crash():
    """A dead source (or an evaluation lasso row pruned to nothing) is all zeros: the probe scores it at the
    majority class rather than failing the whole run."""
    y = np.array([0] * 8 + [1] * 4, dtype=np.int64)
    zeros = np.zeros((12, 64), np.float32)
    scores = linear_probe(zeros, y, zeros, y, classes=2)
    assert scores.top1 == pytest.approx(8 / 12)
    assert knn_probe(zeros, y, zeros, y, classes=2).top1 in (pytest.approx(8 / 12), pytest.approx(4 / 12))


# ---- top-5 ------------------------------------------------------------------------------------------------


def test_top5_only_with_more_than_5_classes():
    for classes in (2, 5):
        x, y = projection_task(120, 8, classes, seed=1)
        assert linear_probe(*halves(x, y, 80), classes=classes).top5 is None
        assert knn_probe(*halves(x, y, 80), classes=classes).top5 is None
    x, y = projection_task(240, 8, 7, seed=1)
    linear, knn = linear_probe(*halves(x, y, 160), classes=7), knn_probe(*halves(x, y, 160), classes=7)
    for scores in (linear, knn):
        assert scores.top5 is not None
        assert scores.top1 <= scores.top5 <= 1.0


def test_topk_accuracy_counts_the_label_among_the_five_best():
    scores = np.tile(np.arange(7, dtype=float), (3, 1))  # class 6 best, then 5, 4, 3, 2
    labels = np.array([6, 2, 1])
    assert topk_accuracy(scores, labels, 7) == Scores(1 / 3, 2 / 3)
    assert topk_accuracy(scores[:, :5], np.array([4, 0, 1]), 5) == Scores(1 / 3, None)


def test_linear_probe_scores_classes_missing_from_the_train_split_as_never_predicted():
    x, y = clustered_task(200, 8, 3, seed=4)
    train = y[:100] != 2  # class 2 never seen in training
    scores = linear_probe(x[:100][train], y[:100][train], x[100:], y[100:], classes=3)
    seen = (y[100:] != 2).mean()
    assert scores.top1 <= seen + 1e-9
    assert scores.top1 > 0.9 * seen


# ---- the evaluation lasso row -----------------------------------------------------------------------------


def unit_candidates(units: int, n: int, dims: int, signal_unit: int | None, seed: int = 0):
    """(units, n, dims) non-negative candidates, pure noise except ``signal_unit``, which carries the labels."""
    rng = np.random.default_rng(seed)
    labels = rng.integers(0, 3, n).astype(np.int64)
    candidates = np.abs(rng.normal(size=(units, n, dims))).astype(np.float32)
    if signal_unit is not None:
        candidates[signal_unit, :, :3] += 3.0 * np.eye(3, dtype=np.float32)[labels]
    return candidates, labels


def test_eval_lasso_goes_sparse_under_a_strong_penalty():
    candidates, labels = unit_candidates(6, 90, 12, signal_unit=2)
    strong = learn_eval_lasso(candidates, labels, 3, l1=20.0, steps=150)
    assert strong.shape == (6,)
    assert (strong == 0).sum() >= 5  # exact zeros, not small values
    free = learn_eval_lasso(candidates, labels, 3, l1=0.0, steps=150)
    assert (free != 0).sum() >= 3


def test_eval_lasso_puts_its_largest_weight_on_the_unit_with_the_signal():
    for signal_unit in (0, 2):  # not the last unit, where the row starts
        candidates, labels = unit_candidates(4, 120, 12, signal_unit=signal_unit, seed=signal_unit)
        alpha = learn_eval_lasso(candidates, labels, 3, l1=0.5, steps=300)
        assert int(np.abs(alpha).argmax()) == signal_unit, alpha
        others = np.delete(np.abs(alpha), signal_unit)
        assert others.max() < np.abs(alpha[signal_unit])


def test_eval_lasso_is_seeded():
    candidates, labels = unit_candidates(3, 40, 6, signal_unit=1)
    first = learn_eval_lasso(candidates, labels, 3, steps=50, seed=3)
    np.testing.assert_array_equal(first, learn_eval_lasso(candidates, labels, 3, steps=50, seed=3))


def test_mix_is_the_alpha_weighted_sum_of_the_candidates():
    candidates = np.random.default_rng(0).normal(size=(3, 5, 4)).astype(np.float32)
    alpha = np.array([0.5, 0.0, -2.0])
    mixed = mix(candidates, alpha)
    assert mixed.shape == (5, 4) and mixed.dtype == np.float32
    np.testing.assert_allclose(mixed, 0.5 * candidates[0] - 2.0 * candidates[2], rtol=1e-6)
