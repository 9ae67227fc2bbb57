r"""Claims of the source papers, tested on this run's numbers.

A :class:`Claim` states one claim of a seed paper ("SCOPE at K=128 has lower ECE than the full
model", seed 000 §4.1), the quantity that tests it on this run (a paired difference of a metric
between two configurations, with its bootstrap CI), the rule it is judged by, the paper's own
numbers, and the **verdict computed from this run** — never written by hand:

* :func:`delta_claim` — paired bootstrap difference ``metric(a) − metric(b)`` by
  :func:`studylib.analysis.paired_delta`, judged by :func:`outcome` against a direction
  (``"less"``/``"greater"``), a threshold and the smallest effect δ;
* :func:`equivalence_claim` — "changes only slightly": the CI of the difference inside ``±margin``;
* :func:`mean_delta_claim` — paired bootstrap difference of a per-image mean of a row column
  (e.g. the erank of the kept tokens), judged the same way;
* :func:`interval_claim` — a claim about any interval computed elsewhere, judged the same way;
* :func:`point_claim` — a comparison that has no CI in this study (e.g. fitted temperatures):
  the verdict says ``(point estimate)`` so nobody mistakes it for a tested one;
* :func:`all_of` / :func:`any_of` — a claim that needs every / some part (e.g. "at every budget").

**The rule** (one rule, written once in the book's Methods).  Put the claim's effect on the claimed
side's scale, :math:`x = s\,(v - o)` (:math:`s = -1` for a claimed decrease, :math:`o` the origin:
0, or the threshold of a non-inferiority claim), with the CI :math:`[l, h]` of x and the effect δ ≥ 0
the claim is about (the paper's own effect, else :data:`SMALLEST_EFFECTS`, else 0; a claim *of size*,
"drops by more than 10 points", has δ = its threshold and must clear it):

============================  =========================================================
:data:`REVERSED`              :math:`h < 0`: wholly on the other side of 0
:data:`HOLDS`                 :math:`l > b` and :math:`h \ge δ` (b = 0; a claim of size: b = δ)
:data:`HOLDS_SMALLER`         :math:`l > 0` and :math:`h < δ`: a real effect, short of δ
:data:`NO_REPORTED_EFFECT`    :math:`l \le 0 \le h < δ`: includes 0, excludes δ
:data:`INCONCLUSIVE`          otherwise: includes 0 (or a size claim's δ) and δ
============================  =========================================================

An equivalence claim holds when the CI lies inside ±margin, is *reversed* when it lies wholly outside
(a change larger than the margin), else inconclusive.  A zero-width CI (every resample gives the same
difference) decides nothing: inconclusive.  Two configurations that keep the same tokens for every
question and give the same answers are not compared: ``not applicable: same tokens kept``.

**Families.** A composite is a family of one-sided tests; a conclusion that rests on *one* part of it
("reversed at some budget" of an ``all_of``, "holds for some p" of an ``any_of``) is corrected for the
m tested parts by Holm's step-down procedure on the parts' one-sided bootstrap p-values (:func:`holm`,
level 0.025: one side of a 95 % CI).  A conclusion that needs *every* part (an ``all_of`` that holds, an
``any_of`` none of whose parts holds) is an intersection–union test: each part at the uncorrected level
already controls the error.  An ``all_of`` takes its weakest part's outcome (reversed, no effect of the
reported size, inconclusive, holds smaller, holds), an ``any_of`` its strongest; parts that keep the same
tokens leave the family.

**What it would take.** An inconclusive verdict states the number of questions at which its CI would
decide, from the CI this run observed: the arms of a bootstrap CI shrink as 1/√n around the estimate,
so with e, [l, h] on the claimed scale the CI clears the bar once the arm towards it, e − l, shrinks
by the factor (e − b)/(e − l), and falls short of δ once the other arm shrinks by (δ − e)/(h − e);
r is the larger of the two factors that apply (equivalence: inside ±m needs both arms inside, outside
the arm towards the margin), and :math:`n_{need} = n\,(z_m / r)^2`, with :math:`z_m` the one-sided normal
quantile of Holm's strictest level 0.025/m over 1.96 in a family of m (1 alone).  A composite needs
the largest n of its undecided parts.

**Estimators.** A claim on ECE carries the same claim under debiased ECE and smooth ECE
(:attr:`Claim.estimators`); it is *estimator-sensitive* when their outcomes differ.

A claim whose configurations are not in the run (the grid was changed) gets the verdict
``not applicable: needs ...`` instead of failing: the notebook still renders.  Experiments
declare their claims in ``data/claims/<experiment>.yaml`` (:mod:`studylib.claim_specs`).
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd
from scipy.stats import norm

from studylib.analysis import paired_delta
from studylib.metrics import paired_bootstrap_ci
from studylib.multiplicity import ONE_SIDED_LEVEL, holm_rejections, tail_p_values

HOLDS = "holds"
HOLDS_SMALLER = "holds, smaller than reported"
NO_REPORTED_EFFECT = "no effect of the reported size"
REVERSED = "reversed"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not applicable"
#: every outcome, from the strongest support of a claim to none
OUTCOMES = (HOLDS, HOLDS_SMALLER, NO_REPORTED_EFFECT, REVERSED, INCONCLUSIVE, NOT_TESTED)
VERDICTS = OUTCOMES
SAME_TOKENS = "same tokens kept"
ESTIMATOR_SENSITIVE = "estimator-sensitive"
POINT = " (point estimate)"  # qualifier of verdicts judged without a CI
DIRECTIONS = ("less", "greater")

#: the one-line legend of every claims table and of the intro's verdict table
LEGEND = (
    "Each verdict comes from the 95 % paired bootstrap CI of this run's effect (whole images resampled), "
    "read against 0 and the effect δ the test column names (the paper's, else the smallest effect of "
    "interest): **holds** — the CI lies wholly on the claimed side and reaches δ; **holds, smaller than "
    "reported** — wholly on the claimed side, wholly short of δ; **no effect of the reported size** — it "
    "includes 0 and excludes δ; **reversed** — wholly on the other side of 0; **inconclusive** — it includes "
    "0 and δ (the verdict says how many questions would decide it); **not applicable** — not tested (a "
    "configuration is missing, or both keep the same tokens). *Estimator-sensitive*: the verdict changes "
    "between binned, debiased and smooth ECE. Families are Holm-corrected; the rule is in Methods.")

#: smallest effect of interest of a directional claim on a metric when the paper gives no effect
#: of its own: one percentage point on the probability scale (accuracy, F1, selective accuracy,
#: CHAIR; ECE, MCE and AURC are probability gaps too) — the study's accuracy margin of
#: "unchanged accuracy" (±1 pp).  Metrics not listed have none (their claims use δ = 0).
SMALLEST_EFFECTS = {metric: 0.01 for metric in (
    "accuracy", "f1", "sel_acc_80", "chair_s", "chair_i", "recall", "ece", "ece_debiased", "smece", "mce", "aurc")}

#: the other estimators a claim on a metric is also judged with (Methods, "Estimators")
ESTIMATORS = {"ece": ("ece_debiased", "smece")}

#: metric code names in words, for the test column
METRIC_WORDS = {
    "ece": "ECE", "ece_debiased": "debiased ECE", "smece": "smooth ECE", "mce": "MCE", "aurc": "AURC",
    "e_aurc": "E-AURC", "sel_acc_80": "selective accuracy at 80 % coverage", "t_star_dev": "|T* − 1|",
    "chair_s": "CHAIR_s", "chair_i": "CHAIR_i", "f1": "F1", "nll": "NLL", "brier": "Brier",
    "erank_kept": "erank of the kept tokens", "mean_confidence": "mean confidence",
}

_ALIASES = {"<": "less", ">": "greater"}


def metric_words(metric: str) -> str:
    """A metric's name for readers (``t_star_dev`` -> ``|T* − 1|``)."""
    return METRIC_WORDS.get(metric, metric.replace("_", " "))


