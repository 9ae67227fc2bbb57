"""The every-pruner experiment's pure parts (no model): the grid follows the registry, the ranked table
has one row per registered pruner, family means and rank correlations with a paired image bootstrap,
and the claims grammar's ``interval`` test."""

from __future__ import annotations

import math

import numpy as np
import pandas as pd
import pytest
import yaml

from studylib import analysis
from studylib.claim_specs import evaluate_claims
from studylib.experiments import every_pruner as ep
from studylib.metrics import BootstrapInterval
from studylib.pruners import list_pruners, register, unregister
from studylib.sweep import config_grid
from studylib.tokens import Selection

N = 144


@pytest.fixture
def throwaway():
    """A pruner registered for one test only (and removed after it)."""

    @register("zz_throwaway", summary="test-only pruner: the first K tokens", family="diversity", source="a test")
    def _first_k(tokens, k, query=None):
        import torch

        return Selection(torch.arange(k).expand(tokens.batch_size, k).contiguous())

    yield "zz_throwaway"
    unregister("zz_throwaway")


def _rows(configs, n_images: int = 30, seed: int = 0, skill: dict | None = None) -> pd.DataFrame:
    """Yes/no rows for every config: config c is right with probability skill(c) (default 0.8) and
    always 0.9 confident; kept-token erank and entropy per (config, image)."""
    rng = np.random.default_rng(seed)
    records = []
    for index, config in enumerate(configs):
        p = (skill or {}).get(config, 0.8)
        draws = rng.random((n_images, 2)) < p
        for i in range(n_images):
            erank = 10.0 + index + rng.normal()
            for j in range(2):
                label = "yes" if j else "no"
                prediction = label if draws[i, j] else ("no" if j else "yes")
                p_yes = 0.9 if prediction == "yes" else 0.1
                records.append({"config": config, "qid": f"{i}-{j}", "image": f"im{i}", "task": "yesno", "split": "s",
                                "label": label, "choices": ["yes", "no"], "probs": [p_yes, 1 - p_yes],
                                "logits": [math.log(p_yes), math.log(1 - p_yes)], "prediction": prediction,
                                "confidence": 0.9, "correct": bool(draws[i, j]), "erank_kept": erank,
                                "entropy_kept": 0.9})
    return pd.DataFrame(records)


def test_grid_follows_the_registry(throwaway):
    specs = ep.pruner_specs("all")
    assert throwaway in specs and "full" not in specs
    assert {s.split("(")[0] for s in specs} == set(list_pruners()) - {"full"}
    assert ep.pruner_specs(["saliency", "scope(alpha=0)", "full"]) == ["saliency", "scope(alpha=0,p=1)"]


def test_ranked_table_has_one_row_per_registered_pruner(throwaway):
    specs = ep.pruner_specs("all")
    configs = [str(c) for c in config_grid(["full", *specs, "scope(alpha=0)"], [32], seeds=[0, 1, 2], n_tokens=N)]
    summary = ep.summarise(_rows(configs), pope=True, n_bootstrap=5)
    table = ep.aggregate(summary, N, specs)
    ranked = ep.ranked_table(table, 32, N, {"reported": {"saliency": 84.4}})
    assert sorted(ranked["pruner"]) == sorted(list_pruners())  # one row each, the throwaway included
    assert ranked["rank"].iloc[-1] == "reference" and ranked["pruner"].iloc[-1] == "full"
    eces = table.set_index("name").loc[ranked["pruner"].iloc[:-1], "ece"].to_numpy()
    assert (np.diff(eces) >= 0).all(), "ranked by ECE, lowest first"
    random = ranked.set_index("pruner").loc["random"]
    assert "± " in random["ECE"] and "(3 seeds)" in random["ECE"]
    assert "[" in ranked.set_index("pruner").loc["saliency", "ECE"]
    assert ranked.set_index("pruner").loc["saliency", "reported"] == 84.4
    assert ranked.set_index("pruner").loc[throwaway, "family"] == "diversity"
    assert "F1 (%)" in ranked.columns and "erank of kept tokens" in ranked.columns


def test_family_mean_delta_and_rank_correlation_are_paired_over_images():
    rows = _rows(["saliency@32", "visionzip@32", "scope(alpha=0,p=1)@32"],
                 skill={"saliency@32": 0.55, "visionzip@32": 0.6, "scope(alpha=0,p=1)@32": 0.95})
    gap = analysis.family_mean_delta(rows, ["saliency@32", "visionzip@32"], ["scope(alpha=0,p=1)@32"],
                                     metric="accuracy", n_bootstrap=200)
    assert gap.estimate < 0 and gap.high < 0 and len(gap.distribution) == 200
    by_hand = rows.groupby("config")["correct"].mean()
    assert gap.estimate == pytest.approx((by_hand["saliency@32"] + by_hand["visionzip@32"]) / 2
                                         - by_hand["scope(alpha=0,p=1)@32"])
    captions = _captions(["saliency@16", "divprune@16", "fps@16", "visionzip@16"])
    rho = analysis.rank_correlation(captions, ["saliency@16", "divprune@16", "fps@16", "visionzip@16"],
                                    n_bootstrap=100)
    assert rho.estimate == pytest.approx(1.0) and rho.low > 0


