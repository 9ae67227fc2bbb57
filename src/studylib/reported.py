"""The papers' own numbers (``data/reference/reported.csv``) and this run's numbers beside them.

One row of the CSV per reported value (columns: paper, table, page, section, benchmark, method,
pruner, k, setting, metric, value, unit, note; ``data/reference/README.md``).  :func:`reported`
filters it, :func:`reported_value` prints one value in the paper's units (what a claim cites),
:func:`beside_reported` lays this run's metrics next to the paper's.
"""

from __future__ import annotations

import math
from pathlib import Path
from typing import Any, Iterable, Mapping, Sequence

import pandas as pd

REPO_ROOT = Path(__file__).resolve().parents[2]
REPORTED_CSV = REPO_ROOT / "data" / "reference" / "reported.csv"
REPORTED_COLUMNS = ("paper", "table", "page", "section", "benchmark", "method", "pruner", "k",
                    "setting", "metric", "value", "unit", "note")
PAPERS = {
    "000": "Does Visual Token Pruning Improve Calibration? (arXiv 2604.12035)",
    "002": "AgilePruner (arXiv 2603.01236)",
    "003": "ID-Selection (arXiv 2604.05601)",
}


#: questions of the benchmarks the papers score (LLaVA-1.5's evaluation files: POPE 8,910, ScienceQA-IMG's
#: test questions with an image 2,017, MME 2,374; CHAIR: 500 COCO val2014 captions), by this study's
#: dataset names (the toy datasets stand for them)
BENCHMARK_QUESTIONS = {"POPE": 8910, "ScienceQA-IMG": 2017, "MME": 2374, "COCO captions": 500}
DATASET_BENCHMARKS = {"pope": "POPE", "toy-pope": "POPE", "scienceqa": "ScienceQA-IMG",
                      "toy-scienceqa": "ScienceQA-IMG", "mme": "MME", "coco-captions": "COCO captions",
                      "toy-captions": "COCO captions"}


def paper_questions(datasets: Iterable[str]) -> int | None:
    """Questions the papers score on the benchmarks these datasets stand for (``None`` if one is unknown)."""
    benchmarks = {DATASET_BENCHMARKS.get(str(d)) for d in datasets}
    return None if None in benchmarks or not benchmarks else sum(BENCHMARK_QUESTIONS[b] for b in benchmarks)


def reported(paper: str | None = None, table: str | None = None, *, path: Path = REPORTED_CSV,
             **filters: Any) -> pd.DataFrame:
    """Rows of ``reported.csv`` (all columns), filtered by paper, table and any column value
    (a list means "one of")."""
    frame = pd.read_csv(path, dtype={"paper": str, "k": "Int64", "page": str})
    frame["pruner"] = frame["pruner"].fillna("")
    frame["note"] = frame["note"].fillna("")
    conditions = dict(filters)
    if paper is not None:
        conditions["paper"] = paper
    if table is not None:
        conditions["table"] = table
    for column, value in conditions.items():
        if column not in frame:
            raise KeyError(f"reported.csv has no column {column!r}; columns: {list(frame.columns)}")
        values = value if isinstance(value, (list, tuple, set)) else [value]
        frame = frame[frame[column].isin(values)]
    return frame.reset_index(drop=True)


def reported_label(paper: str, table: str, model: str = "LLaVA-1.5-7B") -> str:
    return f"reported ({model}, seed {paper} {table})"


#: this run's metric -> (multiplier into the paper's unit, paper unit)
PAPER_UNITS = {
    "accuracy": (100.0, "%"),
    "f1": (100.0, "%"),
    "sel_acc_80": (100.0, "%"),
    "accuracy_sd": (100.0, "%"),
    "selective_accuracy_80": (100.0, "%"),
    "mean_confidence": (100.0, "%"),
    "overconfidence": (100.0, "pp"),
    "chair_s": (100.0, "%"),
    "chair_i": (100.0, "%"),
    "recall": (100.0, "%"),
}