def _check_direction(direction: str) -> str:
    name = _ALIASES.get(direction, direction)
    if name not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS} (or '<', '>'), got {direction!r}")
    return name


@dataclass(frozen=True)
class Rule:
    """What a CI is judged against (module docstring): ``direction`` ``less``/``greater`` (or
    ``within`` for equivalence), the ``origin`` of no effect, the effect δ ≥ 0 (``effect``;
    equivalence: the margin) measured from the origin on the claimed side, ``of_size`` for a claim
    that the effect exceeds δ, and where δ comes from (``effect_origin``)."""

    direction: str
    origin: float = 0.0
    effect: float = 0.0
    of_size: bool = False
    effect_origin: str = ""

    @property
    def sign(self) -> float:
        return -1.0 if self.direction == "less" else 1.0

    def claimed_scale(self, low: float, high: float) -> tuple[float, float]:
        """The CI on the claimed side's scale ``x = s (v − origin)``, ordered."""
        a, b = self.sign * (low - self.origin), self.sign * (high - self.origin)
        return min(a, b), max(a, b)

    def value(self, x: float) -> float:
        """A point of the claimed scale back in the claim's units."""
        return self.origin + self.sign * x

    def words(self) -> str:
        """The bounds in words, as the test column prints them: ``claimed below 0; reported effect −0.017``."""
        if self.direction == "within":
            return f"claimed within ±{self.effect:g}"
        side = "below" if self.direction == "less" else "above"
        if self.of_size:
            return f"claimed {side} {self.value(self.effect):+.3g}"
        text = f"claimed {side} {self.origin:g}"
        if self.effect:
            name = "reported effect" if self.effect_origin == "the reported effect" else "smallest effect of interest"
            origin = "" if self.effect_origin == "the reported effect" else f" ({self.effect_origin})"
            text += f"; {name} {self.value(self.effect):+.3g}{origin}"
        return text


def rule_for(direction: str, threshold: float = 0.0, smallest_effect: float = 0.0, effect_origin: str = "") -> Rule:
    """The :class:`Rule` of "estimate ``direction`` threshold" with smallest effect δ: a threshold on
    the claimed side of 0 makes a claim of size (δ = |threshold|), one on the other side a
    non-inferiority claim (origin = threshold, δ = 0); δ applies to claims against 0."""
    direction = _check_direction(direction)
    if not smallest_effect >= 0:
        raise ValueError(f"smallest_effect must be >= 0, got {smallest_effect}")
    sign = -1.0 if direction == "less" else 1.0
    if threshold and sign * threshold > 0:
        return Rule(direction, 0.0, abs(threshold), of_size=True, effect_origin="the claimed size")
    if threshold:
        return Rule(direction, float(threshold))
    return Rule(direction, 0.0, float(smallest_effect), effect_origin=effect_origin if smallest_effect else "")


