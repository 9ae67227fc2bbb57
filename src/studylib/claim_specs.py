"""Claims declared once, in ``data/claims/<experiment>.yaml``, and evaluated on a run's rows.

A file lists claims; each is a mapping::

    - id: C1
      source: seed 000 §4.1, Table 1
      statement: Moderate pruning (K={moderate_k}) lowers ECE below the unpruned model
      test: delta                 # delta | equivalence | mean_delta | point | interval | all_of | any_of
      metric: ece                 # delta / equivalence: a metric of studylib.analysis.METRICS
      a: "{pruner}@{moderate_k}"  # configurations "spec@K"; "full" alone is full@N
      b: full
      direction: less             # less | greater (than `threshold`, default 0)
      reported: {table: Table 1}  # cite data/reference/reported.csv (or give free text)

Each file is parsed at load into typed specs (:class:`ClaimSpec`, :class:`Citation`, :class:`Ref`):
a field a test needs that is missing, a field no test of that kind takes, and (once the experiment's
context is known, before anything is computed) a template that names a value the context does not
have, are errors naming the file, the claim and the field (:class:`ClaimSpecError`).

Fields (required ones per test in :data:`REQUIRED`, optional ones in :data:`OPTIONAL`):

* ``statement``, ``a``, ``b``, ``metric``, ``column``, ``subset`` values, ``note`` and ``id`` are
  templates filled from the experiment's context (its parameters plus what it derives, e.g.
  ``n_tokens``) with :meth:`str.format`.
* ``test``: ``delta`` — paired image bootstrap of ``metric(a) − metric(b)``
  (:func:`studylib.claims.delta_claim`); ``equivalence`` — the CI of that difference inside
  ``±margin``; ``mean_delta`` — per-image mean of a row ``column`` (e.g. ``erank_kept``);
  ``point`` — ``a`` and ``b`` name values the experiment computed without a CI (or are
  numbers), judged as point estimates; ``interval`` — ``a`` names an interval the experiment
  computed with its own bootstrap (an object with ``estimate``, ``low``, ``high`` and the
  resampled ``distribution``, passed in the claims' values, e.g. a difference of family means or
  a rank correlation), judged against ``direction``/``threshold`` like a ``delta``;
  ``all_of`` / ``any_of`` — composites of ``parts``.  A ``delta`` or ``equivalence`` test on ECE is
  also judged with debiased and smooth ECE (:data:`studylib.claims.ESTIMATORS`).
* ``rows``: which of the experiment's row frames the test reads (default ``rows``); ``rows_b``:
  side ``b`` of a ``delta`` or ``equivalence`` test from another frame, paired question by question
  (e.g. ``rows: scaled``, ``rows_b: rows``: a configuration after vs. before temperature scaling).
* ``subset``: ``{column: value}`` restricts the rows a ``delta``, ``equivalence`` or
  ``mean_delta`` test reads (e.g. ``{benchmark: POPE}``).
* ``for_each`` (in a part): ``{variable: context list or literal list}`` expands the part once
  per value (several variables: their product, in order); ``exclude`` lists variable values to
  skip, e.g. ``[{p: 1}]``.  A list of mappings binds each mapping's keys as variables too, so
  values derived together stay together: ``for_each: {choice: best_p}`` with the context's
  ``best_p = [{benchmark: POPE, k: 16, p: 2.0}, ...]`` binds ``benchmark``, ``k`` and ``p``
  (a mapping without a key the part names makes that part *not applicable*); ``exclude``
  may name those keys, e.g. ``[{benchmark: MME}]``.
* ``ref`` (a part): reuse a claim declared earlier in the file, e.g. ``parts: [{ref: C1}]``.
* ``correction`` (a composite): ``holm`` (default) corrects the conclusion that rests on one part
  for the family size (:func:`studylib.claims.holm`); ``null`` judges every part on its own.
* ``smallest_effect`` (a ``delta``, ``mean_delta`` or ``interval`` test): the effect δ the claim is
  read against (:mod:`studylib.claims`).  Default, for a claim against 0 on a probability-scale
  metric (:data:`studylib.claims.SMALLEST_EFFECTS`): the paper's own effect, i.e. the difference of
  the two cited numbers in this run's units (the smallest over cited benchmarks; none if the
  paper's numbers do not show the claimed sign), else the metric's 1 pp; other claims: 0.
* ``intro``: a short line that puts the claim in the book's verdict table.
* ``reported``: free text, or a citation ``{paper, table, metric, a, b, benchmark, k}`` of the
  rows of ``reported.csv`` (defaults: paper 000, the claim's own metric and configurations,
  mapped to the paper's budgets by the context's ``k_map``), printed as ``"<a> vs <b>"`` in
  the paper's units; ``reported: parts`` joins the parts' reported texts.  The citation's
  fields are templates too (a setting the paper prints differently in two tables *of the same
  benchmark* adds a footnote to the claim's note); ``benchmark`` may list several (cited one after
  the other as ``"<benchmark>: <a> vs <b>"``); ``k`` gives the paper's budget of both sides instead
  (``null``: the table states no budget); a side that is a number (a ``point`` claim against a
  constant, e.g. ``b: 0``) is not cited, only the other side is.

A configuration missing from the rows, or a point value the run did not compute (e.g.
``ece_change[popular]`` on a run without that split), makes the claim ``not applicable:
needs ...``, never an error, so any grid renders; a composite none of whose parts could be
tested says what its parts need.
"""

