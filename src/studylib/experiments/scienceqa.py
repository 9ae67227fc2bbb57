"""ScienceQA-IMG: multiple-choice calibration across token budgets (seed 000 §4.5, Table 4).

The unpruned model runs once at K = N and the pruner at every smaller budget on the
multiple-choice task (answers scored by first-token probabilities renormalised over the
options); accuracy, ECE (binned, debiased and smooth), mean confidence and over-confidence with
image-bootstrap CIs, beside the paper's Table 4.  The claims: the smallest budget lowers ECE with accuracy stable or better,
ECE falls at every step down the chain of budgets (full → largest pruned → … → smallest), and
the model is over-confident at every budget.
"""

from __future__ import annotations

from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters
from studylib.experiments.result import Result
from studylib.pages import rows_by_source, style_table
from studylib import metric_catalog as mc
from studylib.reported import beside_reported, reported_points

#: the paper's Table 4 columns (the debiased and smooth ECE of each configuration are in ``result.summary``, and
#: the claims table judges the ECE claims under both; four CI columns beside the paper's would not fit a page)
TABLE4_METRICS = ["accuracy", "ece", "mean_confidence", "overconfidence"]
FIGURE_METRICS = ["ece", "accuracy", "overconfidence"]


def run(*, dataset, dataset_options, pruner, budgets, reported_budgets, accuracy_margin, **settings) -> Result:
    setup = Setup.create("scienceqa", settings)
    setup.validate(dataset, dataset_options, ["full", pruner], budgets)
    k_map, _, _ = budget_parameters(setup, budgets, reported_budgets)
    pruned = sorted((k for k in budgets if k < setup.n_tokens), reverse=True)

    rows = setup.sweep(dataset, dataset_options, ["full", pruner], budgets)
    summary = analysis.calibration_summary(rows, ci=analysis.CI_METRICS + analysis.ESTIMATOR_METRICS, **setup.stats)
    side = beside_reported(summary, TABLE4_METRICS, paper="000", table="Table 4", label=setup.label, k_map=k_map,
                           ci=True)

    chain = [setup.cfg("full")] + [setup.cfg(pruner, k) for k in pruned]  # validate: one pruned budget or more
    context = {"pruner": pruner, "k_map": k_map, "smallest_k": pruned[-1], "chain": chain,
               "chain_steps": budget_steps(chain), "accuracy_margin_pp": accuracy_margin * 100,
               "min_accuracy_change": -accuracy_margin}
    by_config = summary.set_index("config")
    values = {f"overconfidence[{c}]": by_config.loc[c, "overconfidence"] for c in chain}

    result = setup.result(rows={"rows": rows}, summary=summary)
    result.tables = {"table4": style_table(rows_by_source(side),
                                           caption=f"{pruner} on {dataset}: {setup.label} vs. reported "
                                                         "(seed 000 Table 4); debiased and smooth ECE: claims table")}
    result.figures = {"budgets": _figure(summary, side, setup.toy)}
    result.claims = setup.claims(rows, context, values)
    full, smallest = by_config.loc[chain[0]], by_config.loc[chain[-1]]
    result.values = {"full_accuracy": full["accuracy"], "full_ece": full["ece"],
                     "smallest_ece": smallest["ece"], "smallest_accuracy": smallest["accuracy"]}
    n_options = rows.drop_duplicates("qid")["choices"].map(len).value_counts().sort_index()
    options = ", ".join(f"{int(n):,} with {int(k)} options" for k, n in n_options.items())
    result.notes["run"] = (f"{rows['qid'].nunique():,} questions × {rows['config'].nunique()} configurations "
                           f"({options})")
    return result


def budget_steps(chain: list[str]) -> list[dict]:
    """One step per pair of consecutive configurations of ``chain`` (numbered from 1):
    ``{"i", "larger", "smaller"}``, the larger budget first."""
    return [{"i": i, "larger": a, "smaller": b} for i, (a, b) in enumerate(zip(chain, chain[1:]), start=1)]


def _figure(summary, side, toy: bool) -> Figure:
    """ECE, accuracy and over-confidence against K with 95 % CIs, the paper's Table 4 at the budgets ours
    stand for (open diamonds)."""
    fig = Figure(figsize=(plots.PAGE_WIDTH, 3.8), layout="constrained")
    for ax, metric in zip(fig.subplots(1, 3), FIGURE_METRICS):
        plots.u_curve(summary, y=metric, ax=ax, toy=toy, title=mc.metric(metric).name,
                      reported=reported_points(side, metric), legend=False)
    plots.shared_legend(fig, ax)
    return fig
