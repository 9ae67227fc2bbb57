"""Notebook-time helpers: labels and banners, table styling, glued values, showing a Result.

Experiment notebooks call these (and only these, plus :mod:`studylib.experiments`): the logic
of an experiment lives in its module, the page shows its :class:`~studylib.experiments.Result`.
"""

from __future__ import annotations

from typing import Any, Iterable, Mapping

import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from studylib.claims import Claim, claims_table, style_claims
from studylib.reported import PAPER_UNITS

#: models whose results are labelled as toy results everywhere
TOY_MODELS = ("toy", "tiny-random", "tiny-random-llava-next", "tiny-random-qwen2.5-vl")


def is_toy(model: str) -> bool:
    """Results of these models are toy results and are labelled so."""
    return str(model) in TOY_MODELS


def model_label(model: str) -> str:
    """``"TOY model"`` for the toy checkpoints, else the model id."""
    return "TOY model" if is_toy(model) else str(model)


def run_banner(model: str, profile: str = "") -> str:
    """Markdown admonition opening every experiment page: which model produced the numbers."""
    if is_toy(model):
        return ("```{warning}\n**TOY model results.** Every number and figure on this page comes from the tiny "
                f"LLaVA trained on the synthetic shapes world (model `{model}`, profile `{profile}`), "
                "not from LLaVA-1.5-7B. They show the pipeline and the real effects of pruning on a "
                "real (tiny) model; columns labelled *reported* are the papers' LLaVA-1.5-7B numbers.\n```")
    return (f"```{{note}}\nResults of `{model}` (profile `{profile}`); columns labelled *reported* are the "
            "papers' numbers.\n```")


def run_label(model: str) -> str:
    """Column label of this run's numbers: ``"this run (TOY)"`` for toy models."""
    return "this run (TOY)" if is_toy(model) else "this run"


def style_table(frame: pd.DataFrame, caption: str = "", digits: Mapping[str, int] | None = None,
                hide_index: bool = False):
    """A Styler for a (possibly two-level) table: percentages with 1 decimal, temperatures and
    erank with 2, everything else with 3; NaN shown as an empty cell; optional caption."""
    digits = dict(digits or {})

    def precision(column) -> int:
        metric = column[0] if isinstance(column, tuple) else column
        metric = str(metric)
        for base in (metric, metric.rsplit("_", 1)[0]):
            if base in digits:
                return digits[base]
            if base in PAPER_UNITS:
                return 1
        if metric.startswith(("temperature", "t_", "erank", "mean_erank", "entropy", "mean_entropy", "length",
                              "mean_length", "mean_tokens", "n_kept")):
            return 2
        return 3

    formats = {c: f"{{:.{precision(c)}f}}" for c in frame.columns if pd.api.types.is_float_dtype(frame[c])}
    styler = frame.style.format(formats, na_rep="")
    if caption:
        styler = styler.set_caption(caption)
    if hide_index:
        styler = styler.hide(axis="index")
    return styler


def glue_value(name: str, value: Any) -> None:
    """Glue a plain number or string (``display=False``): read back by
    :func:`studylib.build.read_glued` (tests, the intro's verdict table)."""
    if hasattr(value, "item"):
        value = value.item()
    glue(name, value, display=False)


def glue_claims(claims: Iterable[Claim], prefix: str = "") -> None:
    """Glue ``<prefix><id>_verdict``, ``_estimate``, ``_reported`` and ``_test`` of every claim."""
    for claim in claims:
        glue_value(f"{prefix}{claim.id}_verdict", claim.verdict)
        glue_value(f"{prefix}{claim.id}_estimate", claim.estimate_text())
        glue_value(f"{prefix}{claim.id}_reported", claim.reported)
        glue_value(f"{prefix}{claim.id}_test", claim.comparison)


def show_claims(claims: Iterable[Claim], expand: bool = True):
    """The claims table of a page (verdict in bold)."""
    return style_claims(claims_table(claims, expand=expand))



CLAIMS_LEGEND = (
    "Each row states a claim of the paper, the comparison that tests it on this run, the estimate with its 95 % "
    "paired bootstrap CI (whole images resampled), the paper's own numbers, and the verdict computed from the CI: "
    "**holds** (the whole CI on the claimed side), **does not hold** (the whole CI on the other side), "
    "**inconclusive** (the CI crosses the threshold) or **not applicable** (this run's grid lacks a configuration "
    "the claim needs). A verdict marked *(point estimate)* compares numbers that have no CI in this study. Nothing "
    "here is written by hand: rerun the notebook with other parameters and the verdicts follow the numbers.")


def claims_section(result, expand: bool = True) -> None:
    """Display the claims legend (one text for every page) and the result's claims table."""
    display(Markdown(CLAIMS_LEGEND), result.claims_table(expand=expand))


__all__ = ["CLAIMS_LEGEND", "TOY_MODELS", "claims_section", "glue_claims", "glue_value", "is_toy", "model_label", "run_banner",
           "run_label", "show_claims", "style_table"]