from __future__ import annotations

import itertools
import math
import re
import string
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

import pandas as pd
import yaml

from studylib import claims as C
from studylib.reported import conflicting_reports, reported_number, reported_text
from studylib.sweep.grid import Config, StudyParameterError

REPO_ROOT = Path(__file__).resolve().parents[2]
CLAIMS_DIR = REPO_ROOT / "data" / "claims"
COMPOSITES = ("all_of", "any_of")
#: fields every claim of a test must have (``source``: every top-level claim; parts inherit it)
REQUIRED = {
    "delta": ("metric", "a", "b", "direction"), "equivalence": ("metric", "a", "b", "margin"),
    "mean_delta": ("column", "a", "b", "direction"), "point": ("a", "b", "direction"),
    "interval": ("a", "direction"), "all_of": ("parts",), "any_of": ("parts",),
}
#: fields a test may have besides its required ones and :data:`COMMON`
OPTIONAL = {
    "delta": ("threshold", "subset", "rows", "rows_b", "smallest_effect"),
    "equivalence": ("subset", "rows", "rows_b"),
    "mean_delta": ("threshold", "subset", "rows", "per", "smallest_effect"),
    "point": ("metric", "threshold"), "interval": ("metric", "threshold", "smallest_effect"),
    "all_of": ("correction",), "any_of": ("correction",),
}
COMMON = ("id", "source", "statement", "test", "note", "reported", "intro", "for_each", "exclude")
TESTS = tuple(REQUIRED)
CITATION_FIELDS = ("paper", "table", "metric", "a", "b", "benchmark", "k")
#: a cited metric of reported.csv that is the same quantity as the claim's metric under another name
_SAME_QUANTITY = {"ece_after_ts": "ece", "selective_accuracy_80": "sel_acc_80"}
_UNSET = object()

_KEYED = re.compile(r"^(\w+)\[(.+@\d+|full)\]$")


class ClaimSpecError(ValueError):
    """A claims file is malformed; the message names the file, the claim and the fix."""


class _Missing(KeyError):
    """A template names a value the context does not have."""


class _Context(dict):
    def __missing__(self, key):
        raise _Missing(key)


@dataclass(frozen=True)
class Citation:
    """``reported: {table: ..., ...}``: rows of ``reported.csv`` cited for a claim (module docstring)."""

    table: str
    paper: str = "000"
    metric: str | None = None
    a: Any = None
    b: Any = None
    benchmark: Any = None  # one name or a list of names
    k: Any = _UNSET  # the paper's budget of both sides; None: the table states no budget


@dataclass(frozen=True)
class Ref:
    """A part that reuses a claim declared earlier in the file (``{ref: C1}``)."""

    ref: str
    source: str = ""


@dataclass(frozen=True)
class ClaimSpec:
    """One declared claim, typed (module docstring lists the fields; :data:`REQUIRED` and
    :data:`OPTIONAL` which test takes which).  ``path`` is the file it came from (for errors)."""

    id: str
    test: str
    source: str
    statement: str
    path: str = ""
    note: str = ""
    reported: Any = ""  # free text, "parts" or a Citation
    intro: str | None = None
    for_each: Mapping[str, Any] | None = None
    exclude: tuple = ()
    metric: str = ""
    column: str = ""
    a: Any = None
    b: Any = None
    direction: str | None = None
    threshold: Any = 0.0
    margin: Any = None
    smallest_effect: Any = None
    subset: Mapping[str, Any] | None = None
    per: str = "image"
    rows: str = "rows"
    rows_b: str | None = None
    parts: tuple = ()  # of ClaimSpec and Ref
    correction: str | None = "holm"

    @property
    def where(self) -> str:
        return f"{self.path}, claim {self.id}"