def _captions(configs, n_images: int = 25) -> pd.DataFrame:
    """Caption rows: config i keeps tokens of erank ~10 + 5i and hallucinates with rate ~0.1 + 0.1i."""
    rng = np.random.default_rng(1)
    records = []
    for index, config in enumerate(configs):
        for i in range(n_images):
            mentions = 6
            hallucinated = int(rng.binomial(mentions, 0.1 + 0.1 * index))
            records.append({"config": config, "qid": f"c{i}", "image": f"im{i}", "task": "caption",
                            "n_mentions": mentions, "n_hallucinated": hallucinated, "hallucinated": hallucinated > 0,
                            "n_gt": 4, "n_recalled": 3, "length": 20, "erank_kept": 10.0 + 5 * index + rng.normal(),
                            "entropy_kept": 0.9})
    return pd.DataFrame(records)


def test_interval_claims(tmp_path):
    specs = [{"id": "I", "source": "s", "statement": "gaps positive", "test": "all_of", "correction": "holm",
              "parts": [{"id": "I.{k}", "for_each": {"k": [16, 32]}, "statement": "K={k}", "test": "interval",
                         "metric": "ece", "a": "gap[K={k}]", "direction": "greater"}]},
             {"id": "J", "source": "s", "statement": "missing", "test": "interval", "a": "nothing", "direction": "less"}]
    (tmp_path / "x.yaml").write_text(yaml.safe_dump(specs, sort_keys=False))
    draws = np.random.default_rng(0).normal(0.05, 0.01, 500)
    values = {"gap[K=16]": BootstrapInterval(0.05, 0.03, 0.07, 0.95, draws),
              "gap[K=32]": BootstrapInterval(0.05, 0.03, 0.07, 0.95, draws)}
    out = {c.id: c for c in evaluate_claims("x", {"rows": pd.DataFrame()}, {"n_tokens": N}, values,
                                            directory=tmp_path)}
    assert out["I"].verdict == "holds" and out["I"].parts[0].comparison.startswith("gap[K=16]: claimed above 0;")
    assert out["I"].parts[0].estimate == 0.05 and out["I"].parts[0].p_holds < 1e-3
    assert out["J"].verdict == "not applicable: needs nothing"


def test_claims_file_loads():
    from studylib.claim_specs import load_specs

    ids = [spec.id for spec in load_specs("every_pruner")]
    assert ids == ["E1", "E2", "E3", "E4", "E5", "E6", "E7"]


def test_methods_page_table_lists_every_registered_pruner(throwaway):
    from studylib import build
    from studylib.pruners import pruner_table

    page = build.pruners_page()
    for name in list_pruners():
        assert f"| `{name}` |" in page
    table = pruner_table()
    assert list(table.columns) == ["name", "family", "stage", "method", "parameters", "source"]
    assert table.set_index("name").loc[throwaway, "source"] == "a test"
    assert table.set_index("name").loc["scope_adaptive", "family"] == "adaptive"


def test_neighbour_gaps_are_paired_bootstraps_and_holm_decides_which_are_resolved():
    skill = {"scope(alpha=0,p=1)@32": 0.9, "divprune@32": 0.86, "saliency@32": 0.6, "visionzip@32": 0.59,
             **{f"random(seed={s})@32": 0.62 + 0.01 * s for s in range(3)}}
    configs = ["full@144", *skill]
    rows = _rows(configs, n_images=300, skill={"full@144": 0.8, **skill})
    specs = ["scope(alpha=0,p=1)", "divprune", "saliency", "visionzip", "random"]
    table = ep.aggregate(ep.summarise(rows, pope=True, n_bootstrap=5), N, specs)
    ranking = ep.neighbours(rows, table, 32, "ece", n_bootstrap=300, seed=0)
    assert list(ranking["name"]) == ["scope", "divprune", "random", "saliency", "visionzip"]
    by_hand = rows.groupby("config").apply(lambda g: abs(0.9 - g["correct"].mean()))  # ECE at constant confidence
    assert ranking["value"].iloc[2] == pytest.approx(np.mean([by_hand[f"random(seed={s})@32"] for s in range(3)]))
    assert (ranking["gap"].iloc[1:] >= 0).all() and ranking["gap"].iloc[1:].to_numpy() == pytest.approx(
        np.diff(ranking["value"].to_numpy()))
    direct = analysis.paired_delta(rows, "divprune@32", "scope(alpha=0,p=1)@32", "ece", n_bootstrap=300)
    assert (ranking["gap_low"].iloc[1], ranking["gap_high"].iloc[1]) == pytest.approx((-direct.high, -direct.low))
    assert ranking["resolved"].tolist() == [False, False, True, False, False]
    assert ep.tiers(ranking) == [["scope", "divprune"], ["random", "saliency", "visionzip"]]
    record = ep.resolution_record("POPE", 32, "ece", ranking)
    assert record["resolved gaps"] == "1 of 4"
    assert record["tiers, best first (< = a resolved gap)"] == "scope, divprune < random, saliency, visionzip"
    table_words = ep.ranking_table(ranking, "ece")
    assert table_words["ECE (15 bins) gap resolved (Holm over the ranking)"].tolist() == [
        "", "not resolved", "resolved", "not resolved", "not resolved"]


