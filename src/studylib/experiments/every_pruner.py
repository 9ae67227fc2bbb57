"""Calibration of every pruner: every registered method at the paper's budgets, on confidence.

No seed paper reports calibration beyond seed 000's SCOPE / saliency-only / random / FastV; the
others (AgilePruner, ID-Selection, DivPrune, FPS, VisionZip, VisPruner, CDPruner, DART) are judged by
accuracy only.  This experiment runs **every registered pruner** (``pruners = "all"``:
:func:`studylib.pruners.list_pruners`, each at its defaults, so a newly registered pruner appears
without editing the notebook; random pruning once per seed, shown as mean ± sd) and the unpruned
model, at ``budgets`` (the paper's 192 / 128 / 64 / 32 of 576), on POPE-style (every split) and
ScienceQA-style questions, and on captions at ``caption_budgets``:

* per budget a table ranked by ECE: accuracy (POPE also F1), ECE, Brier, NLL, AURC with
  image-clustered bootstrap CIs, mean confidence, over-confidence (mean confidence − accuracy), the
  erank and [CLS]-attention entropy of the kept tokens, and the papers' reported accuracy where a
  seed reports it (seed 000 Table 3, seed 002 Table 7; labelled reported);
* CHAIR_s / CHAIR_i / recall of greedy captions per pruner;
* figures: accuracy vs ECE per budget (one marker per pruner, CI bars, the unpruned model as
  reference lines), ECE vs K by pruner family (the ``family`` each pruner declares in its
  registration, :data:`studylib.pruners.FAMILIES`), reliability diagrams of the best and the worst
  calibrated pruner at ``focus_k``;
* SCOPE's fixed saliency weights ``alphas`` beside the image-adaptive ``scope_adaptive`` (and its
  inverse), the α-sweep question "does an adaptive α beat the best fixed α?" (this experiment's own
  comparison; ``alpha_sweep`` is not changed);
* claims (``data/claims/every_pruner.yaml``): families of paired comparisons with the unpruned
  model (Holm-corrected), seed 000's saliency-vs-coverage explanation across all pruners by family
  (difference of family means with a paired image bootstrap), seed 002's "higher kept erank, more
  hallucination" as a Spearman correlation across pruners with a bootstrap CI, and the adaptive α.

The AgilePruner entries and ``scope_adaptive`` get the run's reference erank / attention entropy
(the mean over the run's POPE images, unless ``erank_avg`` / ``entropy_avg`` are given), as in
``erank_hallucination``.
"""

from __future__ import annotations

import math
from functools import partial
from typing import Callable, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from studylib import analysis, plots
from studylib.experiments.common import Setup, budget_parameters, check_choice, require
from studylib.experiments.erank_hallucination import adapt_spec, image_complexity
from studylib.experiments.every_pruner_figures import ece_dot_figure, family_figure, reliability_figure
from studylib.experiments.result import Result
from studylib import metric_catalog as mc
from studylib.labels import pruner_label
from studylib.pages import interactive_table, style_table
from studylib.claims import same_tokens
from studylib.multiplicity import holm_rejections, tail_p_values
from studylib.pruners import FAMILIES, get_pruner, list_pruners, parse_spec, pruner_table
from studylib.reported import reported
from studylib.sweep import Config

#: metrics with a bootstrap CI in the ranked tables (F1 on POPE only)
CI_METRICS = ["accuracy", "f1", "ece", "brier", "nll", "aurc"]
#: the calibration estimators the leaderboard ranks by, with the neighbour gaps of each ranking
ESTIMATORS = ("ece", "ece_debiased", "smece")
ESTIMATOR_WORDS = {"ece": "ECE (15 bins)", "ece_debiased": "debiased ECE", "smece": "smooth ECE"}
#: metrics without a CI in the ranked tables
PLAIN_METRICS = ["mean_confidence", "overconfidence", "erank_kept", "entropy_kept"]
#: headers in words (the metric catalogue's)
HEADERS = {m: mc.metric(m).header for m in (*CI_METRICS, *PLAIN_METRICS, "chair_s", "chair_i", "recall", "mean_length")}
#: the columns of the page's two interactive tables per benchmark: the ranking, then the other metrics
RANKING_COLUMNS = ("ece", "accuracy", "f1", "overconfidence")
MORE_COLUMNS = ("brier", "nll", "aurc", "mean_confidence", "erank_kept", "entropy_kept")
#: the reported numbers shown beside ours, per benchmark: (paper, table, benchmark in reported.csv, metric, header);
#: seed 002's POPE column is F1 (reported.csv metric f1)
REPORTED = {
    "POPE": [("000", "Table 3", "POPE", "accuracy", "reported accuracy (%), seed 000 Table 3"),
             ("002", "Table 7", "POPE", "f1", "reported F1 (%), seed 002 Table 7")],
    "ScienceQA": [("002", "Table 7", "ScienceQA-IMG", "accuracy", "reported accuracy (%), seed 002 Table 7")],
}
BENCHMARKS = ("POPE", "ScienceQA")


