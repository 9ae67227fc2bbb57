"""Calibration metrics: known values, conventions, and agreement with torchmetrics and netcal.

torchmetrics >= 1.0 bins left-closed ([lo, hi)) with an extra bucket for c = 1; netcal bins
left-closed with the last bin closed.  Our ``edges="left"`` matches both when no confidence
is exactly 1.  Our default ``edges="right"`` ((lo, hi], Guo et al.'s code) is checked against
the same libraries through the mirror identity: c ∈ (lo, hi] ⟺ 1 − c ∈ [1 − hi, 1 − lo), and
|acc − conf| is unchanged by (c, a) → (1 − c, 1 − a), so
ECE_right(c, a) = ECE_left(1 − c, 1 − a).
"""

import numpy as np
import pytest

from studylib.metrics import (
    bin_boundaries,
    bin_index,
    brier_binary,
    brier_multiclass,
    brier_top_label,
    calibration_error,
    expected_calibration_error,
    maximum_calibration_error,
    mean_confidence,
    negative_log_likelihood,
    nll_from_logits,
    overconfidence,
    reliability_bins,
    top_label,
)

torch = pytest.importorskip("torch")
tm = pytest.importorskip("torchmetrics.functional.classification")
netcal_metrics = pytest.importorskip("netcal.metrics")
torch.set_num_threads(1)  # tiny tensors: thread start-up dominates on a shared 2-core machine

N_CASES = 1000
TOL = 1e-9
INTERIOR = (1e-9, 1 - 1e-9)


def random_confidence_case(rng):
    """A small random (confidence, correct, n_bins) problem with no confidence at exactly 0 or 1."""
    n = int(rng.integers(1, 150))
    shape = rng.integers(3)
    if shape == 0:
        confidence = rng.uniform(0, 1, n)
    elif shape == 1:
        confidence = rng.beta(6, 1, n)
    else:
        confidence = 0.5 + 0.5 * rng.random(n)
    confidence = np.clip(confidence, *INTERIOR)
    correct = rng.random(n) < np.clip(confidence + rng.normal(0, 0.15), 0, 1)
    return confidence, correct, int(rng.integers(1, 31))


def random_multiclass_case(rng):
    """Random (probs, labels, n_bins) with C >= 3 and >= 3 distinct labels (netcal treats <= 2 as binary)."""
    n = int(rng.integers(10, 150))
    n_classes = int(rng.integers(3, 7))
    logits = rng.normal(0, rng.uniform(0.5, 4), (n, n_classes))
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    labels = rng.integers(0, n_classes, n)
    labels[:3] = [0, 1, 2]
    return probs, labels, int(rng.integers(1, 31))


def torchmetrics_binary(confidence, correct, n_bins, norm):
    preds = torch.from_numpy(np.asarray(confidence, dtype=np.float64))
    target = torch.from_numpy(np.asarray(correct, dtype=np.int64))
    return tm.binary_calibration_error(preds, target, n_bins=n_bins, norm=norm).item()


def netcal_binary(metric, confidence, correct, n_bins):
    return metric(bins=n_bins).measure(confidence, np.asarray(correct, dtype=np.float64))


# ---------------------------------------------------------------- agreement with libraries


@pytest.mark.parametrize("norm", ["l1", "max", "l2"])
def test_left_edges_agree_with_torchmetrics_binary_on_1000_cases(norm):
    rng = np.random.default_rng(1)
    for _ in range(N_CASES):
        confidence, correct, n_bins = random_confidence_case(rng)
        ours = calibration_error(confidence, correct, n_bins, edges="left", norm=norm)
        assert ours == pytest.approx(torchmetrics_binary(confidence, correct, n_bins, norm), abs=TOL)