def load_specs(experiment: str, directory: Path = CLAIMS_DIR) -> list[ClaimSpec]:
    """The typed claim specs of ``experiment`` (``data/claims/<experiment>.yaml``), checked."""
    path = Path(directory) / f"{experiment}.yaml"
    if not path.is_file():
        raise ClaimSpecError(f"no claims file {path}; every experiment declares its claims there")
    return parse_specs(yaml.safe_load(path.read_text()) or [], path)


def parse_specs(raw: Any, path: Path | str = "<claims>") -> list[ClaimSpec]:
    """Typed specs of a claims file's content (a list of mappings)."""
    if not isinstance(raw, list):
        raise ClaimSpecError(f"{path}: expected a list of claims, got {type(raw).__name__}")
    specs = [_parse(item, str(path), inherited_source=None) for item in raw]
    refs = [part.ref for spec in specs for part in spec.parts if isinstance(part, Ref)]
    ids = [spec.id for spec in specs]
    for ref in refs:
        if str(ref) not in ids:
            raise ClaimSpecError(f"{path}: part {{ref: {ref}}} names no claim of the file; claims: {ids}")
    return specs


def _parse(item: Any, path: str, inherited_source: str | None) -> ClaimSpec | Ref:
    if isinstance(item, Mapping) and "ref" in item:
        extra = set(item) - {"ref", "source"}
        if extra:
            raise ClaimSpecError(f"{path}, part {{ref: {item['ref']}}}: a reference takes no other field, got "
                                 f"{sorted(extra)}")
        return Ref(str(item["ref"]), str(item.get("source", inherited_source or "")))
    if not isinstance(item, Mapping) or "id" not in item:
        raise ClaimSpecError(f"{path}: every claim is a mapping with an 'id' (or a part {{ref: <id>}}), got {item!r}")
    where = f"{path}, claim {item['id']}"
    test = item.get("test")
    if test not in REQUIRED:
        raise ClaimSpecError(f"{where}, field 'test': must be one of {TESTS}, got {test!r}")
    allowed = set(COMMON) | set(REQUIRED[test]) | set(OPTIONAL[test])
    unknown = sorted(set(item) - allowed)
    if unknown:
        raise ClaimSpecError(f"{where}, field {unknown[0]!r}: unknown for a {test} test; its fields are "
                             f"{sorted(allowed)}")
    fields = dict(item)
    if inherited_source is not None:
        fields.setdefault("source", inherited_source)
    missing = [name for name in ("source", "statement", *REQUIRED[test]) if name not in fields]
    if missing:
        raise ClaimSpecError(f"{where}, field {missing[0]!r}: missing; a {test} test needs "
                             f"{['id', 'source', 'statement', *REQUIRED[test]]}")
    if test in COMPOSITES:
        if not isinstance(fields["parts"], list) or not fields["parts"]:
            raise ClaimSpecError(f"{where}, field 'parts': a composite needs a non-empty list of parts")
        if fields.get("correction", "holm") not in ("holm", None):
            raise ClaimSpecError(f"{where}, field 'correction': must be 'holm' or null, got {fields['correction']!r}")
        fields["parts"] = tuple(_parse(part, path, str(fields["source"])) for part in fields["parts"])
    elif "direction" in REQUIRED[test] and fields["direction"] not in C.DIRECTIONS:
        raise ClaimSpecError(f"{where}, field 'direction': must be 'less' or 'greater', got {fields['direction']!r}")
    if isinstance(fields.get("reported"), Mapping):
        fields["reported"] = _citation(fields["reported"], where)
    fields["exclude"] = tuple(dict(e) for e in fields.get("exclude") or ())
    fields["id"] = str(fields["id"])
    return ClaimSpec(**fields, path=path)


