"""Notebook-time helpers: labels and banners, table styling, glued values, showing a Result.

Experiment notebooks call these (and only these, plus :mod:`studylib.experiments`): the logic
of an experiment lives in its module, the page shows its :class:`~studylib.experiments.Result`.
"""

from __future__ import annotations

import math
from html import escape
from typing import Any, Iterable, Mapping

import pandas as pd
from IPython.display import Markdown, display
from myst_nb import glue

from studylib import labels, metric_catalog as mc, summary
from studylib.claims import LEGEND, Claim, metric_words, readable

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


#: headers in words of columns that are not metrics of :mod:`studylib.metric_catalog` (or read differently here)
HEADER_WORDS = {
    "config": "configuration", "paper K": "paper's K", "accuracy_sd": "sd of accuracy (pp)",
    "ece_before": "ECE before scaling", "ece_after": "ECE after scaling", "nll_before": "NLL before scaling",
    "nll_after": "NLL after scaling", "brier_before": "Brier before scaling", "brier_after": "Brier after scaling",
    "t_mean": "T* (cross-validated)", "t_at_bound": "folds with T* at a bound", "erank": "erank of kept tokens",
}
CI_SUFFIXES = ("_low", "_high")
#: second-level labels of the CI bounds that :func:`studylib.reported.beside_reported` adds (``ci=True``)
CI_SOURCES = ("95% CI low", "95% CI high")
CI_HEADER = "[95 % CI]"
#: columns whose cells are pruner specs or configurations (shown by :func:`studylib.labels.config_label`)
CONFIG_COLUMNS = ("config", "configuration", "pruner", "method")


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
    """Accuracy-like metrics (accuracy, selective accuracy, F1, precision, recall, CHAIR, confidence): the
    catalogue's percent metrics, also under a longer code name that starts with one (``accuracy_pope``,
    ``sel_acc_90``), or a name that says "%"."""
    base = _base(name)
    if mc.is_percent(base) or "%" in base:
        return True
    names = [key for key, m in mc.CATALOG.items() if m.percent] + [a for a, key in mc.ALIASES.items()
                                                                    if key and mc.CATALOG[key].percent]
    return any(base.startswith(f"{key}_") for key in names)


def header_words(name: Any) -> str:
    """The header of a column in words: :data:`HEADER_WORDS`, else the metric catalogue's header
    (:mod:`studylib.metric_catalog`), else the name with spaces for underscores (percent metrics with
    a code name the catalogue lacks get " (%)")."""
    if not isinstance(name, str):
        return str(name)
    key = _key(name)
    if name in HEADER_WORDS or key in HEADER_WORDS:
        return HEADER_WORDS.get(name, HEADER_WORDS.get(key))
    if _catalogued(key):
        return _catalogued(key).header
    for suffix, words in (("_low", "{} low"), ("_high", "{} high"), ("_sd", "sd of {}")):
        inner = key[: -len(suffix)]
        if key.endswith(suffix) and (inner in HEADER_WORDS or _catalogued(inner)):
            return words.format(header_words(inner))
    words = name.replace("_", " ")
    if is_percent_metric(name) and name.isidentifier() and not key.endswith("_sd"):  # a code name
        words += " (%)"
    return words


def _catalogued(key: str) -> "mc.Metric | None":
    """The catalogue's record of exactly ``key`` or of its alias (no suffix stripping)."""
    return mc.CATALOG.get(key) or mc.CATALOG.get(mc.ALIASES.get(key) or "")


def display_text(value: Any, column: Any = None) -> str:
    """A text cell as a reader sees it: configurations and pruner specs by their names
    (:mod:`studylib.labels`; whole cells in :data:`CONFIG_COLUMNS`, specs with parameters or a budget
    anywhere else), lists joined with commas, booleans as yes / no, long decimals shortened."""
    if isinstance(value, bool):
        return "yes" if value else "no"
    if isinstance(value, (list, tuple, set)):
        return ", ".join(display_text(v) for v in value)
    if isinstance(value, float):
        return mc.number_text(value, 3)
    text = readable(str(value))
    if column is not None and _key(column if not isinstance(column, tuple) else column[0]) in CONFIG_COLUMNS:
        return labels.config_label(text)
    return labels.humanize(text)


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