@pytest.mark.parametrize("norm", ["l1", "max"])
def test_right_edges_agree_with_torchmetrics_through_the_mirror_identity(norm):
    rng = np.random.default_rng(2)
    for _ in range(N_CASES):
        confidence, correct, n_bins = random_confidence_case(rng)
        ours = calibration_error(confidence, correct, n_bins, edges="right", norm=norm)
        mirrored = torchmetrics_binary(1.0 - confidence, ~correct, n_bins, norm)
        assert ours == pytest.approx(mirrored, abs=TOL)


def test_left_edges_agree_with_netcal_ece_and_mce_on_1000_cases():
    rng = np.random.default_rng(3)
    for _ in range(N_CASES):
        confidence, correct, n_bins = random_confidence_case(rng)
        assert expected_calibration_error(confidence, correct, n_bins, "left") == pytest.approx(
            netcal_binary(netcal_metrics.ECE, confidence, correct, n_bins), abs=TOL
        )
        assert maximum_calibration_error(confidence, correct, n_bins, "left") == pytest.approx(
            netcal_binary(netcal_metrics.MCE, confidence, correct, n_bins), abs=TOL
        )


def test_right_edges_agree_with_netcal_through_the_mirror_identity():
    rng = np.random.default_rng(4)
    for _ in range(N_CASES):
        confidence, correct, n_bins = random_confidence_case(rng)
        assert expected_calibration_error(confidence, correct, n_bins, "right") == pytest.approx(
            netcal_binary(netcal_metrics.ECE, 1.0 - confidence, ~correct, n_bins), abs=TOL
        )


def test_multiclass_top_label_ece_agrees_with_netcal_on_1000_cases():
    rng = np.random.default_rng(5)
    for _ in range(N_CASES):
        probs, labels, n_bins = random_multiclass_case(rng)
        top = top_label(probs, labels)
        assert expected_calibration_error(top.confidence, top.correct, n_bins, "left") == pytest.approx(
            netcal_metrics.ECE(bins=n_bins).measure(probs, labels), abs=TOL
        )
        assert maximum_calibration_error(top.confidence, top.correct, n_bins, "left") == pytest.approx(
            netcal_metrics.MCE(bins=n_bins).measure(probs, labels), abs=TOL
        )


def test_multiclass_top_label_ece_agrees_with_torchmetrics_on_1000_cases():
    """``multiclass_calibration_error`` casts confidences to float32 (``.float()``), so it is matched
    to float32 precision; torch's own float64 top-label extraction fed to the binary function
    (the top-label recipe of evaluation.md §5.1) is matched to 1e-9."""
    rng = np.random.default_rng(6)
    for _ in range(N_CASES):
        probs, labels, n_bins = random_multiclass_case(rng)
        top = top_label(probs, labels)
        confidence32 = top.confidence.astype(np.float32).astype(np.float64)
        theirs = tm.multiclass_calibration_error(
            torch.from_numpy(probs),
            torch.from_numpy(labels),
            num_classes=probs.shape[1],
            n_bins=n_bins,
            norm="l1",
            validate_args=False,
        ).item()
        assert expected_calibration_error(confidence32, top.correct, n_bins, "left") == pytest.approx(theirs, abs=1e-6)
        torch_confidence, torch_prediction = torch.from_numpy(probs).max(dim=1)
        top_label_in_float64 = tm.binary_calibration_error(
            torch_confidence, torch_prediction.eq(torch.from_numpy(labels)).long(), n_bins=n_bins
        ).item()
        assert expected_calibration_error(top.confidence, top.correct, n_bins, "left") == pytest.approx(
            top_label_in_float64, abs=TOL
        )


# ---------------------------------------------------------------- edge conventions


