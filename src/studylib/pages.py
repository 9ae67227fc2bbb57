"""Notebook-time helpers: labels and banners, table styling, glued values, showing a Result.

Experiment notebooks call these (and only these, plus :mod:`studylib.experiments`): the logic
of an experiment lives in its module, the page shows its :class:`~studylib.experiments.Result`.
"""

from __future__ import annotations

import math
from typing import Any, Iterable, Mapping

import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from studylib.claims import LEGEND, Claim, claims_table, readable, style_claims
from studylib.reported import PAPER_UNITS

# Tables styled without style_table (a plain ``frame.style``) still read: 2 decimals, NaN as an empty cell.
pd.set_option("styler.format.precision", 2)
pd.set_option("styler.format.na_rep", "")

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


#: code names of columns -> the words shown in table headers (see :func:`header_words`)
HEADER_WORDS = {
    "accuracy": "accuracy (%)", "accuracy_sd": "sd of accuracy (pp)",
    "ece": "ECE", "ece_debiased": "debiased ECE", "smece": "smooth ECE", "ece_before": "ECE before scaling", "ece_after": "ECE after scaling", "ece_change": "change of ECE",
    "mce": "MCE", "brier": "Brier", "nll": "NLL", "aurc": "AURC", "e_aurc": "E-AURC", "eaurc": "E-AURC",
    "mean_confidence": "mean confidence (%)", "overconfidence": "overconfidence (pp)",
    "temperature": "T* (cross-validated)", "t_mean": "T* (cross-validated)", "t_std": "sd of T* over folds",
    "t_at_bound": "folds with T* at a bound",
    "n": "questions", "n_questions": "questions", "n_images": "images", "config": "configuration", "k": "K",
    "paper K": "paper's K", "gap_power": "gap power p",
    "erank": "erank of kept tokens", "erank_kept": "erank of kept tokens",
    "mean_erank_kept": "mean erank of kept tokens", "entropy_kept": "attention entropy of kept tokens",
    "mean_entropy_kept": "mean attention entropy of kept tokens",
    "chair_s": "CHAIR_s (%)", "chair_i": "CHAIR_i (%)", "recall": "recall (%)", "precision": "precision (%)",
    "f1": "F1 (%)", "sel_acc_80": "selective accuracy at 80 % coverage (%)",
    "selective_accuracy_80": "selective accuracy at 80 % coverage (%)",
    "length": "caption length (words)", "mean_length": "mean caption length (words)",
    "hallucinated_objects": "hallucinated objects",
}

#: metrics shown in percent (one decimal); fraction-valued columns are multiplied by 100 for display
PERCENT_PREFIXES = ("accuracy", "acc_", "sel_acc", "selective_accuracy", "f1", "precision", "recall", "chair_s",
                    "chair_i", "mean_confidence", "overconfidence")
#: metrics shown with three decimals (also the default for any other float)
THREE_DECIMAL_PREFIXES = ("ece", "mce", "brier", "nll", "aurc", "e_aurc", "eaurc")
#: metrics shown with two decimals
TWO_DECIMAL_PREFIXES = ("temperature", "t_", "erank", "mean_erank", "entropy", "mean_entropy", "length",
                        "mean_length", "mean_tokens", "n_kept", "attention_share")
CI_SUFFIXES = ("_low", "_high")
#: second-level labels of the CI bounds that :func:`studylib.reported.beside_reported` adds (``ci=True``)
CI_SOURCES = ("95% CI low", "95% CI high")
CI_HEADER = "[95 % CI]"


def _key(name: Any) -> str:
    """A column name as a lower-case code name (spaces become underscores)."""
    return str(name).strip().lower().replace(" ", "_")


def _base(name: Any) -> str:
    key = _key(name)
    for suffix in (*CI_SUFFIXES, "_sd"):
        if key.endswith(suffix):
            return key[: -len(suffix)]
    return key


def is_percent_metric(name: Any) -> bool:
    """Accuracy-like metrics (accuracy, selective accuracy, F1, precision, recall, CHAIR, confidence)."""
    base = _base(name)
    return base in PAPER_UNITS or base.startswith(PERCENT_PREFIXES) or "%" in base


def header_words(name: Any) -> str:
    """The header of a column in words: :data:`HEADER_WORDS`, else the name with spaces for underscores
    (percent metrics with a code name not in the mapping get " (%)")."""
    if not isinstance(name, str):
        return str(name)
    if name in HEADER_WORDS:
        return HEADER_WORDS[name]
    key = _key(name)
    if key in HEADER_WORDS:
        return HEADER_WORDS[key]
    for suffix, words in (("_low", "{} low"), ("_high", "{} high"), ("_sd", "sd of {}")):
        if key.endswith(suffix) and key[: -len(suffix)] in HEADER_WORDS:
            return words.format(HEADER_WORDS[key[: -len(suffix)]])
    words = name.replace("_", " ")
    if is_percent_metric(name) and name.isidentifier() and not key.endswith("_sd"):  # a code name
        words += " (%)"
    return words


