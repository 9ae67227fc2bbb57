"""The one rule of studylib.claims: six outcomes a reader can tell apart, for claims of direction,
of size (a threshold beyond 0), of non-inferiority and of equivalence; the effect δ they are read
against (the paper's own effect, else 1 pp); the test column in words; the legend; and the number of
questions that would decide an inconclusive verdict."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from studylib import claims as C
from studylib.claim_specs import evaluate_claims
from studylib.metrics import BootstrapInterval
from tests.test_claim_specs import CONTEXT, ROWS

SMALLER, NO_EFFECT = C.HOLDS_SMALLER, C.NO_REPORTED_EFFECT


def _interval(centre: float, sd: float = 0.002, n: int = 1000) -> BootstrapInterval:
    draws = np.random.default_rng(0).normal(centre, sd, size=2000)
    low, high = np.quantile(draws, [0.025, 0.975])
    return BootstrapInterval(centre, float(low), float(high), 0.95, draws, n)


@pytest.mark.parametrize("low, high, delta, expected", [
    (-0.030, -0.020, 0.017, C.HOLDS),  # wholly below 0 and reaching -δ
    (-0.030, -0.001, 0.017, C.HOLDS),  # wholly below 0, δ not excluded
    (-0.040, -0.030, 0.017, C.HOLDS),  # larger than reported: still holds
    (-0.012, -0.001, 0.035, SMALLER),  # Baselines B2.K32: a real reduction, wholly short of -0.035
    (-0.012, +0.000, 0.035, NO_EFFECT),  # touching 0 is including it
    (-0.010, +0.004, 0.017, NO_EFFECT),  # includes 0, excludes -δ
    (+0.001, +0.004, 0.017, C.REVERSED),
    (+0.001, +0.004, 0.0, C.REVERSED),
    (-0.020, +0.004, 0.017, "inconclusive (CI includes 0 and -0.017)"),
    (-0.017, +0.004, 0.017, "inconclusive (CI includes 0 and -0.017)"),  # touching -δ is including it
    (-0.010, +0.004, 0.0, "inconclusive (CI includes 0)"),  # δ = 0: the plain test
    (0.0, 0.0, 0.017, "inconclusive (zero-width CI: every resample gives the same difference)"),
])
def test_a_claimed_decrease_and_its_mirror(low, high, delta, expected):
    assert C.verdict((low, high), "<", 0.0, delta) == expected
    assert C.verdict((-high, -low), ">", 0.0, delta) == expected.replace("-0.017", "+0.017")


@pytest.mark.parametrize("low, high, expected", [  # "FastV drops accuracy by more than 10 points"
    (-0.30, -0.20, C.HOLDS), (-0.15, -0.05, "inconclusive (CI includes -0.1)"), (-0.08, -0.03, SMALLER),
    (-0.05, +0.02, NO_EFFECT), (+0.01, +0.05, C.REVERSED),
])
def test_a_claim_of_size_must_clear_its_threshold(low, high, expected):
    assert C.verdict((low, high), "<", -0.1) == expected
    assert C.rule_for("less", -0.1).words() == "claimed below -0.1"


@pytest.mark.parametrize("low, high, expected", [  # "accuracy not lower by more than 1 point"
    (-0.005, +0.020, C.HOLDS), (-0.030, -0.020, C.REVERSED), (-0.020, 0.000, "inconclusive (CI includes -0.01)"),
])
def test_a_non_inferiority_claim_is_judged_at_its_threshold(low, high, expected):
    assert C.verdict((low, high), ">", -0.01) == expected
    assert C.rule_for("greater", -0.01).words() == "claimed above -0.01"


@pytest.mark.parametrize("low, high, expected", [
    (-0.005, 0.008, C.HOLDS), (0.02, 0.03, C.REVERSED), (-0.03, -0.02, C.REVERSED),
    (-0.005, 0.015, "inconclusive (CI crosses ±0.01)"),
])
def test_equivalence(low, high, expected):
    assert C.outcome((low, high), C.Rule("within", 0.0, 0.01)) == expected


def test_every_interval_has_exactly_one_outcome_and_the_legend_names_them_all():
    rng = np.random.default_rng(0)
    rules = [C.rule_for("less", 0, 0.02), C.rule_for("greater", 0, 0.0), C.rule_for("less", -0.1),
             C.rule_for("greater", -0.01), C.Rule("within", 0.0, 0.01)]
    seen = set()
    for _ in range(2000):
        low, high = np.sort(rng.normal(0, 0.05, 2))
        for rule in rules:
            seen.add(C.verdict_base(C.outcome((low, high), rule)))
    assert seen == set(C.OUTCOMES) - {C.NOT_TESTED}
    for name in C.OUTCOMES:
        assert f"**{name}**" in C.LEGEND
    assert "\n" not in C.LEGEND and "Estimator-sensitive" in C.LEGEND


def test_negative_smallest_effect_is_refused():
    with pytest.raises(ValueError, match="smallest_effect must be >= 0"):
        C.verdict((0.0, 1.0), "<", 0.0, -0.01)


def test_the_p_values_of_a_part_are_taken_at_0_and_at_delta():
    """A zero effect with SE 0.002 is far from a reduction of 0.017 (z = 8.5) but not from 0."""
    plain = C.interval_claim(_interval(0.0), id="a", source="s", statement="s", metric="ece", comparison="x",
                             direction="less")
    bounded = C.interval_claim(_interval(0.0), id="a", source="s", statement="s", metric="ece", comparison="x",
                               direction="less", smallest_effect=0.017, effect_origin="the reported effect")
    assert plain.p_fails == pytest.approx(0.5, abs=0.02) and bounded.p_fails < 1e-10
    assert bounded.p_reversed == pytest.approx(0.5, abs=0.02)
    assert plain.p_holds == pytest.approx(bounded.p_holds)
    assert bounded.verdict == NO_EFFECT and plain.verdict.startswith(C.INCONCLUSIVE)
    assert bounded.comparison == "x: claimed below 0; reported effect -0.017"
    parts = [C.interval_claim(_interval(0.0), id=f"p{i}", source="s", statement="s", metric="ece", comparison="x",
                              direction="less", smallest_effect=0.017) for i in range(3)]
    assert C.all_of(parts, id="A", source="s", statement="s").verdict == f"{NO_EFFECT} (3 of 3 parts)"


def test_holm_keeps_a_shortfall_but_not_a_reversal_it_cannot_support():
    """A part just reversed (z ≈ 2.3 against 0) but far short of δ: over a family of 20 the reversal
    does not survive Holm, the shortfall does: the part becomes 'no effect of the reported size'."""
    weak = C.interval_claim(_interval(0.0046, sd=0.002), id="w", source="s", statement="s", metric="ece",
                            comparison="x", direction="less", smallest_effect=0.05)
    assert weak.verdict == C.REVERSED
    strong = [C.interval_claim(_interval(-0.08), id=f"s{i}", source="s", statement="s", metric="ece", comparison="x",
                               direction="less", smallest_effect=0.05) for i in range(19)]
    claim = C.all_of([weak, *strong], id="A", source="s", statement="s")
    assert claim.parts[0].verdict == f"{NO_EFFECT} (the reversal is not significant after Holm over 20 tests)"
    assert claim.verdict == f"{NO_EFFECT} (1 of 20 parts)"
    assert "'reversed' and 'no effect' Holm-corrected over 20 tests" in claim.comparison


def test_all_of_takes_its_weakest_part_and_any_of_its_strongest():
    holds = C.interval_claim(_interval(-0.03), id="h", source="s", statement="s", metric="ece", comparison="x",
                             direction="less", smallest_effect=0.02)
    smaller = C.interval_claim(_interval(-0.008), id="m", source="s", statement="s", metric="ece", comparison="x",
                               direction="less", smallest_effect=0.035)
    reversed_ = C.interval_claim(_interval(0.03), id="r", source="s", statement="s", metric="ece", comparison="x",
                                 direction="less", smallest_effect=0.02)
    assert smaller.verdict == SMALLER
    assert C.all_of([holds, smaller], id="A", source="s", statement="s").verdict == f"{SMALLER} (1 of 2 parts)"
    assert C.all_of([holds, holds], id="A", source="s", statement="s").verdict == C.HOLDS
    assert C.all_of([holds, reversed_], id="A", source="s", statement="s").verdict == f"{C.REVERSED} (1 of 2 parts)"
    assert C.any_of([reversed_, smaller], id="B", source="s", statement="s").verdict == f"{SMALLER} (1 of 2 parts)"
    assert C.any_of([reversed_, reversed_], id="B", source="s", statement="s").verdict == \
        f"{C.REVERSED} (2 of 2 parts)"


@pytest.mark.parametrize("centre, sd, delta", [(-0.01, 0.01, 0.017), (0.003, 0.004, 0.0), (-0.02, 0.015, 0.035)])
def test_the_questions_that_would_decide_do_decide(centre, sd, delta):
    """Shrink the observed CI's arms by sqrt(n / n_needed) around the estimate: exactly decided there,
    undecided just before."""
    claim = C.interval_claim(_interval(centre, sd), id="x", source="s", statement="s", metric="ece", comparison="x",
                             direction="less", smallest_effect=delta)
    assert claim.outcome == C.INCONCLUSIVE and claim.n_needed > claim.n_questions

    def shrunk(n):
        r = math.sqrt(claim.n_questions / n)
        return (claim.estimate - (claim.estimate - claim.low) * r, claim.estimate + (claim.high - claim.estimate) * r)

    assert C.verdict_base(C.outcome(shrunk(claim.n_needed * 1.001), claim.rule)) != C.INCONCLUSIVE
    assert C.verdict_base(C.outcome(shrunk(claim.n_needed * 0.999), claim.rule)) == C.INCONCLUSIVE
    assert f"would need ≈ " in claim.verdict_text() and "this run 1,000" in claim.verdict_text()
    assert C.verdict_base(claim.verdict_text()) == C.INCONCLUSIVE


def test_questions_needed_in_a_family_use_holms_strictest_level():
    assert C.questions_needed(1000, 0.5, 1) == pytest.approx(4000)
    z = 2.807 / 1.960  # one-sided 0.025/10 vs 0.025
    assert C.questions_needed(1000, 0.5, 10) == pytest.approx(4000 * z ** 2, rel=1e-3)
    assert C.questions_needed(1000, 0.0) == math.inf and math.isnan(C.questions_needed(0, 0.5))
    # the H12: an estimate a hair from its bound extrapolates to ~4e32 questions: no realistic n
    assert C.questions_needed(3400, 1e-14) == math.inf and C.questions_needed(1000, 0.002) == pytest.approx(2.5e8)


def test_a_composite_needs_its_hardest_undecided_part():
    parts = [C.interval_claim(_interval(c, 0.01), id=f"p{i}", source="s", statement="s", metric="ece",
                              comparison="x", direction="less", smallest_effect=0.017)
             for i, c in enumerate([-0.01, -0.005, -0.03])]
    claim = C.all_of(parts, id="A", source="s", statement="s")
    assert claim.outcome == C.INCONCLUSIVE
    undecided = [p.n_needed for p in claim.parts if p.outcome == C.INCONCLUSIVE]
    assert claim.n_needed == max(undecided) and len(undecided) == 2


def _evaluate(tmp_path, spec):
    (tmp_path / "x.yaml").write_text(yaml.safe_dump([spec], sort_keys=False))
    return evaluate_claims("x", {"rows": ROWS}, CONTEXT, directory=tmp_path, n_bootstrap=200)[0]


def test_the_papers_effect_is_the_smallest_effect(tmp_path):
    # seed 000 Table 2 at K = 128: alpha 0 0.016 vs alpha 1 0.023 -> the paper's effect is 0.007
    claim = _evaluate(tmp_path, {"id": "C", "source": "s", "statement": "s", "test": "delta", "metric": "ece",
                                 "a": "scope(alpha=0)@32", "b": "scope(alpha=1)@32", "direction": "less",
                                 "reported": {"table": "Table 2"}})
    assert claim.reported == "0.016 vs 0.023"
    assert claim.comparison == ("ECE[scope(alpha=0,p=1)@32] − ECE[scope(alpha=1,p=1)@32]: claimed below 0; "
                                "reported effect -0.007")
    assert claim.n_questions == 80


def test_without_a_reported_effect_the_metric_default_applies(tmp_path):
    spec = {"id": "C", "source": "s", "statement": "s", "test": "delta", "metric": "accuracy",
            "a": "scope(alpha=1)@32", "b": "full", "direction": "greater"}
    claim = _evaluate(tmp_path, spec)
    assert claim.comparison.endswith(f"smallest effect of interest +{C.SMALLEST_EFFECTS['accuracy']:g} "
                                     "(1 pp, no reported effect)")
    assert claim.verdict == C.REVERSED  # 0.5 vs 0.9 correct
    declared = _evaluate(tmp_path, {**spec, "smallest_effect": 0})
    assert declared.verdict == C.REVERSED and "effect" not in declared.comparison


def test_a_threshold_claim_keeps_its_own_magnitude(tmp_path):
    claim = _evaluate(tmp_path, {"id": "C", "source": "s", "statement": "s", "test": "delta", "metric": "accuracy",
                                 "a": "scope(alpha=1)@32", "b": "full", "direction": "less", "threshold": -0.1})
    assert claim.comparison.endswith("claimed below -0.1") and claim.rule.of_size


def test_a_caption_claim_counts_captions_not_questions():
    """A CHAIR comparison rests on captions: its interval, its verdict's "would need" figure, the forest
    label and the claims JSON all say captions, and a composite keeps its parts' unit."""
    from studylib.analysis import paired_delta
    from studylib.summary import claims_from_json, claims_to_json, forest_note
    from tests.analysis.test_resampled import caption_rows

    rows = pd.concat([caption_rows(seed=0).assign(config="a@4"), caption_rows(seed=1).assign(config="b@4")])
    interval = paired_delta(rows, "a@4", "b@4", metric="chair_i", n_bootstrap=200)
    assert (interval.unit, interval.n_samples) == ("captions", 90)
    assert paired_delta(ROWS, *ROWS["config"].unique()[:2], metric="ece", n_bootstrap=50).unit == "questions"
    assert interval.low < 0 < interval.high  # two samples of one distribution: both 0 and -δ inside
    part = C.interval_claim(interval, id="x.1", source="s", statement="s", metric="chair_i", comparison="x",
                            direction="less", smallest_effect=-interval.low / 2)
    assert part.outcome == C.INCONCLUSIVE, part.verdict
    assert "captions, this run 90" in part.verdict_text() and "questions" not in part.verdict_text()
    claim = C.all_of([part], id="x", source="s", statement="s")
    assert (claim.unit, claim.n_questions) == ("captions", 90)
    assert forest_note(claim).endswith("captions")
    assert claims_from_json(claims_to_json([claim]))[0].unit == "captions"
    on_bound = BootstrapInterval(0.0, -0.01, 0.01, 0.95, np.linspace(-0.01, 0.01, 201), 90, "captions")
    stuck = C.interval_claim(on_bound, id="y", source="s", statement="s", metric="chair_i", comparison="y",
                             direction="less", smallest_effect=0.0)
    assert stuck.n_needed == math.inf and "no realistic number of captions decides it" in stuck.verdict_text()
    flat = C.interval_claim(BootstrapInterval(0.0, 0.0, 0.0, 0.95, np.zeros(201), 90, "captions"), id="z",
                            source="s", statement="s", metric="chair_i", comparison="z", direction="less")
    assert flat.outcome == C.INCONCLUSIVE, flat.verdict
    assert "no number of captions can be extrapolated" in flat.verdict_text()