#: sources of a :func:`~studylib.reported.beside_reported` column that describe this run's value (kept on its row)
RUN_DETAILS = {"95% CI low": "_low", "95% CI high": "_high", "sd over seeds": "_sd"}


def rows_by_source(side: pd.DataFrame) -> pd.DataFrame:
    """A :func:`~studylib.reported.beside_reported` table (columns ``(metric, source)``) turned into one
    row per configuration and source — this run's row (its CI as ``<metric>_low``/``_high``, a seed spread
    as ``<metric>_sd``), then the paper's row where the paper has a number — and one column per metric,
    so that a table of many metrics fits a page.  The budget and the paper's budget share one index
    level ``K (paper's K)``; values stay in the paper's units (``attrs["paper_units"]``)."""
    metrics = list(dict.fromkeys(side.columns.get_level_values(0)))
    sources = [s for s in dict.fromkeys(side.columns.get_level_values(1)) if s not in RUN_DETAILS]
    index = side.index.to_frame(index=False)
    if {"k", "paper K"} <= set(index.columns):
        index.insert(list(index.columns).index("k"), "K (paper's K)",
                     [f"{k} ({p})" if pd.notna(p) and p != k else str(k) for k, p in zip(index["k"], index["paper K"])])
        index = index.drop(columns=["k", "paper K"])
    keys, records = [], []
    for position, (_, row) in enumerate(side.iterrows()):
        for source in sources:
            record = {}
            for metric in metrics:
                record[metric] = row.get((metric, source), float("nan"))
                if source != "reported":
                    for detail, suffix in RUN_DETAILS.items():
                        if (metric, detail) in side.columns:
                            record[f"{metric}{suffix}"] = row[(metric, detail)]
            if source == "reported" and all(pd.isna(record[m]) for m in metrics):
                continue
            keys.append((*index.iloc[position], source))
            records.append(record)
    names = [*index.columns, "source"]
    frame = pd.DataFrame(records, index=pd.MultiIndex.from_tuples(keys, names=names))
    frame.attrs["paper_units"] = metrics
    return frame


def style_table(frame: pd.DataFrame, caption: str = "", digits: Mapping[Any, int] | None = None,
                hide_index: bool = False):
    """A Styler for a (possibly two-level) table, formatted for reading; the data stay as they are.

    * Numbers per metric, as the metric catalogue says (:mod:`studylib.metric_catalog`): accuracy-like
      metrics (:func:`is_percent_metric`) in % with one decimal (a fraction-valued column, all values
      within [-1, 1] and not marked as converted by :func:`~studylib.reported.to_paper_units`, is
      multiplied by 100 for display only; two-level tables from
      :func:`~studylib.reported.beside_reported` are already in the paper's units); temperatures and
      erank with two decimals; ECE, Brier, NLL, AURC and any float the catalogue lacks with three.
      ``digits`` overrides by column or metric name.  NaN is an empty cell, booleans read yes / no.
    * Text: configurations and pruner specs by their names (:func:`display_text`), lists joined.
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
        if is_percent_metric(metric):
            return 1
        record = mc.lookup(_base(metric)) if isinstance(metric, str) else None
        return record.digits if record is not None and not record.percent else 3

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
        signed = "change" in _key(metric_of(column))  # a difference reads with its sign
        return lambda v: "" if pd.isna(v) else mc.number_text(v * scale, places, signed=signed)

    floats = [c for c in columns if pd.api.types.is_float_dtype(frame[c])]
    flags = [c for c in columns if pd.api.types.is_bool_dtype(frame[c])]
    styler = frame.style.format({**{c: number(c) for c in floats}, **{c: display_text for c in flags}}, na_rep="")
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
                    f'{show(value)} <span class="ci">[{number(low)(lower)}, {number(high)(upper)}]</span>'
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
    if text or merges:  # words left-aligned and wrapping (book/_static/study.css), numbers right-aligned; a
        # value and its CI may go on two lines, the CI itself never breaks
        classes = {**{c: "text" for c in text}, **{c: "ci-cell" for c in merges}}
        styler = styler.set_td_classes(pd.DataFrame(classes, index=frame.index, columns=columns))
        for column in text:
            styler = styler.format(lambda v, c=column: "" if _missing(v) else _breakable(display_text(v, c)),
                                   subset=[column])
    for level, name in enumerate(frame.index.names):
        styler = styler.format_index(lambda v, n=name: _breakable(display_text(v, n)), axis="index", level=level)
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
    ``_reported`` and ``_test`` of every claim, where known ``_n_questions`` (questions it was
    tested on) and ``_n_needed`` (questions that would decide an inconclusive one), and
    ``<prefix>claims``: every claim as JSON (:func:`studylib.summary.claims_to_json`; the build writes the
    page's findings and the intro from it)."""
    claims = list(claims)
    glue_value(f"{prefix}claims", summary.claims_to_json(claims))
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


