"""Claims of the source papers, tested on this run's numbers.

A :class:`Claim` states one claim of a seed paper ("SCOPE at K=128 has lower ECE than the full
model", seed 000 §4.1), the comparison that tests it on this run (a paired difference of a
metric between two configurations, with its bootstrap CI), the paper's own numbers, and the
**verdict computed from this run** — never written by hand:

* :func:`delta_claim` — paired bootstrap difference ``metric(a) − metric(b)`` by
  :func:`studylib.analysis.paired_delta`, judged by :func:`verdict` against a
  direction (``"less"``/``"greater"``) and threshold;
* :func:`equivalence_claim` — "changes only slightly": the CI of the difference must lie inside
  ``(−margin, +margin)`` (two one-sided verdicts);
* :func:`mean_delta_claim` — paired bootstrap difference of a per-image mean of a row column
  (e.g. the erank of the kept tokens), judged the same way;
* :func:`interval_claim` — a claim about any interval computed elsewhere, judged the same way;
* :func:`point_claim` — a comparison that has no CI in this study (e.g. fitted temperatures):
  the verdict says ``(point estimate)`` so nobody mistakes it for a tested one;
* :func:`all_of` / :func:`any_of` — a claim that needs every / some part to hold (e.g. "at
  every budget"); a composite with a point-estimate part says ``(point estimate)`` too.

**Smallest effect of interest.** A directional claim ("pruning *lowers* ECE") holds when its CI
lies wholly on the claimed side of 0.  Without more, a claim whose true effect is 0 stays
inconclusive however many questions are scored.  So a directional claim may carry a smallest
effect δ > 0 (the paper's own effect, else :data:`SMALLEST_EFFECTS`): it **does not hold** when
the CI excludes every effect of size δ or more on the claimed side — for ``less``, when the CI
lies above ``threshold − δ`` (the run's effect, if any, is significantly smaller than δ: a
minimum-effect / replication test).  A CI wholly between ``threshold − δ`` and ``threshold``
holds (a real effect, smaller than δ).  δ = 0 is the plain test: does not hold only when the CI
lies on the opposite side.

**Families.** A composite is a family of one-sided tests, and a conclusion that rests on *one*
part of it ("does not hold at some budget" of an ``all_of``, "holds for some p" of an ``any_of``)
is corrected for the family size m by Holm's step-down procedure on the parts' one-sided
bootstrap p-values (:func:`holm`): sorted ascending, p_(j) is rejected while p_(j) < 0.025 / (m − j + 1)
(0.025: the one-sided level of a two-sided 95 % CI).  A conclusion that needs *every* part (an
``all_of`` that holds, an ``any_of`` that does not hold) is an intersection–union test: each part
at the uncorrected level already controls the error, so those parts keep their CI verdicts.  The
p-value of a part is the normal tail of its bootstrap distribution (:func:`tail_p_values`).

A claim whose configurations are not in the run (the grid was changed) gets the verdict
``not applicable: needs ...`` instead of failing: the notebook still renders.  Experiments
declare their claims in ``data/claims/<experiment>.yaml`` (:mod:`studylib.claim_specs`).

:func:`claims_table` renders a list of claims as a DataFrame.
"""

from __future__ import annotations

import math
import re
from dataclasses import dataclass, field, replace
from typing import Any, Iterable, Mapping, Sequence

import numpy as np
import pandas as pd

from studylib.analysis import paired_delta
from studylib.metrics import paired_bootstrap_ci
from studylib.multiplicity import holm_rejections, tail_p_values

HOLDS = "holds"
DOES_NOT_HOLD = "does not hold"
INCONCLUSIVE = "inconclusive"
NOT_TESTED = "not applicable"
VERDICTS = (HOLDS, DOES_NOT_HOLD, INCONCLUSIVE, NOT_TESTED)
POINT = " (point estimate)"  # qualifier of verdicts judged without a CI
DIRECTIONS = ("less", "greater")

#: smallest effect of interest of a directional claim on a metric when the paper gives no effect
#: of its own: one percentage point on the probability scale (accuracy, F1, selective accuracy,
#: CHAIR; ECE, MCE and AURC are probability gaps too) — the study's accuracy margin of
#: "unchanged accuracy" (±1 pp).  Metrics not listed have none (their claims use δ = 0).
SMALLEST_EFFECTS = {metric: 0.01 for metric in (
    "accuracy", "f1", "sel_acc_80", "chair_s", "chair_i", "recall", "ece", "mce", "aurc")}