def _bounds(interval: Any) -> tuple[float, float]:
    if hasattr(interval, "low") and hasattr(interval, "high"):
        low, high = float(interval.low), float(interval.high)
    else:
        low, high = (float(x) for x in interval)
    return min(low, high), max(low, high)


def outcome(interval: Any, rule: Rule) -> str:
    """The verdict of a CI (a ``(low, high)`` pair or anything with ``low``/``high``) under ``rule``
    (module docstring), with the CI's relation to the bounds as detail, e.g.
    ``inconclusive (CI includes 0 and −0.017)``."""
    low, high = _bounds(interval)
    if math.isnan(low) or math.isnan(high):
        return f"{INCONCLUSIVE} (CI undefined)"
    if low == high:
        return f"{INCONCLUSIVE} (zero-width CI: every resample gives the same difference)"
    if rule.direction == "within":
        m = rule.effect
        if -m < low and high < m:
            return HOLDS
        if low > m or high < -m:
            return REVERSED
        return f"{INCONCLUSIVE} (CI crosses ±{m:g})"
    l, h = rule.claimed_scale(low, high)
    delta, bar = rule.effect, (rule.effect if rule.of_size else 0.0)
    if h < 0:
        return REVERSED
    if l > bar and h >= delta:
        return HOLDS
    if l > 0 and h < delta:
        return HOLDS_SMALLER
    if h < delta:
        return NO_REPORTED_EFFECT
    if rule.of_size or not delta:
        return f"{INCONCLUSIVE} (CI includes {rule.value(bar):+.3g})" if rule.of_size else \
            f"{INCONCLUSIVE} (CI includes {rule.origin:g})"
    return f"{INCONCLUSIVE} (CI includes {rule.origin:g} and {rule.value(delta):+.3g})"


def verdict(interval: Any, direction: str, threshold: float = 0.0, smallest_effect: float = 0.0) -> str:
    """:func:`outcome` of "estimate ``direction`` threshold" with smallest effect δ (:func:`rule_for`)."""
    if direction not in ("<", ">", "less", "greater"):
        raise ValueError(f"direction must be '<' or '>', got {direction!r}")
    return outcome(interval, rule_for(direction, threshold, smallest_effect))


def verdict_base(text: str) -> str:
    """The outcome of a verdict text, one of :data:`OUTCOMES`: ``"inconclusive (CI includes 0)"`` ->
    ``"inconclusive"``; ``"not applicable: needs x"`` -> ``"not applicable"``."""
    return str(text).split(" (")[0].split(":")[0]


def decision_ratio(estimate: float, low: float, high: float, rule: Rule) -> float:
    """By how much both arms of the CI around the estimate must shrink for it to decide: the largest
    r ≤ 1 such that arms scaled by r leave a bound wholly on one side (module docstring, "What it
    would take"); 0 when the estimate sits on a bound."""
    if rule.direction == "within":
        below, above = estimate - low, high - estimate
        m = rule.effect
        if abs(estimate) < m:
            return min(_ratio(estimate + m, below), _ratio(m - estimate, above))
        return _ratio(estimate - m, below) if estimate > m else _ratio(-m - estimate, above)
    e = rule.sign * (estimate - rule.origin)
    l, h = rule.claimed_scale(low, high)
    toward_low, toward_high = e - l, h - e
    bar = rule.effect if rule.of_size else 0.0
    options = [_ratio(e - bar, toward_low) if e > bar else 0.0,  # the CI clears the bar: holds
               _ratio(rule.effect - e, toward_high) if e < rule.effect else 0.0]  # it stays short of δ
    return max(options)


def _ratio(distance: float, arm: float) -> float:
    return math.inf if arm <= 0 else max(distance, 0.0) / arm


#: beyond this many questions an extrapolated n is not a design anyone can run (the largest benchmark in the
#: seed papers has ~10^4 questions): it is reported as "no realistic number decides it", not as a number
MAX_QUESTIONS = 1e9


def questions_needed(n: int, ratio: float, family: int = 1) -> float:
    """Questions (same design) at which a CI on ``n`` questions whose arms must shrink by ``ratio``
    decides (arms ∝ 1/√n), at Holm's strictest level for a family of ``family`` tests (the one-sided
    normal quantile of 0.025/m instead of 0.025); inf when no shrinking decides or when the answer
    exceeds :data:`MAX_QUESTIONS` (the estimate sits on, or within a hair of, a bound), NaN for unknown n."""
    if not n:
        return math.nan
    if not ratio > 0:
        return math.inf
    z = norm.ppf(1 - ONE_SIDED_LEVEL / max(family, 1)) / norm.ppf(1 - ONE_SIDED_LEVEL)
    need = n * (z / ratio) ** 2
    return need if need <= MAX_QUESTIONS else math.inf