def run(*, pope_dataset, pope_options, sqa_dataset, sqa_options, caption_dataset, caption_options, caption_limit,
        max_new_tokens, pruners, seeds, budgets, reported_budgets, caption_budgets, focus_k, alphas,
        adaptive_variants, contrast, erank_avg, entropy_avg, **settings) -> Result:
    setup = Setup.create("every_pruner", settings)
    specs = pruner_specs(pruners)
    alpha_specs = [str(get_pruner("scope", alpha=a)) for a in alphas]
    grid = ["full", *specs, *alpha_specs, *adaptive_variants]
    setup.validate(pope_dataset, pope_options, grid, budgets, seeds)
    setup.validate(sqa_dataset, sqa_options, grid, budgets, seeds)
    setup.validate(caption_dataset, caption_options, ["full", *specs], caption_budgets, seeds, limit=caption_limit)
    _check(budgets, caption_budgets, focus_k, alphas, contrast, erank_avg, entropy_avg)
    k_map, _, _ = budget_parameters(setup, budgets, reported_budgets)

    pope_full = setup.sweep(pope_dataset, pope_options, ["full"], [])
    image_erank, image_entropy = image_complexity(pope_full, setup.n_tokens)
    erank_ref = float(image_erank.mean()) if erank_avg is None else float(erank_avg)
    entropy_ref = float(image_entropy.mean()) if entropy_avg is None else float(entropy_avg)
    adapt = partial(adapt_spec, erank_ref=erank_ref, entropy_ref=entropy_ref)
    run_specs = [adapt(s) for s in specs]
    variants = [adapt(s) for s in adaptive_variants]
    grid = ["full", *run_specs, *alpha_specs, *variants]
    rows = {"rows": setup.sweep(pope_dataset, pope_options, grid, budgets, seeds),
            "sqa": setup.sweep(sqa_dataset, sqa_options, grid, budgets, seeds),
            "captions": setup.sweep(caption_dataset, caption_options, ["full", *run_specs], caption_budgets, seeds,
                                    limit=caption_limit, max_new_tokens=max_new_tokens)}

    stats = setup.stats
    summaries = {"POPE": summarise(rows["rows"], pope=True, **stats), "ScienceQA": summarise(rows["sqa"], **stats)}
    tables = {bench: aggregate(summary, setup.n_tokens, run_specs) for bench, summary in summaries.items()}
    chair = analysis.chair_summary(rows["captions"], **stats)
    adaptive_spec = adapt("scope_adaptive")
    alpha_table = alpha_comparison(summaries, alpha_specs, [adaptive_spec, *variants])
    best = {bench: ranked(tables[bench], focus_k) for bench in BENCHMARKS}

    frames = {"POPE": rows["rows"], "ScienceQA": rows["sqa"]}
    rankings = {(bench, k, m): neighbours(frames[bench], tables[bench], k, m, **stats)
                for bench in BENCHMARKS for k in budgets for m in ESTIMATORS}
    result = setup.result(rows=rows, summary=summaries["POPE"])
    result.tables = {
        **{f"ranked_{bench}": ranked_interactive(tables[bench], budgets, k_map, bench, setup.label, RANKING_COLUMNS)
           for bench in BENCHMARKS},
        **{f"metrics_{bench}": ranked_interactive(tables[bench], budgets, k_map, bench, setup.label, MORE_COLUMNS,
                                                  ranking=False) for bench in BENCHMARKS},
        **{f"leaderboard_{bench}": leaderboard({(k, m): rankings[(bench, k, m)] for k in budgets for m in ESTIMATORS},
                                               budgets, k_map, bench, setup.label) for bench in BENCHMARKS},
        "resolution": style_table(pd.DataFrame([resolution_record(bench, k, m, rankings[(bench, k, m)])
                                                for bench in BENCHMARKS for k in budgets for m in ESTIMATORS]),
                                  hide_index=True,
                                  caption=f"Which neighbours in each ranking are resolved ({setup.label}): paired image "
                                          "bootstrap of each pruner against the one ranked just above, Holm over the "
                                          "ranking's neighbour pairs (one-sided 2.5 %)"),
        "chair": chair_styled(chair, setup.n_tokens, setup.label),
        "alpha": style_table(alpha_table, hide_index=True, caption="SCOPE with fixed saliency weights α vs. the "
                             f"image-adaptive α ({setup.label}): ECE and accuracy with 95 % CIs"),
        "pruners": style_table(pruner_table(), hide_index=True,
                               caption="Every registered pruner, its family and its source"),
    }
    result.figures = {
        **{f"ece_{bench}": ece_dot_figure(tables[bench], bench, budgets, setup.n_tokens, setup.toy)
           for bench in BENCHMARKS},
        "families": family_figure(tables, setup.n_tokens, setup.toy),
        "reliability": reliability_figure(rows["rows"], best["POPE"], setup, focus_k),
    }
    context, values = claims_inputs(rows, tables, summaries, budgets, caption_budgets, focus_k, alpha_specs,
                                    adaptive_spec, variants, contrast, k_map, setup)
    result.claims = setup.claims(rows, context, values)
    pope_focus = best["POPE"]
    result.values = {
        "full_ece": _value(tables["POPE"], "full", setup.n_tokens, "ece"),
        "full_accuracy": _value(tables["POPE"], "full", setup.n_tokens, "accuracy"),
        "best_config": pope_focus.iloc[0]["config"] if len(pope_focus) else "none",
        "best_ece": float(pope_focus.iloc[0]["ece"]) if len(pope_focus) else math.nan,
        "worst_config": pope_focus.iloc[-1]["config"] if len(pope_focus) else "none",
        "worst_ece": float(pope_focus.iloc[-1]["ece"]) if len(pope_focus) else math.nan,
        "adaptive_ece": _value(tables["POPE"], "scope_adaptive", focus_k, "ece"),
        "erank_ref": erank_ref,
        "n_pruners": int(tables["POPE"]["name"].nunique()),
        "resolved_gaps_focus": int(rankings[("POPE", focus_k, "ece")]["resolved"].sum()),
        "tiers_focus": len(tiers(rankings[("POPE", focus_k, "ece")])),
        "focus_k": focus_k,
    }
    result.notes["run"] = run_note(rows, erank_ref, entropy_ref, len(image_erank))
    return result


