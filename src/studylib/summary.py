"""What a run found, in words and one figure, generated from its claims: nothing here is typed by hand.

* :func:`findings` — the two to four sentences that open an experiment page ("What this run found"):
  how many of its claims hold, then its headline claims (those with an ``intro`` line in
  ``data/claims/<experiment>.yaml``), departures from the paper first, each with this run's effect,
  its 95 % CI and the paper's effect;
* :func:`answer` — the intro's answer to the study's question, "does pruning improve calibration?",
  from the claims of :data:`ANSWER_CLAIMS`, and the headline claims that depart most from the papers;
* :func:`forest_figure` — every headline claim of the book: this run's effect and CI coloured by
  outcome, the paper's reported effect as a marker, grouped by experiment.

Claims are read through their fields and the outcome constants of :mod:`studylib.claims`.  A
composite claim ("at every budget") is shown by its *deciding part* (:func:`deciding_part`): for a
claim that needs every part, the part with the weakest evidence for the claim; for a claim that needs
one part, the part with the strongest.  The paper's effect is the difference of the two numbers a
claim cites ("0.024 vs 0.041" -> −0.017), shown only on the probability scale (accuracy, ECE, …):
erank and MME scores depend on the model, so a toy number and LLaVA's are not on one axis.

The executed notebooks carry their claims as JSON (:func:`claims_to_json`, glued by
:meth:`studylib.experiments.Result.glue`); the build reads them back (:func:`claims_from_json`) to
write the intro.
"""

from __future__ import annotations

import dataclasses
import json
import math
import re
import textwrap
from typing import Iterable, Mapping, Sequence

import numpy as np
from matplotlib.figure import Figure

from studylib import claims as C
from studylib import labels, metric_catalog as mc

#: the claims that answer the study's question "does pruning improve calibration?" (experiment, id):
#: moderate pruning vs. all tokens on POPE and ScienceQA, and whether any registered pruner beats the
#: unpruned model on either.  Which claims answer the question is a choice of design; what they say is
#: read from the run.
ANSWER_CLAIMS = (("u_curve", "C1"), ("scienceqa", "S1"), ("every_pruner", "E1"), ("every_pruner", "E2"))
#: headline claims named in the intro as the largest departures from the papers
N_DEPARTURES = 3
#: sentences about single claims on an experiment page (after the tally)
N_PAGE_CLAIMS = 3


# ----------------------------------------------------------------------------- serialisation

def claims_to_json(claims: Iterable[C.Claim]) -> str:
    """Every field of every claim (parts and other estimators included, the rule as a mapping) as JSON;
    NaN as null."""
    def record(claim: C.Claim) -> dict:
        out = {}
        for f in dataclasses.fields(claim):
            value = getattr(claim, f.name)
            if f.name in ("parts", "estimators"):
                value = [record(p) for p in value]
            elif f.name == "rule":
                value = None if value is None else dataclasses.asdict(value)
            elif isinstance(value, float) and math.isnan(value):
                value = None
            out[f.name] = value
        return out

    return json.dumps([record(c) for c in claims], ensure_ascii=False)


def claims_from_json(text: str) -> list[C.Claim]:
    """The claims of :func:`claims_to_json` (fields this version of :class:`Claim` lacks are dropped)."""
    names = {f.name: f for f in dataclasses.fields(C.Claim)}

    def claim(record: dict) -> C.Claim:
        values = {}
        for name, value in record.items():
            if name not in names:
                continue
            if name in ("parts", "estimators"):
                value = tuple(claim(p) for p in value)
            elif name == "rule":
                value = None if value is None else C.Rule(**value)
            elif value is None and names[name].type in ("float", float):
                value = math.nan
            values[name] = value
        return C.Claim(**values)

    return [claim(r) for r in json.loads(text)]


# ----------------------------------------------------------------------------- reading one claim

def outcome(claim: C.Claim) -> str:
    """The claim's outcome, one of :data:`studylib.claims.OUTCOMES` (``"inconclusive (CI includes 0)"`` ->
    ``"inconclusive"``)."""
    return claim.outcome


def verdict_detail(claim: C.Claim) -> str:
    """What the verdict as a page shows it (:meth:`Claim.verdict_text`) says besides its outcome: why,
    how many questions would decide an inconclusive one, the estimator-sensitive label
    (``"CI includes 0 and −0.017; would need ≈ 81,000 questions, this run 8,970"``)."""
    return claim.verdict_text()[len(claim.outcome):].strip(" :()")