def _breakable(value: Any) -> str:
    """Display text of a label or a text cell, with line-break opportunities after commas (pruner specs
    such as ``agile(erank_avg=21.25,tau_max=0.25)`` have no spaces to wrap at)."""
    return str(value).replace(",", ",<wbr>")


def _missing(value: Any) -> bool:
    try:
        return bool(pd.isna(value))
    except (TypeError, ValueError):  # lists, arrays
        return False


def _ci_merges(frame: pd.DataFrame) -> dict:
    """``{column: (low, high)}`` for every column shown with its 95 % CI: ``m`` with ``m_low``/``m_high``
    (also ``(m_low, source)`` beside ``(m, source)``), ``(m, source)`` followed by the bounds that
    :func:`~studylib.reported.beside_reported` adds."""
    columns = list(frame.columns)
    present = set(columns)
    numeric = {c for c in columns if pd.api.types.is_numeric_dtype(frame[c])}
    merges = {}
    for column in columns:
        if column not in numeric:
            continue
        if isinstance(column, tuple):
            metric, rest = column[0], column[1:]
            bounds = [(f"{metric}{s}", *rest) for s in CI_SUFFIXES]
            sources = [c for c in columns if c[0] == metric and c not in bounds]
            if (len(rest) == 1 and all((metric, s) in present for s in CI_SOURCES)
                    and sources and sources[0] == column and rest[0] not in CI_SOURCES):
                bounds = [(metric, s) for s in CI_SOURCES]
        else:
            bounds = [f"{column}{s}" for s in CI_SUFFIXES]
        if all(b in numeric for b in bounds):
            merges[column] = tuple(bounds)
    return merges


