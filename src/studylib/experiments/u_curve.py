"""U-curve: default SCOPE across token budgets (seed 000 §4.1, Table 1).

The unpruned model runs once at K = N and the pruner at every smaller budget; calibration
(accuracy, binned, debiased and smooth ECE, Brier, NLL, AURC with image-bootstrap CIs) and the
cross-validated temperature T* per configuration, beside the paper's Table 1.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters
from studylib.experiments.result import Result
from studylib.pages import rows_by_source, style_table
from studylib import metric_catalog as mc
from studylib.reported import beside_reported, reported_points

TABLE1_METRICS = ["accuracy", "ece", "brier", "nll", "aurc", "temperature"]
CI_COLUMNS = ["config", "accuracy", "accuracy_low", "accuracy_high", "ece", "ece_low", "ece_high", "ece_debiased",
              "ece_debiased_low", "ece_debiased_high", "smece", "smece_low", "smece_high", "aurc", "aurc_low",
              "aurc_high"]


def run(*, dataset, dataset_options, pruner, budgets, reported_budgets, moderate_k, aggressive_k, accuracy_margin,
        n_folds, **settings) -> Result:
    setup = Setup.create("u_curve", settings)
    setup.validate(dataset, dataset_options, ["full", pruner], budgets)
    k_map, moderate_k, aggressive_k = budget_parameters(setup, budgets, reported_budgets, moderate_k, aggressive_k)

    rows = setup.sweep(dataset, dataset_options, ["full", pruner], budgets)
    summary = analysis.calibration_summary(rows, ci=analysis.CI_METRICS + analysis.ESTIMATOR_METRICS, **setup.stats)
    temperature = analysis.temperature_summary(rows, n_folds=n_folds, seed=setup.bootstrap_seed)
    table = summary.merge(temperature[["config", "t_mean"]], on="config").rename(columns={"t_mean": "temperature"})
    side = beside_reported(table, TABLE1_METRICS, paper="000", table="Table 1", label=setup.label, k_map=k_map)

    full, moderate = setup.cfg("full"), setup.cfg(pruner, moderate_k)
    context = {"pruner": pruner, "moderate_k": moderate_k, "aggressive_k": aggressive_k, "k_map": k_map,
               "accuracy_margin": accuracy_margin, "accuracy_margin_pp": accuracy_margin * 100}
    by_config = summary.set_index("config")
    result = setup.result(rows={"rows": rows}, summary=summary)
    result.tables = {
        "table1": style_table(rows_by_source(side), caption=f"Default SCOPE on {dataset}: {setup.label} vs. "
                                                            "reported (LLaVA-1.5-7B, seed 000 Table 1)"),
        "ci": style_table(summary[CI_COLUMNS], hide_index=True,
                          caption=f"{setup.label}, {rows['qid'].nunique():,} questions per configuration"),
    }
    result.figures = {"u_curve": _figure(summary, side, pruner, setup.toy)}
    result.claims = setup.claims(rows, context)
    result.values = {
        "full_accuracy": by_config.loc[full, "accuracy"], "full_ece": by_config.loc[full, "ece"],
        "full_ece_low": by_config.loc[full, "ece_low"], "full_ece_high": by_config.loc[full, "ece_high"],
        "moderate_accuracy": by_config.loc[moderate, "accuracy"], "moderate_ece": by_config.loc[moderate, "ece"],
        "aggressive_ece": by_config.loc[setup.cfg(pruner, aggressive_k), "ece"], "moderate_k": moderate_k,
        "n_questions": rows["qid"].nunique(),
    }
    result.notes["run"] = setup.size_note(rows, dataset)
    return result


def _figure(summary, side, pruner: str, toy: bool) -> Figure:
    """ECE, Brier, NLL and AURC against K with 95 % CIs, the paper's Table 1 values at the budgets ours
    stand for (open diamonds), the unpruned model as a dashed line with its CI as a grey band."""
    fig = Figure(figsize=(plots.PAGE_WIDTH, 7.0), layout="constrained")
    axes = fig.subplots(2, 2).flat
    for ax, metric in zip(axes, ["ece", "brier", "nll", "aurc"]):
        plots.u_curve(summary, y=metric, ax=ax, toy=toy, title=f"{mc.metric(metric).name} vs. K",
                      reported=reported_points(side, metric), legend=False)
    plots.shared_legend(fig, ax)
    return fig
