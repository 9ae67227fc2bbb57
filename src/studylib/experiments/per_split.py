"""Per-split POPE: where does the calibration gain come from? (seed 000 §4.6)

The same budget sweep as the U-curve (default SCOPE, the unpruned model once at K = N),
summarised per POPE split (random / popular / adversarial): the ECE change of moderate pruning
on every split with its paired image-bootstrap CI, beside the paper's §4.6 numbers, and which
split gains most (point estimates).
"""

from __future__ import annotations

import pandas as pd
from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters
from studylib.experiments.result import Result
from studylib.pages import style_table
from studylib.reported import reported

REPORTED_MODERATE = "scope(alpha=1,p=1)"  # the pruner of the paper's §4.6 numbers (K = 128)


def run(*, dataset, dataset_options, pruner, budgets, reported_budgets, moderate_k, **settings) -> Result:
    setup = Setup.create("per_split", settings)
    setup.validate(dataset, dataset_options, ["full", pruner], budgets)
    k_map, moderate_k, _ = budget_parameters(setup, budgets, reported_budgets, moderate_k)

    rows = setup.sweep(dataset, dataset_options, ["full", pruner], budgets)
    by_split = analysis.calibration_summary(rows, by=("config", "split"), **setup.stats)
    splits = list(dict.fromkeys(rows["split"]))
    full, moderate = setup.cfg("full"), setup.cfg(pruner, moderate_k)
    changes = {split: analysis.paired_delta(rows[rows["split"] == split], full, moderate, metric="ece",
                                            **setup.stats) for split in splits}
    table = split_table(by_split, changes, full, moderate, moderate_k, setup.label)

    context = {"pruner": pruner, "moderate_k": moderate_k, "k_map": k_map, "splits": splits}
    values = {f"ece_change[{split}]": delta.estimate for split, delta in changes.items()}
    result = setup.result(rows={"rows": rows}, summary=by_split)
    result.tables = {"splits": style_table(table, hide_index=True, caption=f"Per-split ECE on {dataset} "
                                                                           f"({setup.label}) vs. the paper's "
                                                                           "(LLaVA-1.5-7B, seed 000 §4.6)")}
    result.figures = {"per_split": _figure(by_split, splits, setup.toy)}
    result.claims = setup.claims(rows, context, values)
    result.values = {f"{split}_ece_change": delta.estimate for split, delta in changes.items()}
    result.notes["run"] = f"splits: {', '.join(map(str, splits))}; {setup.size_note(rows, dataset)}"
    return result


def split_table(by_split: pd.DataFrame, changes: dict, full: str, moderate: str, moderate_k: int,
                label: str) -> pd.DataFrame:
    """One row per split: ECE unpruned and at ``moderate``, the change with its CI, and the
    paper's §4.6 values (unpruned, default SCOPE at K = 128)."""
    ece = by_split.set_index(["config", "split"])[["ece", "ece_low", "ece_high"]]
    paper = reported("000", "§4.6 text")
    records = []
    for split, delta in changes.items():
        ref = paper[paper["benchmark"] == f"POPE-{split}"].set_index("pruner")["value"]
        record = {"split": split}
        for config, name in ((full, "ECE, unpruned"), (moderate, f"ECE, K={moderate_k}")):
            value, low, high = ece.loc[(config, split)]
            record |= {name: value, f"{name}_low": low, f"{name}_high": high}
        records.append(record | {"change": delta.estimate, "change_low": delta.low, "change_high": delta.high,
                                 "paper: unpruned": ref.get("full", float("nan")),
                                 "paper: K=128": ref.get(REPORTED_MODERATE, float("nan"))})
    return pd.DataFrame(records)


def _figure(by_split: pd.DataFrame, splits: list, toy: bool) -> Figure:
    fig = Figure(figsize=(plots.PAGE_WIDTH, 3.6), layout="constrained")
    axes = fig.subplots(1, len(splits), sharey=True, squeeze=False)[0]
    for ax, split in zip(axes, splits):
        plots.u_curve(by_split[by_split["split"] == split], y="ece", ax=ax, toy=toy, title=f"{split}", legend=False)
    plots.shared_legend(fig, axes[0])
    return fig