def test_edge_conventions_differ_exactly_as_documented():
    """Confidences on the inner boundaries 0.5 and 0.75 of 4 bins, and at exactly 1."""
    confidence = np.array([0.5, 0.5, 0.75, 0.75, 1.0, 1.0, 0.6])
    correct = np.array([1, 0, 1, 1, 1, 0, 1], dtype=bool)

    assert list(bin_index(confidence, 4, "right")) == [1, 1, 2, 2, 3, 3, 2]
    assert list(bin_index(confidence, 4, "left")) == [2, 2, 3, 3, 3, 3, 2]

    right = expected_calibration_error(confidence, correct, 4, "right")
    left = expected_calibration_error(confidence, correct, 4, "left")
    # right: (0.25,0.5]={.5,.5} acc .5 gap 0; (0.5,0.75]={.75,.75,.6} acc 1 gap 0.3; (0.75,1]={1,1} acc .5 gap .5
    assert right == pytest.approx((3 / 7) * (1 - 0.7) + (2 / 7) * 0.5, abs=1e-12)
    # left: [0.5,0.75)={.5,.5,.6} acc 2/3 gap |2/3-.5333|; [0.75,1]={.75,.75,1,1} acc .75 gap .125
    assert left == pytest.approx((3 / 7) * abs(2 / 3 - 1.6 / 3) + (4 / 7) * 0.125, abs=1e-12)
    assert right != pytest.approx(left)

    # netcal uses the "left" convention (last bin closed) ...
    assert left == pytest.approx(netcal_binary(netcal_metrics.ECE, confidence, correct, 4), abs=TOL)
    # ... torchmetrics >= 1.0 too, except that c = 1 gets a bucket of its own:
    torchmetrics_value = torchmetrics_binary(confidence, correct, 4, "l1")
    assert torchmetrics_value != pytest.approx(left)
    separate_ones = (3 / 7) * abs(2 / 3 - 1.6 / 3) + (2 / 7) * 0.25 + (2 / 7) * 0.5
    assert torchmetrics_value == pytest.approx(separate_ones, abs=TOL)
    without_ones = confidence < 1
    assert expected_calibration_error(confidence[without_ones], correct[without_ones], 4, "left") == pytest.approx(
        torchmetrics_binary(confidence[without_ones], correct[without_ones], 4, "l1"), abs=TOL
    )


def test_confidence_zero_joins_the_first_bin_under_both_conventions():
    confidence = np.array([0.0, 0.1, 1.0])
    assert list(bin_index(confidence, 2, "right")) == [0, 0, 1]
    assert list(bin_index(confidence, 2, "left")) == [0, 0, 1]


def test_conventions_agree_off_the_boundaries():
    rng = np.random.default_rng(7)
    confidence, correct, n_bins = random_confidence_case(rng)
    assert expected_calibration_error(confidence, correct, n_bins, "right") == pytest.approx(
        expected_calibration_error(confidence, correct, n_bins, "left"), abs=1e-15
    )


# ---------------------------------------------------------------- known values


@pytest.mark.parametrize("edges", ["right", "left"])
def test_constant_confidence_one_with_80_percent_accuracy_has_ece_0_2(edges):
    correct = np.array([1] * 80 + [0] * 20, dtype=bool)
    assert expected_calibration_error(np.ones(100), correct, edges=edges) == pytest.approx(0.2, abs=1e-12)
    assert maximum_calibration_error(np.ones(100), correct, edges=edges) == pytest.approx(0.2, abs=1e-12)
    assert overconfidence(np.ones(100), correct) == pytest.approx(0.2, abs=1e-12)


def test_perfectly_calibrated_data_has_ece_near_zero():
    rng = np.random.default_rng(8)
    n = 100_000
    confidence = rng.uniform(0.5, 1.0, n)
    correct = rng.random(n) < confidence
    ece = expected_calibration_error(confidence, correct)
    # sampling error: ~8 populated bins of ~12,500 samples, sd of bin accuracy <= 0.0045
    assert ece < 0.01
    miscalibrated = expected_calibration_error(np.clip(confidence + 0.05, 0, 1), correct)
    assert miscalibrated > 0.04