def to_paper_units(frame: pd.DataFrame, metrics: Iterable[str]) -> pd.DataFrame:
    """Scale fraction-valued metrics (accuracy, confidence, CHAIR, ...) to percent as the papers
    print them; other columns unchanged.  Columns ``<metric>_low/_high`` follow their metric.  The
    converted metrics are listed in ``attrs["paper_units"]`` (so that tables do not scale them again)."""
    out = frame.copy()
    converted = set(out.attrs.get("paper_units", ()))
    for metric in metrics:
        factor = PAPER_UNITS.get(metric, (1.0, ""))[0]
        for column in (metric, f"{metric}_low", f"{metric}_high", f"{metric}_sd"):
            if column in out and factor != 1.0:
                out[column] = out[column] * factor
                converted.add(metric)
    out.attrs["paper_units"] = sorted(converted)  # read by studylib.pages.style_table: already in %
    return out


def beside_reported(ours: pd.DataFrame, metrics: Iterable[str], *, paper: str, table: str | Sequence[str],
                    label: str, k_map: Mapping[int, int] | None = None, keys: tuple[str, ...] = ("pruner", "k"),
                    benchmark: str | None = None, reported_pruner: Mapping[str, str] | None = None,
                    aliases: Mapping[str, str] | None = None, ci: bool = False,
                    full_k: int = 576) -> pd.DataFrame:
    """This run's metrics next to the paper's, one row per configuration.

    ``ours`` has one row per configuration with columns ``keys`` (``pruner`` spec and budget ``k``)
    and the metrics as fractions.  ``k_map`` maps our budget to the paper's (toy 144/48/32/16/8 ->
    576/192/128/64/32); ``reported_pruner`` maps our pruner spec to the spec in the CSV when they
    differ (e.g. seeds of random pruning).  Columns: a two-level index (metric, source) with
    source = ``label`` (this run) or ``"reported"``; values in the paper's units.  A reported
    cell is empty where the paper has no number for that configuration.  ``table`` may list
    several tables (first match wins); ``aliases`` maps our metric name to the CSV's
    (``sel_acc_80`` -> ``selective_accuracy_80``); ``ci=True`` adds the columns ``95% CI low`` and
    ``95% CI high`` for metrics with ``<metric>_low``/``_high`` columns (one column "this run [95 % CI]"
    on the page: :func:`studylib.pages.style_table`).  The unpruned model (``pruner == "full"``)
    is matched with the paper's ``full_k`` (576 for LLaVA-1.5) whatever our N.  A metric the cited
    tables do not report at all (e.g. debiased ECE) gets no "reported" column.
    """
    metrics = list(metrics)
    k_map = dict(k_map or {})
    reported_pruner = dict(reported_pruner or {})
    aliases = dict(aliases or {})
    ours = to_paper_units(ours, metrics)
    tables = [table] if isinstance(table, str) else list(table)
    ref = reported(paper, tables)
    ref = ref.assign(_order=ref["table"].map({t: i for i, t in enumerate(tables)})).sort_values("_order", kind="stable")
    ref = ref.iloc[::-1]  # so that the first table's value is written last and wins below
    if benchmark is not None:
        ref = ref[ref["benchmark"] == benchmark]
    lookup = {(r.pruner, int(r.k) if not pd.isna(r.k) else None, r.metric): r.value for r in ref.itertuples()}
    reported_metrics = set(ref["metric"])
    rows = []
    for _, row in ours.iterrows():
        pruner = reported_pruner.get(str(row["pruner"]), str(row["pruner"]))
        k = int(row["k"]) if "k" in row and not pd.isna(row["k"]) else None
        paper_k = full_k if pruner == "full" else k_map.get(k, k)
        out = {key: row[key] for key in keys}
        if k_map:
            out["paper K"] = paper_k
        for metric in metrics:
            out[(metric, label)] = row.get(metric, math.nan)
            if ci and f"{metric}_low" in row:
                out[(metric, "95% CI low")] = row[f"{metric}_low"]
                out[(metric, "95% CI high")] = row[f"{metric}_high"]
            if aliases.get(metric, metric) in reported_metrics:
                out[(metric, "reported")] = lookup.get((pruner, paper_k, aliases.get(metric, metric)), math.nan)
        rows.append(out)
    frame = pd.DataFrame(rows)
    index_cols = [c for c in frame.columns if not isinstance(c, tuple)]
    frame = frame.set_index(index_cols)
    frame.columns = pd.MultiIndex.from_tuples(frame.columns, names=["metric", "source"])
    return frame


