"""Bad input raises one clear MetricInputError (a ValueError) that names the problem."""

import numpy as np
import pytest

from studylib import metrics as m
from studylib.metrics import MetricInputError
from studylib.metrics.validation import as_binary, as_labels, as_probabilities, check_n_bins

GOOD_CONF = np.array([0.9, 0.6, 0.8])
GOOD_CORRECT = np.array([True, False, True])
GOOD_PROBS = np.array([[0.9, 0.1], [0.4, 0.6], [0.2, 0.8]])
GOOD_LABELS = np.array([0, 0, 1])

CONFIDENCE_METRICS = {
    "ece": lambda c, a: m.expected_calibration_error(c, a),
    "mce": lambda c, a: m.maximum_calibration_error(c, a),
    "reliability": lambda c, a: m.reliability_bins(c, a),
    "overconfidence": lambda c, a: m.overconfidence(c, a),
    "brier_top_label": lambda c, a: m.brier_top_label(c, a),
    "brier_binary": lambda c, a: m.brier_binary(c, a),
    "aurc": lambda c, a: m.aurc(c, a),
    "e_aurc": lambda c, a: m.excess_aurc(c, a),
    "selective_accuracy": lambda c, a: m.selective_accuracy(c, a, 0.8),
}
PROBABILITY_METRICS = {
    "top_label": m.top_label,
    "brier_multiclass": m.brier_multiclass,
    "nll": m.negative_log_likelihood,
}
LOGIT_METRICS = {
    "nll_from_logits": m.nll_from_logits,
    "fit_temperature": m.fit_temperature,
    "cv_temperature": lambda z, y: m.cross_validated_temperature_scaling(z, y, n_folds=2, groups=None),
}


def raises_one_clear_error(call, *fragments):
    with pytest.raises(MetricInputError) as info:
        call()
    message = str(info.value)
    for fragment in fragments:
        assert fragment in message, message
    assert isinstance(info.value, ValueError)
    assert info.value.__cause__ is None and (info.value.__suppress_context__ or info.value.__context__ is None)
    return message


# ---------------------------------------------------------------- the five cases


@pytest.mark.parametrize("name", sorted(CONFIDENCE_METRICS))
def test_empty_arrays(name):
    raises_one_clear_error(lambda: CONFIDENCE_METRICS[name]([], []), "empty")


@pytest.mark.parametrize("name", sorted(PROBABILITY_METRICS) + sorted(LOGIT_METRICS))
def test_empty_tables(name):
    call = {**PROBABILITY_METRICS, **LOGIT_METRICS}[name]
    raises_one_clear_error(lambda: call(np.empty((0, 2)), np.empty(0, dtype=int)), "empty")


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
@pytest.mark.parametrize("name", sorted(CONFIDENCE_METRICS))
def test_nan_and_inf_confidence(name, bad):
    raises_one_clear_error(lambda: CONFIDENCE_METRICS[name]([0.9, bad, 0.8], GOOD_CORRECT), "NaN/inf", "index (1,)")


@pytest.mark.parametrize("bad", [np.nan, np.inf])
@pytest.mark.parametrize("name", sorted(PROBABILITY_METRICS))
def test_nan_and_inf_probabilities(name, bad):
    probs = GOOD_PROBS.copy()
    probs[2, 1] = bad
    raises_one_clear_error(lambda: PROBABILITY_METRICS[name](probs, GOOD_LABELS), "NaN/inf", "(2, 1)")


@pytest.mark.parametrize("name", sorted(LOGIT_METRICS))
def test_nan_logits(name):
    logits = np.zeros((4, 2))
    logits[0, 0] = np.nan
    raises_one_clear_error(lambda: LOGIT_METRICS[name](logits, [0, 1, 0, 1]), "NaN/inf")


@pytest.mark.parametrize("bad", [-0.1, 1.2, 95.0])
@pytest.mark.parametrize("name", sorted(set(CONFIDENCE_METRICS) - {"aurc", "e_aurc", "selective_accuracy"}))
def test_confidence_outside_unit_interval(name, bad):
    raises_one_clear_error(lambda: CONFIDENCE_METRICS[name]([0.9, bad, 0.8], GOOD_CORRECT), "outside [0, 1]")