def verdict_cell(claim: C.Claim) -> str:
    """``**inconclusive** (CI includes 0; would need ≈ 81,000 questions, this run 8,970)``: the outcome in
    bold and its detail in words (:func:`verdict_detail`, :func:`readable_test`)."""
    detail = readable_test(verdict_detail(claim))
    return f"**{claim.outcome}**" + (f" ({detail})" if detail else "")


def has_interval(claim: C.Claim) -> bool:
    return not (math.isnan(claim.estimate) or math.isnan(claim.low) or math.isnan(claim.high))


#: evidence for a claim by outcome, strongest first (an untested claim carries none)
_STRENGTH = {C.HOLDS: 2.0, C.HOLDS_SMALLER: 1.0, C.INCONCLUSIVE: 0.0, C.NO_REPORTED_EFFECT: -1.0, C.REVERSED: -2.0}


def _weight(claim: C.Claim) -> float:
    """Evidence for the claim (higher: stronger): its one-sided p against it, else its outcome."""
    if not math.isnan(claim.p_holds):
        return -claim.p_holds
    return _STRENGTH.get(claim.outcome, 0.0)


def deciding_part(claim: C.Claim) -> C.Claim:
    """The claim itself, or for a composite the part its verdict turns on (module docstring); a
    composite none of whose parts has a number returns itself."""
    parts = [p for p in claim.parts if p.tested and not math.isnan(p.estimate)]
    if not parts:
        return claim
    return max(parts, key=_weight) if _needs_one_part(claim) else min(parts, key=_weight)


def _needs_one_part(claim: C.Claim) -> bool:
    """Whether a composite needs one part to hold (``any_of``) rather than every part (``all_of``): its test
    names the Holm-corrected conclusion ("'holds' Holm-corrected" for ``any_of``), else its verdict shows it
    (it holds while a part does not)."""
    corrected = re.search(r"'([^']+)' Holm-corrected", claim.comparison or "")
    if corrected:
        return corrected.group(1) == C.HOLDS
    return claim.holds and not all(p.holds for p in claim.parts if p.tested)


_VS = re.compile(r"(−|-)?(\d+(?:\.\d+)?)\s*(%)?\s+vs\.?\s+(−|-)?(\d+(?:\.\d+)?)\s*(%)?")


def reported_effect(claim: C.Claim) -> float | None:
    """The paper's effect a − b in this run's units (fractions), from the first ``"<a> vs <b>"`` the claim
    cites; ``None`` without one or off the probability scale (module docstring)."""
    record = mc.lookup(claim.metric)
    if record is None or not (record.percent or record.lower_is_better) or record.key in ("nll", "t_star_dev"):
        return None
    match = _VS.search(claim.reported or "")
    if not match:
        return None
    sign_a, a, pct_a, sign_b, b, pct_b = match.groups()
    values = []
    for sign, number, pct in ((sign_a, a, pct_a), (sign_b, b, pct_b)):
        value = float(number) * (-1 if sign else 1)
        values.append(value / 100 if (pct or record.percent) else value)
    return values[0] - values[1]


def effect_text(claim: C.Claim, unit: bool = True) -> str:
    """This run's effect with its CI in the metric's display units (``+0.009 [+0.001, +0.019]``,
    ``−9.5 pp [−11.0, −8.1]``), ``"—"`` when nothing was computed."""
    if math.isnan(claim.estimate):
        return "—"
    text = mc.ci_text(claim.metric, claim.estimate, claim.low, claim.high, delta=True, unit=unit)
    return text if has_interval(claim) else f"{text} (point estimate)"


def paper_text(claim: C.Claim) -> str:
    """``"−0.017 in the paper"`` (the paper's effect), ``""`` without one."""
    effect = reported_effect(claim)
    return "" if effect is None else f"{mc.delta_text(claim.metric, effect, unit=True)} in the paper"


#: the row frames a claim's test may read besides the experiment's main rows (``[<frame> rows]`` in its test)
FRAME_WORDS = {"scaled": "after temperature scaling", "sqa": "on ScienceQA", "captions": "on the captions",
               "erank": "on the erank rows", "tau": "on the fixed-threshold rows", "adaptive": "on the adaptive rows",
               "pope": "on POPE"}
