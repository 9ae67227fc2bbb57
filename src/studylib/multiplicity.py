"""Multiple testing for the claims' families: one-sided bootstrap p-values and Holm's step-down.

A family of m one-sided tests (e.g. "at every budget", "for some gap power p") has its
conclusions that rest on one part corrected by Holm's procedure at the one-sided level of a
two-sided 95 % CI (:data:`ONE_SIDED_LEVEL`); :mod:`studylib.claims` applies it to its composites.
"""

from __future__ import annotations

import math
from typing import Any, Sequence

import numpy as np

ONE_SIDED_LEVEL = 0.025  # each side of a two-sided 95 % CI


def tail_p_values(estimate: float, distribution: Any, direction: str, threshold: float = 0.0) -> tuple[float, float]:
    """One-sided p-values of "estimate ``direction`` threshold", ``(p_holds, p_fails)``, from the
    normal tail of the bootstrap: z = (estimate − threshold) / SE, SE the standard deviation of the
    resampled ``distribution``; for ``less`` p_holds = Φ(z) and p_fails = Φ(−z) (``greater``: swapped).
    The percentile tail cannot resolve the p < 0.025 / m that a family of m parts needs with
    B = 1,000 resamples, the normal tail can.  NaN without a distribution.

    A zero SE (every resample gives the same value, e.g. two configurations with identical
    answers) carries no evidence either way: both p-values are 1, so nothing is rejected (a
    normal tail would give z = ±inf, and a tie at the threshold would "hold" at p = 0)."""
    values = np.asarray(distribution if distribution is not None else [], dtype=float)
    values = values[np.isfinite(values)]
    if len(values) < 2 or math.isnan(estimate):
        return math.nan, math.nan
    se = float(np.std(values, ddof=1))
    if not se > 0:
        return 1.0, 1.0
    z = (float(estimate) - threshold) / se
    below = 0.5 * math.erfc(-z / math.sqrt(2))  # Φ(z)
    less = direction in ("less", "<")
    return (below, 1.0 - below) if less else (1.0 - below, below)


def holm_rejections(p_values: Sequence[float], level: float = ONE_SIDED_LEVEL) -> np.ndarray:
    """Holm's step-down procedure: which of the m ``p_values`` are rejected at family-wise
    ``level`` (sorted ascending, p_(j) is rejected while p_(j) < level / (m − j + 1))."""
    p = np.asarray(p_values, dtype=float)
    rejected = np.zeros(len(p), dtype=bool)
    for rank, index in enumerate(np.argsort(p, kind="stable")):
        if not p[index] < level / (len(p) - rank):
            break
        rejected[index] = True
    return rejected


__all__ = ["ONE_SIDED_LEVEL", "holm_rejections", "tail_p_values"]
