"""Registry of pruners: names, typed parameters, validation and spec strings.

Every method module registers one or more entries with :func:`register`::

    @register("scope", Param("alpha", float, 1.0, low=0.0, key=True), ...)
    def scope(tokens, k, query=None, *, alpha, ...): ...

A configured pruner is a :class:`Pruner` built by :func:`get_pruner` (keyword arguments or a
spec string) or :func:`parse_spec`.  Its canonical spec string is ``str(pruner)``:

* ``name`` then, in parentheses, the **key** parameters (always shown: the knobs a study varies,
  e.g. SCOPE's ``alpha`` and ``p``) followed by every other parameter whose value differs from its
  default, in declaration order, e.g. ``scope(alpha=0,p=1)``, ``visionzip``,
  ``vispruner(r=0.75)``; a pruner with nothing to show is just its name.
* parameters are written with their short alias where one exists (``p`` for ``gap_power``);
  floats in the shortest form that round-trips (``0``, ``0.25``, ``94.87``), booleans as
  ``true``/``false``, choices as bare words.
* ``parse_spec(str(p)) == p`` for every pruner ``p`` (tested).

Unknown names, unknown parameters and invalid values all raise :class:`PrunerConfigError` (a
``ValueError``) whose message lists the valid choices.

Stages: ``"vision"`` pruners are called as ``pruner(tokens, k, query=None) -> Selection``;
``"llm"`` pruners (FastV, DART) select inside the language model: their pure selection rule is
``pruner.rule(...)`` (all parameters bound except ``layer``), the decoder layer before which they
act is ``pruner.layer``, and calling them on :class:`VisualTokens` raises.

Pruners from outside the package register the same way from a plug-in module, which every lookup
(:func:`get_pruner`, :func:`list_pruners`, ...) loads first (:mod:`studylib.plugins`: entry points of
the group ``studylib.pruners``, files of ``--plugin`` / ``$STUDYLIB_PLUGINS``).
"""

from __future__ import annotations

import functools
import re
from dataclasses import dataclass, field
from types import MappingProxyType
from typing import Any, Callable, Mapping

from studylib.plugins import load_plugins
from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import check_budget, check_tokens
from studylib.pruners.params import Param, PrunerConfigError


@dataclass(frozen=True)
class PrunerInfo:
    """A registered method: its function, parameters, stage and one-line summary."""

    name: str
    fn: Callable[..., Any]
    params: tuple[Param, ...]
    stage: str
    summary: str
    aliases: tuple[str, ...] = ()
    merges: bool = False
    exact_k: bool = True
    needs_query: tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...]] = ()
    family: str = "other"
    source: str = ""
    _lookup: dict[str, Param] = field(default_factory=dict, repr=False, compare=False)

    def __post_init__(self) -> None:
        for p in self.params:
            for key in {p.name, p.spec_name}:
                if key in self._lookup:
                    raise ValueError(f"{self.name}: duplicate parameter name {key}")
                self._lookup[key] = p

    def param(self, key: str) -> Param:
        try:
            return self._lookup[key]
        except KeyError:
            raise PrunerConfigError(
                f"{self.name}: unknown parameter {key!r}; valid parameters: "
                + ("; ".join(p.describe() for p in self.params) or "none")
            ) from None

    def describe(self) -> str:
        params = ", ".join(p.describe() for p in self.params) or "no parameters"
        return f"{self.name} [{self.stage}, {self.family}] — {self.summary} ({params})"


_REGISTRY: dict[str, PrunerInfo] = {}
_ALIASES: dict[str, str] = {}

#: the pruner families, each pruner's ``family`` (declared once, in its ``register`` call), in the
#: order tables and figures use; the classes of seed 000 §2 (coverage-based: SCOPE; saliency-based;
#: diversity-based: DivPrune, CDPruner; adaptive: AgilePruner), plus the methods that mix saliency and
#: diversity, the in-LLM methods and the two references.  A pruner registered without a family is "other".
FAMILIES: dict[str, str] = {
    "unpruned": "the reference: all N tokens",
    "random": "uniform random subset",
    "saliency": "rank tokens by [CLS] attention (saliency) alone",
    "coverage": "greedy coverage of the token set (facility location), optionally weighted by saliency",
    "diversity": "spread the kept tokens out (max-min distance, DPP)",
    "hybrid": "a fixed share of high-saliency tokens plus diverse ones",
    "adaptive": "an image-complexity statistic (erank, attention entropy) sets the rule per image",
    "in-LLM": "select inside the language model from decoder-layer signals",
    "other": "not classified",
}

NAME_RE = re.compile(r"^[a-z][a-z0-9_]*$")


