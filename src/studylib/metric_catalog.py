"""One record per metric: its name, header, unit and digits, used by every table, figure and claim.

The study stores probabilities and rates as fractions (accuracy 0.869, ECE 0.024).  A reader sees
each metric one way everywhere: accuracy-like rates in % with one decimal (differences in
percentage points, "pp"), ECE, Brier, NLL and AURC as fractions with three decimals, temperatures and
effective ranks with two.  :data:`CATALOG` holds that record per metric; :func:`metric` finds the
record of any column or claim name (case, spaces, the suffixes ``_low``/``_high``/``_sd``/
``_before``/``_after`` and a few aliases tolerated; an unknown name gets a generic record that
prints three significant digits); :func:`value_text`, :func:`ci_text` and :func:`delta_text` format
numbers with it.  Formatting is display only: the data keep every digit.

Every formatted number has at most :data:`MAX_DIGITS` significant digits, and a value that rounds to
zero is written without a sign (never "−0.000").
"""

from __future__ import annotations

import math
from dataclasses import dataclass

#: no page shows a number with more significant digits than this (the browser test checks it)
MAX_DIGITS = 6
MINUS = "−"  # U+2212, the typographic minus of every formatted number


@dataclass(frozen=True)
class Metric:
    """How one metric reads on a page.

    ``percent``: stored as a fraction in [0, 1], shown ×100 with ``%`` (differences in ``pp``);
    ``digits``: decimals of the shown value; ``unit``: the unit word of the shown value ("%",
    "pp", "nats", "words", "" for a plain number); ``lower_is_better``: for sentences and figure
    axes ("lower is better"), ``None`` when neither is; ``symbol``: how a formula writes it (default: ``name``).
    """

    key: str
    name: str
    header: str
    digits: int = 3
    percent: bool = False
    unit: str = ""
    lower_is_better: bool | None = None
    symbol: str = ""

    @property
    def formula_name(self) -> str:
        return self.symbol or self.name

    @property
    def scale(self) -> float:
        return 100.0 if self.percent else 1.0

    @property
    def delta_unit(self) -> str:
        """Unit of a difference of this metric: percentage points for percent metrics."""
        return "pp" if self.percent else self.unit

    @property
    def axis_label(self) -> str:
        return self.header


def _m(key, name, header=None, digits=3, percent=False, unit=None, lower=None, symbol="") -> Metric:
    unit = ("%" if percent else "") if unit is None else unit
    return Metric(key, name, header or name, digits, percent, unit, lower, symbol)


#: every metric the study shows, by its code name
CATALOG: dict[str, Metric] = {m.key: m for m in (
    _m("accuracy", "accuracy", "accuracy (%)", 1, True, lower=False),
    _m("f1", "F1", "F1 (%)", 1, True, lower=False),
    _m("precision", "precision", "precision (%)", 1, True, lower=False),
    _m("recall", "recall", "recall (%)", 1, True, lower=False),
    _m("sel_acc_80", "selective accuracy at 80 % coverage", "selective accuracy at 80 % coverage (%)", 1, True,
       lower=False, symbol="selective accuracy"),
    _m("mean_confidence", "mean confidence", "mean confidence (%)", 1, True),
    _m("overconfidence", "over-confidence", "over-confidence (pp)", 1, True, unit="pp", lower=True),
    _m("yes_ratio", "share of 'yes' answers", "share of 'yes' (%)", 1, True),
    _m("chair_s", "CHAIR_s", "CHAIR_s (%)", 1, True, lower=True),
    _m("chair_i", "CHAIR_i", "CHAIR_i (%)", 1, True, lower=True),
    _m("ece", "ECE", "ECE", 3, lower=True),
    _m("ece_debiased", "debiased ECE", "debiased ECE", 3, lower=True),
    _m("smece", "smooth ECE", "smooth ECE", 3, lower=True),
    _m("ece_change", "change of ECE", "change of ECE", 3, lower=True),
    _m("mce", "MCE", "MCE", 3, lower=True),
    _m("brier", "Brier score", "Brier", 3, lower=True),
    _m("nll", "NLL", "NLL", 3, unit="nats", lower=True),
    _m("aurc", "AURC", "AURC", 3, lower=True),
    _m("e_aurc", "E-AURC", "E-AURC", 3, lower=True),
    _m("temperature", "fitted temperature T*", "T* (cross-validated)", 2),
    _m("t_std", "sd of T* over folds", "sd of T* over folds", 2),
    _m("t_star_dev", "distance of T* from 1", "|T* − 1|", 2, lower=True, symbol="|T* − 1|"),
    _m("erank", "erank", "erank", 2),
    _m("erank_kept", "erank of the kept tokens", "erank of kept tokens", 2, symbol="erank"),
    _m("mean_erank_kept", "mean erank of the kept tokens", "mean erank of kept tokens", 2),
    _m("entropy_kept", "attention entropy of the kept tokens", "attention entropy of kept tokens (0–1)", 3),
    _m("mean_entropy_kept", "mean attention entropy of the kept tokens", "mean attention entropy of kept tokens", 3),
    _m("length", "caption length", "caption length (words)", 1, unit="words"),
    _m("mean_length", "mean caption length", "mean caption length (words)", 1, unit="words"),
    _m("hallucinated_objects", "hallucinated objects", "hallucinated objects", 2),
    _m("spearman_rho", "Spearman ρ", "Spearman ρ", 2),
    _m("score", "MME score", "MME score", 1),
    _m("gap_power", "gap power p", "gap power p", 2),
    _m("n", "questions", "questions", 0),
    _m("n_questions", "questions", "questions", 0),
    _m("n_images", "images", "images", 0),
    _m("n_clusters", "images", "images", 0),
    _m("n_seeds", "seeds", "seeds", 0),
    _m("k", "K", "K", 0),
)}