def reported_points(side: pd.DataFrame, metric: str, reference: str = "full") -> dict:
    """The paper's values of ``metric`` in a :func:`beside_reported` table, for a figure: ``{pruner spec
    (seed left out): {our K: value}}`` and ``{reference: value}`` for the unpruned model (paper's units)."""
    from studylib.plots import series_label

    if (metric, "reported") not in side.columns:
        return {}
    values = side[(metric, "reported")].dropna()
    out: dict = {}
    for key, value in values.items():
        labels = dict(zip(side.index.names, key if isinstance(key, tuple) else (key,)))
        spec = series_label(str(labels.get("pruner", "")))
        if spec == reference:
            out[reference] = float(value)
        else:
            out.setdefault(spec, {})[labels.get("k")] = float(value)
    return out


def reported_number(paper: str, table: str, pruner: str, k: int | None, metric: str,
                    benchmark: str | None = None) -> tuple[float, str] | None:
    """One reported value and its unit as the paper prints it (``(86.9, "%")``), ``None`` when the
    paper has none.  ``pruner`` is a canonical spec; a seeded spec (``random(seed=0)``) falls
    back to the method's row (the paper reports random pruning as a mean over seeds)."""
    rows = reported(paper, table, metric=metric)
    if benchmark is not None:
        rows = rows[rows["benchmark"] == benchmark]
    if k is not None:
        rows = rows[rows["k"] == k]
    for spec in dict.fromkeys([pruner, pruner.split("(")[0]]):
        hit = rows[rows["pruner"] == spec]
        if len(hit):
            return float(hit["value"].iloc[0]), str(hit["unit"].iloc[0])
    return None


def reported_text(hit: tuple[float, str] | None) -> str:
    """A :func:`reported_number` as the paper prints it (``"0.024"``, ``"86.9 %"``), ``"—"`` for none."""
    if hit is None:
        return "—"
    value, unit = hit
    return f"{value:g} %" if unit == "%" else f"{value:g}"


def reported_value(paper: str, table: str, pruner: str, k: int | None, metric: str,
                   benchmark: str | None = None) -> str:
    """One reported value as text (:func:`reported_number`, :func:`reported_text`)."""
    return reported_text(reported_number(paper, table, pruner, k, metric, benchmark))


def conflicting_reports(paper: str, pruner: str, k: int | None, metric: str, benchmark: str | None = None,
                        table: str | None = None) -> str:
    """``""`` when ``paper`` prints one value for this setting (pruner, budget, metric, benchmark),
    else where it prints which, e.g. ``"Table 1: 85.5 %; Table 6: 83.9 %"`` (a claim citing one of
    them carries this as a footnote).  Only numbers of one benchmark are compared: without
    ``benchmark``, those of the benchmark(s) ``table`` reports this setting on (POPE's Table 1 is not
    compared with ScienceQA's Table 4)."""
    rows = reported(paper, metric=metric, pruner=pruner)
    if k is not None:
        rows = rows[rows["k"] == k]
    if benchmark is not None:
        rows = rows[rows["benchmark"] == benchmark]
    elif table is not None:
        rows = rows[rows["benchmark"].isin(set(rows.loc[rows["table"] == table, "benchmark"]))]
    conflicts = []
    for _, same in rows.groupby("benchmark", sort=False):
        if same["value"].nunique() < 2:
            continue
        by_value = same.groupby("value", sort=False)["table"].agg(lambda tables: ", ".join(dict.fromkeys(tables)))
        unit = " %" if (same["unit"] == "%").all() else ""
        conflicts.append("; ".join(f"{tables}: {value:g}{unit}" for value, tables in by_value.items()))
    return "; ".join(conflicts)


__all__ = ["BENCHMARK_QUESTIONS", "DATASET_BENCHMARKS", "PAPERS", "PAPER_UNITS", "REPORTED_COLUMNS", "REPORTED_CSV",
           "beside_reported", "conflicting_reports", "paper_questions", "reported", "reported_label", "reported_number",
           "reported_points", "reported_text", "reported_value", "to_paper_units"]