def register(
    name: str,
    *params: Param,
    stage: str = "vision",
    summary: str = "",
    aliases: tuple[str, ...] = (),
    merges: bool = False,
    exact_k: bool = True,
    needs_query: tuple[str, ...] | Callable[[Mapping[str, Any]], tuple[str, ...]] = (),
    family: str = "other",
    source: str = "",
) -> Callable[[Callable[..., Any]], Callable[..., Any]]:
    """Decorator: register ``fn`` under ``name`` with typed parameters.

    Vision-stage functions have the signature ``fn(tokens, k, query, **params) -> Selection``
    (``k`` already validated).  ``needs_query`` names the :class:`QueryContext` fields the method
    reads (``"text_embedding"``, ``"text_attention"``), or is a function of the parameters that
    returns them (ID-Selection needs the question only for its relevance cues).  LLM-stage functions are the pure selection rules; every parameter
    except ``layer`` is bound to them as a keyword argument.  ``family`` is one of :data:`FAMILIES`
    (what the method's selection relies on); ``source`` names the official code or the paper.
    """
    if stage not in ("vision", "llm"):
        raise ValueError(f"stage must be 'vision' or 'llm', got {stage!r}")
    if family not in FAMILIES:
        raise ValueError(f"unknown family {family!r}; choose one of {list(FAMILIES)}")
    if not NAME_RE.match(name):
        raise ValueError(f"invalid pruner name {name!r}")

    def decorate(fn: Callable[..., Any]) -> Callable[..., Any]:
        if name in _REGISTRY or name in _ALIASES:
            raise ValueError(f"pruner {name!r} registered twice")
        text = summary or (fn.__doc__ or "").strip().splitlines()[0]
        _REGISTRY[name] = PrunerInfo(
            name=name, fn=fn, params=tuple(params), stage=stage, summary=text,
            aliases=tuple(aliases), merges=merges, exact_k=exact_k, needs_query=needs_query,
            family=family, source=source,
        )
        for alias in aliases:
            _ALIASES[alias] = name
        return fn

    return decorate


def _info(name: str) -> PrunerInfo:
    load_plugins()
    key = name.strip().lower()
    key = _ALIASES.get(key, key)
    try:
        return _REGISTRY[key]
    except KeyError:
        raise PrunerConfigError(
            f"unknown pruner {name!r}; valid pruners: {', '.join(sorted(_REGISTRY))}"
            + (f" (aliases: {', '.join(f'{a}={n}' for a, n in sorted(_ALIASES.items()))})" if _ALIASES else "")
            + "; a pruner of your own: register it in a plug-in (--plugin FILE.py, see studylib.plugins)"
        ) from None


def pruner_info(name: str) -> PrunerInfo:
    """The registry entry of ``name`` (or of an alias)."""
    return _info(name)


def list_pruners(stage: str | None = None) -> list[str]:
    """Registered pruner names (sorted), optionally only one stage (``"vision"`` / ``"llm"``)."""
    if stage not in (None, "vision", "llm"):
        raise PrunerConfigError(f"unknown stage {stage!r}; valid stages: vision, llm")
    load_plugins()
    return sorted(n for n, i in _REGISTRY.items() if stage is None or i.stage == stage)


def _read_only(holder: str, field: str, doc: str) -> property:
    """A property returning ``getattr(self.<holder>, field)``."""
    return property(lambda self: getattr(getattr(self, holder), field), doc=doc)