@dataclass(frozen=True)
class Claim:
    """One claim and its verdict on this run.

    ``comparison`` is the test in words: the quantity computed and its bounds
    (``"ECE[scope(alpha=0,p=1)@32] − ECE[full@144]: claimed below 0; reported effect −0.017"``);
    ``estimate``/``low``/``high`` the point estimate and the bootstrap CI (NaN when there is none);
    ``reported`` the paper's number(s) for the same comparison, as text; ``rule`` how the CI was
    judged; ``n_questions`` the samples scored for it and ``unit`` what they are (questions, or captions
    for the caption metrics); ``family`` the Holm family size its verdict
    was corrected over; ``estimators`` the same claim under the other estimators of its metric.
    """

    id: str
    source: str
    statement: str
    metric: str = ""
    comparison: str = ""
    estimate: float = math.nan
    low: float = math.nan
    high: float = math.nan
    verdict: str = NOT_TESTED
    reported: str = ""
    note: str = ""
    parts: tuple["Claim", ...] = field(default=(), repr=False)
    p_holds: float = field(default=math.nan, repr=False)  # one-sided p against the claim (small: it holds)
    p_fails: float = field(default=math.nan, repr=False)  # one-sided p against reaching δ (small: short of δ)
    p_reversed: float = field(default=math.nan, repr=False)  # one-sided p against 0 the other way
    rule: Rule | None = field(default=None, repr=False)
    n_questions: int = 0
    unit: str = "questions"
    family: int = 0
    estimators: tuple["Claim", ...] = field(default=(), repr=False)

    def __post_init__(self) -> None:
        if verdict_base(self.verdict) not in OUTCOMES:
            raise ValueError(f"claim {self.id}: verdict {self.verdict!r} is not one of {OUTCOMES}")

    @property
    def outcome(self) -> str:
        """The verdict's outcome, one of :data:`OUTCOMES`."""
        return verdict_base(self.verdict)

    @property
    def holds(self) -> bool:
        return self.outcome in (HOLDS, HOLDS_SMALLER)

    @property
    def tested(self) -> bool:
        return self.outcome != NOT_TESTED

    @property
    def same_tokens(self) -> bool:
        return self.verdict == f"{NOT_TESTED}: {SAME_TOKENS}"

    @property
    def estimator_sensitive(self) -> bool:
        """True when the claim's outcome differs under another estimator of its metric."""
        outcomes = {c.outcome for c in (self, *self.estimators) if c.tested}
        return len(outcomes) > 1

    @property
    def n_needed(self) -> float:
        """Questions at which an inconclusive verdict would be decided (module docstring); NaN when
        the verdict is decided or nothing is known, inf when the estimate sits on a bound."""
        if self.outcome != INCONCLUSIVE:
            return math.nan
        if self.parts:
            needs = [p.n_needed for p in self.parts if p.outcome == INCONCLUSIVE]
            needs = [x for x in needs if not math.isnan(x)]
            return max(needs) if needs else math.nan
        if self.rule is None or math.isnan(self.low) or math.isnan(self.high) or self.low == self.high:
            return math.nan
        ratio = decision_ratio(self.estimate, self.low, self.high, self.rule)
        return questions_needed(self.n_questions, ratio, self.family)

    def estimate_text(self, digits: int = 3) -> str:
        """``-0.012 [-0.020, -0.004]``; ``—`` when nothing was computed."""
        if math.isnan(self.estimate):
            return "—"
        text = f"{self.estimate:+.{digits}f}"
        if not (math.isnan(self.low) or math.isnan(self.high)):
            text += f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return text

    def verdict_text(self) -> str:
        """The verdict as a page shows it: with the questions an inconclusive one would need and the
        estimator-sensitive label (each inside the verdict's parentheses, so :func:`verdict_base`
        still reads the outcome)."""
        extras = []
        need = self.n_needed
        if self.outcome == INCONCLUSIVE and not self.parts and self.low == self.high:
            extras.append(f"no number of {self.unit} can be extrapolated from a CI without width")
        elif need == math.inf:
            extras.append(f"no realistic number of {self.unit} decides it (more than {MAX_QUESTIONS:,.0f}): the estimate "
                          "sits on or next to a bound")
        elif not math.isnan(need):
            extras.append(f"would need ≈ {_round_count(need)} {self.unit}, this run {self.n_questions:,}")
        if self.estimator_sensitive:
            by_outcome: dict[str, list[str]] = {}
            for c in self.estimators:
                if c.tested:
                    by_outcome.setdefault(c.outcome, []).append(metric_words(c.metric))
            others = ", ".join(f"{' and '.join(names)}: {outcome}" for outcome, names in by_outcome.items())
            extras.append(f"{ESTIMATOR_SENSITIVE}; {others}")
        if not extras:
            return self.verdict
        if self.verdict.endswith(")") and " (" in self.verdict:
            return f"{self.verdict[:-1]}; {'; '.join(extras)})"
        return f"{self.verdict} ({'; '.join(extras)})"

    def estimators_text(self, digits: int = 3) -> str:
        """``debiased ECE: −0.010 [−0.020, −0.001] holds; smooth ECE: …`` (empty without estimators)."""
        return "; ".join(f"{metric_words(c.metric)}: " + ("" if math.isnan(c.estimate) else f"{c.estimate_text(digits)} ")
                         + c.outcome for c in self.estimators)


def _round_count(n: float) -> str:
    """A question count to two significant digits with thousands separators (``81,000``)."""
    if n < 100:
        return f"{math.ceil(n):,}"
    magnitude = 10 ** (int(math.floor(math.log10(n))) - 1)
    return f"{int(math.ceil(n / magnitude) * magnitude):,}"


def _configs_in(rows: pd.DataFrame) -> set[str]:
    return set(map(str, rows["config"].unique())) if len(rows) and "config" in rows else set()


def _missing(rows: pd.DataFrame, configs: Sequence[str]) -> list[str]:
    present = _configs_in(rows)
    return [c for c in configs if str(c) not in present]