@pytest.mark.parametrize("name", sorted(PROBABILITY_METRICS))
def test_probabilities_outside_unit_interval(name):
    raises_one_clear_error(lambda: PROBABILITY_METRICS[name]([[1.5, -0.5], [0.5, 0.5]], [0, 1]), "outside [0, 1]")


@pytest.mark.parametrize("name", sorted(CONFIDENCE_METRICS))
def test_mismatched_lengths(name):
    raises_one_clear_error(lambda: CONFIDENCE_METRICS[name](GOOD_CONF, GOOD_CORRECT[:2]), "mismatched lengths", "=3", "=2")


@pytest.mark.parametrize("name", sorted(PROBABILITY_METRICS) + sorted(LOGIT_METRICS))
def test_mismatched_table_lengths(name):
    call = {**PROBABILITY_METRICS, **LOGIT_METRICS}[name]
    raises_one_clear_error(lambda: call(GOOD_PROBS, GOOD_LABELS[:2]), "mismatched lengths")


@pytest.mark.parametrize("n_bins", [0, -3, 2.5, "15", None, True])
@pytest.mark.parametrize(
    "call", [m.expected_calibration_error, m.maximum_calibration_error, m.reliability_bins], ids=["ece", "mce", "bins"]
)
def test_n_bins_below_one_or_not_an_integer(call, n_bins):
    raises_one_clear_error(lambda: call(GOOD_CONF, GOOD_CORRECT, n_bins=n_bins), "n_bins", "integer >= 1")


# ---------------------------------------------------------------- further checks


def test_unknown_edge_convention_and_norm():
    raises_one_clear_error(lambda: m.expected_calibration_error(GOOD_CONF, GOOD_CORRECT, edges="both"), "edges")
    raises_one_clear_error(lambda: m.calibration_error(GOOD_CONF, GOOD_CORRECT, norm="l3"), "norm")


def test_rows_must_sum_to_one():
    message = raises_one_clear_error(lambda: as_probabilities([[0.5, 0.4], [0.5, 0.5]]), "row 0", "sums to")
    assert "renormalise" in message
    as_probabilities([[0.5, 0.5 + 1e-9]])


def test_probability_tables_need_two_dimensions_and_two_classes():
    raises_one_clear_error(lambda: as_probabilities([0.5, 0.5]), "2-D")
    raises_one_clear_error(lambda: as_probabilities([[1.0], [1.0]]), "at least 2 classes")


def test_labels_must_be_whole_numbers_in_range():
    raises_one_clear_error(lambda: as_labels([0, 2], 2), "[0, 1]")
    raises_one_clear_error(lambda: as_labels([0, -1], 2), "[0, 1]")
    raises_one_clear_error(lambda: as_labels([0.5, 1], 2), "whole numbers")
    assert as_labels([0.0, 1.0], 2).tolist() == [0, 1]


def test_correctness_must_be_boolean_or_zero_one():
    raises_one_clear_error(lambda: as_binary([0, 2], "correct"), "0/1")
    raises_one_clear_error(lambda: as_binary(["yes"], "correct"), "numbers")
    assert as_binary([0, 1.0], "correct").tolist() == [False, True]


def test_strings_and_ragged_input_are_rejected():
    raises_one_clear_error(lambda: m.expected_calibration_error(["a", "b"], [1, 0]), "numbers")
    raises_one_clear_error(lambda: m.brier_multiclass([[0.5, 0.5], [1.0]], [0, 1]), "probs")


def test_two_dimensional_confidence_is_rejected():
    raises_one_clear_error(lambda: m.expected_calibration_error(GOOD_PROBS, GOOD_CORRECT), "1-D", "(3, 2)")


def test_check_n_bins_returns_a_plain_int():
    assert check_n_bins(np.int64(15)) == 15 and type(check_n_bins(np.int64(15))) is int