class Pruner:
    """A registered method with validated parameters; ``str(pruner)`` is its canonical spec."""

    __slots__ = ("_info", "_params", "_spec")

    def __init__(self, info: PrunerInfo, params: Mapping[str, Any]):
        self._info = info
        self._params = MappingProxyType(dict(params))
        self._spec = self._format_spec()

    # -- description -------------------------------------------------------------------------
    name = _read_only("_info", "name", "The registered name.")
    stage = _read_only("_info", "stage", '``"vision"`` or ``"llm"``.')
    merges = _read_only("_info", "merges", "True when the selection carries merged tokens (``Selection.merged``).")
    family = _read_only("_info", "family", "The method's family (one of ``FAMILIES``).")
    exact_k = _read_only("_info", "exact_k",
                         "True when the LLM sees exactly ``k`` visual tokens (False only for adaptive counts).")

    @property
    def params(self) -> Mapping[str, Any]:
        """All parameters (full names), defaults filled in."""
        return self._params

    @property
    def info(self) -> PrunerInfo:
        return self._info

    @property
    def spec(self) -> str:
        return self._spec

    @property
    def query_signals(self) -> tuple[str, ...]:
        """The :class:`QueryContext` fields this configuration reads (empty: no question needed)."""
        need = self._info.needs_query
        return tuple(need(self._params) if callable(need) else need)

    @property
    def needs_query(self) -> bool:
        """True when the pruner reads the question (a :class:`QueryContext` must be passed)."""
        return bool(self.query_signals)

    @property
    def layer(self) -> int | None:
        """For LLM-stage pruners: the decoder layer before which they prune (else None; also None
        for the staged ones, PyramidDrop and SparseVLM, whose layers depend on the model's depth)."""
        return self._params.get("layer") if self.stage == "llm" else None

    def _format_spec(self) -> str:
        shown = [
            f"{p.spec_name}={p.format(self._params[p.name])}"
            for p in self._info.params
            if p.key or self._params[p.name] != p.default
        ]
        return f"{self.name}({','.join(shown)})" if shown else self.name

    def __str__(self) -> str:
        return self._spec

    def __repr__(self) -> str:
        return f"Pruner({self._spec!r})"

    def __eq__(self, other: object) -> bool:
        return isinstance(other, Pruner) and other._spec == self._spec

    def __hash__(self) -> int:
        return hash(self._spec)

    def replace(self, **changes: Any) -> "Pruner":
        """A copy with some parameters changed (validated)."""
        return get_pruner(self.name, **{**dict(self._params), **changes})

    # -- use ---------------------------------------------------------------------------------
    def __call__(self, tokens: VisualTokens, k: int, query: QueryContext | None = None) -> Selection:
        if self.stage == "llm":
            where = f"before decoder layer {self.layer}" if self.layer is not None else "before several decoder layers"
            raise RuntimeError(
                f"{self._spec} runs inside the language model ({where}); it cannot select from "
                f"VisualTokens alone. The model adapter applies `pruner.rule(...)` in its decoder-layer hooks."
            )
        check_tokens(tokens, self._spec)
        k = check_budget(k, tokens.num_patches, self._spec)
        if query is not None and not isinstance(query, QueryContext):
            raise TypeError(f"{self._spec}: query must be a QueryContext or None")
        return self._info.fn(tokens, k, query, **self._params)

    @property
    def rule(self) -> Callable[..., Any]:
        """LLM-stage selection rule with this pruner's parameters bound (``layer`` excluded)."""
        if self.stage != "llm":
            raise AttributeError(f"{self._spec} is a vision-stage pruner: call it on VisualTokens")
        bound = {k: v for k, v in self._params.items() if k != "layer"}
        return functools.partial(self._info.fn, **bound)


_SPEC_RE = re.compile(r"^\s*([A-Za-z][A-Za-z0-9_]*)\s*(?:\((.*)\))?\s*$", re.S)


def _split_spec(spec: str) -> tuple[str, dict[str, str]]:
    if not isinstance(spec, str):
        raise PrunerConfigError(f"a pruner spec must be a string, got {type(spec).__name__}")
    match = _SPEC_RE.match(spec)
    if not match:
        raise PrunerConfigError(
            f"malformed pruner spec {spec!r}; expected 'name' or 'name(param=value,...)', "
            f"valid pruners: {', '.join(sorted(_REGISTRY))}"
        )
    name, inner = match.group(1), match.group(2)
    args: dict[str, str] = {}
    if inner is not None and inner.strip():
        for part in inner.split(","):
            if "=" not in part:
                raise PrunerConfigError(f"malformed parameter {part.strip()!r} in spec {spec!r}; expected param=value")
            key, value = (s.strip() for s in part.split("=", 1))
            if not key or not value:
                raise PrunerConfigError(f"malformed parameter {part.strip()!r} in spec {spec!r}; expected param=value")
            if key in args:
                raise PrunerConfigError(f"parameter {key!r} given twice in spec {spec!r}")
            args[key] = value
    return name, args


def get_pruner(name: str, **params: Any) -> Pruner:
    """Build a configured pruner: ``get_pruner("scope", alpha=0.0, gap_power=1.0)``.

    ``name`` may also be a full spec string (``"scope(alpha=0,p=1)"``); keyword arguments are
    merged into it (giving the same parameter twice is an error).  Parameters may be given by full
    name or alias.
    """
    base, spec_args = _split_spec(name)
    info = _info(base)
    values: dict[str, Any] = {}
    for source in (spec_args, params):
        for key, value in source.items():
            p = info.param(key)
            if p.name in values:
                raise PrunerConfigError(f"{info.name}: parameter {p.name!r} given twice")
            values[p.name] = p.coerce(value, info.name)
    for p in info.params:
        values.setdefault(p.name, p.default)
    return Pruner(info, values)


def parse_spec(spec: str) -> Pruner:
    """Inverse of ``str(pruner)``: ``parse_spec("scope(alpha=0,p=1)")``."""
    return get_pruner(spec)


def unregister(name: str) -> None:
    """Remove a registered pruner and its aliases (for tests that register a throwaway pruner)."""
    info = _info(name)
    del _REGISTRY[info.name]
    for alias in info.aliases:
        _ALIASES.pop(alias, None)


def select_each(pruner: Pruner, tokens: VisualTokens, k: int, query: QueryContext | None = None) -> list[Selection]:
    """Run ``pruner`` image by image (for adaptive-count pruners whose counts differ per image)."""
    out = []
    for i in range(tokens.batch_size):
        q = None
        if query is not None:
            q = QueryContext(
                text_embedding=query.text_embedding[i : i + 1],
                text_attention=None if query.text_attention is None else query.text_attention[i : i + 1],
            )
        out.append(pruner(tokens[i], k, q))
    return out