@dataclass(frozen=True)
class Claim:
    """One claim and its verdict on this run.

    ``comparison`` says what was computed (``"ECE[scope(alpha=0,p=1)@32] − ECE[full@144] < 0"``);
    ``estimate``/``low``/``high`` are the point estimate and the bootstrap CI (NaN when there is
    none); ``reported`` is the paper's number(s) for the same comparison, as text.
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
    p_fails: float = field(default=math.nan, repr=False)  # one-sided p for the claim (small: it does not hold)

    def __post_init__(self) -> None:
        if verdict_base(self.verdict) not in VERDICTS:
            raise ValueError(f"claim {self.id}: verdict {self.verdict!r} is not one of {VERDICTS}")

    @property
    def holds(self) -> bool:
        return self.verdict.startswith(HOLDS)

    @property
    def tested(self) -> bool:
        return not self.verdict.startswith(NOT_TESTED)

    def estimate_text(self, digits: int = 3) -> str:
        """``-0.012 [-0.020, -0.004]``; ``—`` when nothing was computed."""
        if math.isnan(self.estimate):
            return "—"
        text = f"{self.estimate:+.{digits}f}"
        if not (math.isnan(self.low) or math.isnan(self.high)):
            text += f" [{self.low:+.{digits}f}, {self.high:+.{digits}f}]"
        return text


_ALIASES = {"<": "less", ">": "greater"}


def _check_direction(direction: str) -> None:
    if _ALIASES.get(direction, direction) not in DIRECTIONS:
        raise ValueError(f"direction must be one of {DIRECTIONS} (or '<', '>'), got {direction!r}")


def _symbol(direction: str) -> str:
    return "<" if _ALIASES.get(direction, direction) == "less" else ">"


def failure_bound(direction: str, threshold: float = 0.0, smallest_effect: float = 0.0) -> float:
    """The value a CI must lie beyond for "does not hold": ``threshold − δ`` for ``less``,
    ``threshold + δ`` for ``greater`` (δ = ``smallest_effect``; module docstring)."""
    return threshold - smallest_effect if _symbol(direction) == "<" else threshold + smallest_effect


def verdict(estimate_interval, direction: str, threshold: float = 0.0, smallest_effect: float = 0.0) -> str:
    """Judge the claim "estimate ``direction`` threshold" (``"<"`` or ``">"``) from a CI.

    ``estimate_interval`` is a :class:`~studylib.metrics.BootstrapInterval` (or anything with
    ``low``/``high``, or a ``(low, high)`` pair).  ``"holds"`` when the whole interval lies on
    the claimed side (strictly), ``"does not hold"`` when it lies strictly beyond
    :func:`failure_bound` on the other side (with ``smallest_effect`` δ = 0: the other side of
    the threshold), else ``"inconclusive (CI crosses <threshold>)"`` (with δ > 0: ``"inconclusive
    (CI spans <threshold> and <threshold ∓ δ>)"``) — a CI touching a bound is inconclusive too.
    """
    if direction not in ("<", ">"):
        raise ValueError(f"direction must be '<' or '>', got {direction!r}")
    if hasattr(estimate_interval, "low") and hasattr(estimate_interval, "high"):
        low, high = float(estimate_interval.low), float(estimate_interval.high)
    else:
        low, high = (float(x) for x in estimate_interval)
    if math.isnan(low) or math.isnan(high):
        raise ValueError("the interval has NaN bounds; nothing to judge")
    if not smallest_effect >= 0:
        raise ValueError(f"smallest_effect must be >= 0, got {smallest_effect}")
    if low > high:
        low, high = high, low
    bound = failure_bound(direction, threshold, smallest_effect)
    if (direction == "<" and high < threshold) or (direction == ">" and low > threshold):
        return "holds"
    if (direction == "<" and low > bound) or (direction == ">" and high < bound):
        return "does not hold"
    if smallest_effect:
        return f"inconclusive (CI spans {threshold:g} and {bound:+.3g})"
    return f"inconclusive (CI crosses {threshold:g})"


def verdict_base(text: str) -> str:
    """``"inconclusive (CI crosses 0)"`` -> ``"inconclusive"``; ``"not applicable: needs x"`` ->
    ``"not applicable"``."""
    return str(text).split(" (")[0].split(":")[0]


def _check_verdict(text: str) -> str:
    """The analysis module's verdict, checked against :data:`VERDICTS` (its detail kept:
    ``"inconclusive (CI crosses 0)"``)."""
    text = str(text).strip()
    if verdict_base(text) not in VERDICTS:
        raise ValueError(f"unrecognised verdict {text!r}; expected one of {VERDICTS}")
    return text


def judge(interval: Any, direction: str, threshold: float = 0.0, smallest_effect: float = 0.0) -> str:
    """Verdict of a CI against ``direction``/``threshold`` by :func:`verdict`:
    ``holds`` (the whole CI strictly on the claimed side), ``does not hold`` (strictly beyond
    :func:`failure_bound`) or ``inconclusive (...)``.  A CI with NaN bounds (the metric
    is undefined on some resamples) gives ``inconclusive (CI undefined)``."""
    _check_direction(direction)
    if math.isnan(float(interval.low)) or math.isnan(float(interval.high)):
        return f"{INCONCLUSIVE} (CI undefined)"
    return _check_verdict(verdict(interval, _symbol(direction), threshold, smallest_effect))


def with_failure_bound(comparison: str, direction: str, threshold: float, smallest_effect: float,
                       origin: str = "") -> str:
    """``comparison`` plus when it fails, if δ > 0: ``"… < 0; does not hold if CI > −0.017 (the reported
    effect)"``."""
    if not smallest_effect:
        return comparison
    side = ">" if _symbol(direction) == "<" else "<"
    bound = failure_bound(direction, threshold, smallest_effect)
    return f"{comparison}; does not hold if CI {side} {bound:+.3g}" + (f" ({origin})" if origin else "")


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