#: a composite with more parts than this lists them in a collapsed block under its row
MAX_OPEN_PARTS = 6


class HTMLTable:
    """An HTML table for a notebook output (``_repr_html_``), with the Styler's ``set_caption`` and
    ``to_html`` so that pages and tests treat it like one."""

    def __init__(self, html: str, caption: str = ""):
        self.html, self.caption = html, caption

    def set_caption(self, caption: str) -> "HTMLTable":
        return HTMLTable(self.html, caption)

    def to_html(self) -> str:
        if not self.caption:
            return self.html
        return self.html.replace(">", f"><caption>{escape(self.caption)}</caption>", 1)

    def _repr_html_(self) -> str:
        return self.to_html()


_ITABLES_BUNDLE_SHOWN = False


def itables_bundle() -> str:
    """The HTML that loads the DataTables library of ``itables`` from the page itself (offline: no
    network, ~1 MB inlined); a page needs it once, before or after its tables."""
    from itables import options
    from itables.javascript import generate_init_offline_itables_html

    return generate_init_offline_itables_html(options.dt_bundle)


class InteractiveTable(HTMLTable):
    """An ``itables`` table (sortable, searchable, paged) that works in a static page without network: the
    first one a kernel displays carries the DataTables library (:func:`itables_bundle`)."""

    def _repr_html_(self) -> str:
        global _ITABLES_BUNDLE_SHOWN
        html = self.html if _ITABLES_BUNDLE_SHOWN else itables_bundle() + self.html
        _ITABLES_BUNDLE_SHOWN = True
        return html


def interactive_table(frame: pd.DataFrame, caption: str = "", *, order: list | None = None, page_length: int = 10,
                      bundle: bool = False) -> InteractiveTable:
    """``frame`` (values as they should read: numbers already rounded by the metric catalogue, words as
    words) as an offline ``itables`` DataTable: sortable, searchable, ``page_length`` rows a page, wide
    tables scroll inside their box; ``order`` is DataTables' initial order, e.g. ``[[1, "asc"]]``.
    ``bundle`` puts the DataTables library into this table's own HTML (for a page written by the build)."""
    import itables

    html = itables.to_html_datatable(frame, caption=caption or None, connected=False, showIndex=False,
                                     display_logo_when_loading=False, maxBytes=0, pageLength=page_length,
                                     lengthMenu=[10, 25, 50, 100, 500], order=order or [], scrollX=True,
                                     classes="display compact study-interactive", style="width: 100%")
    return InteractiveTable(itables_bundle() + html if bundle else html)


def _claim_row(claim: Claim, part: bool = False) -> str:
    """One row of the claims table: the claim with its test, source and note behind a toggle; this run's
    effect and CI (metric units of the catalogue); the paper's numbers; the verdict."""
    colour = summary.outcome_colours().get(summary.outcome(claim), "#555")
    base, detail = summary.outcome(claim), summary.verdict_detail(claim)
    details = [("test on this run", summary.readable_test(claim.comparison)),
               ("other estimators", estimators_text(claim)), ("source", claim.source),
               ("note", labels.humanize(readable(claim.note)))]
    body = "".join(f"<div><i>{name}:</i> {escape(text)}</div>" for name, text in details if text)
    ident = escape(summary.readable_test(claim.id))
    statement = escape(labels.humanize(readable(claim.statement)))
    head = f"{'↳ ' if part else ''}<b>{ident}</b> {statement}"
    claim_cell = f"{head}<details><summary>test</summary>{body}</details>" if body else head
    verdict = (f'<span class="outcome" style="color: {colour}">●</span> <b>{escape(base)}</b>'
               + (f"<div class='detail'>{escape(summary.readable_test(detail))}</div>" if detail else ""))
    return (f'<tr class="{"part" if part else "claim"}"><td class="prose">{claim_cell}</td>'
            f'<td class="estimate">{escape(summary.effect_text(claim, unit=True))}</td>'
            f'<td class="prose">{escape(labels.humanize(readable(claim.reported)))}</td>'
            f'<td class="verdict">{verdict}</td></tr>')