def _check(budgets, caption_budgets, focus_k, alphas, contrast, erank_avg, entropy_avg) -> None:
    check_choice("focus_k", focus_k, budgets)
    for k in caption_budgets:
        check_choice("caption_budgets entry", k, budgets)
    require(len(alphas) > 0 and all(a >= 0 for a in alphas), f"alphas = {alphas} must be non-empty and >= 0")
    require(len(contrast) == 2 and all(f in FAMILIES for f in contrast),
            f"contrast = {contrast} must name two families of {list(FAMILIES)}")
    require(erank_avg is None or erank_avg > 0, f"erank_avg = {erank_avg!r} must be positive or None")
    require(entropy_avg is None or entropy_avg > 0, f"entropy_avg = {entropy_avg!r} must be positive or None")


def pruner_specs(pruners: str | Sequence[str]) -> list[str]:
    """The pruners of the run, each at its defaults: every registered pruner but ``full`` (the
    reference, always run) for ``"all"``, else the given names or specs (canonical)."""
    names = [n for n in list_pruners() if n != "full"] if pruners == "all" else list(pruners)
    return [str(parse_spec(str(n))) for n in names if parse_spec(str(n)).name != "full"]


# --- summaries ---------------------------------------------------------------------------------

def summarise(rows: pd.DataFrame, *, pope: bool = False, n_bootstrap: int = 1000, seed: int = 0) -> pd.DataFrame:
    """One row per configuration: :func:`studylib.analysis.calibration_summary` (CIs over images;
    POPE's F1 kept only for ``pope``), the mean erank and attention entropy of the kept tokens per image,
    and the pruner's registry ``name`` and ``family``."""
    summary = analysis.calibration_summary(rows, n_bootstrap=n_bootstrap, seed=seed, ci=tuple(CI_METRICS))
    if not pope:
        summary = summary.drop(columns=["f1", "f1_low", "f1_high"], errors="ignore")
    kept = rows.drop_duplicates(["config", "image"]).groupby("config")[["erank_kept", "entropy_kept"]].mean()
    summary = summary.merge(kept.reset_index(), on="config", how="left")
    pruners = [Config.parse(c).build() for c in summary["config"]]
    return summary.assign(name=[p.name for p in pruners], family=[p.family for p in pruners],
                          pruner=[str(p) for p in pruners], k=[Config.parse(c).k for c in summary["config"]])