def style_table(frame: pd.DataFrame, caption: str = "", digits: Mapping[Any, int] | None = None,
                hide_index: bool = False):
    """A Styler for a (possibly two-level) table, formatted for reading; the data stay as they are.

    * Numbers per metric: accuracy-like metrics (:data:`PERCENT_PREFIXES`) in % with one decimal
      (a fraction-valued column, all values within [-1, 1] and not marked as converted by
      :func:`~studylib.reported.to_paper_units`, is multiplied by 100 for display only; two-level
      tables from :func:`~studylib.reported.beside_reported` are already in the paper's units);
      temperatures, erank, entropy and lengths with two decimals; ECE, Brier, NLL, AURC and any other
      float with three.  ``digits`` overrides by column or metric name.  NaN is an empty cell.
    * CIs: ``m``, ``m_low``, ``m_high`` become one column "<m in words> [95 % CI]" reading
      ``0.024 [0.018, 0.030]`` (see :func:`_ci_merges`).
    * Headers in words (:func:`header_words`), also the index names; second header levels are kept.
    """
    digits = dict(digits or {})
    two_level = isinstance(frame.columns, pd.MultiIndex)
    converted = set(frame.attrs.get("paper_units", ()))
    columns = list(frame.columns)

    def metric_of(column):
        return column[0] if isinstance(column, tuple) else column

    def decimals(column) -> int:
        metric = metric_of(column)
        for name in (column, metric, _base(metric)):
            try:
                if name in digits:
                    return digits[name]
            except TypeError:
                pass
        key = _base(metric)
        if is_percent_metric(metric):
            return 1
        if key.startswith(TWO_DECIMAL_PREFIXES):
            return 2
        return 3

    def factor(column) -> float:
        metric = metric_of(column)
        if (two_level or not isinstance(metric, str) or not is_percent_metric(metric) or "%" in metric
                or _base(metric) in converted or metric in converted):
            return 1.0
        group = [c for c in columns if isinstance(c, str) and _base(c) == _base(metric)
                 and pd.api.types.is_numeric_dtype(frame[c])]
        values = frame[group].to_numpy(dtype=float, na_value=float("nan"))
        values = values[~pd.isna(values)]
        return 100.0 if len(values) and abs(values).max() <= 1.0 else 1.0

    def number(column):
        places, scale = decimals(column), factor(column)
        return lambda v: "" if pd.isna(v) else f"{v * scale:.{places}f}"

    floats = [c for c in columns if pd.api.types.is_float_dtype(frame[c])]
    styler = frame.style.format({c: number(c) for c in floats}, na_rep="")
    merges = _ci_merges(frame)
    for column, (low, high) in merges.items():
        show = number(column)
        for i in range(len(frame)):
            value, lower = frame[column].iloc[i], frame[low].iloc[i]
            upper = frame[high].iloc[i]
            if pd.isna(value):
                text = ""
            else:
                text = show(value) if pd.isna(lower) or pd.isna(upper) else \
                    f"{show(value)} [{number(low)(lower)}, {number(high)(upper)}]"
            mask = [j == i for j in range(len(frame))]
            styler = styler.format(lambda v, text=text: text, subset=pd.IndexSlice[mask, [column]])
    hidden = [b for bounds in merges.values() for b in bounds]
    if hidden:
        styler = styler.hide(hidden, axis="columns")

    def label(column):
        suffix = f" {CI_HEADER}" if column in merges else ""
        if isinstance(column, tuple):
            return (header_words(column[0]), *column[1:-1], f"{column[-1]}{suffix}") if len(column) > 1 else \
                (f"{header_words(column[0])}{suffix}",)
        return f"{header_words(column)}{suffix}"

    styler = styler.relabel_index([label(c) for c in columns if c not in hidden], axis="columns")
    styler = styler.format_index_names(lambda name: header_words(name) if isinstance(name, str) else name, axis=0)
    if two_level:  # the levels' own names ("metric", "source") say nothing the headers don't
        styler = styler.hide(axis="columns", names=True)
    styler = styler.set_table_attributes('class="study-table"')
    text = [c for c in columns if c not in merges and not pd.api.types.is_numeric_dtype(frame[c])]
    if text:  # words left-aligned and wrapping (book/_static/study.css), numbers right-aligned
        styler = styler.set_td_classes(pd.DataFrame({c: "text" for c in text}, index=frame.index, columns=columns))
        styler = styler.format(lambda v: "" if _missing(v) else _breakable(v), subset=text)
    styler = styler.format_index(_breakable, axis="index")
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
    """Glue ``<prefix><id>_verdict`` (as the page shows it), ``_outcome`` (one of
    :data:`studylib.claims.OUTCOMES`), ``_estimator_sensitive`` (True/False), ``_estimate``,
    ``_reported`` and ``_test`` of every claim, and where known ``_n_questions`` (questions it was
    tested on) and ``_n_needed`` (questions that would decide an inconclusive one)."""
    for claim in claims:
        glue_value(f"{prefix}{claim.id}_verdict", claim.verdict_text())
        glue_value(f"{prefix}{claim.id}_outcome", claim.outcome)
        glue_value(f"{prefix}{claim.id}_estimator_sensitive", claim.estimator_sensitive)
        if claim.n_questions:
            glue_value(f"{prefix}{claim.id}_n_questions", claim.n_questions)
        if math.isfinite(claim.n_needed):
            glue_value(f"{prefix}{claim.id}_n_needed", round(claim.n_needed))
        glue_value(f"{prefix}{claim.id}_estimate", claim.estimate_text())
        glue_value(f"{prefix}{claim.id}_reported", claim.reported)
        glue_value(f"{prefix}{claim.id}_test", readable(claim.comparison))


#: claims-table columns -> cell class (book/_static/study.css: prose wraps; the verdict stays in view)
CLAIM_CLASSES = {"claim": "prose", "test on this run": "prose", "note": "prose", "reported": "prose",
                 "other estimators": "prose", "verdict": "verdict"}
#: the verdict's header cell sticks to the right edge like its cells (td.verdict in study.css)
VERDICT_HEADER = ("position: sticky; right: 0; z-index: 1; background: var(--pst-color-background, #fff); "
                  "box-shadow: -6px 0 6px -6px rgba(0, 0, 0, 0.35); text-align: left")


def show_claims(claims: Iterable[Claim], expand: bool = True):
    """The claims table of a page (verdict in bold; cell classes for book/_static/study.css)."""
    table = claims_table(claims, expand=expand)
    classes = pd.DataFrame({c: CLAIM_CLASSES.get(c, "text") for c in table.columns}, index=table.index,
                           columns=table.columns)
    return (style_claims(table).set_table_attributes('class="study-table claims"').set_td_classes(classes)
            .map_index(lambda name: VERDICT_HEADER if name == "verdict" else "", axis="columns"))



#: the legend above every claims table: the one legend of :mod:`studylib.claims` (the intro shows it too)
CLAIMS_LEGEND = LEGEND


def claims_section(result, expand: bool = True) -> None:
    """Display the claims legend (one text for every page) and the result's claims table."""
    display(Markdown(CLAIMS_LEGEND), result.claims_table(expand=expand))


__all__ = ["CLAIMS_LEGEND", "HEADER_WORDS", "TOY_MODELS", "claims_section", "glue_claims", "glue_value", "header_words",
           "is_percent_metric", "is_toy", "model_label", "run_banner", "run_label", "show_claims", "style_table"]
