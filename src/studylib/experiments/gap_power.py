"""Gap power: the shape of SCOPE's coverage objective (seed 000 §5, Tables 5 and 6).

SCOPE (saliency exponent ``alpha`` fixed) runs over the coverage-gap power p × budget K on every
benchmark of ``tasks``; the rows of all benchmarks are concatenated with a ``benchmark`` column.
The page shows accuracy over p × K per benchmark, the paper's Table 5 (MME), the default p = 1
against the most accurate p of this run at the claim budgets beside the paper's Table 6, and
tests whether some p ≠ 1 beats p = 1 (G1) and whether, outside MME, the best p stays within a
margin of p = 1 (G2).
"""

from __future__ import annotations

import math

import pandas as pd
from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters, check_choice, require
from studylib.experiments.result import Result
from studylib.pages import claims_interactive, show_claims, style_table
from studylib.reported import reported, to_paper_units

#: our benchmark name (lower case) -> the name in the paper's Table 6
PAPER_BENCHMARKS = {"pope": "POPE", "scienceqa": "SQA", "sqa": "SQA", "mme": "MME"}


def run(*, tasks, gap_powers, alpha, budgets, reported_budgets, claim_budgets, accuracy_margin, **settings) -> Result:
    setup = Setup.create("gap_power", settings)
    pruners = [f"scope(alpha={alpha},p={p})" for p in gap_powers]
    _validate(setup, tasks, pruners, budgets, claim_budgets)
    k_map, _, _ = budget_parameters(setup, budgets, reported_budgets)

    rows = _sweep(setup, tasks, pruners, budgets)
    summary = analysis.pruner_params(analysis.calibration_summary(rows, by=("benchmark", "config"), **setup.stats))
    best = best_p_records(summary, tasks, claim_budgets)
    alternatives = [p for p in gap_powers if float(p) != 1.0]
    context = {"alpha": alpha, "benchmarks": list(tasks), "budgets": list(budgets), "gap_powers": list(gap_powers),
               "best_p": best, "k_map": k_map, "accuracy_margin": accuracy_margin,
               "accuracy_margin_pp": accuracy_margin * 100,
               "g1_comparisons": len(tasks) * len(budgets) * len(alternatives)}

    result = setup.result(rows={"rows": rows}, summary=summary)
    result.claims = setup.claims(rows, context)
    by_id = {claim.id: claim for claim in result.claims}
    result.tables = {
        "accuracy": _accuracy_table(summary, tasks, setup.label),
        "table5": _table5(),
        "table6": _table6(summary, best, k_map, setup.label),
        "g2_parts": show_claims(by_id["G2"].parts),
        "g1_parts": claims_interactive(by_id["G1"].parts, caption="G1: every p ≠ 1 against p = 1"),
    }
    result.figures = {"accuracy": _figure(summary, tasks, setup.toy)}
    result.values = {"n_better": sum(part.holds for part in by_id["G1"].parts),
                     "n_comparisons": len(by_id["G1"].parts)}
    result.notes["run"] = _run_note(rows, pruners, budgets)
    return result


def _validate(setup: Setup, tasks, pruners, budgets, claim_budgets) -> None:
    """One clear error for a bad task, model, pruner or budget, before any work."""
    require(isinstance(tasks, dict) and len(tasks) > 0,
            "tasks must map a benchmark name to {'dataset': ..., 'dataset_options': {...}} (optional 'limit')")
    for name, task in tasks.items():
        require(isinstance(task, dict) and "dataset" in task, f"tasks[{name!r}] needs a 'dataset' entry")
        unknown = set(task) - {"dataset", "dataset_options", "limit"}
        require(not unknown, f"tasks[{name!r}] has unknown entries {sorted(unknown)}; "
                             "use 'dataset', 'dataset_options' and 'limit'")
        setup.validate(task["dataset"], task.get("dataset_options", {}), pruners, budgets,
                       limit=task.get("limit", "default"))
    for k in claim_budgets:
        check_choice("claim_budgets entry", k, budgets)


def _sweep(setup: Setup, tasks, pruners, budgets) -> pd.DataFrame:
    """The rows of every benchmark, with a ``benchmark`` column (a task's own ``limit`` replaces the
    run's image limit for that benchmark)."""
    frames = [setup.sweep(task["dataset"], task.get("dataset_options", {}), pruners, budgets,
                          limit=task.get("limit", "default")).assign(benchmark=name)
              for name, task in tasks.items()]
    return pd.concat(frames, ignore_index=True)