def aggregate(summary: pd.DataFrame, n_tokens: int, specs: Iterable[str]) -> pd.DataFrame:
    """One row per (registry name, budget) of the every-pruner grid ``specs`` (and the unpruned
    model): the pruner's metrics; a seeded method (random) as the mean over its seeds with
    ``<metric>_sd`` (its CI columns then NaN) and ``n_seeds``.  Other configurations of the rows
    (SCOPE's other α, the inverse adaptive variant) are left out."""
    grid = {unseeded(s) for s in specs} | {"full"}
    frame = summary[[unseeded(p) in grid for p in summary["pruner"]]]
    metrics = [m for m in CI_METRICS + PLAIN_METRICS if m in frame]
    records = []
    for (name, k), group in frame.groupby(["name", "k"], sort=False):
        record = {"name": name, "family": group["family"].iloc[0], "k": int(k), "n_seeds": len(group),
                  "config": group["config"].iloc[0] if len(group) == 1 else plots.series_label(group["pruner"].iloc[0])
                  + f"@{int(k)}", "configs": list(group["config"])}
        for metric in metrics:
            record[metric] = float(group[metric].mean())
            record[f"{metric}_sd"] = float(group[metric].std()) if len(group) > 1 else math.nan
            for side in ("low", "high"):
                column = f"{metric}_{side}"
                record[column] = float(group[column].iloc[0]) if len(group) == 1 and column in group else math.nan
        records.append(record)
    out = pd.DataFrame(records)
    return out.assign(reference=out["k"] == n_tokens) if len(out) else out


def unseeded(spec: str) -> str:
    """The canonical spec with its ``seed`` (if any) at the default: the seeds of a method are one entry."""
    pruner = parse_spec(str(spec))
    if "seed" in pruner.params:
        pruner = pruner.replace(seed=pruner.info.param("seed").default)
    return str(pruner)


def ranked(table: pd.DataFrame, k: int) -> pd.DataFrame:
    """The pruners at budget ``k`` sorted by ECE (lowest first; ties by name)."""
    part = table[(table["k"] == k) & ~table["reference"]]
    return part.sort_values(["ece", "name"], kind="stable").reset_index(drop=True)


# --- which neighbours in a ranking are resolved -------------------------------------------------

def neighbours(rows: pd.DataFrame, table: pd.DataFrame, k: int, metric: str = "ece", n_bootstrap: int = 1000,
               seed: int = 0) -> pd.DataFrame:
    """The pruners at budget ``k`` ranked by ``metric`` (lowest first; ties by name; a seeded method
    is the mean over its seeds) with, for each after the first, the **gap** to the pruner ranked just
    above: ``gap = metric(this) − metric(above) ≥ 0`` and its 95 % CI from one paired image bootstrap
    of all configurations (:func:`studylib.analysis.config_draws`: every resample draws the same
    images for every pruner), ``p`` the one-sided p-value of gap > 0 (normal tail,
    :func:`~studylib.multiplicity.tail_p_values`) and ``resolved`` whether Holm's procedure over the
    ranking's neighbour pairs rejects "gap ≤ 0" at the one-sided 2.5 % level (as the claims' families).

    ``value_low``/``value_high`` are the 95 % CI of the pruner's own value from the same resamples.
    A pruner that keeps exactly the tokens of the one above it (every question; e.g. HiRED on a single
    image grid, which is saliency) is not tested against it: its gap is 0, ``same_as`` names the other
    pruner and ``p`` stays empty, so Holm's family holds only real comparisons.

    Columns: ``rank, name, family, configs, value, value_low, value_high, gap, gap_low, gap_high, p,
    same_as, resolved`` (the first row's gap columns empty)."""
    part = table[(table["k"] == k) & ~table["reference"]]
    if part.empty:
        return pd.DataFrame(columns=["rank", "name", "family", "configs", "value", "value_low", "value_high", "gap",
                                     "gap_low", "gap_high", "p", "same_as", "resolved"])
    configs = [c for members in part["configs"] for c in members]
    estimates, draws = analysis.config_draws(rows, configs, metric, n_bootstrap, seed)
    spans = np.cumsum([0, *(len(m) for m in part["configs"])])
    value = np.array([estimates[a:b].mean() for a, b in zip(spans, spans[1:])])
    resampled = np.column_stack([draws[:, a:b].mean(axis=1) for a, b in zip(spans, spans[1:])])
    value_low, value_high = zip(*(_percentile_interval(column) for column in resampled.T))
    order = sorted(range(len(part)), key=lambda i: (value[i], part["name"].iloc[i]))
    records = []
    for rank, i in enumerate(order):
        record = {"rank": rank + 1, "name": part["name"].iloc[i], "family": part["family"].iloc[i],
                  "configs": part["configs"].iloc[i], "value": float(value[i]), "value_low": value_low[i],
                  "value_high": value_high[i], "gap": math.nan, "gap_low": math.nan, "gap_high": math.nan,
                  "p": math.nan, "same_as": ""}
        if rank:
            above = order[rank - 1]
            if value[i] == value[above] and _same_selections(rows, part["configs"].iloc[i],
                                                             part["configs"].iloc[above]):
                record.update(gap=0.0, same_as=part["name"].iloc[above])
                records.append(record)
                continue
            distribution = resampled[:, i] - resampled[:, above]
            gap = float(value[i] - value[above])
            low, high = _percentile_interval(distribution)
            record.update(gap=gap, gap_low=low, gap_high=high, p=tail_p_values(gap, distribution, "greater")[0])
        records.append(record)
    out = pd.DataFrame(records)
    tested = out["p"].notna()
    out["resolved"] = False
    out.loc[tested, "resolved"] = holm_rejections(out.loc[tested, "p"].to_numpy())
    return out