def _subset(rows: pd.DataFrame, subset: Mapping[str, Any] | None) -> pd.DataFrame:
    if not subset:
        return rows
    mask = pd.Series(True, index=rows.index)
    for column, value in subset.items():
        mask &= rows[column] == value
    return rows[mask]


def _quantity(metric: str, a: str, b: str, subset=None) -> str:
    where = "" if not subset else " on " + ", ".join(f"{k}={v}" for k, v in subset.items())
    name = metric_words(metric)
    return f"{name}[{a}] − {name}[{b}]{where}"


def _needs(missing: Sequence[str]) -> str:
    return "needs " + ", ".join(map(str, missing))


def same_tokens(rows: pd.DataFrame, a: str, b: str) -> bool:
    """True when configurations ``a`` and ``b`` of ``rows`` keep the same tokens (``kept``) for every
    question and give the same probabilities: they are one model input, so nothing is compared."""
    if "kept" not in rows or "qid" not in rows:
        return False
    keys = [c for c in ("dataset", "qid") if c in rows]
    columns = [c for c in ("kept", "probs") if c in rows]

    def side(config: str) -> dict:
        frame = rows[rows["config"] == config]
        return dict(zip(frame[keys].itertuples(index=False, name=None), frame[columns].itertuples(index=False)))

    side_a, side_b = side(a), side(b)
    if not side_a or side_a.keys() != side_b.keys():
        return False
    return all(x is not None and y is not None and np.array_equal(np.asarray(x), np.asarray(y))
               for key, values in side_a.items() for x, y in zip(values, side_b[key]))


def not_tested(id: str, source: str, statement: str, reason: str, *, metric: str = "",
               comparison: str = "", reported: str = "", note: str = "") -> Claim:
    """A claim this run cannot test; its verdict says why: ``not applicable: needs ...``."""
    return Claim(id, source, statement, metric, comparison, verdict=f"{NOT_TESTED}: {reason}", reported=reported,
                 note=note)


def judged(interval: Any, rule: Rule, *, id: str, source: str, statement: str, metric: str, quantity: str,
           reported: str = "", note: str = "", n_questions: int = 0) -> Claim:
    """Claim judged on an interval with ``estimate``, ``low`` and ``high`` attributes (and its bootstrap
    ``distribution``, if any, for the one-sided p-values a family correction uses) under ``rule``."""
    estimate, distribution = float(interval.estimate), getattr(interval, "distribution", None)
    if rule.direction == "within":
        above = tail_p_values(estimate, distribution, "greater", -rule.effect)
        below = tail_p_values(estimate, distribution, "less", rule.effect)
        # inside (-margin, margin) needs both one-sided tests (TOST); outside needs either side
        p_holds, p_fails = max(above[0], below[0]), min(above[1], below[1])
        p_reversed = p_fails
    else:
        bar = rule.value(rule.effect if rule.of_size else 0.0)
        p_holds = tail_p_values(estimate, distribution, rule.direction, bar)[0]
        p_fails = tail_p_values(estimate, distribution, rule.direction, rule.value(rule.effect))[1]
        p_reversed = tail_p_values(estimate, distribution, rule.direction, rule.origin)[1]
    return Claim(id, source, statement, metric, f"{quantity}: {rule.words()}", estimate, float(interval.low),
                 float(interval.high), outcome(interval, rule), reported, note, p_holds=p_holds, p_fails=p_fails,
                 p_reversed=p_reversed, rule=rule, n_questions=int(n_questions or getattr(interval, "n_samples", 0)),
                 unit=getattr(interval, "unit", "questions"))


def interval_claim(interval: Any, *, id: str, source: str, statement: str, metric: str,
                   comparison: str, direction: str, threshold: float = 0.0, reported: str = "",
                   note: str = "", smallest_effect: float = 0.0, effect_origin: str = "", n_questions: int = 0) -> Claim:
    """Claim that the quantity ``comparison`` (with its interval) is ``direction`` than ``threshold``,
    with smallest effect δ = ``smallest_effect`` (module docstring; ``effect_origin`` says where it
    comes from)."""
    rule = rule_for(direction, threshold, smallest_effect, effect_origin)
    return judged(interval, rule, id=id, source=source, statement=statement, metric=metric, quantity=comparison,
                  reported=reported, note=note, n_questions=n_questions)


def _paired_metric_delta(rows: pd.DataFrame, a: str, b: str, metric: str, subset: Mapping[str, Any] | None,
                         n_bootstrap: int, seed: int):
    """``(interval of metric(a) − metric(b), [])`` by the paired bootstrap over questions, or
    ``(None, missing configs)`` when ``a`` or ``b`` is absent from ``rows`` (after ``subset``)."""
    data = _subset(rows, subset)
    missing = _missing(data, [a, b])
    if missing:
        return None, missing
    # analysis.paired_delta(rows, x, y) is metric(y) - metric(x): pass (b, a) for metric(a) - metric(b)
    return paired_delta(data, b, a, metric=metric, n_bootstrap=n_bootstrap, seed=seed), []


