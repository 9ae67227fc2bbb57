"""Figures of the every-pruner experiment (:mod:`studylib.experiments.every_pruner`): the accuracy
vs. ECE frontier per budget, ECE vs. K by pruner family, and the reliability diagrams of the best
and the worst calibrated pruner."""

from __future__ import annotations

import math
from typing import Mapping, Sequence

import numpy as np
import pandas as pd
from matplotlib.figure import Figure

from studylib import analysis, plots
from studylib.experiments.common import Setup
from studylib.pruners import FAMILIES


def _title(text: str, toy: bool) -> str:
    return f"{plots.TOY_PREFIX}{text}" if toy else text


def _family_colours() -> dict[str, str]:
    return {family: f"C{i}" for i, family in enumerate(FAMILIES)}


def frontier_figure(tables: Mapping[str, pd.DataFrame], budgets: Sequence[int], n_tokens: int, toy: bool) -> Figure:
    """Accuracy vs ECE, one panel per benchmark and budget, one marker per pruner (colour = family,
    CI bars; seeded methods: sd over seeds); the unpruned model as dashed reference lines."""
    colours = _family_colours()
    fig = Figure(figsize=(3.6 * len(budgets), 3.4 * len(tables) + 0.6), layout="constrained")
    axes = np.atleast_2d(fig.subplots(len(tables), len(budgets), squeeze=False))
    for row, (bench, table) in enumerate(tables.items()):
        full = table[table["reference"]]
        for col, k in enumerate(budgets):
            ax = axes[row, col]
            part = table[(table["k"] == k) & ~table["reference"]]
            for rec in part.to_dict("records"):
                xerr = _err(rec, "ece")
                yerr = _err(rec, "accuracy", 100.0)
                ax.errorbar(rec["ece"], 100 * rec["accuracy"], xerr=xerr, yerr=yerr, fmt="o", ms=5,
                            color=colours[rec["family"]], ecolor=colours[rec["family"]], elinewidth=0.8, alpha=0.9)
                ax.annotate(rec["name"], (rec["ece"], 100 * rec["accuracy"]), fontsize=6, xytext=(3, 2),
                            textcoords="offset points")
            if len(full):
                ax.axvline(full["ece"].iloc[0], color="0.3", linestyle="--", linewidth=1)
                ax.axhline(100 * full["accuracy"].iloc[0], color="0.3", linestyle="--", linewidth=1)
                ax.plot(full["ece"].iloc[0], 100 * full["accuracy"].iloc[0], marker="*", ms=11, color="k")
            ax.set_title(_title(f"{bench}, K={k}", toy), fontsize="medium")
            ax.set_xlabel("ECE (lower is better)")
            ax.set_ylabel("accuracy (%)")
            ax.grid(alpha=0.3)
    handles = [axes[0, 0].scatter([], [], color=colours[f], label=f) for f in FAMILIES
               if any(f in set(t["family"]) for t in tables.values())]
    handles.append(axes[0, 0].scatter([], [], marker="*", s=90, color="k", label=f"unpruned (K={n_tokens}, dashed)"))
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 5), fontsize="small")
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
    fig = Figure(figsize=(6.0 * len(tables), 4.4), layout="constrained")
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
        ax.set_title(_title(f"{bench}: ECE vs K by pruner family (thin: each pruner)", toy), fontsize="medium")
        ax.grid(alpha=0.3)
        ax.legend(fontsize="small")
    return fig


def reliability_figure(rows: pd.DataFrame, ranking: pd.DataFrame, setup: Setup, k: int) -> Figure:
    """Reliability diagrams of the unpruned model and of the best and the worst calibrated pruner at
    ``k`` on POPE (by ECE; a seeded method is shown at its first seed)."""
    panels = {f"unpruned (K={setup.n_tokens})": setup.cfg("full")}
    if len(ranking):
        best, worst = ranking.iloc[0], ranking.iloc[-1]
        panels[f"best at K={k}: {best['name']}"] = best["configs"][0]
        panels[f"worst at K={k}: {worst['name']}"] = worst["configs"][0]
    present = set(rows["config"])
    shown = {label: config for label, config in panels.items() if config in present}
    bins = {label: analysis.reliability(rows, config) for label, config in shown.items()}
    smooth = {label: analysis.smooth_reliability(rows, config) for label, config in shown.items()}
    return plots.reliability_diagram(bins, smooth=smooth, toy=setup.toy,
                                     title=f"POPE reliability at K={k}: best and worst pruner (below: smoothed)")


# --- claims ------------------------------------------------------------------------------------


__all__ = ["family_figure", "frontier_figure", "reliability_figure"]
