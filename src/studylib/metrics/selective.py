r"""Selective prediction: risk–coverage curve, AURC, E-AURC, selective accuracy.

Inputs are a confidence score :math:`\kappa_i` per sample (any finite number; usually the
top-label confidence :math:`c_i`) and correctness :math:`a_i`.  Samples are ranked by
decreasing confidence; covering the k most confident gives coverage k/N and selective risk
:math:`r_k = \frac1k\sum_{j\le k}(1 - a_{(j)})` (Geifman et al., ICLR 2019).

Tie policy
----------
Reference code (``daintlab/confidence-aware-learning``) sorts stably, so samples with equal
confidence keep their input order and AURC depends on it; saturated confidences of 1.0 make
such ties common.  Here the curve is the **expectation over all orders of tied samples**:
inside a block of m tied samples holding e correct answers that starts after position
:math:`k_0`, the expected number of correct answers among the first :math:`k_0 + j` is
:math:`A_{k_0} + j\,e/m` (hypergeometric mean), so the cumulative count is interpolated
linearly across each tie block.  The result is exact, deterministic, independent of input
order, and equal to the stable-sort value when there are no ties.
"""

from __future__ import annotations

import math
from dataclasses import dataclass

import numpy as np
from scipy.special import xlogy

from studylib.metrics.validation import (
    MetricInputError,
    as_binary,
    as_float_vector,
    check_choice,
    check_open_unit,
    check_same_length,
)

OPTIMAL_AURC = ("discrete", "continuous")


@dataclass(frozen=True)
class RiskCoverage:
    """Risk–coverage curve at k = 1 … N: ``coverage`` k/N, expected selective ``risk`` r_k, and
    ``threshold``, the confidence of the k-th ranked sample."""

    coverage: np.ndarray
    risk: np.ndarray
    threshold: np.ndarray


