"""Figures of the study.  Every function returns a :class:`matplotlib.figure.Figure`.

Figures are built without ``pyplot`` (``Figure(...)``), so nothing is shown or kept open behind
the caller's back: in a notebook a figure appears when it is the cell's value (or passed to
``display``), exactly once, and ``fig.savefig(...)`` works under any backend.  Functions that
take ``ax=`` draw into that axes instead and return its figure.  With ``toy=True`` titles
start with "TOY —" so that toy results are never mistaken for the paper's.

Every figure is drawn for the book's text column (:data:`PAGE_WIDTH` inches wide at the notebooks'
100 dpi, shown at its own size) with the type sizes of :data:`STYLE` (9–11 pt as read on the page);
metrics are shown in the units of :mod:`studylib.metric_catalog` (accuracy-like rates in %).
"""

from __future__ import annotations

import re
from collections.abc import Mapping, Sequence

import matplotlib
import numpy as np
import pandas as pd
import seaborn as sns
from matplotlib.figure import Figure
from PIL import Image

from studylib import metric_catalog as mc
from studylib.analysis import pruner_params
from studylib.labels import pruner_label
from studylib.metrics import ReliabilityBins, RiskCoverage

TOY_PREFIX = "TOY — "
#: width of a full-width figure in inches: the book's text column (~790 px) at the notebooks' 100 dpi
PAGE_WIDTH = 7.8
#: type sizes in points; at PAGE_WIDTH a figure is shown at its own size, so these are the sizes a reader sees
STYLE = {"font.size": 10.5, "axes.titlesize": 10.5, "axes.labelsize": 10, "xtick.labelsize": 9.5,
         "ytick.labelsize": 9.5, "legend.fontsize": 9, "legend.title_fontsize": 9, "figure.titlesize": 11}
matplotlib.rcParams.update(STYLE)


def _title(text: str, toy: bool) -> str:
    return f"{TOY_PREFIX}{text}" if toy else text


def _axes(ax, figsize):
    if ax is not None:
        return ax.figure, ax
    fig = Figure(figsize=figsize, layout="constrained")
    return fig, fig.add_subplot()


def series_label(spec: str) -> str:
    """A pruner spec without its ``seed`` parameter: ``random(seed=2)`` -> ``random``, so that
    seeds of one method share a line (averaged)."""
    label = re.sub(r"(?<=[(,])seed=\d+,?", "", str(spec))
    label = label.replace(",)", ")")
    return label[:-2] if label.endswith("()") else label