def _comparison(metric: str, a: str, b: str, direction: str, threshold: float, subset=None) -> str:
    where = "" if not subset else " on " + ", ".join(f"{k}={v}" for k, v in subset.items())
    return f"{metric}[{a}] − {metric}[{b}] {_symbol(direction)} {threshold:g}{where}"


def _needs(missing: Sequence[str]) -> str:
    return "needs " + ", ".join(map(str, missing))


def not_tested(id: str, source: str, statement: str, reason: str, *, metric: str = "",
               comparison: str = "", reported: str = "") -> Claim:
    """A claim this run cannot test; its verdict says why: ``not applicable: needs ...``."""
    return Claim(id, source, statement, metric, comparison, verdict=f"{NOT_TESTED}: {reason}", reported=reported)


def interval_claim(interval: Any, *, id: str, source: str, statement: str, metric: str,
                   comparison: str, direction: str, threshold: float = 0.0, reported: str = "",
                   note: str = "", smallest_effect: float = 0.0, effect_origin: str = "") -> Claim:
    """Claim judged on an interval with ``estimate``, ``low`` and ``high`` attributes (and its
    bootstrap ``distribution``, if any, for the one-sided p-values a family correction uses);
    ``smallest_effect`` δ (module docstring; ``effect_origin`` says where it comes from)."""
    _check_direction(direction)
    estimate, distribution = float(interval.estimate), getattr(interval, "distribution", None)
    p_holds = tail_p_values(estimate, distribution, direction, threshold)[0]
    p_fails = tail_p_values(estimate, distribution, direction, failure_bound(direction, threshold, smallest_effect))[1]
    comparison = with_failure_bound(comparison, direction, threshold, smallest_effect, effect_origin)
    return Claim(id, source, statement, metric, comparison, estimate,
                 float(interval.low), float(interval.high), judge(interval, direction, threshold, smallest_effect),
                 reported, note, p_holds=p_holds, p_fails=p_fails)


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


def delta_claim(rows: pd.DataFrame, *, id: str, source: str, statement: str, a: str, b: str,
                metric: str, direction: str, threshold: float = 0.0, reported: str = "",
                n_bootstrap: int = 1000, seed: int = 0, subset: Mapping[str, Any] | None = None,
                note: str = "", smallest_effect: float = 0.0, effect_origin: str = "") -> Claim:
    """Claim that ``metric(a) − metric(b)`` is ``direction`` (``"less"``/``"greater"``) than
    ``threshold``, tested with the paired bootstrap CI of :func:`studylib.analysis.paired_delta`
    on ``rows`` (optionally restricted to ``subset``, e.g. ``{"split": "adversarial"}``);
    ``smallest_effect``: see :func:`interval_claim`."""
    _check_direction(direction)
    comparison = _comparison(metric, a, b, direction, threshold, subset)
    interval, missing = _paired_metric_delta(rows, a, b, metric, subset, n_bootstrap, seed)
    if missing:
        return not_tested(id, source, statement, _needs(missing),
                          metric=metric, comparison=comparison, reported=reported)
    return interval_claim(interval, id=id, source=source, statement=statement, metric=metric,
                          comparison=comparison, direction=direction, threshold=threshold,
                          reported=reported, note=note, smallest_effect=smallest_effect, effect_origin=effect_origin)


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
    _check_direction(direction)
    comparison = f"mean {column}[{a}] − mean {column}[{b}] {_symbol(direction)} {threshold:g} (per {per})"
    missing = _missing(rows, [a, b])
    if missing:
        return not_tested(id, source, statement, _needs(missing),
                          metric=column, comparison=comparison, reported=reported)
    interval = mean_delta(rows, a, b, column, per=per, n_bootstrap=n_bootstrap, seed=seed)
    return interval_claim(interval, id=id, source=source, statement=statement, metric=column,
                          comparison=comparison, direction=direction, threshold=threshold,
                          reported=reported, note=note, smallest_effect=smallest_effect, effect_origin=effect_origin)