def _citation(cite: Mapping, where: str) -> Citation:
    unknown = sorted(set(cite) - set(CITATION_FIELDS))
    if unknown:
        raise ClaimSpecError(f"{where}, field 'reported.{unknown[0]}': unknown; a citation's fields are "
                             f"{list(CITATION_FIELDS)}")
    if "table" not in cite:
        raise ClaimSpecError(f"{where}, field 'reported.table': missing; a citation names its table")
    return Citation(**{**{"paper": "000"}, **cite})


# ----------------------------------------------------------------------------------------- templates

def _template_names(template: Any) -> set[str]:
    """The context names a template reads (``"{task[name]} at {k:g}"`` -> ``{"task", "k"}``)."""
    if isinstance(template, (list, tuple)):
        return set().union(*(_template_names(t) for t in template)) if template else set()
    if isinstance(template, Mapping):
        return set().union(*(_template_names(t) for t in template.values())) if template else set()
    if not isinstance(template, str):
        return set()
    names = set()
    for _, name, _, _ in string.Formatter().parse(template):
        if name:
            names.add(re.split(r"[.\[]", name, maxsplit=1)[0])
    return names


_TEMPLATED = ("id", "statement", "note", "a", "b", "metric", "column", "subset", "threshold", "margin",
              "smallest_effect", "reported")


def check_templates(specs: Sequence[ClaimSpec], context: Mapping[str, Any]) -> None:
    """Every template of ``specs`` names a value of ``context`` or of an enclosing ``for_each``, and
    every ``for_each`` list a context list; else :class:`ClaimSpecError` naming the file, the claim,
    the field and the names available.  (A name some mappings of a ``for_each`` list lack only makes
    those parts not applicable.)"""
    for spec in specs:
        _check_spec(spec, set(context), context)


def _check_spec(spec: ClaimSpec | Ref, known: set[str], context: Mapping[str, Any]) -> None:
    if isinstance(spec, Ref):
        return
    known = set(known)
    for variable, values in (spec.for_each or {}).items():
        if isinstance(values, str):
            if values not in context:
                raise ClaimSpecError(f"{spec.where}, field 'for_each.{variable}': names {values!r}, which the "
                                     f"experiment does not provide; it provides {sorted(context)}")
            values = context[values]
        if not values:  # expands to nothing: no template of it is ever filled
            return
        known.add(variable)
        known |= {key for value in values if isinstance(value, Mapping) for key in value}
    for name in _TEMPLATED:
        value = getattr(spec, name)
        if isinstance(value, Citation):
            value = {f: getattr(value, f) for f in CITATION_FIELDS if getattr(value, f) is not _UNSET}
            name = "reported"
        unknown = sorted(_template_names(value) - known)
        if unknown:
            raise ClaimSpecError(f"{spec.where}, field {name!r}: the template key {{{unknown[0]}}} does not "
                                 f"exist; available: {sorted(known)}")
    for part in spec.parts:
        _check_spec(part, known, context)


def _fill(template: Any, context: Mapping[str, Any]) -> Any:
    if not isinstance(template, str):
        return template
    return string.Formatter().vformat(template, (), _Context(context))


def _config(template: str, context: Mapping[str, Any]) -> str:
    text = _fill(template, context)
    if text == "full":
        text = f"full@{context['n_tokens']}"
    return str(Config.parse(text))


def _number_text(text: str) -> bool:
    try:
        float(text)
    except ValueError:
        return False
    return True


def _point_name(key: Any, context: Mapping[str, Any]) -> Any:
    """A point value's name filled from ``context``, its configuration canonicalised
    (``t_star[scope(alpha=1)@32]`` -> ``t_star[scope(alpha=1,p=1)@32]``); numbers unchanged."""
    name = _fill(key, context)
    match = _KEYED.match(name) if isinstance(name, str) else None
    return f"{match.group(1)}[{_config(match.group(2), context)}]" if match else name


def _numeric(value: Any) -> bool:
    return isinstance(value, (int, float)) and not isinstance(value, bool)


def _expand(part: ClaimSpec | Ref, context: Mapping[str, Any]) -> list[tuple[ClaimSpec | Ref, dict]]:
    """``(part, context)`` once per combination of its ``for_each`` values."""
    loops = getattr(part, "for_each", None) or {}
    if not loops:
        return [(part, dict(context))]
    names = list(loops)
    values = [context[v] if isinstance(v, str) else v for v in loops.values()]
    out = []
    for combination in itertools.product(*values):
        bound = {}
        for name, value in zip(names, combination):
            bound.update(value if isinstance(value, Mapping) else {})
            bound[name] = value
        if any(all(k in bound and (float(bound[k]) == float(v) if _numeric(v) else bound[k] == v)
                   for k, v in e.items()) for e in part.exclude):
            continue
        out.append((part, {**context, **bound}))
    return out


