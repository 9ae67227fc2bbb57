"""What a reader sees: the metric catalogue's numbers, the names of configurations, and the sentences and
forest plot generated from claims (no outcome typed by hand: change the numbers and the words follow)."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest

from studylib import labels, metric_catalog as mc, pages, summary
from studylib.claims import HOLDS, INCONCLUSIVE, REVERSED, Claim, all_of, any_of, interval_claim
from studylib.metrics import BootstrapInterval


# ----------------------------------------------------------------------------- the metric catalogue

def test_numbers_read_the_same_everywhere():
    assert mc.value_text("accuracy", 0.8691) == "86.9" and mc.value_text("ece", 0.04123) == "0.041"
    assert mc.delta_text("accuracy", -0.0951, unit=True) == "−9.5 pp"
    assert mc.delta_text("ece", 0.0091) == "+0.009"
    assert mc.ci_text("ece", 0.009, 0.001, 0.019, delta=True) == "+0.009 [+0.001, +0.019]"
    assert mc.ci_text("accuracy", 0.869, 0.851, 0.886, unit=True) == "86.9 [85.1, 88.6] %"
    assert mc.value_text("ece", -0.0001) == "0.000", "no negative zero"
    assert mc.number_text(19.939622218863605, 3) == "19.940" and mc.number_text(1234567.891, 3) == "1234568"
    assert mc.metric("t_mean").header == "T* (cross-validated)" and mc.metric("ece_low").key == "ece"
    assert mc.metric("some_new_metric").name == "some new metric", "an unknown metric still reads"


# ----------------------------------------------------------------------------- configuration names

@pytest.mark.parametrize("config, label", [
    ("scope(alpha=0,p=1)@32", "SCOPE α=0, K=32"),
    ("scope(alpha=1,p=2)@16", "SCOPE α=1, p=2, K=16"),
    ("full@144", "unpruned (K=144)"),
    ("agile(erank_avg=19.939622218863605,tau_max=0.25)@16", "AgilePruner (erank 19.94), K=16"),
    ("random(seed=2)@32", "random (seed 2), K=32"),
    ("fastv@32", "FastV, K=32"),
    ("not a configuration", "not a configuration"),
])
def test_configurations_have_human_names(config, label):
    assert labels.config_label(config) == label


def test_every_registered_pruner_has_its_papers_name():
    from studylib.pruners import list_pruners

    assert set(list_pruners()) <= set(labels.METHOD_NAMES), set(list_pruners()) - set(labels.METHOD_NAMES)


def test_humanize_replaces_configurations_inside_text_only():
    text = "ECE[scope(alpha=0,p=1)@32] − ECE[full@144] < 0; saliency pruning"
    assert labels.humanize(text) == "ECE[SCOPE α=0, K=32] − ECE[unpruned (K=144)] < 0; saliency pruning"
    assert summary.readable_test("t_star_dev[scope(alpha=1,p=1)@32] − t_star_dev[full@144] < 0 [scaled rows]; "
                                 "does not hold if CI > -0.017") == \
        "|T* − 1|[SCOPE α=1, K=32] − |T* − 1|[unpruned (K=144)] < 0 (after temperature scaling); " \
        "does not hold if CI > −0.017"


def test_style_table_shows_no_python_values():
    frame = pd.DataFrame({"config": ["scope(alpha=0,p=1)@32"], "splits": [["random", "popular"]],
                          "t_at_bound": [False], "ece": [-0.00001]})
    html = pages.style_table(frame, hide_index=True).to_html().replace("<wbr>", "")
    assert "SCOPE α=0, K=32" in html and "random, popular" in html and ">no<" in html
    assert "False" not in html and "['" not in html and "−0.000" not in html and "-0.000" not in html


# ----------------------------------------------------------------------------- claims -> words

def _claim(estimate, low, high, *, verdict=HOLDS, reported="0.024 vs 0.041", id="C1", metric="ece"):
    return Claim(id, "seed 000 §4.1", "Moderate pruning lowers ECE", metric,
                 f"{metric}[scope(alpha=1,p=1)@32] − {metric}[full@144] < 0", estimate, low, high, verdict, reported)


def test_claims_survive_the_notebook_glue():
    part = _claim(-0.02, -0.03, -0.01)
    composite = all_of([part, _claim(math.nan, math.nan, math.nan, verdict="not applicable: needs x@1", id="C2")],
                       id="C3", source="s", statement="both")
    back = summary.claims_from_json(summary.claims_to_json([composite]))
    assert back[0].id == "C3" and back[0].parts[0] == part and math.isnan(back[0].parts[1].estimate)


def test_the_papers_effect_is_read_from_the_cited_numbers():
    assert summary.reported_effect(_claim(0, 0, 0)) == pytest.approx(-0.017)
    assert summary.reported_effect(_claim(0, 0, 0, reported="50.1 % vs 85.9 %", metric="accuracy")) == \
        pytest.approx(-0.358)
    assert summary.reported_effect(_claim(0, 0, 0, reported="45.3 vs 30.1", metric="erank_kept")) is None, \
        "erank depends on the model: no paper marker"
    assert summary.reported_effect(_claim(0, 0, 0, reported="all three splits improve")) is None


def test_a_composite_is_shown_by_the_part_its_verdict_turns_on():
    strong = interval_claim(BootstrapInterval(-0.05, -0.07, -0.03, 0.95, np.linspace(-0.07, -0.03, 200)), id="P.a",
                            source="s", statement="a", metric="ece", comparison="ece[a@1] − ece[b@1] < 0",
                            direction="less")
    weak = interval_claim(BootstrapInterval(-0.01, -0.03, 0.01, 0.95, np.linspace(-0.03, 0.01, 200)), id="P.b",
                          source="s", statement="b", metric="ece", comparison="ece[a@2] − ece[b@2] < 0",
                          direction="less")
    every = all_of([strong, weak], id="P", source="s", statement="at every budget")
    assert summary.deciding_part(every).id == "P.b", "needs every part: the weakest decides"
    some = any_of([weak, strong], id="Q", source="s", statement="at some budget")
    assert summary.deciding_part(some).id == "P.a", "needs one part: the strongest decides"
    assert summary.deciding_part(strong) is strong


def test_findings_follow_the_numbers():
    holds = summary.findings([_claim(-0.02, -0.03, -0.01, id="C1")], "u_curve", toy=True)
    fails = summary.findings([_claim(0.009, 0.001, 0.019, verdict=REVERSED, id="C1")], "u_curve", toy=True)
    assert holds.startswith("- On the TOY model") and f"{HOLDS}: 1" in holds
    assert "−0.020 [−0.030, −0.010] on this run, −0.017 in the paper" in holds
    assert "+0.009 [+0.001, +0.019] on this run, −0.017 in the paper" in fails and holds != fails


def test_the_answer_follows_the_claims_that_carry_it():
    carry = {name: [_claim(e, lo, hi, verdict=v, id=i)] for (name, i), (e, lo, hi, v) in zip(
        summary.ANSWER_CLAIMS[:2], [(-0.02, -0.03, -0.01, HOLDS), (-0.01, -0.02, 0.001, INCONCLUSIVE)])}
    assert summary.answer(carry, toy=True).startswith("**Only in part, on the TOY model:** 1 of the 2")
    both = {name: [_claim(-0.02, -0.03, -0.01, id=i)] for name, i in summary.ANSWER_CLAIMS[:2]}
    assert summary.answer(both).startswith("**Yes")
    assert summary.answer({}).startswith("**No answer yet")


def test_forest_plot_draws_every_headline_claim_with_the_papers_marker():
    claims = {"u_curve": [_claim(-0.02, -0.03, -0.01, id="C1"),
                          _claim(-0.001, -0.004, 0.003, id="C2", metric="accuracy", reported="86.9 % vs 86.9 %")]}
    rows = summary.forest_rows(claims, {"u_curve": "U-curve"})
    assert [r.get("header") for r in rows][0] == "U-curve" and len(rows) == 3
    assert rows[1]["paper"] == pytest.approx(-0.017) and rows[1]["panel"] != rows[2]["panel"]
    fig = summary.forest_figure(claims, {"u_curve": "U-curve"}, toy=True)
    assert fig.get_size_inches()[0] <= 7.8 and len(fig.axes) == 2
    with pytest.raises(ValueError, match="no headline claims"):
        summary.forest_figure({})
