"""The other estimators of the calibration error against the packages that define them: Kumar et
al.'s debiased ECE against ``uncertainty-calibration`` (module ``calibration``), smooth ECE and its
weighted evaluation on resamples against ``relplot.smECE``."""

from __future__ import annotations

import numpy as np
import pytest

from studylib.metrics import (WeightedSmoothECE, debiased_ece, expected_calibration_error, resample_counts,
                              smooth_ece)

relplot = pytest.importorskip("relplot")
kumar = pytest.importorskip("calibration.utils")


def _sample(rng, n: int):
    confidence = rng.uniform(0.0, 1.0, n)
    correct = rng.random(n) < confidence ** rng.uniform(0.5, 2.0)
    return confidence, correct


def _package_debiased_ece(confidence, correct, n_bins=15, draws=20_000) -> float:
    """``calibration.get_ece(..., debias=True)``'s computation (15 equal-width bins, normal label
    draws), with more draws than its 1,000 so that the comparison is not lost in Monte-Carlo noise."""
    data = list(zip(confidence, correct.astype(float)))
    binned = kumar.bin(data, kumar.get_equal_prob_bins(confidence, n_bins))
    np.random.seed(0)
    return kumar.normal_debiased_ce(binned, power=1, resamples=draws)


@pytest.mark.parametrize("case", range(8))
def test_debiased_ece_matches_the_package_on_random_cases(case):
    rng = np.random.default_rng(case)
    confidence, correct = _sample(rng, int(rng.integers(150, 400)))
    ours = debiased_ece(confidence, correct)
    # the package's default call (1,000 draws) agrees within its Monte-Carlo noise, 20,000 draws closer
    assert ours == pytest.approx(kumar.get_ece(confidence, correct.astype(int), debias=True), abs=1e-3)
    package = _package_debiased_ece(confidence, correct)
    assert ours == pytest.approx(package, abs=3e-4)
    # the correction is not negligible at these sizes: the plug-in ECE would fail the comparison
    assert abs(expected_calibration_error(confidence, correct) - package) > 3e-3


def test_debiased_ece_keeps_bins_the_package_refuses():
    """A bin with one question (which the package refuses) adds its plug-in gap: s = 0."""
    confidence = np.array([0.95, 0.91, 0.93, 0.5, 0.52, 0.1])
    correct = np.array([True, True, False, True, False, False])
    with pytest.raises(ValueError, match="at least 2 points"):
        kumar.get_ece(confidence, correct.astype(int), debias=True)
    assert np.isfinite(debiased_ece(confidence, correct))


@pytest.mark.parametrize("case", range(6))
def test_smooth_ece_is_relplots(case):
    rng = np.random.default_rng(case)
    confidence, correct = _sample(rng, 500)
    assert smooth_ece(confidence, correct) == relplot.smECE(confidence, correct.astype(float))


@pytest.mark.parametrize("n, clustered", [(300, False), (2000, True), (40, False)])
def test_weighted_smooth_ece_equals_relplot_on_the_expanded_resamples(n, clustered):
    rng = np.random.default_rng(n)
    confidence = np.clip(rng.beta(6, 1.5, n), 0.5, 1.0)
    correct = rng.random(n) < confidence * 0.95
    groups = np.arange(n) // 4 if clustered else None
    counts = next(resample_counts(n, 30, 3, groups))
    values = WeightedSmoothECE(confidence, correct).resampled(counts)
    for r, row in enumerate(counts):
        expected = relplot.smECE(np.repeat(confidence, row), np.repeat(correct, row).astype(float))
        assert values[r] == pytest.approx(expected, abs=1e-12), r
    ones = WeightedSmoothECE(confidence, correct).resampled(np.ones((1, n)))
    assert ones[0] == pytest.approx(smooth_ece(confidence, correct), abs=1e-12)