def _untested_composite(parts: Sequence[C.Claim]) -> str:
    """``not applicable: needs <what the parts need>`` for a composite none of whose parts ran."""
    needs = [p.verdict.partition(": needs ")[2] for p in parts]
    needs = dict.fromkeys(n for each in needs for n in each.split(", ") if n)
    return f"{C.NOT_TESTED}: needs {', '.join(needs)}" if needs else C.NOT_TESTED


def _probability(hit: tuple[float, str] | None) -> float | None:
    """A reported number on the probability scale (``%`` or ``fraction``) as a fraction; ``None`` for
    none or another unit (MME points, erank dimensions)."""
    if hit is None or hit[1] not in ("%", "fraction"):
        return None
    return hit[0] / 100.0 if hit[1] == "%" else hit[0]


def _sides_from_two_frames(frame_a: pd.DataFrame, name_a: str, a: str, frame_b: pd.DataFrame, name_b: str,
                           b: str) -> tuple[pd.DataFrame, str, str]:
    """One frame holding configuration ``a`` of ``frame_a`` and ``b`` of ``frame_b``, each renamed
    ``"<config> | <frame>"`` so that the two sides stay apart when both name the same configuration."""
    side_a, side_b = f"{a} | {name_a}", f"{b} | {name_b}"
    rows = pd.concat([frame_a[frame_a["config"] == a].assign(config=side_a),
                      frame_b[frame_b["config"] == b].assign(config=side_b)], ignore_index=True)
    return rows, side_a, side_b