#: names of intervals an experiment computes for its claims (``interval`` tests), in words
VALUE_WORDS = {"family_gap": "family difference of mean ECE", "erank_chair_rho": "Spearman ρ(erank, CHAIR_i)"}


def readable_test(text: str, metric: str = "") -> str:
    """A claim's test formula for readers: configurations by their names, metric code names by the
    catalogue's (``t_star_dev[...]`` -> ``|T* − 1|[...]``), ``[scaled rows]`` in words, typographic minus
    signs, long decimals shortened; with the claim's ``metric`` a percent metric's bounds in percentage
    points, as its effect is shown (``claimed below −0.1`` -> ``claimed below −10 pp``)."""
    text = labels.humanize(C.readable(text))
    record = mc.lookup(metric) if metric else None
    if record is not None and record.percent:
        text = _BOUND.sub(lambda m: m.group(1) + _points(m.group(2)), text)
    text = re.sub(r"\b([a-z][a-z0-9_]*)\[", lambda m: _quantity_words(m.group(1)) + "[", text)
    text = re.sub(r" \[(\w+) rows\]", lambda m: " (" + FRAME_WORDS.get(m.group(1), f"on the {m.group(1)} rows") + ")",
                  text)
    return re.sub(r"(?<![\w.])-(?=\d)", "−", text)


#: the bounds a test states (:meth:`studylib.claims.Rule.words`), for percent metrics shown in points
_BOUND = re.compile(r"((?:claimed (?:below|above|within ±)|reported effect|smallest effect of interest) ?)"
                    r"([+\-−]?\d+(?:\.\d+)?(?:e[+\-]?\d+)?)(?! pp)")


def _points(number: str) -> str:
    """A fraction as percentage points: ``-0.1`` -> ``−10 pp``, ``+0.01`` -> ``+1 pp``."""
    value = float(number.replace("−", "-")) * 100
    text = f"{value:+.4g}" if number[0] in "+-−" else f"{value:.4g}"
    return text.replace("-", "−") + " pp"


def _quantity_words(name: str) -> str:
    """A metric or computed value named in a test formula, in words (the name itself when unknown)."""
    record = mc.lookup(name)
    return VALUE_WORDS.get(name) or (record.formula_name if record else name)


def subject(claim: C.Claim) -> str:
    """What the claim compares, in words: ``ECE: SCOPE α=1, K=32 − unpruned (K=144)``, else its statement."""
    match = re.match(r"^\|?(?:mean )?([\w ]+?)\[(.+?)\] − (?:mean )?\1\[(.+?)\]", claim.comparison or "")
    if match:
        name = mc.metric(match.group(1)).formula_name
        return f"{name}[{labels.config_label(match.group(2))}] − {name}[{labels.config_label(match.group(3))}]"
    return labels.humanize(C.readable(claim.statement))


def claim_sentence(claim: C.Claim, title: str = "") -> str:
    """One sentence: ``<title>: <outcome> (<detail>) — <subject>: <effect> on this run, <paper's effect>.``
    (a composite: "the comparison it turns on, <subject>: ..."); the detail says why, how many questions
    would decide an inconclusive claim and whether it is estimator-sensitive (:func:`verdict_detail`)."""
    part = deciding_part(claim)
    head = title or labels.humanize(C.readable(claim.statement))
    detail = readable_test(verdict_detail(claim))
    words = f"**{head.rstrip('.')}**: {claim.outcome}" + (f" ({detail})" if detail else "")
    if math.isnan(part.estimate):
        return words + "."
    which = "the comparison it turns on, " if part is not claim else ""
    paper = paper_text(part)
    return f"{words} — {which}{subject(part)}: {effect_text(part)} on this run" + (f", {paper}." if paper else ".")


# ----------------------------------------------------------------------------- an experiment page

def intro_lines(experiment: str) -> dict[str, str]:
    from studylib.claim_specs import CLAIMS_DIR, load_specs

    if not (CLAIMS_DIR / f"{experiment}.yaml").is_file():
        return {}
    lines, previous = {}, ""
    for spec in load_specs(experiment):
        if spec.intro is None:
            continue
        line = str(spec.intro)
        if line.startswith("..."):  # "... and on ScienceQA" continues the line above it in the intro's table
            line = f"{previous.rstrip('.')} {line[3:].strip()}"
        else:
            previous = line
        lines[spec.id] = line
    return lines