def equivalence_claim(rows: pd.DataFrame, *, id: str, source: str, statement: str, a: str, b: str,
                      metric: str, margin: float, reported: str = "", n_bootstrap: int = 1000,
                      seed: int = 0, subset: Mapping[str, Any] | None = None, note: str = "") -> Claim:
    """Claim that ``metric(a)`` and ``metric(b)`` differ by less than ``margin``: holds when the
    CI of the difference lies inside ``(−margin, margin)``, does not hold when it lies wholly
    outside, inconclusive otherwise."""
    if not margin > 0:
        raise ValueError(f"margin must be > 0, got {margin}")
    where = "" if not subset else " on " + ", ".join(f"{k}={v}" for k, v in subset.items())
    comparison = f"|{metric}[{a}] − {metric}[{b}]| < {margin:g}{where}"
    interval, missing = _paired_metric_delta(rows, a, b, metric, subset, n_bootstrap, seed)
    if missing:
        return not_tested(id, source, statement, _needs(missing),
                          metric=metric, comparison=comparison, reported=reported)
    above = judge(interval, "greater", -margin)
    below = judge(interval, "less", margin)
    if NOT_TESTED in above + below:
        verdict = above if above.startswith(NOT_TESTED) else below
    elif above == HOLDS and below == HOLDS:
        verdict = HOLDS
    elif DOES_NOT_HOLD in (above, below):
        verdict = DOES_NOT_HOLD
    else:
        verdict = f"{INCONCLUSIVE} (CI crosses ±{margin:g})"
    # inside (-margin, margin) needs both one-sided tests (TOST); outside needs either side
    above_p = tail_p_values(float(interval.estimate), interval.distribution, "greater", -margin)
    below_p = tail_p_values(float(interval.estimate), interval.distribution, "less", margin)
    return Claim(id, source, statement, metric, comparison, float(interval.estimate),
                 float(interval.low), float(interval.high), verdict, reported, note,
                 p_holds=max(above_p[0], below_p[0]), p_fails=min(above_p[1], below_p[1]))


def point_claim(value_a: float, value_b: float, *, id: str, source: str, statement: str, metric: str,
                comparison: str, direction: str, threshold: float = 0.0, reported: str = "",
                note: str = "") -> Claim:
    """Claim on point estimates only (no CI in this study): verdict ``holds (point estimate)`` or
    ``does not hold (point estimate)`` from ``value_a − value_b`` vs ``threshold``."""
    _check_direction(direction)
    if value_a is None or value_b is None or math.isnan(value_a) or math.isnan(value_b):
        return not_tested(id, source, statement, "needs a value this run did not compute", metric=metric,
                          comparison=comparison, reported=reported)
    delta = float(value_a) - float(value_b)
    ok = delta < threshold if _symbol(direction) == "<" else delta > threshold
    verdict = f"{HOLDS if ok else DOES_NOT_HOLD}{POINT}"
    return Claim(id, source, statement, metric, comparison, delta, math.nan, math.nan, verdict,
                 reported, note or "no confidence interval for this quantity")


def holm(parts: Sequence[Claim], side: str) -> tuple[list[Claim], int]:
    """The parts of a family with the one-sided conclusion ``side`` (``"holds"`` or ``"fails"``)
    Holm-corrected over the m parts that carry p-values; the other conclusion keeps its CI verdict.
    A part that holds keeps "holds" even when its failure test rejects too (a real effect smaller
    than its smallest effect δ; :func:`verdict`).  Returns ``(parts, m)``."""
    family = [i for i, part in enumerate(parts) if not math.isnan(part.p_holds)]
    m = len(family)
    if m < 2:
        return list(parts), m
    key = "p_holds" if side == "holds" else "p_fails"
    rejected = holm_rejections([getattr(parts[i], key) for i in family])
    corrected = HOLDS if side == "holds" else DOES_NOT_HOLD
    out = list(parts)
    for i, reject in zip(family, rejected):
        part = parts[i]
        if reject and not (side == "fails" and part.holds):
            out[i] = replace(part, verdict=corrected)
        elif part.verdict.startswith(corrected):
            out[i] = replace(part, verdict=f"{INCONCLUSIVE} (not significant after Holm over {m} tests)")
    return out, m