def _percentile_interval(draws: np.ndarray) -> tuple[float, float]:
    """The 2.5 and 97.5 percentiles of ``draws`` over its finite resamples (NaN for none)."""
    finite = draws[np.isfinite(draws)]
    if not len(finite):
        return math.nan, math.nan
    low, high = np.percentile(finite, [2.5, 97.5])
    return float(low), float(high)


def _same_selections(rows: pd.DataFrame, configs: Sequence[str], other: Sequence[str]) -> bool:
    """Whether two single-configuration pruners keep the same tokens for every question
    (:func:`studylib.claims.same_tokens`); seeded methods (several configurations) never are."""
    return len(configs) == 1 and len(other) == 1 and same_tokens(rows, configs[0], other[0])


def tiers(ranking: pd.DataFrame) -> list[list[str]]:
    """The ranking cut at its resolved gaps: groups of pruners whose order within is not resolved."""
    groups: list[list[str]] = []
    for record in ranking.to_dict("records"):
        if not groups or record["resolved"]:
            groups.append([])
        groups[-1].append(record["name"])
    return groups


def resolution_record(benchmark: str, k: int, metric: str, ranking: pd.DataFrame) -> dict:
    """One row of the page's resolution table: how many neighbour gaps are resolved and the tiers,
    in words generated from ``ranking`` (:func:`neighbours`)."""
    pairs = int(ranking["p"].notna().sum())
    resolved = int(ranking["resolved"].sum())
    same = int((ranking["same_as"] != "").sum()) if "same_as" in ranking else 0
    groups = tiers(ranking)
    return {"benchmark": benchmark, "K": k, "estimator": ESTIMATOR_WORDS.get(metric, metric),
            "resolved gaps": f"{resolved} of {pairs}" + (f" ({same} with the same tokens, not tested)" if same else ""),
            "tiers, best first (< = a resolved gap)": " < ".join(", ".join(g) for g in groups),
            "reading": _reading(groups, pairs, resolved, len(ranking))}


def _reading(groups: list[list[str]], pairs: int, resolved: int, n_pruners: int) -> str:
    if not pairs:
        return "nothing to order: a single pruner, or pruners that keep the same tokens"
    if not resolved:
        return f"no neighbouring pair is resolved: the {n_pruners} pruners cannot be ordered by this estimator"
    best, worst = groups[0], groups[-1]
    text = (f"{len(groups)} tiers; best tier: {', '.join(best)}" if len(best) > 1
            else f"{len(groups)} tiers; {best[0]} is resolved as the best")
    return text + (f"; worst tier: {', '.join(worst)}" if len(worst) > 1 else f"; {worst[0]} is resolved as the worst")


def _value(table: pd.DataFrame, name: str, k: int, metric: str) -> float:
    hit = table[(table["name"] == name) & (table["k"] == k)]
    return float(hit[metric].iloc[0]) if len(hit) else math.nan


def _cell(row: Mapping, metric: str) -> str:
    """``0.024 [0.018, 0.030]`` in the metric catalogue's units and digits, ``mean ± sd (n seeds)`` for a
    seeded method, the value alone without a CI."""
    value = row.get(metric, math.nan)
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    sd = row.get(f"{metric}_sd", math.nan)
    if not math.isnan(sd):
        return f"{mc.value_text(metric, value)} ± {mc.value_text(metric, sd)} ({row['n_seeds']} seeds)"
    return mc.ci_text(metric, value, row.get(f"{metric}_low", math.nan), row.get(f"{metric}_high", math.nan))


