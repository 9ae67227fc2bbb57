"""Figures of the every-pruner experiment (:mod:`studylib.experiments.every_pruner`): the ECE of every
pruner with its CI per budget, ECE vs. K by pruner family, and the reliability diagrams of the best
and the worst calibrated pruner."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup
from studylib.labels import config_label, pruner_label
from studylib.pruners import FAMILIES


def _title(text: str, toy: bool) -> str:
    return f"{plots.TOY_PREFIX}{text}" if toy else text


def _family_colours() -> dict[str, str]:
    return {family: f"C{i}" for i, family in enumerate(FAMILIES)}


def ece_dot_figure(table: pd.DataFrame, benchmark: str, budgets: Sequence[int], n_tokens: int, toy: bool,
                   width: float = 7.8) -> Figure:
    """ECE of every pruner with its 95 % CI (random pruning: mean ± sd over seeds), one row per pruner
    (sorted by its mean ECE over the budgets, lowest on top), one panel per budget, colour = family; the
    unpruned model's ECE as a dashed line with its CI as a band.  Sized to be read at ``width`` inches."""
    colours = _family_colours()
    pruned = table[~table["reference"]]
    order = pruned.groupby("name")["ece"].mean().sort_values().index.tolist()
    labels = {name: pruner_label(pruned.loc[pruned["name"] == name, "config"].iloc[0].rpartition("@")[0] or name)
              for name in order}
    full = table[table["reference"]]
    fig = Figure(figsize=(width, 1.5 + 0.24 * len(order)), layout="constrained")
    axes = fig.subplots(1, len(budgets), sharey=True, sharex=True, squeeze=False)[0]
    y = {name: -i for i, name in enumerate(order)}
    for ax, k in zip(axes, budgets):
        if len(full):
            ref = full.iloc[0]
            ax.axvline(ref["ece"], color="0.25", linestyle="--", linewidth=1)
            if not (math.isnan(ref.get("ece_low", math.nan)) or math.isnan(ref.get("ece_high", math.nan))):
                ax.axvspan(ref["ece_low"], ref["ece_high"], color="0.6", alpha=0.2, linewidth=0)
        for rec in pruned[pruned["k"] == k].to_dict("records"):
            ax.errorbar(rec["ece"], y[rec["name"]], xerr=_err(rec, "ece"), fmt="o", ms=4.5, elinewidth=1.4,
                        capsize=1.5, color=colours[rec["family"]])
        ax.set_title(f"K={k}", fontsize=9.5)
        ax.set_xlabel("ECE", fontsize=9)
        ax.tick_params(labelsize=9)
        ax.grid(axis="x", alpha=0.3)
        ax.set_ylim(-len(order) + 0.4, 0.6)
    axes[0].set_yticks(list(y.values()), [labels[n] for n in order], fontsize=9)
    handles = [axes[0].plot([], [], "o", color=colours[f], label=f)[0] for f in FAMILIES
               if f in set(pruned["family"])]
    handles.append(axes[0].plot([], [], "--", color="0.25", label=f"unpruned (K={n_tokens}), 95 % CI shaded")[0])
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=9, frameon=False)
    fig.suptitle(_title(f"{benchmark}: ECE of every pruner with its 95 % CI, by budget (random: mean ± sd)", toy),
                 fontsize=10)
    return fig


def _err(rec: Mapping, metric: str, scale: float = 1.0):
    """Error bar of one marker: the CI around the value, or the sd over seeds."""
    value, low, high, sd = (rec.get(k, math.nan) for k in (metric, f"{metric}_low", f"{metric}_high", f"{metric}_sd"))
    if not math.isnan(sd):
        return scale * sd
    if math.isnan(low) or math.isnan(high):
        return None
    return [[scale * max(value - low, 0.0)], [scale * max(high - value, 0.0)]]


def family_figure(tables: Mapping[str, pd.DataFrame], n_tokens: int, toy: bool) -> Figure:
    """ECE vs K per benchmark: a thick line per family (mean ECE of its pruners) over thin lines of
    its pruners, the unpruned model as a dashed horizontal line."""
    colours = _family_colours()
    fig = Figure(figsize=(plots.PAGE_WIDTH, 4.2), layout="constrained")
    axes = np.atleast_1d(fig.subplots(1, len(tables)))
    for ax, (bench, table) in zip(axes, tables.items()):
        pruned = table[~table["reference"]]
        for family, members in pruned.groupby("family", sort=False):
            for _, member in members.groupby("name", sort=False):
                member = member.sort_values("k")
                ax.plot(member["k"], member["ece"], color=colours[family], linewidth=0.7, alpha=0.5)
            mean = members.groupby("k")["ece"].mean().sort_index()
            ax.plot(mean.index, mean.to_numpy(), color=colours[family], linewidth=2.5, marker="o",
                    label=f"{family} ({members['name'].nunique()})")
        full = table[table["reference"]]
        if len(full):
            ax.axhline(full["ece"].iloc[0], color="0.2", linestyle="--", linewidth=1, label=f"unpruned (K={n_tokens})")
        ax.set_xscale("log", base=2)
        ks = sorted(pruned["k"].unique())
        ax.set_xticks(ks, [str(k) for k in ks])
        ax.set_xlabel("token budget K")
        ax.set_ylabel("ECE")
        ax.set_title(_title(f"{bench}: ECE vs K by family", toy))
        ax.grid(alpha=0.3)
    handles, labels = axes[0].get_legend_handles_labels()
    fig.legend(handles, labels, loc="outside lower center", ncol=4, frameon=False)
    fig.suptitle("Thick: the family's mean ECE; thin: each of its pruners")
    return fig


def reliability_figure(rows: pd.DataFrame, ranking: pd.DataFrame, setup: Setup, k: int) -> Figure:
    """Reliability diagrams of the unpruned model and of the best and the worst calibrated pruner at
    ``k`` on POPE (by ECE; a seeded method is shown at its first seed)."""
    panels = {f"unpruned (K={setup.n_tokens})": setup.cfg("full")}
    if len(ranking):
        best, worst = ranking.iloc[0], ranking.iloc[-1]
        panels[f"best: {config_label(best['configs'][0])}"] = best["configs"][0]
        panels[f"worst: {config_label(worst['configs'][0])}"] = worst["configs"][0]
    present = set(rows["config"])
    shown = {label: config for label, config in panels.items() if config in present}
    bins = {label: analysis.reliability(rows, config) for label, config in shown.items()}
    smooth = {label: analysis.smooth_reliability(rows, config) for label, config in shown.items()}
    return plots.reliability_diagram(bins, smooth=smooth, toy=setup.toy,
                                     title=f"POPE reliability at K={k}: best and worst pruner (below: smoothed)")


# --- claims ------------------------------------------------------------------------------------


__all__ = ["ece_dot_figure", "family_figure", "reliability_figure"]