def _family_verdict(parts: Sequence[Claim], *, one_decides: str, all_decide: str) -> str:
    """``one_decides`` if some tested part has it, ``all_decide`` if every part was tested and has
    it, ``not applicable`` if no part was tested, else inconclusive (an untested part could go
    either way)."""
    tested = [p for p in parts if p.tested]
    if not tested:
        return NOT_TESTED
    if any(p.verdict.startswith(one_decides) for p in tested):
        return one_decides
    if len(tested) == len(parts) and all(p.verdict.startswith(all_decide) for p in tested):
        return all_decide
    return INCONCLUSIVE


def all_of(parts: Sequence[Claim], *, id: str, source: str, statement: str, reported: str = "",
           note: str = "", correction: str | None = "holm") -> Claim:
    """Claim that needs every part to hold: holds if all parts hold, does not hold if any part
    does not hold (Holm-corrected over the family unless ``correction`` is None), inconclusive
    otherwise (some part inconclusive or not tested); not tested if no part was tested.  No single
    estimate is shown; :func:`claims_table` lists the parts."""
    parts, m = holm(parts, "fails") if correction else (list(parts), 0)
    verdict = _family_verdict(parts, one_decides=DOES_NOT_HOLD, all_decide=HOLDS)
    return _composite(parts, verdict, m, "does not hold", id=id, source=source, statement=statement,
                      reported=reported, note=note)


def any_of(parts: Sequence[Claim], *, id: str, source: str, statement: str, reported: str = "",
           note: str = "", correction: str | None = "holm") -> Claim:
    """Claim that at least one part holds ("at some budget ..."): holds if some part holds
    (Holm-corrected over the family unless ``correction`` is None), does not hold if every
    part was tested and does not hold, inconclusive otherwise."""
    parts, m = holm(parts, "holds") if correction else (list(parts), 0)
    verdict = _family_verdict(parts, one_decides=HOLDS, all_decide=DOES_NOT_HOLD)
    return _composite(parts, verdict, m, "holds", id=id, source=source, statement=statement,
                      reported=reported, note=note)


def _composite(parts: Sequence[Claim], verdict: str, family: int, corrected: str, **fields: str) -> Claim:
    """A claim made of ``parts`` with the given verdict; its test column counts the parts that hold
    and names the family correction.  A composite is only as strong as its weakest part: if any
    tested part rests on a point estimate, so does the composite's verdict."""
    if verdict != NOT_TESTED and any(POINT in p.verdict for p in parts if p.tested):
        verdict += POINT
    test = f"{sum(p.verdict.startswith(HOLDS) for p in parts)}/{len(parts)} parts hold"
    if family >= 2:
        test += f"; '{corrected}' Holm-corrected over {family} tests"
    metric = ", ".join(dict.fromkeys(p.metric for p in parts if p.metric))
    return Claim(fields["id"], fields["source"], fields["statement"], metric, test, verdict=verdict,
                 reported=fields["reported"], note=fields["note"], parts=tuple(parts))


def claims_table(claims: Iterable[Claim], expand: bool = True, digits: int = 3) -> pd.DataFrame:
    """One row per claim (and, with ``expand``, one indented row per part of a composite claim):
    id, source, claim, test on this run, estimate [95% CI], reported, verdict, note."""
    rows = []
    for claim in claims:
        rows.append(_row(claim, digits))
        if expand:
            for part in claim.parts:
                rows.append(_row(part, digits, indent="  ↳ "))
    return pd.DataFrame(rows, columns=["id", "source", "claim", "test on this run",
                                       "estimate [95% CI]", "reported", "verdict", "note"])


def _row(claim: Claim, digits: int, indent: str = "") -> dict[str, str]:
    return {"id": indent + readable(claim.id), "source": claim.source, "claim": readable(claim.statement),
            "test on this run": readable(claim.comparison), "estimate [95% CI]": claim.estimate_text(digits),
            "reported": claim.reported, "verdict": claim.verdict, "note": claim.note}


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


__all__ = [
    "Claim", "DIRECTIONS", "DOES_NOT_HOLD", "HOLDS", "INCONCLUSIVE", "NOT_TESTED", "SMALLEST_EFFECTS", "VERDICTS",
    "all_of", "any_of", "claims_table", "delta_claim", "equivalence_claim", "failure_bound", "holm",
    "interval_claim", "judge", "verdict", "verdict_base", "mean_delta", "mean_delta_claim", "not_tested", "point_claim",
    "readable", "style_claims", "with_note",
]