def ranked_table(table: pd.DataFrame, k: int, n_tokens: int, reported_columns: Mapping[str, Mapping[str, float]]
                 | None = None) -> pd.DataFrame:
    """The page's table at budget ``k``: one row per pruner ranked by ECE (lowest first), then the
    unpruned model (K = N) as the reference row; metrics as ``value [95 % CI]`` (seeded methods:
    mean ± sd over seeds); ``reported_columns`` maps a header to {registry name: reported value}."""
    part = pd.concat([ranked(table, k), table[table["reference"] & (table["k"] == n_tokens)]], ignore_index=True)
    metrics = [m for m in CI_METRICS + PLAIN_METRICS if m in part]
    out = pd.DataFrame({"rank": [str(i + 1) for i in range(len(part) - int(part["reference"].sum()))]
                        + ["reference"] * int(part["reference"].sum()),
                        "pruner": part["name"], "family": part["family"], "configuration": part["config"]})
    for metric in metrics:
        out[HEADERS[metric]] = [_cell(row, metric) for row in part.to_dict("records")]
    for header, values in (reported_columns or {}).items():
        out[header] = [values.get(name, math.nan) for name in part["name"]]
    return out


def _gap_columns(ranking: pd.DataFrame, estimator: str) -> dict[str, dict[str, str]]:
    """header -> {pruner: cell}: the gap to the pruner ranked above ``+0.004 [0.001, 0.007]`` and
    "resolved" / "not resolved" (:func:`neighbours`)."""
    gap, resolved = {}, {}
    for record in ranking.to_dict("records"):
        if record.get("same_as"):
            gap[record["name"]] = "0 (same tokens)"
            resolved[record["name"]] = f"not tested: keeps the tokens of {record['same_as']}"
            continue
        if math.isnan(record["gap"]):
            continue
        gap[record["name"]] = mc.ci_text("ece", record["gap"], record["gap_low"], record["gap_high"], delta=True)
        resolved[record["name"]] = "resolved" if record["resolved"] else "not resolved"
    return {f"{estimator} gap to the pruner above [95 % CI]": gap,
            f"{estimator} gap resolved (Holm over the ranking)": resolved}


def ranking_table(ranking: pd.DataFrame, metric: str, name: Callable[[str], str] = str) -> pd.DataFrame:
    """The pruners ranked by one calibration estimator (:func:`neighbours`): rank, pruner (``name`` of its
    registry name; a seeded method: the mean over its seeds, and says so), family, its value ``[95 % CI]``
    from the ranking's own resamples, the gap to the pruner above and whether it is resolved."""
    words = ESTIMATOR_WORDS.get(metric, metric)
    seeds = [f" (mean of {len(c)} seeds)" if len(c) > 1 else "" for c in ranking["configs"]]
    out = pd.DataFrame({"rank": ranking["rank"], "pruner": [name(n) + s for n, s in zip(ranking["name"], seeds)],
                        "family": ranking["family"]})
    out[f"{words} [95 % CI]"] = [mc.ci_text(metric, r["value"], r["value_low"], r["value_high"])
                                 for r in ranking.to_dict("records")]
    for header, cells in _gap_columns(ranking, words).items():
        out[header] = [cells.get(name, "") for name in ranking["name"]]
    return out


def leaderboard(rankings: Mapping[tuple[int, str], pd.DataFrame], budgets: Sequence[int], k_map: Mapping[int, int],
                benchmark: str, label: str):
    """One interactive table of ``benchmark``: every budget and every calibration estimator of
    :data:`ESTIMATORS`, the pruners ranked by it with their values, CIs and the resolved gaps
    (``rankings[(k, metric)]`` from :func:`neighbours`)."""
    frames = []
    for k in budgets:
        for metric in ESTIMATORS:
            table = ranking_table(rankings[(k, metric)], metric, name=pruner_label).drop(columns="family")
            table.columns = ["rank", "pruner", "value [95 % CI]", "gap to the one above [95 % CI]", "resolved"]
            for column in ("value [95 % CI]", "gap to the one above [95 % CI]"):
                table[column] = table[column].str.replace(" ", "\u00a0")
            table.insert(0, "estimator", ESTIMATOR_WORDS.get(metric, metric))
            table.insert(0, "K (paper's)", f"{k} ({k_map.get(k, k)})")
            frames.append(table)
    return interactive_table(pd.concat(frames, ignore_index=True).fillna(""), page_length=25,
                             caption=f"{benchmark}: every pruner ranked by each calibration estimator at every budget "
                                     f"({label}); 95 % CIs from one paired image bootstrap of all pruners; a gap is "
                                     "resolved when Holm's procedure over the ranking's neighbour pairs rejects a zero "
                                     "gap (one-sided 2.5 %)")


