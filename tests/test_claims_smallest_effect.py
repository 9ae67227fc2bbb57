"""The smallest effect of interest δ of directional claims (studylib.claims, studylib.claim_specs):
"does not hold" when the CI excludes every effect of size δ on the claimed side; δ is the paper's
own effect where it cites both numbers on a probability scale, else 1 pp, else 0."""

from __future__ import annotations

import numpy as np
import pytest
import yaml

from studylib import claims as C
from studylib.claim_specs import evaluate_claims
from studylib.metrics import BootstrapInterval
from tests.test_claim_specs import CONTEXT, ROWS


def _interval(centre: float, sd: float = 0.002) -> BootstrapInterval:
    draws = np.random.default_rng(0).normal(centre, sd, size=2000)
    low, high = np.quantile(draws, [0.025, 0.975])
    return BootstrapInterval(centre, float(low), float(high), 0.95, draws)


@pytest.mark.parametrize("low, high, delta, expected", [
    (-0.030, -0.020, 0.017, "holds"),                 # wholly below 0
    (-0.008, -0.002, 0.017, "holds"),                 # a real effect smaller than δ still holds
    (-0.010, +0.004, 0.017, "does not hold"),         # excludes every reduction of 0.017 or more
    (-0.020, +0.004, 0.017, "inconclusive (CI spans 0 and -0.017)"),
    (-0.010, +0.004, 0.0, "inconclusive (CI crosses 0)"),  # δ = 0: the plain test
    (+0.001, +0.004, 0.0, "does not hold"),
    (-0.017, +0.004, 0.017, "inconclusive (CI spans 0 and -0.017)"),  # touching the bound is not beyond it
])
def test_verdict_with_a_smallest_effect(low, high, delta, expected):
    assert C.verdict((low, high), "<", 0.0, delta) == expected
    # the mirror image for a claimed increase
    mirrored = expected.replace("-0.017", "+0.017")
    assert C.verdict((-high, -low), ">", 0.0, delta) == mirrored


def test_negative_smallest_effect_is_refused():
    with pytest.raises(ValueError, match="smallest_effect must be >= 0"):
        C.verdict((0.0, 1.0), "<", 0.0, -0.01)


def test_the_family_p_value_of_failure_is_taken_at_the_bound():
    """A zero effect with SE 0.002 is far from a reduction of 0.017 (z = 8.5) but not from 0."""
    plain = C.interval_claim(_interval(0.0), id="a", source="s", statement="s", metric="ece", comparison="x",
                             direction="less")
    bounded = C.interval_claim(_interval(0.0), id="a", source="s", statement="s", metric="ece", comparison="x",
                               direction="less", smallest_effect=0.017, effect_origin="the reported effect")
    assert plain.p_fails == pytest.approx(0.5, abs=0.02) and bounded.p_fails < 1e-10
    assert plain.p_holds == pytest.approx(bounded.p_holds)
    assert bounded.verdict == "does not hold" and plain.verdict.startswith("inconclusive")
    assert bounded.comparison == "x; does not hold if CI > -0.017 (the reported effect)"
    # an all_of with such parts can now be decided: Holm over 3 tests of 'does not hold'
    parts = [C.interval_claim(_interval(0.0), id=f"p{i}", source="s", statement="s", metric="ece", comparison="x",
                              direction="less", smallest_effect=0.017) for i in range(3)]
    assert C.all_of(parts, id="A", source="s", statement="s").verdict == "does not hold"


def _evaluate(tmp_path, spec):
    (tmp_path / "x.yaml").write_text(yaml.safe_dump([spec], sort_keys=False))
    return evaluate_claims("x", {"rows": ROWS}, CONTEXT, directory=tmp_path, n_bootstrap=200)[0]


def test_the_papers_effect_is_the_smallest_effect(tmp_path):
    # seed 000 Table 2 at K = 128: alpha 0 0.016 vs alpha 1 0.023 -> the paper's effect is 0.007
    claim = _evaluate(tmp_path, {"id": "C", "source": "s", "statement": "s", "test": "delta", "metric": "ece",
                                 "a": "scope(alpha=0)@32", "b": "scope(alpha=1)@32", "direction": "less",
                                 "reported": {"table": "Table 2"}})
    assert claim.reported == "0.016 vs 0.023"
    assert claim.comparison.endswith("does not hold if CI > -0.007 (the reported effect)")


def test_without_a_reported_effect_the_metric_default_applies(tmp_path):
    spec = {"id": "C", "source": "s", "statement": "s", "test": "delta", "metric": "accuracy",
            "a": "scope(alpha=0)@32", "b": "full", "direction": "greater"}
    claim = _evaluate(tmp_path, spec)
    assert claim.comparison.endswith(f"does not hold if CI < +{C.SMALLEST_EFFECTS['accuracy']:g} "
                                     "(1 pp, no reported effect)")
    # same accuracy (both 0.9 on the same draws): the CI is [0, 0], far inside ±1 pp
    assert claim.verdict == "does not hold"
    declared = _evaluate(tmp_path, {**spec, "smallest_effect": 0})
    assert declared.verdict.startswith("inconclusive") and "does not hold if" not in declared.comparison


def test_a_threshold_claim_keeps_its_own_magnitude(tmp_path):
    claim = _evaluate(tmp_path, {"id": "C", "source": "s", "statement": "s", "test": "delta", "metric": "accuracy",
                                 "a": "scope(alpha=1)@32", "b": "full", "direction": "less", "threshold": -0.1})
    assert "does not hold if" not in claim.comparison


def test_a_part_that_holds_keeps_holding_when_it_is_also_smaller_than_its_effect():
    """CI [−0.012, −0.004] with δ = 0.035: a real reduction (holds), significantly smaller than the
    paper's; the family's 'does not hold' test rejects too, but the part and the family hold."""
    parts = [C.interval_claim(_interval(-0.008), id=f"p{i}", source="s", statement="s", metric="ece",
                              comparison="x", direction="less", smallest_effect=0.035) for i in range(2)]
    assert all(p.verdict == "holds" and p.p_fails < 1e-6 for p in parts)
    claim = C.all_of(parts, id="A", source="s", statement="s")
    assert claim.verdict == "holds" and [p.verdict for p in claim.parts] == ["holds", "holds"]