def test_a_pruner_that_keeps_the_same_tokens_as_its_neighbour_is_not_tested_against_it():
    rows = _rows(["full@144", "saliency@32", "hired@32", "divprune@32"], n_images=60,
                 skill={"saliency@32": 0.7, "hired@32": 0.7, "divprune@32": 0.9})
    kept = {"saliency@32": [1, 2], "hired@32": [1, 2], "divprune@32": [3, 4], "full@144": list(range(144))}
    rows["kept"] = [kept[c] for c in rows["config"]]
    same = rows["config"] == "hired@32"
    for column in ("correct", "prediction", "probs", "logits", "confidence"):
        rows.loc[same, column] = rows.loc[rows["config"] == "saliency@32", column].to_numpy()
    table = ep.aggregate(ep.summarise(rows, pope=True, n_bootstrap=5), N, ["saliency", "hired", "divprune"])
    ranking = ep.neighbours(rows, table, 32, "ece", n_bootstrap=200, seed=0)
    by_name = ranking.set_index("name")
    assert by_name.loc["saliency", "same_as"] == "hired" and math.isnan(by_name.loc["saliency", "p"])
    assert not by_name.loc["saliency", "resolved"]
    assert ep.resolution_record("POPE", 32, "ece", ranking)["resolved gaps"].endswith(
        "(1 with the same tokens, not tested)")
    words = ep.ranking_table(ranking, "ece").set_index("pruner")
    assert words.loc["saliency", "ECE (15 bins) gap to the pruner above [95 % CI]"] == "0 (same tokens)"
    # a different selection with an equal value is still tested
    rows.loc[same, "kept"] = pd.Series([[5, 6]] * int(same.sum()), index=rows.index[same])
    assert ep.neighbours(rows, table, 32, "ece", n_bootstrap=200, seed=0).set_index("name").loc["saliency", "same_as"] == ""


@pytest.mark.parametrize("metric", ep.ESTIMATORS)
def test_every_estimator_ranks_with_its_own_ci(metric):
    skill = {"scope(alpha=0,p=1)@32": 0.9, "divprune@32": 0.7}
    rows = _rows(["full@144", *skill], n_images=80, skill={"full@144": 0.8, **skill})
    rng = np.random.default_rng(1)
    rows["confidence"] = rng.uniform(0.5, 1.0, len(rows))
    table = ep.aggregate(ep.summarise(rows, pope=True, n_bootstrap=5), N, ["scope(alpha=0,p=1)", "divprune"])
    ranking = ep.neighbours(rows, table, 32, metric, n_bootstrap=200, seed=0)
    assert np.isfinite(ranking[["value_low", "value_high"]].to_numpy()).all()
    assert (ranking["value_low"] < ranking["value_high"]).all()
    direct = analysis.config_draws(rows, ["divprune@32"], metric, n_bootstrap=1)[0][0]
    assert ranking.set_index("name").loc["divprune", "value"] == pytest.approx(direct)
    text = ep.ranking_table(ranking, metric)
    assert text.columns[3] == f"{ep.ESTIMATOR_WORDS[metric]} [95 % CI]" and text.iloc[0, 3].count("[") == 1


def test_the_leaderboard_lists_every_budget_and_estimator_with_human_names():
    skill = {"scope(alpha=0,p=1)@32": 0.9, "divprune@32": 0.7, **{f"random(seed={s})@32": 0.6 for s in range(2)}}
    rows = _rows(["full@144", *skill], n_images=40, skill={"full@144": 0.8, **skill})
    table = ep.aggregate(ep.summarise(rows, pope=True, n_bootstrap=5), N, ["scope(alpha=0,p=1)", "divprune", "random"])
    rankings = {(32, m): ep.neighbours(rows, table, 32, m, n_bootstrap=50, seed=0) for m in ep.ESTIMATORS}
    html = ep.leaderboard(rankings, [32], {32: 128}, "POPE", "TOY model").html
    for words in ep.ESTIMATOR_WORDS.values():
        assert html.count(words) >= 3, words  # one row per pruner
    assert "32 (128)" in html and "SCOPE" in html and "random (mean of 2 seeds)" in html
    assert "scope(alpha" not in html
