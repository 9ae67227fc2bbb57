"""Alpha sweep: saliency vs. coverage inside SCOPE (seed 000 §4.2, Table 2 and Fig. 2).

SCOPE scores a candidate token by its coverage gain times its [CLS] saliency raised to α
(α = 0 pure coverage, α = 1 the default hybrid).  The α × K grid plus the unpruned model runs
through one code path (same attention source, same coverage objective; only α changes);
accuracy and ECE (binned, debiased and smooth) with image-bootstrap CIs are laid beside the
paper's Table 2, drawn as heatmaps and ECE-vs-K curves, and the claims compare α = 0, 0.5 and 1
at every budget.  Any α grid runs: a claim whose α is not in the grid is *not applicable*.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters, metric_at, require
from studylib.experiments.result import Result
from studylib.pages import rows_by_source, style_table
from studylib.pruners import parse_spec
from studylib.reported import beside_reported, reported_points, to_paper_units

REFERENCE_COLUMNS = ["config", "n", "accuracy", "ece", "ece_low", "ece_high"]
PURE, HYBRID = "scope(alpha=0)", "scope(alpha=1)"


def run(*, dataset, dataset_options, alphas, budgets, reported_budgets, moderate_k, accuracy_margin,
        **settings) -> Result:
    setup = Setup.create("alpha_sweep", settings)
    require(isinstance(alphas, (list, tuple)) and len(alphas) > 0,
            f"alphas = {alphas!r}: give a non-empty list of SCOPE saliency exponents, e.g. [0, 0.5, 1]")
    pruners = [f"scope(alpha={a})" for a in alphas]
    setup.validate(dataset, dataset_options, ["full", *pruners], budgets)
    k_map, moderate_k, _ = budget_parameters(setup, budgets, reported_budgets, moderate_k)

    rows = setup.sweep(dataset, dataset_options, ["full", *pruners], budgets)
    summary = analysis.pruner_params(analysis.calibration_summary(
        rows, ci=analysis.CI_METRICS + analysis.ESTIMATOR_METRICS, **setup.stats))
    side = beside_reported(summary, ["accuracy", "ece", *analysis.ESTIMATOR_METRICS], paper="000", table="Table 2",
                           label=setup.label, k_map=k_map, ci=True)
    reference = to_paper_units(summary.loc[summary["method"] == "full", REFERENCE_COLUMNS], ["accuracy"])

    context = {"budgets": list(budgets), "moderate_k": moderate_k, "k_map": k_map,
               "accuracy_margin": accuracy_margin, "accuracy_margin_pp": accuracy_margin * 100}
    result = setup.result(rows={"rows": rows}, summary=summary)
    result.tables = {
        "table2": style_table(rows_by_source(side),
                              caption=f"SCOPE alpha sweep on {dataset}: {setup.label} vs. reported "
                                            "(seed 000 Table 2)"),
        "full": style_table(reference, caption="Unpruned model (reference)", hide_index=True),
    }
    result.figures = {"figure2": _figure(summary, side, setup.toy)}
    result.claims = setup.claims(rows, context)
    result.values = _headline_values(summary, setup, moderate_k)
    result.notes["run"] = setup.size_note(rows, dataset)
    return result


def _headline_values(summary, setup: Setup, moderate_k: int) -> dict[str, float]:
    """ECE/accuracy of pure coverage and default SCOPE at the moderate budget and the unpruned
    model's ECE (NaN for a configuration the grid lacks)."""
    pure, hybrid = setup.cfg(PURE, moderate_k), setup.cfg(HYBRID, moderate_k)
    return {
        "pure_moderate_ece": metric_at(summary, pure, "ece"),
        "hybrid_moderate_ece": metric_at(summary, hybrid, "ece"),
        "pure_moderate_accuracy": metric_at(summary, pure, "accuracy"),
        "full_ece": metric_at(summary, setup.cfg("full"), "ece"),
    }


def _figure(summary, side, toy: bool) -> Figure:
    """Fig. 2: ECE and accuracy heatmaps over α × K, and ECE against K per α."""
    fig = Figure(figsize=(plots.PAGE_WIDTH, 6.4), layout="constrained")
    top, bottom = fig.subfigures(2, 1, height_ratios=(1, 1.25))
    left, middle = top.subplots(1, 2)
    plots.alpha_heatmap(summary, value="ece", where={"method": "scope"}, ax=left, toy=toy, title="ECE")
    plots.alpha_heatmap(summary, value="accuracy", where={"method": "scope"}, ax=middle, toy=toy,
                        title="accuracy (%)")
    plots.u_curve(summary[summary["method"] == "scope"], y="ece", hue="alpha", ax=bottom.subplots(), toy=toy,
                  ci=True, title="ECE vs. K per α (95 % CIs)", reported=_reported_by_alpha(side, "ece"))
    return fig


def _reported_by_alpha(side, metric: str) -> dict:
    """The paper's Table 2 values of ``metric`` by α: ``{alpha: {our K: value}}`` (the figure's series)."""
    return {float(parse_spec(spec).params["alpha"]) if spec != "full" else spec: points
            for spec, points in reported_points(side, metric).items()}
