"""Temperature scaling: planted-temperature recovery, optimality, and the K-fold protocol."""

import numpy as np
import pytest

from studylib.metrics import (
    cross_validated_temperature_scaling,
    expected_calibration_error,
    fit_temperature,
    fold_assignment,
    nll_from_logits,
    scaled_probabilities,
    top_label,
)


def planted_problem(temperature, n=50_000, n_classes=4, seed=0):
    """Labels drawn from softmax(z); the observed logits are z · T, so the NLL-optimal temperature is T."""
    rng = np.random.default_rng(seed)
    true_logits = rng.normal(0, 2.0, (n, n_classes))
    probs = np.exp(true_logits - true_logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = (probs.cumsum(1) > rng.random((n, 1))).argmax(1)
    return true_logits * temperature, labels


@pytest.mark.parametrize("planted", [0.5, 1.0, 2.5])
def test_fit_recovers_a_planted_temperature_within_2_percent(planted):
    logits, labels = planted_problem(planted)
    assert fit_temperature(logits, labels) == pytest.approx(planted, rel=0.02)


def test_binary_logits_recover_a_planted_temperature():
    logits, labels = planted_problem(1.8, n_classes=2, seed=3)
    assert fit_temperature(logits, labels) == pytest.approx(1.8, rel=0.02)


def test_fitted_temperature_minimises_nll():
    logits, labels = planted_problem(1.7, n=3000, seed=1)
    fitted = fit_temperature(logits, labels)
    best = nll_from_logits(logits, labels, fitted)
    for factor in (0.9, 0.99, 0.999, 1.001, 1.01, 1.1):
        assert best <= nll_from_logits(logits, labels, fitted * factor) + 1e-12
    assert best < nll_from_logits(logits, labels)


def test_scaling_lowers_ece_and_keeps_the_argmax():
    logits, labels = planted_problem(3.0, n=5000, seed=2)
    before = top_label(scaled_probabilities(logits), labels)
    after = top_label(scaled_probabilities(logits, fit_temperature(logits, labels)), labels)
    np.testing.assert_array_equal(before.prediction, after.prediction)
    assert expected_calibration_error(after.confidence, after.correct) < expected_calibration_error(before.confidence, before.correct) / 3


def test_scaled_probabilities_are_a_stable_softmax():
    probs = scaled_probabilities(np.array([[1000.0, 0.0], [0.0, 0.0]]), 2.0)
    np.testing.assert_allclose(probs, [[1.0, 0.0], [0.5, 0.5]], atol=1e-200)
    np.testing.assert_allclose(probs.sum(1), 1.0)


def test_separable_data_warns_at_the_bound():
    logits = np.array([[2.0, 0.0], [0.0, 2.0]] * 10)
    labels = np.array([0, 1] * 10)
    with pytest.warns(RuntimeWarning, match="bound"):
        assert fit_temperature(logits, labels, bounds=(0.1, 10.0)) == pytest.approx(0.1, rel=1e-3)


def test_cross_validation_fits_each_fold_without_its_own_samples():
    logits, labels = planted_problem(2.0, n=2000, seed=4)
    result = cross_validated_temperature_scaling(logits, labels, n_folds=5, seed=0, groups=None)
    assert result.n_folds == 5
    assert sorted(np.bincount(result.fold)) == [400] * 5
    for fold in range(5):
        outside = result.fold != fold
        assert result.temperatures[fold] == pytest.approx(fit_temperature(logits[outside], labels[outside]), rel=1e-6)
        np.testing.assert_allclose(result.probs[~outside], scaled_probabilities(logits[~outside], result.temperatures[fold]))
    np.testing.assert_allclose(result.temperatures, 2.0, rtol=0.1)


def test_cross_validation_is_seeded_and_folds_are_shared_across_configurations():
    logits, labels = planted_problem(1.5, n=500, seed=5)
    first = cross_validated_temperature_scaling(logits, labels, seed=7, groups=None)
    again = cross_validated_temperature_scaling(logits, labels, seed=7, groups=None)
    other_config = cross_validated_temperature_scaling(logits * 0.5, labels, seed=7, groups=None)
    np.testing.assert_array_equal(first.fold, again.fold)
    np.testing.assert_array_equal(first.temperatures, again.temperatures)
    np.testing.assert_array_equal(first.fold, other_config.fold)
    assert not np.array_equal(first.fold, cross_validated_temperature_scaling(logits, labels, seed=8, groups=None).fold)


def test_group_folds_keep_each_image_in_one_fold():
    groups = np.repeat(np.arange(50), 6)
    fold = fold_assignment(len(groups), 5, seed=0, groups=groups)
    for g in range(50):
        assert len(set(fold[groups == g])) == 1
    assert sorted(np.bincount(fold)) == [60] * 5


@pytest.mark.parametrize("n_folds", [1, 0, 2.5, True])
def test_bad_fold_count_raises(n_folds):
    with pytest.raises(ValueError, match="n_folds"):
        fold_assignment(10, n_folds)


def test_more_folds_than_samples_raises():
    with pytest.raises(ValueError, match="n_folds"):
        cross_validated_temperature_scaling(np.zeros((3, 2)), [0, 1, 0], n_folds=5, groups=None)


@pytest.mark.parametrize("temperature", [0.0, -1.0, float("nan"), float("inf")])
def test_bad_temperature_raises(temperature):
    with pytest.raises(ValueError, match="temperature"):
        scaled_probabilities(np.zeros((2, 2)), temperature)