def _pair_claim(rows, rule: Rule, *, id, source, statement, a, b, metric, reported, n_bootstrap, seed, subset,
                note) -> Claim:
    """A paired comparison of ``metric`` between ``a`` and ``b`` judged by ``rule`` (shared by
    :func:`delta_claim` and :func:`equivalence_claim`)."""
    quantity = _quantity(metric, a, b, subset)
    fields = {"id": id, "source": source, "statement": statement, "metric": metric, "reported": reported,
              "note": note}
    data = _subset(rows, subset)
    missing = _missing(data, [a, b])
    if missing:
        return not_tested(**fields, reason=_needs(missing), comparison=f"{quantity}: {rule.words()}")
    if same_tokens(data, a, b):
        return not_tested(**fields, reason=SAME_TOKENS, comparison=f"{quantity}: {rule.words()}")
    interval, _ = _paired_metric_delta(data, a, b, metric, None, n_bootstrap, seed)
    n = int((data["config"] == a).sum())
    return judged(interval, rule, **fields, quantity=quantity, n_questions=n)


def delta_claim(rows: pd.DataFrame, *, id: str, source: str, statement: str, a: str, b: str,
                metric: str, direction: str, threshold: float = 0.0, reported: str = "",
                n_bootstrap: int = 1000, seed: int = 0, subset: Mapping[str, Any] | None = None,
                note: str = "", smallest_effect: float = 0.0, effect_origin: str = "") -> Claim:
    """Claim that ``metric(a) − metric(b)`` is ``direction`` (``"less"``/``"greater"``) than
    ``threshold``, tested with the paired bootstrap CI of :func:`studylib.analysis.paired_delta`
    on ``rows`` (optionally restricted to ``subset``, e.g. ``{"split": "adversarial"}``);
    ``smallest_effect``: see :func:`interval_claim`."""
    rule = rule_for(direction, threshold, smallest_effect, effect_origin)
    return _pair_claim(rows, rule, id=id, source=source, statement=statement, a=a, b=b, metric=metric,
                       reported=reported, n_bootstrap=n_bootstrap, seed=seed, subset=subset, note=note)


def equivalence_claim(rows: pd.DataFrame, *, id: str, source: str, statement: str, a: str, b: str,
                      metric: str, margin: float, reported: str = "", n_bootstrap: int = 1000,
                      seed: int = 0, subset: Mapping[str, Any] | None = None, note: str = "") -> Claim:
    """Claim that ``metric(a)`` and ``metric(b)`` differ by less than ``margin``: holds when the
    CI of the difference lies inside ``(−margin, margin)``, reversed when it lies wholly
    outside, inconclusive otherwise."""
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    return _pair_claim(rows, Rule("within", 0.0, float(margin)), id=id, source=source, statement=statement, a=a,
                       b=b, metric=metric, reported=reported, n_bootstrap=n_bootstrap, seed=seed, subset=subset,
                       note=note)


def mean_delta(rows: pd.DataFrame, a: str, b: str, column: str, *, per: str = "image",
               n_bootstrap: int = 1000, seed: int = 0):
    """Paired bootstrap CI of ``mean(column | a) − mean(column | b)`` over the units ``per``
    (default: images; each unit's value is its mean over its rows, e.g. the erank of the kept
    tokens, identical for all questions about one image).  Units are resampled with the same
    indices for both configurations.  Returns a :class:`~studylib.metrics.BootstrapInterval`."""
    means = {}
    for config in (a, b):
        frame = rows[rows["config"] == config]
        means[config] = frame.groupby(per, sort=True)[column].mean()
    units = means[a].index.intersection(means[b].index)
    if len(units) != len(means[a]) or len(units) != len(means[b]):
        raise ValueError(f"configs {a!r} and {b!r} cover different {per}s; a paired comparison needs the same ones")
    xa = means[a].loc[units].to_numpy(dtype=float)
    xb = means[b].loc[units].to_numpy(dtype=float)
    return paired_bootstrap_ci(lambda x: float(np.mean(x)), (xa,), (xb,), n_resamples=n_bootstrap, seed=seed,
                               groups=None)


def mean_delta_claim(rows: pd.DataFrame, *, id: str, source: str, statement: str, a: str, b: str,
                     column: str, direction: str, threshold: float = 0.0, reported: str = "",
                     per: str = "image", n_bootstrap: int = 1000, seed: int = 0, note: str = "",
                     smallest_effect: float = 0.0, effect_origin: str = "") -> Claim:
    """Claim on the difference of a per-unit mean (e.g. ``erank_kept`` per image) between two
    configurations, judged like :func:`delta_claim` (see :func:`mean_delta`)."""
    rule = rule_for(direction, threshold, smallest_effect, effect_origin)
    name = metric_words(column)
    quantity = f"mean {name}[{a}] − mean {name}[{b}] (per {per})"
    missing = _missing(rows, [a, b])
    if missing:
        return not_tested(id, source, statement, _needs(missing), metric=column,
                          comparison=f"{quantity}: {rule.words()}", reported=reported, note=note)
    interval = mean_delta(rows, a, b, column, per=per, n_bootstrap=n_bootstrap, seed=seed)
    return judged(interval, rule, id=id, source=source, statement=statement, metric=column, quantity=quantity,
                  reported=reported, note=note, n_questions=int((rows["config"] == a).sum()))


