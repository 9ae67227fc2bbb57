"""Percentile bootstrap: reproducibility, coverage of a known case, pairing, clusters."""

import numpy as np
import pytest

from studylib.metrics import (bootstrap_ci, expected_calibration_error, paired_bootstrap_ci, resample_counts,
                              resample_indices)


def mean(x):
    return float(np.mean(x))


def test_defaults_are_1000_seeded_resamples_at_95_percent():
    x = np.random.default_rng(0).normal(size=50)
    first = bootstrap_ci(mean, x, groups=None)
    assert first.n_resamples == 1000
    assert first.confidence_level == 0.95
    again = bootstrap_ci(mean, x, groups=None)
    assert (first.low, first.high) == (again.low, again.high)
    assert bootstrap_ci(mean, x, seed=1, groups=None).low != first.low
    assert first.estimate == pytest.approx(x.mean())


def test_interval_is_the_percentile_of_the_resampled_metric():
    x = np.arange(20.0)
    result = bootstrap_ci(mean, x, n_resamples=200, seed=3, groups=None)
    expected = [mean(x[i]) for i in resample_indices(20, 200, seed=3)]
    np.testing.assert_allclose(result.distribution, expected)
    assert result.low == pytest.approx(np.quantile(expected, 0.025))
    assert result.high == pytest.approx(np.quantile(expected, 0.975))


def test_ci_of_a_mean_matches_normal_theory():
    x = np.random.default_rng(1).normal(0, 1, 2000)
    result = bootstrap_ci(mean, x, groups=None)
    half_width = 1.96 * x.std() / np.sqrt(len(x))
    assert (result.high - result.low) / 2 == pytest.approx(half_width, rel=0.1)
    assert result.low < x.mean() < result.high


def test_metric_of_several_arrays_is_resampled_jointly():
    rng = np.random.default_rng(2)
    confidence = rng.uniform(0.5, 1, 300)
    correct = rng.random(300) < confidence - 0.1
    result = bootstrap_ci(expected_calibration_error, confidence, correct, n_resamples=200, groups=None)
    assert result.estimate == pytest.approx(expected_calibration_error(confidence, correct))
    assert result.low < result.estimate < result.high


def test_paired_difference_of_identical_configurations_is_exactly_zero():
    x = np.random.default_rng(4).random(100)
    result = paired_bootstrap_ci(mean, (x,), (x.copy(),), n_resamples=100, groups=None)
    assert result.low == result.high == result.estimate == 0.0


def test_paired_bootstrap_uses_the_same_indices_for_both_configurations():
    rng = np.random.default_rng(5)
    a = rng.normal(0, 1, 200)
    b = a + 0.1 + rng.normal(0, 0.01, 200)
    paired = paired_bootstrap_ci(mean, (b,), (a,), n_resamples=500, groups=None)
    assert paired.estimate == pytest.approx(np.mean(b - a))
    assert paired.low > 0.09 and paired.high < 0.11
    width_if_unpaired = bootstrap_ci(mean, b, n_resamples=500, seed=1, groups=None).high - bootstrap_ci(mean, b, n_resamples=500, seed=1, groups=None).low
    assert paired.high - paired.low < width_if_unpaired / 10


def test_cluster_bootstrap_draws_whole_groups():
    groups = np.repeat(np.array(["img-a", "img-b", "img-c", "img-d"]), [1, 2, 3, 6])
    for index in resample_indices(len(groups), 50, seed=0, groups=groups):
        drawn = groups[index]
        for g in np.unique(drawn):
            assert np.sum(drawn == g) % np.sum(groups == g) == 0
        assert set(index[drawn == "img-b"]) <= {1, 2}


@pytest.mark.parametrize("grouped", [False, True])
@pytest.mark.parametrize("chunk", [1, 7, None])
def test_resample_counts_are_the_multiplicities_of_resample_indices(grouped, chunk):
    rng = np.random.default_rng(9)
    groups = rng.permutation(np.repeat([f"img{i}" for i in range(30)], rng.integers(1, 6, 30))) if grouped else None
    n = len(groups) if grouped else 50
    blocks = list(resample_counts(n, 40, 4, groups, chunk=chunk))
    assert all(len(b) <= (chunk or 40) for b in blocks)
    expected = np.stack([np.bincount(index, minlength=n) for index in resample_indices(n, 40, 4, groups)])
    assert np.array_equal(np.concatenate(blocks), expected)


def test_cluster_bootstrap_widens_the_interval_for_correlated_questions():
    rng = np.random.default_rng(6)
    image_effect = rng.normal(0, 1, 100)
    groups = np.repeat(np.arange(100), 6)
    x = image_effect[groups] + rng.normal(0, 0.1, 600)
    plain = bootstrap_ci(mean, x, n_resamples=400, groups=None)
    clustered = bootstrap_ci(mean, x, n_resamples=400, groups=groups)
    assert (clustered.high - clustered.low) > 1.8 * (plain.high - plain.low)


def test_paired_inputs_must_cover_the_same_questions():
    with pytest.raises(ValueError, match="same questions"):
        paired_bootstrap_ci(mean, (np.ones(5),), (np.ones(4),), groups=None)


def test_arrays_must_share_length_and_be_nonempty():
    with pytest.raises(ValueError, match="first dimension"):
        bootstrap_ci(lambda a, b: 0.0, np.ones(5), np.ones(4), groups=None)
    with pytest.raises(ValueError, match="empty"):
        bootstrap_ci(mean, np.array([]), groups=None)


def test_non_finite_metric_on_a_resample_is_reported():
    with pytest.raises(ValueError, match="non-finite"):
        bootstrap_ci(lambda x: np.nan, np.ones(5), n_resamples=10, groups=None)


@pytest.mark.parametrize("level", [0.0, 1.0, 1.5])
def test_bad_confidence_level_raises(level):
    with pytest.raises(ValueError, match="confidence_level"):
        bootstrap_ci(mean, np.ones(5), confidence_level=level, groups=None)