def tally(claims: Sequence[C.Claim]) -> str:
    """``"7 claims (holds: 3, reversed: 2, inconclusive: 2; 1 estimator-sensitive)"`` (outcomes in the order
    of :data:`studylib.claims.OUTCOMES`)."""
    counts = C.outcome_counts(claims)
    noun = "claim" if len(claims) == 1 else "claims"
    text = f"{len(claims)} {noun} (" + ", ".join(f"{name}: {counts[name]}" for name in C.OUTCOMES if counts[name])
    sensitive = counts[C.ESTIMATOR_SENSITIVE]
    return text + (f"; {sensitive} {C.ESTIMATOR_SENSITIVE}" if sensitive else "") + ")"


#: outcomes that depart from the paper: the claimed effect is smaller, absent or the other way round
DEPARTING = (C.HOLDS_SMALLER, C.NO_REPORTED_EFFECT, C.REVERSED)


def _departs(claim: C.Claim) -> bool:
    return claim.outcome in DEPARTING


def findings(claims: Sequence[C.Claim], experiment: str, toy: bool = False) -> str:
    """Markdown of "What this run found" on an experiment page (module docstring)."""
    if not claims:
        return ""
    titles = intro_lines(experiment)
    by_id = {c.id: c for c in claims}
    headline = [by_id[i] for i in titles if i in by_id] or list(claims)
    chosen = sorted(headline, key=lambda c: (not _departs(c), headline.index(c)))[:N_PAGE_CLAIMS]
    chosen.sort(key=headline.index)
    model = "the TOY model" if toy else "this model"
    lines = [f"On {model} this page tests {tally(claims)}."]
    lines += [claim_sentence(c, titles.get(c.id, "")) for c in chosen]
    rest = len(headline) - len(chosen)
    if rest > 0:
        lines.append(f"{rest} more headline claim{'s' if rest > 1 else ''} and every part are in the claims table.")
    return "\n".join(f"- {line}" for line in lines)


# ----------------------------------------------------------------------------- the intro

def _departure_size(claim: C.Claim) -> float:
    """How far this run's effect lies from the paper's, in CI half-widths (0 without both)."""
    part = deciding_part(claim)
    effect = reported_effect(part)
    if effect is None or not has_interval(part):
        return 0.0
    return abs(part.estimate - effect) / max((part.high - part.low) / 2, 1e-12)


def answer(claims_by_experiment: Mapping[str, Sequence[C.Claim]], toy: bool = False) -> str:
    """Markdown of the intro's answer (module docstring): the verdict on the question and the claims that
    carry it, each with its effect, CI and the paper's effect.  The answer is *yes* when every tested
    claim holds, *no* when none holds and some are decided against (no effect of the reported size,
    reversed), *undecided* when none holds and none is decided, else *only in part*."""
    keyed = {(name, c.id): c for name, claims in claims_by_experiment.items() for c in claims}
    carrying = [(key, keyed[key]) for key in ANSWER_CLAIMS if key in keyed]
    model = "the TOY model" if toy else "this run's model"
    if not carrying:
        needed = ", ".join(dict.fromkeys(name for name, _ in ANSWER_CLAIMS))
        return f"**No answer yet:** none of the experiments whose claims answer the question ({needed}) ran.\n"
    claims = [c for _, c in carrying]
    tested = [c for c in claims if c.tested]
    n_hold = sum(c.holds for c in tested)
    n_against = sum(c.outcome in (C.NO_REPORTED_EFFECT, C.REVERSED) for c in tested)
    subject = "claims that pruning improves calibration"
    if not tested:
        verdict = f"**Not answered on {model}:** none of the {len(claims)} {subject} could be tested"
    elif n_hold == len(tested):
        verdict = f"**Yes, on {model}:** all {len(tested)} tested {subject} hold"
    elif n_hold == 0 and n_against:
        verdict = f"**No, on {model}:** none of the {len(tested)} tested {subject} holds"
    elif n_hold == 0:
        verdict = f"**Undecided on {model}:** none of the {len(tested)} tested {subject} is decided either way"
    else:
        verdict = f"**Only in part, on {model}:** {n_hold} of the {len(tested)} tested {subject} hold"
    lines = [f"{verdict} — {tally(claims)}.", ""]
    for (name, _), claim in carrying:
        sentence = claim_sentence(claim, intro_lines(name).get(claim.id, ""))
        lines.append(f"- {sentence} ([{name}](experiments/{name}.ipynb))")
    return "\n".join(lines) + "\n"