def estimators_text(claim: Claim) -> str:
    """The claim judged under the other estimators of its metric (``debiased ECE: −0.006 [−0.012, −0.002]
    holds; smooth ECE: ...``), ``""`` when it has none."""
    return "; ".join(f"{metric_words(c.metric)}: {mc.ci_text(c.metric, c.estimate, c.low, c.high, delta=True)} "
                     f"{c.outcome}" for c in claim.estimators if c.tested)


CLAIMS_HEADER = ("<thead><tr><th>claim (test behind the toggle)</th><th>this run [95 % CI]</th><th>paper</th>"
                 "<th>verdict</th></tr></thead>")


def claims_html(claims: Iterable[Claim], expand: bool = True) -> str:
    """The claims table as HTML: four columns (claim, this run's effect with its CI, the paper's numbers,
    verdict) that fit a page; each claim's test formula, source and note behind a toggle; the parts of a
    composite as indented rows, or, beyond :data:`MAX_OPEN_PARTS`, in a collapsed table of their own."""
    rows = []
    for claim in claims:
        rows.append(_claim_row(claim))
        if not (expand and claim.parts):
            continue
        parts = "".join(_claim_row(p, part=True) for p in claim.parts)
        if len(claim.parts) <= MAX_OPEN_PARTS:
            rows.append(parts)
        else:
            rows.append(f'<tr class="parts"><td colspan="4"><details><summary>the {len(claim.parts)} parts of '
                        f'{escape(claim.id)}</summary><table class="study-table claims">{CLAIMS_HEADER}<tbody>{parts}'
                        "</tbody></table></details></td></tr>")
    return f'<table class="study-table claims">{CLAIMS_HEADER}<tbody>{"".join(rows)}</tbody></table>'


def claims_interactive(claims: Iterable[Claim], caption: str = "") -> InteractiveTable:
    """A long list of claims (e.g. the parts of a large family) as an interactive table: the claim, its
    test, this run's effect with its 95 % CI, the paper's numbers and the verdict; sortable and searchable."""
    rows = [{"claim": f"{summary.readable_test(c.id)}: {labels.humanize(readable(c.statement))}",
             "this run [95 % CI]": summary.effect_text(c).replace(" ", "\u00a0"),
             "verdict": summary.outcome(c), "test": summary.readable_test(c.comparison),
             "paper": labels.humanize(readable(c.reported)), "detail": summary.readable_test(summary.verdict_detail(c))}
            for c in claims]
    return interactive_table(pd.DataFrame(rows), caption=caption, page_length=10)


def show_claims(claims: Iterable[Claim], expand: bool = True, caption: str = "") -> HTMLTable:
    """The claims table of a page (:func:`claims_html`)."""
    return HTMLTable(claims_html(claims, expand=expand), caption)


#: the legend above every claims table: the one legend of :mod:`studylib.claims` (the intro shows it too)
CLAIMS_LEGEND = LEGEND


def claims_section(result, expand: bool = True) -> None:
    """Display the claims legend (one text for every page) and the result's claims table."""
    display(Markdown(CLAIMS_LEGEND), result.claims_table(expand=expand))


__all__ = ["CLAIMS_LEGEND", "HEADER_WORDS", "TOY_MODELS", "HTMLTable", "InteractiveTable", "claims_html",
           "claims_interactive", "claims_section", "display_text", "estimators_text", "glue_claims", "glue_value", "header_words",
           "interactive_table", "is_percent_metric", "is_toy", "model_label", "rows_by_source", "run_banner",
           "run_label", "show_claims", "style_table"]