def reported_columns(benchmark: str, paper_k: int, names: Iterable[str]) -> dict[str, dict[str, float]]:
    """The papers' accuracies at ``paper_k`` (576 for the unpruned model) for the pruners ``names``
    (matched on the pruner's default spec in ``reported.csv``): header -> {name: value in %}."""
    out = {}
    for paper, table, bench, metric, header in REPORTED[benchmark]:
        ref = reported(paper, table, benchmark=bench, metric=metric)
        values = {}
        for name in names:
            default = get_pruner(name)
            spec = name if "seed" in default.params else str(default)  # seeded methods: the paper's mean
            hit = ref[(ref["pruner"] == spec) & (ref["k"] == (576 if name == "full" else paper_k))]
            if len(hit):
                values[name] = float(hit["value"].iloc[0])
        if values:
            out[header] = values
    return out


def ranked_interactive(table: pd.DataFrame, budgets: Sequence[int], k_map: Mapping[int, int], benchmark: str,
                       label: str, metrics: Sequence[str], ranking: bool = True):
    """One interactive table (sortable, searchable, paged; :func:`studylib.pages.interactive_table`) of
    every pruner at every budget of ``benchmark``: per budget the pruners ranked by ECE, then the unpruned
    model; ``metrics`` as ``value [95 % CI]`` (seeded methods: mean ± sd); with ``ranking`` the rank, the
    family and the papers' reported accuracies too."""
    n_tokens = int(table.loc[table["reference"], "k"].iloc[0]) if table["reference"].any() else max(budgets)
    frames = []
    for k in budgets:
        paper_k = k_map.get(k, k)
        ranked = ranked_table(table, k, n_tokens, reported_columns(benchmark, paper_k, table["name"].unique()))
        shown = {HEADERS[m] + (" [95 % CI]" if m in CI_METRICS else ""): ranked[HEADERS[m]].str.replace(" ", "\u00a0")
                 for m in metrics if HEADERS[m] in ranked}
        reported_headers = [c for c in ranked.columns if str(c).startswith("reported")] if ranking else []
        frame = pd.DataFrame({"K (paper's K)": f"{k} ({paper_k})", "rank": ranked["rank"],
                              "pruner": [pruner_label(Config.parse(c).pruner) for c in ranked["configuration"]],
                              "family": ranked["family"], **shown})
        frame = pd.concat([frame, ranked[reported_headers].round(1)], axis=1)
        frames.append(frame if ranking else frame.drop(columns=["rank", "family"]))
    what = "ranked by ECE (lowest first), the unpruned model last" if ranking else "the other metrics"
    return interactive_table(pd.concat(frames, ignore_index=True).fillna(""), page_length=25,
                             caption=f"{benchmark}: every pruner at every budget, {what} ({label}; 95 % CIs over "
                                     "images; random: mean ± sd over seeds; reported: LLaVA-1.5-7B)")


def chair_styled(chair: pd.DataFrame, n_tokens: int, label: str):
    """CHAIR per pruner and budget with CIs, the mean erank of the kept tokens, ranked by CHAIR_i."""
    frame = chair.assign(name=[parse_spec(p).name for p in chair["pruner"]],
                         family=[parse_spec(p).family for p in chair["pruner"]])
    frame = frame.sort_values(["k", "chair_i"], ascending=[False, True], kind="stable")
    out = pd.DataFrame({"configuration": frame["config"], "family": frame["family"]})
    for metric in ("chair_s", "chair_i", "recall"):
        out[f"{HEADERS[metric]} [95 % CI]"] = [_cell({**row, "n_seeds": 1}, metric) for row in frame.to_dict("records")]
    out["words"] = frame["mean_length"].to_numpy()
    out["erank of kept tokens"] = frame["mean_erank_kept"].to_numpy()
    return style_table(out, hide_index=True, caption=f"CHAIR of greedy captions per pruner ({label}); K={n_tokens} "
                                                     "is the unpruned model")


def alpha_comparison(summaries: Mapping[str, pd.DataFrame], alpha_specs: Sequence[str],
                     adaptive_specs: Sequence[str]) -> pd.DataFrame:
    """ECE and accuracy of SCOPE at each fixed α and of the adaptive variants, per benchmark and budget."""
    records = []
    for bench, summary in summaries.items():
        for spec in [*alpha_specs, *adaptive_specs]:
            part = summary[summary["pruner"] == str(parse_spec(spec))]
            for row in part.sort_values("k", ascending=False).to_dict("records"):
                pruner = parse_spec(row["pruner"])
                records.append({"benchmark": bench, "K": int(row["k"]), "pruner": row["pruner"],
                                "α": f"{pruner.params['alpha']:g}" if pruner.name == "scope" else "per image",
                                "ECE": _cell({**row, "n_seeds": 1}, "ece"),
                                "accuracy %": _cell({**row, "n_seeds": 1}, "accuracy")})
    return pd.DataFrame(records).sort_values(["benchmark", "K"], ascending=[True, False], kind="stable")