def _ranked(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    confidence = as_float_vector(confidence, "confidence")
    correct = as_binary(correct, "correct")
    check_same_length(confidence=confidence, correct=correct)
    order = np.argsort(-confidence, kind="stable")
    return confidence[order], correct[order].astype(np.float64)


def expected_cumulative_correct(confidence, correct) -> tuple[np.ndarray, np.ndarray]:
    """Sorted confidences (descending) and the expected number of correct answers among the
    top k, for k = 1 … N, averaged over the orders of tied confidences (module docstring)."""
    ranked_confidence, ranked_correct = _ranked(confidence, correct)
    n = len(ranked_confidence)
    block_start_flags = np.r_[True, ranked_confidence[1:] != ranked_confidence[:-1]]
    block_starts = np.flatnonzero(block_start_flags)
    block_ends = np.r_[block_starts[1:], n]
    block_of = np.cumsum(block_start_flags) - 1
    cumulative = np.r_[0.0, np.cumsum(ranked_correct)]
    block_correct = cumulative[block_ends] - cumulative[block_starts]
    start = block_starts[block_of]
    size = (block_ends - block_starts)[block_of]
    position_in_block = np.arange(1, n + 1) - start
    expected = cumulative[start] + position_in_block * block_correct[block_of] / size
    return ranked_confidence, expected


def risk_coverage_curve(confidence, correct) -> RiskCoverage:
    r"""Selective risk :math:`r_k = 1 - A_k/k` at every coverage k/N, k = 1 … N.

    :math:`A_k` is the expected number of correct answers among the k most confident samples
    under the tie policy of the module docstring.
    """
    ranked_confidence, expected_correct = expected_cumulative_correct(confidence, correct)
    k = np.arange(1, len(ranked_confidence) + 1, dtype=np.float64)
    return RiskCoverage(coverage=k / len(k), risk=1.0 - expected_correct / k, threshold=ranked_confidence)


def aurc(confidence, correct) -> float:
    r"""Area under the risk–coverage curve, :math:`\mathrm{AURC} = \frac1N\sum_{k=1}^{N} r_k`.

    Rectangle rule with one point per sample, as in Geifman et al. / ``daintlab``; ties are
    averaged over their orders (module docstring).  Lower is better; often reported ×1000.
    """
    return float(np.mean(risk_coverage_curve(confidence, correct).risk))


def optimal_aurc(n_samples: int, n_errors: int, kind: str = "discrete") -> float:
    r"""AURC of a perfect ranking with ``n_errors`` errors among ``n_samples`` (m among N).

    ``"discrete"`` (default) — the exact minimum of the same finite-sample AURC, all errors
    ranked last: :math:`\frac1N\sum_{k=N-m+1}^{N}\frac{k-(N-m)}{k}`.
    ``"continuous"`` — the approximation :math:`\hat r + (1-\hat r)\ln(1-\hat r)` with
    :math:`\hat r = m/N` used by ``daintlab`` (1 when every answer is wrong).
    """
    kind = check_choice(kind, "kind", OPTIMAL_AURC)
    if n_samples < 1 or not 0 <= n_errors <= n_samples:
        raise MetricInputError(
            f"optimal_aurc: need n_samples >= 1 and 0 <= n_errors <= n_samples, got {n_samples}, {n_errors}."
        )
    if kind == "continuous":
        error_rate = n_errors / n_samples
        return float(error_rate + xlogy(1.0 - error_rate, 1.0 - error_rate))
    n_correct = n_samples - n_errors
    k = np.arange(n_correct + 1, n_samples + 1, dtype=np.float64)
    return float(np.sum((k - n_correct) / k) / n_samples)


def excess_aurc(confidence, correct, optimal: str = "discrete") -> float:
    r"""E-AURC = AURC − AURC*, the AURC in excess of a perfect ranking with the same accuracy.

    ``optimal`` picks AURC* (:func:`optimal_aurc`): ``"discrete"`` (default, so E-AURC >= 0
    exactly and = 0 for a perfect ranking) or ``"continuous"`` (``daintlab``'s approximation).
    """
    correct_mask = as_binary(correct, "correct")
    value = aurc(confidence, correct_mask)
    return value - optimal_aurc(len(correct_mask), int(np.sum(~correct_mask)), optimal)


def coverage_count(n_samples: int, coverage: float) -> int:
    r"""Number of samples kept at a coverage: :math:`k = \lceil \mathrm{coverage}\cdot N\rceil` (at least 1).

    The product is rounded to 9 decimals first so that e.g. 0.7 · 10 keeps 7, not 8.
    """
    coverage = check_open_unit(coverage, "coverage")
    return max(1, math.ceil(round(coverage * n_samples, 9)))


def selective_accuracy(confidence, correct, coverage: float) -> float:
    r"""Accuracy on the :math:`k = \lceil cN \rceil` most confident samples, :math:`A_k / k`.

    ``coverage`` c is in (0, 1]; c = 1 gives the plain accuracy.  A tie block cut by the
    coverage boundary contributes its expected share (module docstring); the selective risk at
    c is 1 − this.
    """
    _, expected_correct = expected_cumulative_correct(confidence, correct)
    k = coverage_count(len(expected_correct), coverage)
    return float(expected_correct[k - 1] / k)


def selective_metrics(confidence, correct, coverage: float) -> dict[str, float]:
    """``aurc``, ``e_aurc`` (discrete AURC*) and ``selective_accuracy`` at ``coverage`` from one
    ranking of the samples: the values of :func:`aurc`, :func:`excess_aurc` and
    :func:`selective_accuracy` with one sort instead of three (bootstrap loops)."""
    correct = as_binary(correct, "correct")
    _, expected_correct = expected_cumulative_correct(confidence, correct)
    n = len(expected_correct)
    area = float(np.mean(1.0 - expected_correct / np.arange(1, n + 1, dtype=np.float64)))
    k = coverage_count(n, coverage)
    return {"aurc": area, "e_aurc": area - optimal_aurc(n, int(np.sum(~correct))),
            "selective_accuracy": float(expected_correct[k - 1] / k)}