def test_reliability_bins_report_counts_means_and_empty_bins():
    bins = reliability_bins([0.05, 0.15, 0.95, 0.95], [0, 1, 1, 0], n_bins=10)
    assert bins.count.tolist() == [1, 1, 0, 0, 0, 0, 0, 0, 0, 2]
    assert bins.mean_confidence[9] == pytest.approx(0.95)
    assert bins.accuracy[9] == pytest.approx(0.5)
    assert np.isnan(bins.accuracy[2]) and np.isnan(bins.mean_confidence[2])
    assert bins.weight.sum() == pytest.approx(1.0)
    assert bins.boundaries[0] == 0.0 and bins.boundaries[-1] == 1.0 and len(bins.boundaries) == 11
    ece = np.nansum(bins.weight * np.abs(bins.gap))
    assert ece == pytest.approx(expected_calibration_error([0.05, 0.15, 0.95, 0.95], [0, 1, 1, 0], n_bins=10))


def test_default_is_15_right_closed_bins():
    first_inner_boundary = bin_boundaries(15)[1]
    assert bin_index([first_inner_boundary])[0] == 0
    assert bin_index([first_inner_boundary], edges="left")[0] == 1
    assert len(reliability_bins([0.5], [True]).count) == 15
    assert reliability_bins([0.5], [True]).edges == "right"


def test_top_label_extracts_confidence_prediction_and_correctness():
    top = top_label([[0.2, 0.8], [0.6, 0.4], [0.5, 0.5]], [1, 1, 0])
    assert top.confidence.tolist() == [0.8, 0.6, 0.5]
    assert top.prediction.tolist() == [1, 0, 0]
    assert top.correct.tolist() == [True, False, True]


def test_mean_confidence_and_overconfidence():
    assert mean_confidence([0.9, 0.7]) == pytest.approx(0.8)
    assert overconfidence([0.9, 0.7], [1, 0]) == pytest.approx(0.3)
    assert overconfidence([0.6, 0.6], [1, 1]) == pytest.approx(-0.4)


# ---------------------------------------------------------------- Brier and NLL


def test_brier_conventions_and_their_relation():
    probs = np.array([[0.2, 0.8], [0.7, 0.3], [0.5, 0.5]])
    labels = np.array([1, 1, 0])
    multiclass = brier_multiclass(probs, labels)
    binary = brier_binary(probs[:, 1], labels == 1)
    assert binary == pytest.approx(((0.8 - 1) ** 2 + (0.3 - 1) ** 2 + 0.5**2) / 3)
    assert multiclass == pytest.approx(2 * binary)
    top = top_label(probs, labels)
    assert brier_top_label(top.confidence, top.correct) == pytest.approx(((0.8 - 1) ** 2 + 0.7**2 + 0.5**2) / 3)


def test_brier_multiclass_extremes():
    assert brier_multiclass([[1.0, 0.0, 0.0]], [0]) == 0.0
    assert brier_multiclass([[0.0, 1.0, 0.0]], [0]) == 2.0


def test_brier_binary_matches_scikit_learn_when_available():
    sklearn_metrics = pytest.importorskip("sklearn.metrics")
    rng = np.random.default_rng(9)
    p, y = rng.random(200), rng.integers(0, 2, 200)
    assert brier_binary(p, y) == pytest.approx(sklearn_metrics.brier_score_loss(y, p), abs=1e-12)


def test_nll_from_probabilities_matches_logits_and_torch():
    rng = np.random.default_rng(10)
    logits = rng.normal(0, 3, (300, 4))
    labels = rng.integers(0, 4, 300)
    probs = np.exp(logits - logits.max(1, keepdims=True))
    probs /= probs.sum(1, keepdims=True)
    reference = torch.nn.functional.cross_entropy(torch.from_numpy(logits), torch.from_numpy(labels)).item()
    assert nll_from_logits(logits, labels) == pytest.approx(reference, abs=1e-10)
    assert negative_log_likelihood(probs, labels) == pytest.approx(reference, abs=1e-10)


def test_nll_clips_zero_probability():
    assert negative_log_likelihood([[1.0, 0.0]], [1]) == pytest.approx(-np.log(1e-12))
    assert negative_log_likelihood([[1.0, 0.0]], [1], clip=1e-6) == pytest.approx(-np.log(1e-6))