# --- figures -----------------------------------------------------------------------------------

def claims_inputs(rows, tables, summaries, budgets, caption_budgets, focus_k, alpha_specs, adaptive_spec, variants,
                  contrast, k_map, setup: Setup) -> tuple[dict, dict]:
    """The claims' context (budgets, the pruned configurations, the best fixed α per budget, ...)
    and their computed intervals (difference of family means, rank correlations)."""
    pope = tables["POPE"]
    pruned = sorted({c for configs in pope.loc[~pope["reference"], "configs"] for c in configs})
    pruned_specs = list(dict.fromkeys(Config.parse(c).pruner for c in pruned))
    values, gaps = {}, []
    frames = {"POPE": rows["rows"], "ScienceQA": rows["sqa"]}
    for bench, frame in frames.items():
        table = tables[bench]
        for k in budgets:
            members = [_members(table, family, k) for family in contrast]
            if all(members):
                values[f"family_gap[{bench},K={k}]"] = analysis.family_mean_delta(frame, *members, metric="ece",
                                                                                   **_stats(setup))
            gaps.append({"benchmark": bench, "k": k})
    for k in caption_budgets:
        configs = [c for c in rows["captions"]["config"].unique() if Config.parse(c).k == k]
        if len(configs) >= 3:
            values[f"erank_chair_rho[K={k}]"] = analysis.rank_correlation(rows["captions"], configs, **_stats(setup))
    context = {"budgets": list(budgets), "caption_budgets": list(caption_budgets), "focus_k": focus_k,
               "k_map": k_map, "pruned": pruned_specs, "gaps": gaps, "family_a": contrast[0], "family_b": contrast[1],
               "n_pruned": len(pruned_specs), "adaptive": adaptive_spec,
               "inverse": variants[0] if variants else "scope_adaptive(inverse=true)",
               "best_ece": _best_alpha(summaries["POPE"], alpha_specs, budgets, "ece", lowest=True),
               "best_accuracy": _best_alpha(summaries["POPE"], alpha_specs, budgets, "accuracy", lowest=False)}
    return context, values


def _stats(setup: Setup) -> dict:
    return {"n_bootstrap": setup.n_bootstrap, "seed": setup.bootstrap_seed}


def _members(table: pd.DataFrame, family: str, k: int) -> list[str]:
    """The configurations of ``family`` at ``k`` (every seed of a seeded method)."""
    part = table[(table["family"] == family) & (table["k"] == k) & ~table["reference"]]
    return [c for configs in part["configs"] for c in configs]


def _best_alpha(summary: pd.DataFrame, alpha_specs: Sequence[str], budgets: Sequence[int], metric: str,
                lowest: bool) -> list[dict]:
    """Per budget, the fixed α of SCOPE with the best ``metric`` point estimate in this run."""
    out = []
    canonical = [str(parse_spec(s)) for s in alpha_specs]
    for k in budgets:
        part = summary[summary["pruner"].isin(canonical) & (summary["k"] == k)]
        if len(part):
            row = part.loc[part[metric].idxmin() if lowest else part[metric].idxmax()]
            out.append({"k": int(k), "alpha": float(parse_spec(row["pruner"]).params["alpha"])})
    return out


def run_note(rows: Mapping[str, pd.DataFrame], erank_ref: float, entropy_ref: float, n_images: int) -> str:
    parts = []
    for name, frame in (("POPE", rows["rows"]), ("ScienceQA", rows["sqa"]), ("captions", rows["captions"])):
        parts.append(f"{name}: {frame['qid'].nunique():,} {'captions' if name == 'captions' else 'questions'} about "
                     f"{frame['image'].nunique():,} images × {frame['config'].nunique()} configurations")
    return ("; ".join(parts) + f". Reference erank {erank_ref:.2f} and attention entropy {entropy_ref:.3f} nats "
            f"(mean over the run's {n_images} POPE images) for the AgilePruner entries and scope_adaptive.")


__all__ = ["aggregate", "neighbours", "pruner_specs", "leaderboard", "ranked", "ranked_table", "ranking_table", "resolution_record", "run",
           "summarise", "tiers", "unseeded"]
