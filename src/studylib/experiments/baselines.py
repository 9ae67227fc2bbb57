"""External baselines, reliability diagrams and selective prediction (seed 000 §4.3, §4.4, §4.8).

Every method (pure-coverage and default SCOPE, saliency-only [CLS] top-K, random pruning once
per seed, real FastV) runs at every budget, plus the unpruned model, on the same questions.
Table 3 gives accuracy, ECE, Brier and over-confidence beside the paper (seeded methods as mean
± sd over seeds); Fig. 3 the reliability diagrams of the unpruned model, pure-coverage SCOPE
and this run's best-calibrated configuration; §4.8 selective accuracy at 80 % coverage, AURC and
the risk–coverage curves.  The claims compare pure-coverage SCOPE with each method at every
budget (and every seed), FastV and saliency-only with the unpruned model, and SCOPE's selective
prediction with the unpruned model's.
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters, metric_at
from studylib.experiments.result import Result
from studylib.labels import config_label
from studylib.pages import rows_by_source, style_table
from studylib.reported import beside_reported, to_paper_units
from studylib.sweep import Config

TABLE3_METRICS = ["accuracy", "ece", "brier", "overconfidence"]
SEED_SPREAD_METRICS = ["accuracy", "ece"]
CI_COLUMNS = ["config", "accuracy", "accuracy_low", "accuracy_high", "ece", "ece_low", "ece_high",
              "ece_debiased", "ece_debiased_low", "ece_debiased_high", "smece", "smece_low", "smece_high",
              "aurc", "aurc_low", "aurc_high", "yes_ratio"]
PURE, HYBRID, SALIENCY, FASTV, RANDOM = "scope(alpha=0)", "scope(alpha=1)", "saliency", "fastv", "random"


def run(*, dataset, dataset_options, pruners, seeds, budgets, reported_budgets, moderate_k, severe_drop,
        **settings) -> Result:
    setup = Setup.create("baselines", settings)
    setup.validate(dataset, dataset_options, ["full", *pruners], budgets, seeds)
    k_map, moderate_k, _ = budget_parameters(setup, budgets, reported_budgets, moderate_k)

    rows = setup.sweep(dataset, dataset_options, ["full", *pruners], budgets, seeds)
    summary = analysis.calibration_summary(rows, ci=analysis.CI_METRICS + analysis.ESTIMATOR_METRICS, **setup.stats)
    best = _lowest_ece_config(summary)
    first_k = budgets[0]
    label = setup.label

    result = setup.result(rows={"rows": rows}, summary=summary)
    result.tables = {
        "table3": style_table(rows_by_source(_table3(summary, label, k_map)),
                              caption=f"Baselines on {dataset}: {label} vs. reported (seed 000 Table 3)"),
        "ci": style_table(summary[CI_COLUMNS], hide_index=True,
                          caption=f"Every configuration with 95 % bootstrap CIs ({label}, "
                                  f"{rows['qid'].nunique():,} questions each)"),
        "selective": style_table(rows_by_source(_selective_table(summary, setup, moderate_k, k_map)),
                                 caption="Selective prediction at 80 % coverage and AURC"),
    }
    result.figures = {
        "reliability": _reliability_figure(rows, setup, first_k, best),
        "risk_coverage": _risk_coverage_figure(rows, setup, moderate_k, best),
    }
    context = {"budgets": list(budgets), "random_seeds": _seeds_run(rows, RANDOM, seeds), "first_k": first_k,
               "moderate_k": moderate_k, "k_map": k_map, "severe_drop_pp": severe_drop * 100,
               "minus_severe_drop": -severe_drop}
    result.claims = setup.claims(rows, context)
    result.values = {
        "full_ece": metric_at(summary, setup.cfg("full"), "ece"),
        "pure_ece": metric_at(summary, setup.cfg(PURE, first_k), "ece"),
        "saliency_ece": metric_at(summary, setup.cfg(SALIENCY, first_k), "ece"),
        "fastv_accuracy": metric_at(summary, setup.cfg(FASTV, first_k), "accuracy"),
        "best_config": best or "none",
    }
    result.notes["run"] = setup.size_note(rows, dataset)
    return result


def _lowest_ece_config(summary: pd.DataFrame) -> str | None:
    """The pruned configuration with the lowest ECE in this run (None if nothing was pruned)."""
    pruned = summary[summary["method"] != "full"]
    return pruned.loc[pruned["ece"].idxmin(), "config"] if len(pruned) else None


def _seeds_run(rows: pd.DataFrame, method: str, seeds) -> list[int]:
    """Seeds of ``method``'s configurations in this run (the claims test every one); ``seeds``
    (or seed 0) when the method did not run, so its claims name what they need."""
    ran = {Config.parse(c).seed for c in rows["config"].unique() if Config.parse(c).method == method}
    return sorted(s for s in ran if s is not None) or list(seeds or [0])


def _table3(summary: pd.DataFrame, label: str, k_map) -> pd.DataFrame:
    """Table 3: one row per method and budget (seeds of a method averaged, their sd beside
    accuracy and ECE), this run beside the paper."""
    methods = summary.assign(method_spec=[plots.series_label(p) for p in summary["pruner"]])
    grouped = methods.groupby(["method_spec", "k"], sort=False)
    table = grouped[TABLE3_METRICS].mean()
    spread = grouped[TABLE3_METRICS].std().add_suffix("_sd")
    table = (table.join(spread).join(grouped.size().rename("n_seeds")).reset_index()
             .rename(columns={"method_spec": "pruner"}))
    side = beside_reported(table, TABLE3_METRICS, paper="000", table="Table 3", label=label, k_map=k_map)
    for metric in SEED_SPREAD_METRICS:  # seed spread next to the mean (NaN for single runs)
        side[(metric, "sd over seeds")] = to_paper_units(table, [metric])[f"{metric}_sd"].to_numpy()
    return side.sort_index(axis=1, level=0, sort_remaining=False)


def _selective_table(summary: pd.DataFrame, setup: Setup, moderate_k: int, k_map) -> pd.DataFrame:
    """§4.8: accuracy on the 80 % most confident questions and AURC, at K = N and the moderate
    budget, beside the paper."""
    selective = summary[summary["k"].isin([setup.n_tokens, moderate_k])]
    return beside_reported(selective, ["sel_acc_80", "aurc"], paper="000", table=["§4.8 text", "Table 1"],
                           label=setup.label, k_map=k_map, aliases={"sel_acc_80": "selective_accuracy_80"}, ci=True)


def _reliability_figure(rows: pd.DataFrame, setup: Setup, first_k: int, best: str | None) -> Figure:
    """Fig. 3: the unpruned model, pure-coverage SCOPE at the first budget and the lowest-ECE
    configuration of this run (panels whose configuration the grid lacks are left out), binned and,
    below, relplot's smoothed diagram."""
    panels = {config_label(setup.cfg("full")): setup.cfg("full"),
              config_label(setup.cfg(PURE, first_k)): setup.cfg(PURE, first_k),
              f"lowest ECE: {config_label(best)}" if best else "": best}
    present = set(rows["config"])
    shown = {name: config for name, config in panels.items() if config in present}
    bins = {name: analysis.reliability(rows, config) for name, config in shown.items()}
    smooth = {name: analysis.smooth_reliability(rows, config) for name, config in shown.items()}
    return plots.reliability_diagram(bins, smooth=smooth, toy=setup.toy,
                                     title="Reliability: full vs. pruned (15 bins; below: smoothed)")


def _risk_coverage_figure(rows: pd.DataFrame, setup: Setup, moderate_k: int, best: str | None) -> Figure:
    """Risk–coverage curves of the unpruned model, SCOPE α = 1 and 0, saliency-only at the
    moderate budget, and the lowest-ECE configuration."""
    configs = [setup.cfg("full"), setup.cfg(HYBRID, moderate_k), setup.cfg(PURE, moderate_k),
               setup.cfg(SALIENCY, moderate_k), best]
    present = set(rows["config"])
    curves = {config_label(config): analysis.risk_coverage(rows, config) for config in configs if config in present}
    return plots.risk_coverage_plot(curves, toy=setup.toy, title=f"Risk–coverage at K={moderate_k}")
