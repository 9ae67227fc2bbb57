"""Family corrections of composite claims (studylib.claims.holm): Holm's step-down on one-sided
bootstrap p-values for conclusions that rest on one part, intersection-union for the others."""

from __future__ import annotations

import numpy as np
import pytest

from studylib import claims as C
from studylib import multiplicity
from studylib.metrics import BootstrapInterval


def _part(i: int, distribution: np.ndarray, direction: str = "less") -> C.Claim:
    low, high = np.quantile(distribution, [0.025, 0.975])
    interval = BootstrapInterval(float(np.mean(distribution)), float(low), float(high), 0.95, distribution)
    return C.interval_claim(interval, id=f"P{i}", source="test", statement=f"part {i}", metric="ece",
                            comparison="x", direction=direction)


def test_holm_step_down_on_a_known_example():
    rejected = multiplicity.holm_rejections([0.01, 0.04, 0.03, 0.005], level=0.05)
    # 0.005 < 0.05/4, 0.01 < 0.05/3, then 0.03 >= 0.05/2 stops the procedure
    assert rejected.tolist() == [True, False, False, True]
    assert multiplicity.holm_rejections([0.2, 0.001], level=0.05).tolist() == [False, True]


def test_tail_p_values_follow_the_direction():
    distribution = np.random.default_rng(0).normal(-2.0, 1.0, size=100_000)
    p_holds, p_fails = multiplicity.tail_p_values(-2.0, distribution, "less")
    assert p_holds == pytest.approx(0.02275, abs=5e-4) and p_fails == pytest.approx(1 - 0.02275, abs=5e-4)
    assert multiplicity.tail_p_values(-2.0, distribution, "greater") == (p_fails, p_holds)
    assert multiplicity.tail_p_values(-2.0, distribution, "less", threshold=-2.0) == pytest.approx((0.5, 0.5))
    assert np.isnan(multiplicity.tail_p_values(1.0, None, "less")[0])


def test_any_of_under_the_null_rarely_holds_once_corrected():
    """56 null parts (bootstrap distributions centred on the threshold): uncorrected, 'some part
    holds' is the rule; with Holm it happens at about the family-wise level."""
    rng = np.random.default_rng(0)
    corrected = uncorrected = 0
    for trial in range(200):
        centres = rng.normal(0.0, 1.0, size=56)  # each part's estimate: a null z-score
        parts = [_part(i, rng.normal(c, 1.0, size=1000)) for i, c in enumerate(centres)]
        corrected += C.any_of(parts, id="G", source="t", statement="s").holds
        uncorrected += C.any_of(parts, id="G", source="t", statement="s", correction=None).holds
    assert uncorrected / 200 > 0.5
    assert corrected / 200 <= 0.08


def test_all_of_corrects_only_the_one_part_conclusion():
    rng = np.random.default_rng(1)
    strong = [_part(i, rng.normal(-5.0, 1.0, size=1000)) for i in range(6)]  # every part clearly holds
    assert C.all_of(strong, id="A", source="t", statement="s").verdict == C.HOLDS
    # one part barely on the wrong side: significant alone, not after Holm over 20 parts
    weak = _part(99, rng.normal(2.3, 1.0, size=1000))
    assert weak.verdict == C.REVERSED
    family = strong + [weak] + [_part(10 + i, rng.normal(-5.0, 1.0, size=1000)) for i in range(13)]
    claim = C.all_of(family, id="A", source="t", statement="s")
    assert claim.verdict.startswith(C.INCONCLUSIVE)
    assert "Holm-corrected over 20 tests" in claim.comparison
    assert claim.parts[6].verdict == f"{C.INCONCLUSIVE} (not significant after Holm over 20 tests)"
    assert C.all_of(family, id="A", source="t", statement="s", correction=None).verdict == \
        f"{C.REVERSED} (1 of 20 parts)"


@pytest.mark.parametrize("correction", ["holm", None])
def test_point_parts_are_outside_the_family(correction):
    point = C.point_claim(1.0, 2.0, id="P", source="t", statement="s", metric="t", comparison="c", direction="less")
    claim = C.all_of([point], id="A", source="t", statement="s", correction=correction)
    assert claim.verdict == C.HOLDS + C.POINT