#: other names of the same quantity (columns of reported.csv, claims, older tables)
ALIASES = {
    "selective_accuracy_80": "sel_acc_80", "sel_acc": "sel_acc_80", "t_mean": "temperature", "t": "temperature",
    "eaurc": "e_aurc", "ece_after_ts": "ece", "ece_before": "ece", "ece_after": "ece", "spearman_ρ": "spearman_rho",
    "rho": "spearman_rho", "nll_before": "nll", "nll_after": "nll", "brier_before": "brier", "brier_after": "brier",
    "config": None, "accuracy_%": "accuracy",
}
_SUFFIXES = ("_low", "_high", "_sd")


def _key(name: object) -> str:
    return str(name).strip().lower().replace(" ", "_").replace("-", "_")


def lookup(name: object) -> Metric | None:
    """The record of ``name`` (a column, a claim's metric, an alias; ``_low``/``_high``/``_sd`` stripped),
    ``None`` when the catalogue has none."""
    key = _key(name)
    for candidate in (key, *(key[: -len(s)] for s in _SUFFIXES if key.endswith(s))):
        if candidate in CATALOG:
            return CATALOG[candidate]
        alias = ALIASES.get(candidate)
        if alias:
            return CATALOG[alias]
    return None


def metric(name: object) -> Metric:
    """The record of ``name``; an unknown name gets a generic record (three decimals, its own words)."""
    found = lookup(name)
    return found if found is not None else Metric(_key(name), str(name).replace("_", " "), str(name).replace("_", " "))


def is_percent(name: object) -> bool:
    found = lookup(name)
    return bool(found and found.percent)


def number_text(value: float, digits: int, signed: bool = False) -> str:
    """``value`` with ``digits`` decimals (at most :data:`MAX_DIGITS` significant digits), a typographic
    minus, no sign on a value that rounds to zero, ``+`` in front of positive values when ``signed``."""
    if value is None or (isinstance(value, float) and math.isnan(value)):
        return ""
    value = float(value)
    if math.isinf(value):
        return ("−" if value < 0 else ("+" if signed else "")) + "∞"
    magnitude = abs(value)
    if magnitude >= 1:
        digits = max(0, min(digits, MAX_DIGITS - (int(math.log10(magnitude)) + 1)))
    text = f"{magnitude:.{digits}f}"
    if float(text) == 0:
        return text
    if value < 0:
        return MINUS + text
    return ("+" + text) if signed else text


def value_text(name: object, value: float, *, unit: bool = False, digits: int | None = None) -> str:
    """A value of metric ``name`` as a reader sees it: ``86.9`` (``86.9 %`` with ``unit``), ``0.024``."""
    record = metric(name)
    text = number_text(value * record.scale, record.digits if digits is None else digits)
    return f"{text} {record.unit}" if unit and record.unit and text else text


def delta_text(name: object, value: float, *, unit: bool = False) -> str:
    """A difference of metric ``name``, signed: ``−9.5`` (``−9.5 pp`` with ``unit``), ``+0.009``."""
    record = metric(name)
    text = number_text(value * record.scale, record.digits, signed=True)
    return f"{text} {record.delta_unit}" if unit and record.delta_unit and text else text


def ci_text(name: object, value: float, low: float, high: float, *, delta: bool = False, unit: bool = False) -> str:
    """``value [low, high]`` of metric ``name`` (``delta``: signed differences); the value alone when a
    bound is missing, ``""`` when the value is."""
    show = (lambda v: delta_text(name, v)) if delta else (lambda v: value_text(name, v))
    text = show(value)
    if not text:
        return ""
    if not (low is None or high is None or math.isnan(low) or math.isnan(high)):
        text += f" [{show(low)}, {show(high)}]"
    record = metric(name)
    suffix = record.delta_unit if delta else record.unit
    return f"{text} {suffix}" if unit and suffix else text


__all__ = ["ALIASES", "CATALOG", "MAX_DIGITS", "MINUS", "Metric", "ci_text", "delta_text", "is_percent", "lookup",
           "metric", "number_text", "value_text"]