def departures(claims_by_experiment: Mapping[str, Sequence[C.Claim]]) -> str:
    """Markdown: the tally of the book's headline claims and the :data:`N_DEPARTURES` that depart most
    from the papers (this run's effect farthest from the paper's, in CI half-widths; then the rest that
    do not hold), the claims of the answer left out."""
    headline = [(name, c) for name, claims in claims_by_experiment.items()
                for c in claims if c.id in intro_lines(name)]
    if not headline:
        return ""
    departing = [(n, c) for n, c in headline if _departs(c) and (n, c.id) not in ANSWER_CLAIMS]
    departing.sort(key=lambda item: -_departure_size(item[1]))
    lines = [f"**Against the papers:** this run tests the papers' {tally([c for _, c in headline])} that head the "
             "experiments."]
    if departing:
        lines[0] += " Where this run departs most from the papers:"
        lines.append("")
        lines += [f"- {claim_sentence(c, intro_lines(n).get(c.id, ''))} ([{n}](experiments/{n}.ipynb))"
                  for n, c in departing[:N_DEPARTURES]]
    return "\n".join(lines) + "\n"


# ----------------------------------------------------------------------------- the forest plot

#: one colour per outcome of :data:`studylib.claims.OUTCOMES` (greens: it holds; red to dark red: the paper's
#: effect is absent or reversed; greys: undecided, not tested), on the forest plot and in every claims table
OUTCOME_COLOURS = dict(zip(C.OUTCOMES, ("#1b7837", "#7fbc41", "#d6604d", "#67001f", "#878787", "#c7c7c7")))


def outcome_colours() -> dict[str, str]:
    """:data:`OUTCOME_COLOURS` (a copy)."""
    return dict(OUTCOME_COLOURS)


OTHER_PANEL = "other metrics: difference (own units)"
#: at most this many panels; further kinds of metric share :data:`OTHER_PANEL`
MAX_PANELS = 4


def _panel(metric: str) -> str:
    record = mc.lookup(metric)
    if record is not None and record.percent:
        return "accuracy, F1, CHAIR: difference (pp)"
    if record is not None and record.lower_is_better and record.key not in ("nll", "t_star_dev"):
        return "ECE, AURC: difference"
    if record is not None and record.key == "spearman_rho":
        return record.formula_name  # a correlation, not a difference
    return (record.formula_name if record else str(metric)) + ": difference"


def forest_rows(claims_by_experiment: Mapping[str, Sequence[C.Claim]],
                titles: Mapping[str, str]) -> list[dict]:
    """One row per headline claim (its deciding part's numbers) and one header row per experiment."""
    rows = []
    for name, claims in claims_by_experiment.items():
        lines = intro_lines(name)
        headline = [c for c in claims if c.id in lines]
        if not headline:
            continue
        rows.append({"header": titles.get(name, name)})
        for claim in headline:
            part = deciding_part(claim)
            rows.append({"label": f"{lines[claim.id]} ({claim.id})", "note": forest_note(claim), "claim": claim,
                         "part": part, "outcome": claim.outcome,
                         "panel": _panel(part.metric), "paper": reported_effect(part)})
    panels = list(dict.fromkeys(r["panel"] for r in rows if "panel" in r))
    if len(panels) > MAX_PANELS:
        keep = set(panels[: MAX_PANELS - 1])
        for row in rows:
            if "panel" in row and row["panel"] not in keep:
                row["panel"] = OTHER_PANEL
    return rows


def forest_note(claim: C.Claim) -> str:
    """The second line of a claim's label on the forest plot: ``estimator-sensitive``, ``would need ≈ 81,000
    questions`` (an inconclusive claim), or both; empty otherwise."""
    notes = [C.ESTIMATOR_SENSITIVE] if claim.estimator_sensitive else []
    need = claim.n_needed
    if claim.outcome == C.INCONCLUSIVE and math.isfinite(need):
        notes.append(f"would need ≈ {C._round_count(need)} {claim.unit}")
    return "; ".join(notes)


