"""Temperature scaling, cross-validated (seed 000 §4.7 and the T* column of Table 1).

The same budget sweep as the U-curve (default SCOPE, the unpruned model once at K = N); for
every configuration one scalar temperature T is fitted (NLL) on all folds of images but one and
applied to the held-out fold, with identical folds for every configuration
(:func:`studylib.analysis.temperature_summary`).  ECE, NLL and Brier before and after scaling
beside the paper's numbers; the claims compare point estimates (no CI for scaled metrics here).
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters, require
from studylib.experiments.result import Result
from studylib.pages import rows_by_source, style_table
from studylib.reported import beside_reported
from studylib.sweep.validate import folds_problems

SIDE_METRICS = ["temperature", "ece_before", "ece_after"]
SIDE_ALIASES = {"temperature": "temperature", "ece_before": "ece", "ece_after": "ece_after_ts"}
DETAIL_COLUMNS = ["config", "t_mean", "t_std", "ece_before", "ece_before_low", "ece_before_high", "ece_after",
                  "ece_after_low", "ece_after_high"]
NLL_COLUMNS = ["config", "nll_before", "nll_after", "brier_before", "brier_after", "t_at_bound"]
STAGES = (("before scaling", "ece_before", "--"), ("after scaling (held-out)", "ece_after", ":"))


def run(*, dataset, dataset_options, pruner, budgets, reported_budgets, moderate_k, n_folds, **settings) -> Result:
    setup = Setup.create("temperature_scaling", settings)
    setup.validate(dataset, dataset_options, ["full", pruner], budgets)
    k_map, moderate_k, _ = budget_parameters(setup, budgets, reported_budgets, moderate_k)
    folds = folds_problems({"n_folds": n_folds, "limit": setup.limit})
    require(not folds, "; ".join(folds))

    rows = setup.sweep(dataset, dataset_options, ["full", pruner], budgets)
    scaled = analysis.temperature_summary(rows, n_folds=n_folds, seed=setup.bootstrap_seed)
    scaled["temperature"] = scaled["t_mean"]
    scaled_rows = analysis.held_out_scaled(rows, n_folds=n_folds, seed=setup.bootstrap_seed)
    for stage, frame in (("before", rows), ("after", scaled_rows)):  # ECE CIs, image bootstrap on the fixed folds
        cis = analysis.calibration_summary(frame, ci=("ece",), **setup.stats).set_index("config")
        scaled[f"ece_{stage}_low"] = scaled["config"].map(cis["ece_low"])
        scaled[f"ece_{stage}_high"] = scaled["config"].map(cis["ece_high"])
    side = beside_reported(scaled, SIDE_METRICS, paper="000", table=["Table 1", "§4.7 text"], label=setup.label,
                           k_map=k_map, aliases=SIDE_ALIASES)

    full, moderate = setup.cfg("full"), setup.cfg(pruner, moderate_k)
    t = scaled.set_index("config")
    context = {"pruner": pruner, "moderate_k": moderate_k, "k_map": k_map, "configs": list(t.index),
               "other_configs": [c for c in t.index if c != moderate], "best_after": t["ece_after"].idxmin()}
    result = setup.result(rows={"rows": rows}, summary=scaled)
    result.tables = {
        "scaling": style_table(rows_by_source(side), caption=f"Cross-validated temperature scaling ({n_folds} folds): "
                                             f"{setup.label} vs. reported"),
        "folds": style_table(scaled[DETAIL_COLUMNS], hide_index=True,
                             caption=f"ECE before and after scaling with 95 % CIs ({setup.label})"),
        "nll": style_table(scaled[NLL_COLUMNS], hide_index=True,
                           caption=f"NLL and Brier before and after scaling ({setup.label})"),
    }
    result.figures = {"scaling": _figure(scaled, setup.toy)}
    result.claims = setup.claims({"rows": rows, "scaled": scaled_rows}, context)
    result.values = {
        "full_temperature": t.loc[full, "t_mean"], "moderate_temperature": t.loc[moderate, "t_mean"],
        "full_ece_after": t.loc[full, "ece_after"], "moderate_ece_after": t.loc[moderate, "ece_after"],
    }
    result.notes["run"] = setup.size_note(rows, dataset)
    return result


def _figure(scaled: pd.DataFrame, toy: bool) -> Figure:
    long = pd.concat([scaled.assign(stage=stage, ece=scaled[column]) for stage, column, _ in STAGES])
    fig = Figure(figsize=(plots.PAGE_WIDTH, 3.8), layout="constrained")
    left, right = fig.subplots(1, 2)
    plots.u_curve(long[long["method"] != "full"], y="ece", hue="stage", ci=False, ax=left, toy=toy,
                  title="ECE before / after scaling")
    for stage, _, style in STAGES:
        left.axhline(long[(long["method"] == "full") & (long["stage"] == stage)]["ece"].iloc[0], color="0.3",
                     linestyle=style, label=f"full, {stage}")
    left.legend()
    plots.u_curve(scaled, y="t_mean", ci=False, ax=right, toy=toy, title="fitted temperature T*", ylabel="T*")
    right.axhline(1.0, color="0.6", linewidth=0.8)
    return fig
