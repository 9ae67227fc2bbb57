"""Ties never hold: the four gap-power rows of issue 24 (G1.ScienceQA.K16.p1.5, K48.p0.5, K64.p1.5,
K64.p3: +0.000 [+0.000, +0.000], verdict "holds" for "p more accurate than p = 1") as fixtures.
A zero bootstrap SE rejects nothing, a zero-width CI decides nothing, two configurations that keep
the same tokens are not compared, and the composite follows from the other parts."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from studylib import claims as C
from studylib import multiplicity
from studylib.metrics import BootstrapInterval

TIES = ["G1.ScienceQA.K16.p1.5", "G1.ScienceQA.K48.p0.5", "G1.ScienceQA.K64.p1.5", "G1.ScienceQA.K64.p3"]


def _tie(claim_id: str) -> C.Claim:
    """The issue's rows: accuracy difference +0.000 [+0.000, +0.000], every resample exactly 0."""
    interval = BootstrapInterval(0.0, 0.0, 0.0, 0.95, np.zeros(1000), 1000)
    return C.interval_claim(interval, id=claim_id, source="seed 000 §5", statement="p more accurate than p = 1",
                            metric="accuracy", comparison="accuracy[p] − accuracy[p=1]", direction="greater",
                            smallest_effect=0.01, effect_origin="1 pp, no reported effect")


def _part(i: int, centre: float) -> C.Claim:
    draws = np.random.default_rng(i).normal(centre, 0.01, 1000)
    low, high = np.quantile(draws, [0.025, 0.975])
    return C.interval_claim(BootstrapInterval(centre, float(low), float(high), 0.95, draws, 1000), id=f"G1.other{i}",
                            source="s", statement="s", metric="accuracy", comparison="x", direction="greater",
                            smallest_effect=0.01)


def test_a_zero_se_rejects_nothing():
    assert multiplicity.tail_p_values(0.0, np.zeros(1000), "greater", 0.0) == (1.0, 1.0)
    assert multiplicity.tail_p_values(0.02, np.full(1000, 0.02), "greater", 0.0) == (1.0, 1.0)


@pytest.mark.parametrize("claim_id", TIES)
def test_an_exact_tie_never_holds(claim_id):
    tie = _tie(claim_id)
    assert tie.estimate_text() == "+0.000 [+0.000, +0.000]"
    assert tie.verdict.startswith("inconclusive (zero-width CI") and not tie.holds
    assert tie.p_holds == 1.0 and math.isnan(tie.n_needed)  # no width to extrapolate from


def test_the_ties_no_longer_make_some_p_better():
    """Before: p_holds = 0 for each tie, Holm rejected them and G1 held on the four ties alone."""
    others = [_part(i, c) for i, c in enumerate([-0.004, 0.002, -0.01, 0.0, -0.03, 0.001])]
    claim = C.any_of([_tie(t) for t in TIES] + others, id="G1", source="s", statement="some p is better")
    assert not claim.holds and claim.outcome == C.INCONCLUSIVE
    assert all(not part.holds for part in claim.parts)


def _rows(same: bool) -> pd.DataFrame:
    """Two configurations on 30 images × 2 questions that keep the same tokens (and so answer the
    same), or keep different ones."""
    rng = np.random.default_rng(0)
    records = []
    for config in ("scope(alpha=1,p=1)@16", "scope(alpha=1,p=1.5)@16"):
        for i in range(30):
            kept = [0, 3, 5] if same or config.endswith("p=1)@16") else [0, 4, 5]
            for j in range(2):
                p_yes = float(rng.uniform(0.55, 0.95)) if config.endswith("p=1)@16") or not same else None
                records.append({"config": config, "qid": f"q{i}-{j}", "image": f"im{i}", "task": "yesno",
                                "label": "yes", "choices": ["yes", "no"], "probs": [p_yes, 1 - p_yes] if p_yes else None,
                                "prediction": "yes", "confidence": p_yes, "correct": True, "kept": kept})
    frame = pd.DataFrame(records)
    if same:  # the second configuration gives exactly the first one's answers
        first = frame["config"] == "scope(alpha=1,p=1)@16"
        for column in ("probs", "confidence"):
            frame.loc[~first, column] = frame.loc[first, column].to_numpy()
    return frame


def test_configurations_that_keep_the_same_tokens_are_not_compared():
    rows = _rows(same=True)
    assert C.same_tokens(rows, "scope(alpha=1,p=1.5)@16", "scope(alpha=1,p=1)@16")
    assert not C.same_tokens(_rows(same=False), "scope(alpha=1,p=1.5)@16", "scope(alpha=1,p=1)@16")
    claim = C.delta_claim(rows, id=TIES[0], source="s", statement="s", a="scope(alpha=1,p=1.5)@16",
                          b="scope(alpha=1,p=1)@16", metric="accuracy", direction="greater", n_bootstrap=50)
    assert claim.verdict == f"{C.NOT_TESTED}: {C.SAME_TOKENS}" and claim.same_tokens and math.isnan(claim.p_holds)


def test_same_token_parts_leave_the_family_and_the_composite_follows_the_rest():
    same = [C.not_tested(t, "s", "s", C.SAME_TOKENS) for t in TIES]
    others = [_part(i, c) for i, c in enumerate([-0.05, -0.04])]  # both clearly worse than p = 1
    claim = C.any_of(same + others, id="G1", source="s", statement="some p is better")
    assert claim.verdict == f"{C.REVERSED} (2 of 6 parts)"
    assert claim.comparison == "0/6 parts hold (4 keep the same tokens: not compared); 'holds' Holm-corrected over 2 tests"
    better = C.any_of(same + [_part(5, 0.05), _part(6, -0.05)], id="G1", source="s", statement="s")
    assert better.verdict == f"{C.HOLDS} (1 of 6 parts)" and "Holm-corrected over 2 tests" in better.comparison