def u_curve(summary: pd.DataFrame, x: str = "k", y: str = "ece", hue: str | None = None, *, ci: bool = True,
            reference: str = "full", ax=None, toy: bool = False, title: str | None = None,
            logx: bool | None = None, ylabel: str | None = None,
            reported: Mapping[str, Mapping[float, float]] | None = None, legend: bool = True) -> Figure:
    """``y`` against the budget ``x``, one line per ``hue`` value (default: the pruner spec
    without its seed, so random seeds are averaged: mean ± sd across seeds as error bars).
    Single-seed points get their bootstrap interval (``<y>_low``/``<y>_high``) as error bars
    when ``ci``.  Rows of the ``reference`` method (``full``, K = N) are drawn as a dashed
    horizontal line with its 95 % CI as a grey band.  ``reported`` maps a series (or
    ``reference``) to the paper's values by ``x`` (in the paper's units, at our budgets that stand
    for the paper's), drawn as open diamonds on a dotted line (the reference: a dotted horizontal
    line).  Values are shown in the metric catalogue's units (accuracy in %).  ``logx`` (default:
    only when ``x == "k"``) puts the x axis on a log2 scale; ``legend=False`` leaves the legend to the
    caller (:func:`shared_legend` for a figure of several panels)."""
    if y not in summary or x not in summary:
        raise ValueError(f"summary needs columns {x!r} and {y!r}; it has {list(summary.columns)}")
    frame = summary.copy()
    if hue is None:
        if "pruner" not in frame:
            raise ValueError("pass hue=... (the summary has no 'pruner' column)")
        frame["series"] = [series_label(p) for p in frame["pruner"]]
        hue = "series"
    is_reference = (frame["method"] == reference) if "method" in frame else frame[hue].astype(str).eq(reference)
    scale = mc.metric(y).scale
    for column in (y, f"{y}_low", f"{y}_high"):
        if column in frame:
            frame[column] = frame[column] * scale
    fig, ax = _axes(ax, (PAGE_WIDTH / 2, 3.6))
    palette = sns.color_palette("colorblind", max(1, frame.loc[~is_reference, hue].nunique()))
    reported = dict(reported or {})
    for colour, (label, group) in zip(palette, frame[~is_reference].groupby(hue, sort=False)):
        stats = group.groupby(x, sort=True)[y].agg(["mean", "std", "count"])
        xs = stats.index.to_numpy(dtype=float)
        name = _series_name(label, hue)
        if (stats["count"] > 1).any():
            yerr = stats["std"].fillna(0).to_numpy()
            name = f"{name} (mean ± sd, {int(stats['count'].max())} seeds)"
        elif ci and f"{y}_low" in group and f"{y}_high" in group:
            ordered = group.sort_values(x)
            yerr = np.vstack([ordered[y] - ordered[f"{y}_low"], ordered[f"{y}_high"] - ordered[y]]).clip(min=0)
            name += ", 95 % CI"
        else:
            yerr = None
        ax.errorbar(xs, stats["mean"].to_numpy(), yerr=yerr, marker="o", capsize=3, color=colour, label=name)
        points = reported.get(label) or reported.get(str(label))
        if points:
            px = sorted(points)
            ax.plot(px, [points[p] for p in px], linestyle=":", marker="D", markerfacecolor="none", color=colour,
                    label="reported (LLaVA-1.5-7B, the paper's K)")
    for _, row in frame[is_reference].iterrows():
        ax.axhline(row[y], color="0.3", linestyle="--", label=f"unpruned (K={row[x]})")
        if ci and f"{y}_low" in frame and pd.notna(row.get(f"{y}_low")):
            ax.axhspan(row[f"{y}_low"], row[f"{y}_high"], color="0.5", alpha=0.15, label="unpruned, 95 % CI")
        if reference in reported:
            ax.axhline(reported[reference], color="0.3", linestyle=":", label="unpruned, reported")
    budgets = sorted(frame.loc[~is_reference, x].unique())
    if logx is None:
        logx = x == "k"
    if logx and budgets and min(budgets) > 0:
        ax.set_xscale("log", base=2)
    if budgets and len(budgets) <= 12:
        ax.set_xticks(budgets, [str(int(b)) if float(b).is_integer() else f"{b:g}" for b in budgets])
        ax.minorticks_off()
    ax.set_xlabel("visual tokens kept (K)" if x == "k" else x)
    ax.set_ylabel(ylabel or mc.metric(y).header)
    ax.set_title(_title(title or f"{ylabel or mc.metric(y).name} vs. token budget", toy))
    ax.grid(alpha=0.3)
    if legend:
        ax.legend()
    return fig


def shared_legend(fig: Figure, ax, ncol: int = 3) -> None:
    """One legend under the panels of ``fig``, from the lines of ``ax`` (panels drawn with ``legend=False``)."""
    handles, labels = ax.get_legend_handles_labels()
    unique = dict(zip(labels, handles))
    fig.legend(unique.values(), unique.keys(), loc="outside lower center", ncol=ncol, frameon=False)


def _series_name(label, hue: str) -> str:
    """A line's legend entry: a pruner spec by its name (:func:`studylib.labels.pruner_label`), a
    parameter value as ``α = 0.5``."""
    if hue in ("series", "pruner"):
        return pruner_label(str(label))
    symbol = {"alpha": "α", "gap_power": "p"}.get(hue, hue)
    return f"{symbol} = {label:g}" if isinstance(label, (int, float)) else f"{label}"


def alpha_heatmap(summary: pd.DataFrame, value: str = "ece", x: str = "k", y: str = "alpha", *,
                  where: Mapping[str, object] | None = None, ax=None, toy: bool = False, title: str | None = None,
                  fmt: str | None = None, cmap: str = "viridis") -> Figure:
    """Heatmap of ``value`` over budget (``x``) × pruner parameter (``y``, default SCOPE's
    ``alpha``), annotated in the metric catalogue's units and digits (``fmt`` overrides).  Parameters
    missing from ``summary`` are parsed from its ``pruner`` column; ``where`` filters rows first (e.g.
    ``{"method": "scope", "gap_power": 1.0}``); duplicates are averaged."""
    frame = summary
    needed = [c for c in [x, y, *(where or {})] if c not in frame]
    if needed:
        if "pruner" not in frame:
            raise ValueError(f"summary lacks {needed} and has no 'pruner' column to parse them from")
        frame = pruner_params(frame)
    for column, wanted in (where or {}).items():
        if column not in frame:
            raise ValueError(f"cannot filter on {column!r}: not a column or pruner parameter")
        frame = frame[frame[column] == wanted]
    if y not in frame:
        raise ValueError(f"no column or pruner parameter {y!r} in the summary")
    frame = frame[frame[y].notna()]
    if frame.empty:
        raise ValueError(f"no rows with a {y!r} value to plot")
    record = mc.metric(value)
    table = frame.pivot_table(index=y, columns=x, values=value, aggfunc="mean").sort_index(ascending=False)
    table = table * record.scale
    fig, ax = _axes(ax, (1.0 + 0.9 * table.shape[1], 1.0 + 0.5 * table.shape[0]))
    sns.heatmap(table, annot=True, fmt=fmt or f".{record.digits}f", cmap=cmap, ax=ax, cbar_kws={"label": record.header},
                annot_kws={"fontsize": 9})
    ax.set_xlabel("visual tokens kept (K)" if x == "k" else x)
    ax.set_ylabel({"alpha": "saliency exponent α", "gap_power": "gap power p"}.get(y, y))
    ax.set_title(_title(title or f"{value} by {y} and {x}", toy))
    return fig