def point_claim(value_a: float, value_b: float, *, id: str, source: str, statement: str, metric: str,
                comparison: str, direction: str, threshold: float = 0.0, reported: str = "",
                note: str = "") -> Claim:
    """Claim on point estimates only (no CI in this study): verdict ``holds (point estimate)`` or
    ``reversed (point estimate)`` from ``value_a − value_b`` vs ``threshold``."""
    rule = Rule(_check_direction(direction), float(threshold))
    if value_a is None or value_b is None or math.isnan(value_a) or math.isnan(value_b):
        return not_tested(id, source, statement, "needs a value this run did not compute", metric=metric,
                          comparison=f"{comparison}: {rule.words()}", reported=reported)
    delta = float(value_a) - float(value_b)
    x = rule.sign * (delta - rule.origin)
    verdict = f"{HOLDS if x > 0 else REVERSED if x < 0 else INCONCLUSIVE}{POINT}"
    return Claim(id, source, statement, metric, f"{comparison}: {rule.words()}", delta, math.nan, math.nan, verdict,
                 reported, note or "no confidence interval for this quantity", rule=rule)


def holm(parts: Sequence[Claim], side: str) -> tuple[list[Claim], int]:
    """The parts of a family with the conclusions that rest on one part Holm-corrected over the m parts
    that carry p-values: ``side="holds"`` (an ``any_of``) corrects holds and holds-smaller on
    ``p_holds``; ``side="fails"`` (an ``all_of``) corrects *no effect of the reported size* on
    ``p_fails`` and *reversed* on ``p_reversed`` (a reversed part whose reversal does not survive but
    whose shortfall does becomes *no effect of the reported size*).  A conclusion that does not
    survive becomes ``inconclusive (not significant after Holm over m tests)``.  Returns ``(parts, m)``."""
    family = [i for i, part in enumerate(parts) if not math.isnan(part.p_holds)]
    m = len(family)
    out = list(parts)
    if m < 2:
        return out, m
    not_significant = f"{INCONCLUSIVE} (not significant after Holm over {m} tests)"
    if side == "holds":
        survives = holm_rejections([parts[i].p_holds for i in family])
        for i, keep in zip(family, survives):
            part = replace(parts[i], family=m)
            out[i] = part if keep or not part.holds else replace(part, verdict=not_significant)
        return out, m
    short = holm_rejections([parts[i].p_fails for i in family])
    reversed_ = holm_rejections([parts[i].p_reversed for i in family])
    for i, is_short, is_reversed in zip(family, short, reversed_):
        part = replace(parts[i], family=m)
        if part.outcome == REVERSED and not is_reversed:
            part = replace(part, verdict=f"{NO_REPORTED_EFFECT} (the reversal is not significant after Holm over {m} "
                           "tests)" if is_short and part.rule and part.rule.effect else not_significant)
        if part.outcome == NO_REPORTED_EFFECT and not is_short:
            part = replace(part, verdict=not_significant)
        out[i] = part
    return out, m


#: an all_of takes its weakest part, an any_of its strongest (module docstring)
_WEAKEST_FIRST = (REVERSED, NO_REPORTED_EFFECT, INCONCLUSIVE, HOLDS_SMALLER, HOLDS)


def _family_outcome(parts: Sequence[Claim], every: bool) -> str:
    """The composite's outcome from its (corrected) parts; parts that keep the same tokens are left
    out, an untested part makes a verdict that needs it inconclusive (it could go either way)."""
    parts = [p for p in parts if not p.same_tokens]
    tested = [p.outcome for p in parts if p.tested]
    if not tested:
        return NOT_TESTED
    complete = len(tested) == len(parts)
    order = _WEAKEST_FIRST if every else _WEAKEST_FIRST[::-1]
    decided = next(o for o in order if o in tested)
    if every:
        return decided if decided in (REVERSED, NO_REPORTED_EFFECT) or complete else INCONCLUSIVE
    if decided in (HOLDS, HOLDS_SMALLER):
        return decided
    if not complete or INCONCLUSIVE in tested:
        return INCONCLUSIVE
    return REVERSED if set(tested) == {REVERSED} else NO_REPORTED_EFFECT


def _composite(parts: Sequence[Claim], every: bool, correction: str | None, **fields: str) -> Claim:
    """A claim made of ``parts``: corrected (``correction="holm"``), judged by :func:`_family_outcome`;
    its test column counts the parts that hold and names the family correction, and its verdict
    counts the parts that decide it.  A composite is only as strong as its weakest part: if any
    tested part rests on a point estimate, so does the composite's verdict."""
    side = "fails" if every else "holds"
    parts, m = holm(parts, side) if correction else (list(parts), 0)
    result = _family_outcome(parts, every)
    verdict = result
    deciding = [p for p in parts if p.outcome == result and not p.same_tokens]
    if result not in (NOT_TESTED, INCONCLUSIVE) and len(parts) > 1 and (not every or result != HOLDS):
        verdict += f" ({len(deciding)} of {len(parts)} parts)"
    if result != NOT_TESTED and any(POINT in p.verdict for p in parts if p.tested):
        verdict = verdict.split(" (")[0] + POINT
    same = sum(p.same_tokens for p in parts)
    test = f"{sum(p.holds for p in parts)}/{len(parts)} parts hold"
    if same:
        test += f" ({same} keep the same tokens: not compared)"
    if m >= 2:
        test += (f"; 'reversed' and 'no effect' Holm-corrected over {m} tests" if every
                 else f"; 'holds' Holm-corrected over {m} tests")
    metric = ", ".join(dict.fromkeys(p.metric for p in parts if p.metric))
    largest = max(parts, key=lambda p: p.n_questions, default=None)
    n, unit = (largest.n_questions, largest.unit) if largest else (0, "questions")
    claim = Claim(fields["id"], fields["source"], fields["statement"], metric, test, verdict=verdict,
                  reported=fields["reported"], note=fields["note"], parts=tuple(parts), n_questions=n, unit=unit)
    names = dict.fromkeys(e.metric for p in parts for e in p.estimators)
    if names:
        def under(name: str) -> Claim:
            variant = [next((e for e in p.estimators if e.metric == name), replace(p, estimators=()))
                       for p in parts]
            return replace(_composite(variant, every, correction, **fields), metric=name)
        claim = replace(claim, estimators=tuple(under(name) for name in names))
    return claim


