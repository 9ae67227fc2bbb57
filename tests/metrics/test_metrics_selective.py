"""Risk–coverage, AURC, E-AURC and selective accuracy, including the tie policy."""

import itertools

import numpy as np
import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from studylib.metrics import aurc, excess_aurc, optimal_aurc, risk_coverage_curve, selective_accuracy


def stable_sort_aurc(confidence, correct):
    """Reference restated from Geifman et al. / daintlab: stable descending sort, one rectangle per sample."""
    order = sorted(range(len(confidence)), key=lambda i: -confidence[i])
    errors, area = 0, 0.0
    for k, i in enumerate(order, start=1):
        errors += not correct[i]
        area += errors / k
    return area / len(confidence)


def continuous_optimal(error_rate):
    return error_rate + (1 - error_rate) * np.log(1 - error_rate)


def test_aurc_matches_reference_without_ties():
    rng = np.random.default_rng(0)
    for _ in range(200):
        n = int(rng.integers(1, 60))
        confidence = rng.random(n)
        correct = rng.random(n) < confidence
        assert aurc(confidence, correct) == pytest.approx(stable_sort_aurc(confidence, correct), abs=1e-12)


def test_tied_aurc_is_the_average_over_all_tie_orders():
    confidence = np.array([0.9, 0.9, 0.9, 0.7, 0.7, 0.5])
    correct = np.array([1, 0, 1, 0, 1, 1], dtype=bool)
    blocks = [[0, 1, 2], [3, 4], [5]]
    values = []
    for orders in itertools.product(*(itertools.permutations(b) for b in blocks)):
        order = [i for block in orders for i in block]
        values.append(stable_sort_aurc(confidence[order], correct[order]))
    assert aurc(confidence, correct) == pytest.approx(np.mean(values), abs=1e-12)
    assert min(values) < aurc(confidence, correct) < max(values)


@settings(max_examples=60, deadline=None)
@given(
    st.lists(st.tuples(st.sampled_from([0.2, 0.5, 0.9, 1.0]), st.booleans()), min_size=1, max_size=40),
    st.randoms(use_true_random=False),
)
def test_input_order_does_not_change_any_selective_metric(pairs, random):
    confidence = np.array([c for c, _ in pairs])
    correct = np.array([a for _, a in pairs])
    permutation = list(range(len(pairs)))
    random.shuffle(permutation)
    shuffled = (confidence[permutation], correct[permutation])
    assert aurc(*shuffled) == pytest.approx(aurc(confidence, correct), abs=1e-12)
    assert excess_aurc(*shuffled) == pytest.approx(excess_aurc(confidence, correct), abs=1e-12)
    for coverage in (0.1, 0.5, 0.8, 1.0):
        assert selective_accuracy(*shuffled, coverage) == pytest.approx(selective_accuracy(confidence, correct, coverage), abs=1e-12)
    np.testing.assert_allclose(risk_coverage_curve(*shuffled).risk, risk_coverage_curve(confidence, correct).risk, atol=1e-12)


def test_stable_sort_reference_depends_on_order_with_ties():
    confidence = np.ones(4)
    assert stable_sort_aurc(confidence, [0, 0, 1, 1]) != stable_sort_aurc(confidence, [1, 1, 0, 0])
    assert aurc(confidence, [0, 0, 1, 1]) == aurc(confidence, [1, 1, 0, 0]) == pytest.approx(0.5)


def test_perfect_ranking_has_zero_excess_aurc():
    confidence = np.linspace(1, 0, 10)
    correct = np.array([1] * 7 + [0] * 3, dtype=bool)
    assert excess_aurc(confidence, correct) == pytest.approx(0.0, abs=1e-15)
    assert aurc(confidence, correct) == pytest.approx(optimal_aurc(10, 3))
    assert optimal_aurc(10, 3) == pytest.approx((1 / 8 + 2 / 9 + 3 / 10) / 10)


def test_excess_aurc_is_nonnegative_and_continuous_option_matches_daintlab():
    rng = np.random.default_rng(1)
    for _ in range(100):
        n = int(rng.integers(2, 80))
        confidence = rng.random(n)
        correct = rng.random(n) < 0.7
        correct[0] = True
        assert excess_aurc(confidence, correct) >= -1e-15
        error_rate = 1 - correct.mean()
        expected = stable_sort_aurc(confidence, correct) - continuous_optimal(error_rate)
        assert excess_aurc(confidence, correct, optimal="continuous") == pytest.approx(expected, abs=1e-12)


def test_optimal_aurc_edge_cases():
    assert optimal_aurc(5, 0) == 0.0
    assert optimal_aurc(5, 5) == pytest.approx(1.0)
    assert optimal_aurc(5, 5, "continuous") == pytest.approx(1.0)
    assert optimal_aurc(5, 0, "continuous") == 0.0


def test_risk_coverage_curve_values():
    curve = risk_coverage_curve([0.9, 0.8, 0.7, 0.6], [1, 0, 1, 0])
    np.testing.assert_allclose(curve.coverage, [0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(curve.risk, [0.0, 0.5, 1 / 3, 0.5])
    np.testing.assert_allclose(curve.threshold, [0.9, 0.8, 0.7, 0.6])


def test_selective_accuracy_at_coverage():
    confidence = np.arange(10, 0, -1) / 10
    correct = np.array([1, 1, 1, 1, 1, 1, 1, 0, 1, 0], dtype=bool)
    assert selective_accuracy(confidence, correct, 1.0) == pytest.approx(0.8)
    assert selective_accuracy(confidence, correct, 0.7) == pytest.approx(1.0)
    assert selective_accuracy(confidence, correct, 0.8) == pytest.approx(7 / 8)
    assert selective_accuracy(confidence, correct, 0.75) == pytest.approx(7 / 8)
    assert selective_accuracy(confidence, correct, 0.01) == 1.0


def test_selective_accuracy_splits_a_tie_block_by_its_expected_share():
    assert selective_accuracy([1.0, 1.0, 1.0, 1.0], [1, 1, 0, 0], 0.5) == pytest.approx(0.5)
    assert selective_accuracy([1.0, 1.0, 0.5, 0.5], [1, 0, 1, 1], 0.75) == pytest.approx((1 + 1) / 3)


def test_confidence_scores_need_not_be_probabilities():
    assert aurc([3.0, -1.0, 10.0], [1, 0, 1]) == pytest.approx(stable_sort_aurc([3.0, -1.0, 10.0], [1, 0, 1]))


@pytest.mark.parametrize("coverage", [0, -0.1, 1.5, float("nan")])
def test_bad_coverage_raises(coverage):
    with pytest.raises(ValueError, match="coverage"):
        selective_accuracy([0.5, 0.6], [1, 0], coverage)
