"""Claim specs (studylib.claim_specs): templated citations, point values and what not-applicable claims need."""

from __future__ import annotations

import pandas as pd

from studylib.claim_specs import ClaimEvaluator

CONTEXT = {"n_tokens": 576, "splits": ["adversarial"], "steps": [{"i": 1, "larger": "full", "smaller": "scope@128"}]}


def _evaluate(specs, values):
    return ClaimEvaluator({"rows": pd.DataFrame()}, CONTEXT, values).evaluate(specs)


def test_point_claims_cite_templated_benchmarks_and_skip_numeric_sides():
    specs = [{"id": "P.{split}", "source": "s", "statement": "{split}", "test": "point", "a": "change[{split}]",
              "b": 0, "direction": "less", "for_each": {"split": "splits"}, "note": "on {split}",
              "reported": {"table": "§4.6 text", "metric": "ece", "a": "scope(alpha=1)@128",
                           "benchmark": "POPE-{split}"}},
             {"id": "S.{step[i]}", "source": "s", "statement": "{step[smaller]} < {step[larger]}", "test": "point",
              "a": "ece[{step[smaller]}]", "b": "ece[{step[larger]}]", "direction": "less",
              "reported": {"table": "Table 1", "metric": "ece"}, "for_each": {"step": "steps"}}]
    values = {"change[adversarial]": -0.01, "ece[scope(alpha=1,p=1)@128]": 0.02, "ece[full@576]": 0.04}
    composite = {"id": "C", "source": "s", "statement": "all", "test": "all_of", "parts": specs}
    (claim,) = _evaluate([composite], values)
    split, step = claim.parts
    assert (split.id, split.reported, split.note) == ("P.adversarial", "0.018", "on adversarial")
    assert split.verdict == "holds (point estimate)"
    assert step.id == "S.1" and step.reported == "0.024 vs 0.041"
    assert step.comparison == "ece[scope(alpha=1,p=1)@128] − ece[full@576]: claimed below 0"  # configurations canonical


def test_missing_point_values_make_claims_not_applicable_and_composites_say_why():
    specs = [{"id": "P2", "source": "s", "statement": "order", "test": "all_of", "parts": [
        {"id": "a", "statement": "a", "test": "point", "a": "change[adversarial]", "b": "change[popular]",
         "direction": "less"},
        {"id": "b", "statement": "b", "test": "point", "a": "change[popular]", "b": "change[random]",
         "direction": "less"}]}]
    (claim,) = _evaluate(specs, {"change[adversarial]": -0.01})
    assert [p.verdict for p in claim.parts] == ["not applicable: needs change[popular]",
                                                "not applicable: needs change[popular], change[random]"]
    assert claim.verdict == "not applicable: needs change[popular], change[random]"