def all_of(parts: Sequence[Claim], *, id: str, source: str, statement: str, reported: str = "",
           note: str = "", correction: str | None = "holm") -> Claim:
    """Claim that needs every part to hold: the weakest outcome of its parts, a failure
    Holm-corrected over the family unless ``correction`` is None; an untested part leaves a claim
    that would otherwise hold inconclusive; not tested if no part was tested.  No single estimate is
    shown; :func:`claims_table` lists the parts."""
    return _composite(parts, True, correction, id=id, source=source, statement=statement, reported=reported,
                      note=note)


def any_of(parts: Sequence[Claim], *, id: str, source: str, statement: str, reported: str = "",
           note: str = "", correction: str | None = "holm") -> Claim:
    """Claim that at least one part holds ("at some budget ..."): the strongest outcome of its parts,
    a part that holds Holm-corrected over the family unless ``correction`` is None; it fails only if
    every part was tested and fails."""
    return _composite(parts, False, correction, id=id, source=source, statement=statement, reported=reported,
                      note=note)


def with_estimators(claim: Claim, alternatives: Sequence[Claim]) -> Claim:
    """``claim`` carrying the same claim judged with other estimators of its metric."""
    return replace(claim, estimators=tuple(alternatives))


CLAIMS_COLUMNS = ["id", "source", "claim", "test on this run", "estimate [95% CI]", "other estimators", "reported",
                  "verdict", "note"]


def claims_table(claims: Iterable[Claim], expand: bool = True, digits: int = 3) -> pd.DataFrame:
    """One row per claim (and, with ``expand``, one indented row per part of a composite claim):
    id, source, claim, test on this run, estimate [95% CI], the other estimators (a column only when
    some claim has them), reported, verdict, note."""
    rows = []
    for claim in claims:
        rows.append(_row(claim, digits))
        if expand:
            for part in claim.parts:
                rows.append(_row(part, digits, indent="  ↳ "))
    columns = [c for c in CLAIMS_COLUMNS if c != "other estimators" or any(r["other estimators"] for r in rows)]
    return pd.DataFrame(rows, columns=columns)


def _row(claim: Claim, digits: int, indent: str = "") -> dict[str, str]:
    return {"id": indent + readable(claim.id), "source": claim.source, "claim": readable(claim.statement),
            "test on this run": readable(claim.comparison), "estimate [95% CI]": claim.estimate_text(digits),
            "other estimators": claim.estimators_text(digits), "reported": claim.reported,
            "verdict": claim.verdict_text(), "note": claim.note}


_LONG_DECIMAL = re.compile(r"(?<![\w.])\d+\.\d{5,}(?![\d.])")


def readable(text: str) -> str:
    """``text`` with every number of five or more decimals shown to 4 significant digits, e.g. a
    configuration ``agile(erank_avg=20.211923587046698,tau_max=0.25)`` as ``agile(erank_avg=20.21,tau_max=0.25)``
    (display only: the configuration's name in the store and the rows keeps every digit)."""
    return _LONG_DECIMAL.sub(lambda m: f"{float(m.group()):.4g}", text)


def style_claims(table: pd.DataFrame):
    """A Styler of :func:`claims_table` with the verdict column in bold (no colour fills)."""
    return (table.style.hide(axis="index")
            .map(lambda v: "font-weight: bold", subset=["verdict"])
            .set_properties(**{"text-align": "left"}))


def with_note(claim: Claim, note: str) -> Claim:
    return replace(claim, note=(claim.note + "; " if claim.note else "") + note)


def outcome_counts(claims: Iterable[Claim]) -> dict[str, int]:
    """How many of ``claims`` have each outcome (:data:`OUTCOMES` order) and how many are estimator-sensitive."""
    claims = list(claims)
    counts = {name: sum(c.outcome == name for c in claims) for name in OUTCOMES}
    counts[ESTIMATOR_SENSITIVE] = sum(c.estimator_sensitive for c in claims)
    return counts


__all__ = [
    "CLAIMS_COLUMNS", "Claim", "DIRECTIONS", "ESTIMATORS", "ESTIMATOR_SENSITIVE", "HOLDS", "HOLDS_SMALLER",
    "INCONCLUSIVE", "LEGEND", "METRIC_WORDS", "NOT_TESTED", "NO_REPORTED_EFFECT", "OUTCOMES", "POINT", "REVERSED",
    "Rule", "SAME_TOKENS", "SMALLEST_EFFECTS", "VERDICTS", "all_of", "any_of", "claims_table", "decision_ratio",
    "delta_claim", "equivalence_claim", "holm", "interval_claim", "judged", "mean_delta", "mean_delta_claim",
    "MAX_QUESTIONS", "metric_words", "not_tested", "outcome", "outcome_counts", "point_claim", "questions_needed", "readable",
    "rule_for", "same_tokens", "style_claims", "verdict", "verdict_base", "with_estimators", "with_note",
]