class ClaimEvaluator:
    """Evaluates declared claims on an experiment's row frames, context and point values."""

    def __init__(self, frames: Mapping[str, pd.DataFrame], context: Mapping[str, Any],
                 values: Mapping[str, float] | None = None, *, n_bootstrap: int = 1000, seed: int = 0):
        self.frames, self.context, self.values = dict(frames), dict(context), dict(values or {})
        self.common = {"n_bootstrap": n_bootstrap, "seed": seed}
        self.conflicts: list[str] = []

    def evaluate(self, specs: Sequence[ClaimSpec | Mapping]) -> list[C.Claim]:
        """The claims of ``specs`` (typed, or the mappings of a claims file), templates checked first."""
        if not all(isinstance(s, ClaimSpec) for s in specs):
            specs = parse_specs(list(specs))
        check_templates(specs, self.context)
        self.done: dict[str, C.Claim] = {}
        for spec in specs:
            claim = self._claim(spec, self.context, spec.source)
            self.done[spec.id] = claim
        return list(self.done.values())

    def _claim(self, spec: ClaimSpec | Ref, context: dict, source: str) -> C.Claim:
        if isinstance(spec, Ref):
            try:
                return self.done[spec.ref]
            except KeyError:
                raise ClaimSpecError(f"part {{ref: {spec.ref}}} names no claim declared before it") from None
        source = spec.source or source
        try:
            claim_id = _fill(spec.id, context)
        except _Missing:
            claim_id = spec.id
        try:
            fields = {"id": claim_id, "source": source, "statement": _fill(spec.statement, context)}
        except _Missing as missing:
            return C.not_tested(claim_id, source, spec.statement, f"needs the parameter {missing.args[0]}")
        try:
            if spec.test in COMPOSITES:
                return self._composite(spec, context, fields)
            self.conflicts = []
            self.cited_effects: list[float] = []  # the paper's a − b per cited benchmark, in this run's units
            reported = self._reported(spec, context)
            claim = self._simple(spec, context, fields, reported)
            if self.conflicts:
                claim = C.with_note(claim, "the paper's tables disagree on this number: " + "; ".join(
                    dict.fromkeys(self.conflicts)))
            return claim
        except _Missing as missing:
            return C.not_tested(fields["id"], source, fields["statement"], f"needs the parameter {missing.args[0]}")

    def _composite(self, spec: ClaimSpec, context: dict, fields: dict) -> C.Claim:
        parts = [self._claim(part, bound, fields["source"])
                 for raw in spec.parts for part, bound in _expand(raw, context)]
        reported = spec.reported
        if reported == "parts":
            reported = "; ".join(dict.fromkeys(p.reported for p in parts if p.reported))
        combine = C.all_of if spec.test == "all_of" else C.any_of
        claim = combine(parts, **fields, reported=_fill(reported, context), note=_fill(spec.note, context),
                        correction=spec.correction)
        return claim if claim.tested else replace(claim, verdict=_untested_composite(parts))

    def _simple(self, spec: ClaimSpec, context: dict, fields: dict, reported: str) -> C.Claim:
        claim = self._tested(spec, context, fields, reported)
        if spec.rows != "rows" and spec.rows_b is None:  # say which rows a test read when not the default ones
            claim = replace(claim, comparison=f"{claim.comparison} [{spec.rows} rows]")
        return claim

    def _tested(self, spec: ClaimSpec, context: dict, fields: dict, reported: str) -> C.Claim:
        note = _fill(spec.note, context)
        threshold = float(_fill(spec.threshold, context))
        if spec.test == "point":
            names = [_point_name(side, context) for side in (spec.a, spec.b)]
            comparison = f"{names[0]} − {names[1]}"
            missing = [n for n in names if isinstance(n, str) and not _number_text(n) and n not in self.values]
            if missing:  # e.g. a split this run does not have
                return C.not_tested(fields["id"], fields["source"], fields["statement"], f"needs {', '.join(missing)}",
                                    metric=spec.metric, comparison=comparison, reported=reported)
            a, b = (self._value(name) for name in names)
            return C.point_claim(a, b, **fields, metric=spec.metric, direction=spec.direction,
                                 comparison=comparison, threshold=threshold, reported=reported, note=note)
        if spec.test == "interval":
            return self._interval(spec, context, fields, reported, note)
        rows = self.frames[spec.rows]
        a, b = _config(spec.a, context), _config(spec.b, context)
        if spec.rows_b is not None:
            rows, a, b = _sides_from_two_frames(rows, spec.rows, a, self.frames[spec.rows_b], spec.rows_b, b)
        subset = {k: _fill(v, context) for k, v in (spec.subset or {}).items()} or None
        metric = _fill(spec.metric, context)
        if spec.test == "mean_delta":
            for column, value in (subset or {}).items():
                rows = rows[rows[column] == value]
            column = _fill(spec.column, context)
            return C.mean_delta_claim(rows, **fields, a=a, b=b, column=column, direction=spec.direction,
                                      threshold=threshold, per=spec.per, reported=reported, note=note,
                                      **self.common, **self._smallest_effect(spec, context, column))

        def judge(name: str) -> C.Claim:
            if spec.test == "equivalence":
                return C.equivalence_claim(rows, **fields, a=a, b=b, metric=name,
                                           margin=float(_fill(spec.margin, context)), subset=subset,
                                           reported=reported, note=note, **self.common)
            return C.delta_claim(rows, **fields, a=a, b=b, metric=name, direction=spec.direction, threshold=threshold,
                                 subset=subset, reported=reported, note=note, **self.common,
                                 **self._smallest_effect(spec, context, metric))

        claim = judge(metric)
        if not claim.tested or metric not in C.ESTIMATORS:
            return claim
        return C.with_estimators(claim, [judge(other) for other in C.ESTIMATORS[metric]])

    def _interval(self, spec: ClaimSpec, context: dict, fields: dict, reported: str, note: str) -> C.Claim:
        """An ``interval`` test: the experiment's own bootstrap interval named by ``a``."""
        name = _fill(spec.a, context)
        threshold = float(_fill(spec.threshold, context))
        metric = _fill(spec.metric, context)
        interval = self.values.get(name)
        if interval is None or not all(hasattr(interval, f) for f in ("estimate", "low", "high")):
            return C.not_tested(fields["id"], fields["source"], fields["statement"], f"needs {name}", metric=metric,
                                comparison=name, reported=reported)
        return C.interval_claim(interval, **fields, metric=metric, comparison=name, direction=spec.direction,
                                threshold=threshold, reported=reported, note=note,
                                **self._smallest_effect(spec, context, metric))

    def _smallest_effect(self, spec: ClaimSpec, context: dict, metric: str) -> dict[str, Any]:
        """``smallest_effect`` δ of a directional test and its origin (module docstring): the spec's
        own; else, for a claim against 0 on a probability-scale metric, the paper's effect (its cited
        numbers, with the claimed sign on every cited benchmark), else the metric's default."""
        if spec.smallest_effect is not None:
            value = float(_fill(spec.smallest_effect, context))
            return {"smallest_effect": value, "effect_origin": "declared" if value else ""}
        if float(_fill(spec.threshold, context)) != 0 or metric not in C.SMALLEST_EFFECTS:
            return {}
        if self.cited_effects:
            sign = -1.0 if spec.direction == "less" else 1.0
            if not all(sign * effect > 0 for effect in self.cited_effects):
                return {}  # the paper's numbers do not show the claimed effect: no effect to look for
            return {"smallest_effect": min(abs(e) for e in self.cited_effects), "effect_origin": "the reported effect"}
        return {"smallest_effect": C.SMALLEST_EFFECTS[metric], "effect_origin": "1 pp, no reported effect"}

    def _value(self, name: Any) -> float:
        """A point value: a number (or its text), else the run's value of ``name`` (a
        :func:`_point_name`, configuration already canonicalised)."""
        try:
            return float(name)
        except (TypeError, ValueError):
            pass
        value = self.values.get(name, math.nan)
        return math.nan if value is None else float(value)

    def _reported(self, spec: ClaimSpec, context: dict) -> str:
        cite = spec.reported
        if not isinstance(cite, Citation):
            return _fill(cite, context)
        if isinstance(cite.benchmark, list):
            return ", ".join(f"{_fill(b, context)}: {self._cited(spec, cite, context, b)}" for b in cite.benchmark)
        return self._cited(spec, cite, context, cite.benchmark)

    def _cited(self, spec: ClaimSpec, cite: Citation, context: dict, benchmark: str | None) -> str:
        """``"<a> vs <b>"``: the reported values of both sides of ``spec`` on one benchmark."""
        k_map = context.get("k_map", {})
        texts, numbers = [], []
        paper, table = _fill(cite.paper, context), _fill(cite.table, context)
        metric = _fill(cite.metric if cite.metric is not None else spec.metric, context)
        benchmark = _fill(benchmark, context)
        for side in ("a", "b"):
            text = _fill(getattr(cite, side) if getattr(cite, side) is not None else getattr(spec, side), context)
            if _numeric(text):  # a point claim against a number cites only its configuration's side
                continue
            keyed = _KEYED.match(text)  # a point value "name[config]" cites the config's row
            config = Config.parse(_config(keyed.group(2) if keyed else text, context))
            paper_k = context.get("paper_n_tokens", 576) if config.method == "full" else k_map.get(config.k, config.k)
            if cite.k is not _UNSET:
                paper_k = None if cite.k is None else int(_fill(cite.k, context))
            hit = reported_number(paper, table, config.pruner, paper_k, metric, benchmark=benchmark)
            texts.append(reported_text(hit))
            numbers.append(_probability(hit))
            conflict = conflicting_reports(paper, config.pruner, paper_k, metric, benchmark, table=table)
            if conflict:
                self.conflicts.append(f"{config.pruner} at K={paper_k}: {conflict}")
        claim_metric = _fill(spec.metric, context)
        if len(numbers) == 2 and None not in numbers and _SAME_QUANTITY.get(metric, metric) == claim_metric:
            self.cited_effects.append(numbers[0] - numbers[1])
        return " vs ".join(texts)


def evaluate_claims(experiment: str, frames: Mapping[str, pd.DataFrame], context: Mapping[str, Any],
                    values: Mapping[str, float] | None = None, *, n_bootstrap: int = 1000, seed: int = 0,
                    directory: Path = CLAIMS_DIR) -> list[C.Claim]:
    """Every claim of ``data/claims/<experiment>.yaml``, tested on this run (module docstring)."""
    if "n_tokens" not in context:
        raise StudyParameterError("claims context needs n_tokens (the model's number of visual tokens)")
    evaluator = ClaimEvaluator(frames, context, values, n_bootstrap=n_bootstrap, seed=seed)
    return evaluator.evaluate(load_specs(experiment, directory))


__all__ = ["CLAIMS_DIR", "COMMON", "Citation", "ClaimEvaluator", "ClaimSpec", "ClaimSpecError", "OPTIONAL", "REQUIRED",
           "Ref", "TESTS", "check_templates", "evaluate_claims", "load_specs", "parse_specs"]