def reliability_diagram(bins_by_label: Mapping[str, ReliabilityBins], *, toy: bool = False, title: str | None = None,
                        panel_width: float = PAGE_WIDTH / 3, smooth: Mapping[str, dict] | None = None) -> Figure:
    """One panel per label: accuracy bars per confidence bin against the diagonal (gap to the
    bin's mean confidence shaded), and below it the per-bin count histogram.  The panel title
    gives the ECE computed from the bins (same bins and edges as the bins were built with).
    ``smooth`` (``{label: analysis.smooth_reliability(rows, config)}``) adds relplot's smoothed
    diagram of the same configurations below (drawn by ``relplot.plot_rel_diagram``: the line's
    width follows the density of confidences; its title gives smooth ECE)."""
    if not bins_by_label:
        raise ValueError("bins_by_label is empty; pass {label: analysis.reliability(rows, config)}")
    n = len(bins_by_label)
    fig = Figure(figsize=(panel_width * n, 8.0 if smooth else 4.6), layout="constrained")
    grid = fig.add_gridspec(3 if smooth else 2, n, height_ratios=(3, 1, 3) if smooth else (3, 1))
    first = None
    for j, (label, bins) in enumerate(bins_by_label.items()):
        top = fig.add_subplot(grid[0, j], sharey=first)
        bottom = fig.add_subplot(grid[1, j], sharex=top)
        first = first or top
        edges = np.asarray(bins.boundaries)
        centres, width = (edges[:-1] + edges[1:]) / 2, np.diff(edges)
        filled = bins.nonempty
        top.bar(centres[filled], bins.accuracy[filled], width=width[filled], color="C0", edgecolor="white",
                label="accuracy")
        gap_low = np.minimum(bins.accuracy, bins.mean_confidence)[filled]
        gap_height = np.abs(bins.gap)[filled]
        top.bar(centres[filled], gap_height, bottom=gap_low, width=width[filled], color="C3", alpha=0.3,
                hatch="//", edgecolor="C3", label="gap to confidence")
        top.plot([0, 1], [0, 1], color="0.3", linestyle="--", linewidth=1)
        top.set_xlim(0, 1)
        top.set_ylim(0, 1)
        ece = float(np.sum(bins.weight[filled] * gap_height)) if filled.any() else float("nan")
        top.set_title(f"{label}\nECE = {mc.value_text('ece', ece)}")
        top.tick_params(labelbottom=False)
        if j == 0:
            top.set_ylabel("accuracy")
            top.legend(loc="upper left")
            bottom.set_ylabel("count")
        bottom.bar(centres, bins.count, width=width, color="0.5", edgecolor="white")
        bottom.set_xlabel("confidence")
        if smooth and label in smooth:
            _smooth_panel(fig, fig.add_subplot(grid[2, j]), smooth[label], first_column=j == 0)
    fig.suptitle(_title(title or "Reliability diagrams", toy))
    return fig


def _smooth_panel(fig: Figure, ax, diagram: dict, first_column: bool) -> None:
    """relplot's smoothed reliability diagram in ``ax``."""
    import relplot

    relplot.plot_rel_diagram(diagram, fig=fig, ax=ax, use_default_style=False, plot_labels=False)
    ax.set_title(f"smoothed (relplot)\nsmooth ECE = {diagram['ce']:.3f}", fontsize="medium")
    ax.set_xlabel("confidence")
    if first_column:
        ax.set_ylabel("accuracy (smoothed)")