def _run_note(rows: pd.DataFrame, pruners, budgets) -> str:
    per_benchmark = rows.groupby("benchmark", sort=False)["qid"].nunique()
    return "; ".join(f"{name}: {n:,} questions" for name, n in per_benchmark.items()) + (
        f" × {len(pruners) * len(budgets)} configurations")


def best_p_records(summary: pd.DataFrame, tasks, claim_budgets) -> list[dict]:
    """Per benchmark and claim budget, the most accurate p ≠ 1 of this run: ``{benchmark, k, p}``
    (no ``p`` when the grid has no p ≠ 1)."""
    accuracy = summary.set_index(["benchmark", "k", "gap_power"])["accuracy"].sort_index()
    records = []
    for name in tasks:
        for k in claim_budgets:
            candidates = accuracy.loc[(name, k)].drop(1.0, errors="ignore")
            record = {"benchmark": name, "k": k}
            if len(candidates):
                record["p"] = float(candidates.idxmax())
            records.append(record)
    return records


def _accuracy_table(summary: pd.DataFrame, tasks, label: str):
    """Accuracy (%) by benchmark and K (rows) × p (columns); the best p of each row in bold."""
    grid = to_paper_units(summary, ["accuracy"]).pivot_table(index=["benchmark", "k"], columns="gap_power",
                                                             values="accuracy").reindex(list(tasks), level=0)
    return (grid.style.format("{:.1f}").highlight_max(axis=1, props="font-weight: bold")
            .set_caption(f"Accuracy (%) ({label}) by benchmark and budget K (rows) and gap power p (columns)"))


def _table5():
    """The paper's Table 5 (MME score by K × the five p columns; column 5 is p = 1)."""
    t5 = reported("000", "Table 5")
    t5 = t5.assign(column=t5["setting"].str.extract(r"column (\d)")[0].astype(int))
    grid = t5.pivot_table(index="k", columns="column", values="value").rename(
        columns=lambda c: "p = 1 (col. 5)" if c == 5 else f"col. {c} (p lost)")
    return style_table(grid, digits={c: 0 for c in grid.columns},
                       caption="Reported Table 5: MME score of SCOPE by budget K and gap-power column")


def _table6(summary: pd.DataFrame, best: list[dict], k_map: dict[int, int], label: str):
    """p = 1 vs. this run's best p at each claim budget, beside the paper's Table 6."""
    accuracy = summary.set_index(["benchmark", "k", "gap_power"])["accuracy"]
    reported_t6 = reported("000", "Table 6")
    records = []
    for record in best:
        name, k, p = record["benchmark"], record["k"], record.get("p", math.nan)
        paper = reported_t6[(reported_t6["benchmark"] == PAPER_BENCHMARKS.get(name.lower(), name))
                            & (reported_t6["k"] == k_map.get(k))]
        records.append({"benchmark": name, "K": k, "paper K": k_map.get(k), "best p (this run)": p,
                        f"acc p=1 ({label})": 100 * accuracy.get((name, k, 1.0), math.nan),
                        f"acc best p ({label})": 100 * accuracy.get((name, k, p), math.nan),
                        "SCOPE p=1 (reported)": _reported_max(paper[paper["pruner"] != ""]),
                        "SCOPE best p (reported)": _reported_max(paper[paper["pruner"] == ""])})
    return style_table(pd.DataFrame(records), hide_index=True, digits={"best p (this run)": 1},
                       caption="p = 1 vs. best p; reported values are MME scores or accuracies (%) as in the "
                               "paper's Table 6")


def _reported_max(rows: pd.DataFrame) -> float:
    return rows["value"].max() if len(rows) else math.nan


def _figure(summary: pd.DataFrame, tasks, toy: bool) -> Figure:
    """One accuracy heatmap (p × K) per benchmark."""
    fig = Figure(figsize=(plots.PAGE_WIDTH, 3.0 * len(tasks)), layout="constrained")
    for ax, name in zip(fig.subplots(len(tasks), 1, squeeze=False)[:, 0], tasks):
        plots.alpha_heatmap(summary[summary["benchmark"] == name], value="accuracy", y="gap_power", ax=ax, toy=toy,
                            title=f"{name}: accuracy (%)")
    return fig