def _label_text(row: Mapping) -> str:
    if "header" in row:
        return textwrap.fill(row["header"], 40)
    text = textwrap.fill(row["label"], 40)
    return text + ("\n" + textwrap.fill(f"({row['note']})", 44) if row.get("note") else "")


def forest_figure(claims_by_experiment: Mapping[str, Sequence[C.Claim]], titles: Mapping[str, str] | None = None,
                  toy: bool = False, width: float = 7.8) -> Figure:
    """Every headline claim: this run's effect with its 95 % CI (colour: outcome), the paper's effect
    (open diamond), grouped by experiment, one panel per kind of metric (module docstring).  Sized to be
    read at ``width`` inches (the book's text column at 100 dpi: 9–10 pt type)."""
    rows = forest_rows(claims_by_experiment, titles or {})
    if not rows:
        raise ValueError("no headline claims to plot: no executed experiment glued its claims")
    panels = list(dict.fromkeys(r["panel"] for r in rows if "panel" in r))
    colours = outcome_colours()
    wrapped = [_label_text(r) for r in rows]
    heights = [0.17 * (w.count("\n") + 1) + 0.08 for w in wrapped]
    y = -np.cumsum([0] + [(a + b) / 2 for a, b in zip(heights, heights[1:])])
    fig = Figure(figsize=(width, 1.3 + sum(heights)), layout="constrained")
    shares = [min(3.0, max(1.7, sum(r.get("panel") == p for r in rows) / 3)) for p in panels]
    axes = fig.subplots(1, len(panels), sharey=True, squeeze=False, width_ratios=shares)[0]
    for ax, panel in zip(axes, panels):
        ax.axvline(0, color="0.45", linewidth=0.8)
        for yi, row in zip(y, rows):
            if row.get("panel") != panel:
                continue
            part, record = row["part"], mc.metric(row["part"].metric)
            colour = colours.get(row["outcome"], "0.5")
            if math.isnan(part.estimate):
                ax.text(0, yi, row["outcome"], fontsize=9, color=colour, va="center", ha="center", style="italic")
                continue
            x = part.estimate * record.scale
            if row["paper"] is not None:
                ax.plot(row["paper"] * record.scale, yi, marker="D", ms=5.5, markerfacecolor="white",
                        markeredgecolor="black", markeredgewidth=1.0, zorder=2)
            if has_interval(part):
                ax.errorbar(x, yi, xerr=[[x - part.low * record.scale], [part.high * record.scale - x]], fmt="o",
                            ms=4.5, color=colour, elinewidth=1.8, capsize=2, zorder=3)
            else:
                ax.plot(x, yi, marker="s", ms=5, color=colour, fillstyle="none", zorder=3)
        narrow = shares[panels.index(panel)] < 2
        ax.set_title(textwrap.fill(panel, 14 if narrow else 22), fontsize=9)
        ax.locator_params(axis="x", nbins=2 if narrow else 4)
        ax.tick_params(axis="x", labelsize=9)
        ax.tick_params(axis="y", length=0)
        ax.grid(axis="x", alpha=0.3)
        for side in ("top", "right"):
            ax.spines[side].set_visible(False)
        for yi, row in zip(y, rows):
            if "header" in row:
                ax.axhline(yi, color="0.85", linewidth=6, zorder=0)
    axes[0].set_yticks(y, wrapped, fontsize=9)
    for tick, row in zip(axes[0].get_yticklabels(), rows):
        if "header" in row:
            tick.set_fontweight("bold")
    axes[0].set_ylim(y[-1] - 0.3, y[0] + 0.3)
    handles = [axes[0].plot([], [], "o", color=c, label=o)[0] for o, c in colours.items()]  # every outcome, always
    handles.append(axes[0].plot([], [], "D", markerfacecolor="none", markeredgecolor="black",
                                label="the paper's effect")[0])
    fig.legend(handles=handles, loc="outside lower center", ncol=min(len(handles), 4), fontsize=9, frameon=False)
    fig.suptitle(("TOY — " if toy else "") + "Every headline claim: this run's effect with its 95 % CI", fontsize=10)
    return fig


__all__ = ["ANSWER_CLAIMS", "answer", "claim_sentence", "claims_from_json", "claims_to_json", "deciding_part",
           "departures", "effect_text", "findings", "forest_figure", "forest_rows", "outcome", "outcome_colours",
           "readable_test", "reported_effect", "tally", "verdict_detail"]