def risk_coverage_plot(curves: Mapping[str, RiskCoverage], *, ax=None, toy: bool = False,
                       title: str | None = None) -> Figure:
    """Selective risk against coverage, one line per label; the legend gives each AURC."""
    if not curves:
        raise ValueError("curves is empty; pass {label: analysis.risk_coverage(rows, config)}")
    fig, ax = _axes(ax, (PAGE_WIDTH * 0.75, 4.0))
    for label, curve in curves.items():
        ax.plot(curve.coverage, curve.risk, label=f"{label} (AURC {mc.value_text('aurc', float(np.mean(curve.risk)))})")
    ax.set_xlim(0, 1)
    ax.set_xlabel("coverage")
    ax.set_ylabel("selective risk")
    ax.set_title(_title(title or "Risk–coverage", toy))
    ax.grid(alpha=0.3)
    ax.legend()
    return fig


def _square(image: Image.Image) -> Image.Image:
    w, h = image.size
    if w == h:
        return image
    side = max(w, h)
    canvas = Image.new("RGB", (side, side), (122, 116, 104))  # ~ CLIP mean colour, as LLaVA pads
    canvas.paste(image, ((side - w) // 2, (side - h) // 2))
    return canvas


def token_overlay(image, kept, grid: tuple[int, int], ax=None, *, dim: float = 0.25, pad_to_square: bool = True,
                  title: str | None = None, toy: bool = False) -> Figure:
    """``image`` with the patches outside ``kept`` (raster indices into the ``grid`` =
    (rows, cols) patch grid) dimmed to ``dim`` of their brightness.  Non-square images are
    padded to a square first, as LLaVA-1.5 does before patching."""
    rows, cols = grid
    if isinstance(image, Image.Image):
        image = _square(image.convert("RGB")) if pad_to_square else image.convert("RGB")
        pixels = np.asarray(image, dtype=np.float64) / 255.0
    else:
        pixels = np.asarray(image, dtype=np.float64)
        pixels = pixels / 255.0 if pixels.max() > 1.0 else pixels
    kept = np.asarray(list(kept), dtype=np.int64).ravel()
    if kept.size and (kept.min() < 0 or kept.max() >= rows * cols):
        raise ValueError(f"kept indices must lie in [0, {rows * cols - 1}] for a {rows}x{cols} grid")
    mask = np.zeros(rows * cols, dtype=bool)
    mask[kept] = True
    height, width = pixels.shape[:2]
    patch_row = np.minimum(np.arange(height) * rows // height, rows - 1)
    patch_col = np.minimum(np.arange(width) * cols // width, cols - 1)
    keep_pixels = mask.reshape(rows, cols)[patch_row[:, None], patch_col[None, :]]
    shown = np.where(keep_pixels[..., None] if pixels.ndim == 3 else keep_pixels, pixels, pixels * dim)
    fig, ax = _axes(ax, (3.2, 3.2))
    ax.imshow(np.clip(shown, 0, 1), interpolation="nearest")
    ax.set_xticks([])
    ax.set_yticks([])
    ax.set_title(_title(title if title is not None else f"{int(mask.sum())}/{rows * cols} tokens kept", toy))
    return fig


def overlay_gallery(images: Sequence, selections: Mapping[str, Sequence[Sequence[int]]], grid: tuple[int, int], *,
                    toy: bool = False, title: str | None = None, image_titles: Sequence[str] | None = None,
                    width: float = PAGE_WIDTH, dim: float = 0.25) -> Figure:
    """A grid of :func:`token_overlay` panels: one row per selection label (a pruner spec is shown by
    its name), one column per image (``image_titles`` above them); ``selections[label][i]`` are the kept
    indices of image i under that label.  ``width`` inches wide, so the labels read at the page's sizes."""
    if not images or not selections:
        raise ValueError("overlay_gallery needs at least one image and one selection")
    for label, kept in selections.items():
        if len(kept) != len(images):
            raise ValueError(f"selection {label!r} has {len(kept)} entries for {len(images)} images")
    n_rows, n_cols = len(selections), len(images)
    cell = (width - 1.7) / n_cols
    fig = Figure(figsize=(width, cell * n_rows + 0.8), layout="constrained")
    axes = fig.subplots(n_rows, n_cols, squeeze=False)
    for i, (label, kept_lists) in enumerate(selections.items()):
        for j, image in enumerate(images):
            token_overlay(image, kept_lists[j], grid, ax=axes[i, j], dim=dim,
                          title=(image_titles[j] if image_titles and i == 0 else ""))
        axes[i, 0].set_ylabel(pruner_label(label), rotation=0, ha="right", va="center", fontsize=10)
    fig.suptitle(_title(title or "Kept visual tokens", toy))
    return fig


__all__ = ["PAGE_WIDTH", "STYLE", "alpha_heatmap", "overlay_gallery", "shared_legend", "reliability_diagram",
           "risk_coverage_plot", "series_label",
           "token_overlay", "u_curve"]
