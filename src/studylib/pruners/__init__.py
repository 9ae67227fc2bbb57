"""Visual-token pruners behind one registry.

    >>> from studylib.pruners import get_pruner, list_pruners, parse_spec
    >>> p = get_pruner("scope", alpha=0.0, gap_power=1.0)
    >>> str(p)
    'scope(alpha=0,p=1)'
    >>> parse_spec(str(p)) == p
    True

A vision-stage pruner is called as ``pruner(tokens, k, query=None) -> Selection`` (kept patch
indices ``(B, K)`` in raster order; merging pruners also fill ``Selection.merged``).  LLM-stage
pruners (``fastv``, ``dart``) expose their pure rule as ``pruner.rule`` and their decoder layer
as ``pruner.layer``; the model adapter applies them in its decoder-layer hook.  The staged ones
(``pdrop``, ``sparsevlm``) drop tokens before several layers: ``pruner.layer`` is ``None`` and
``pruner.rule(n_layers, k)`` gives their :class:`~studylib.pruners._staged.StagePlan`.
``describe_pruners()`` prints every pruner with its parameters and defaults, ``pruner_table()`` gives the same
as a table with each method's family and source.  One module per
method; each module docstring gives the formula, the official defaults and the deviations.
"""

from __future__ import annotations

from typing import Protocol

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners.catalog import describe_pruners, pruner_table
from studylib.pruners.registry import (
    FAMILIES,
    Param,
    Pruner,
    PrunerConfigError,
    PrunerInfo,
    get_pruner,
    list_pruners,
    parse_spec,
    pruner_info,
    register,
    select_each,
    unregister,
)

# importing the method modules registers them
from studylib.pruners import (  # noqa: E402,F401  (registration side effects)
    full,
    random,
    saliency,
    scope,
    divprune,
    fps,
    visionzip,
    vispruner,
    cdpruner,
    idselect,
    agile,
    scope_adaptive,
    hired,
    fastv,
    dart,
    pdrop,
    sparsevlm,
)
from studylib.pruners.agile import adaptive_count, attention_entropy, erank, reference_entropy, reference_erank
from studylib.pruners.dart import dart_rule
from studylib.pruners.fastv import fastv_rule
from studylib.pruners.scope_adaptive import image_alpha


class PrunerFn(Protocol):
    """What a vision-stage pruner is: a callable ``(tokens, k, query) -> Selection``."""

    def __call__(self, tokens: VisualTokens, k: int, query: QueryContext | None = None) -> Selection: ...


__all__ = [
    "FAMILIES",
    "Param",
    "Pruner",
    "PrunerConfigError",
    "PrunerFn",
    "PrunerInfo",
    "adaptive_count",
    "attention_entropy",
    "dart_rule",
    "describe_pruners",
    "erank",
    "fastv_rule",
    "get_pruner",
    "image_alpha",
    "list_pruners",
    "parse_spec",
    "pruner_info",
    "pruner_table",
    "reference_entropy",
    "reference_erank",
    "register",
    "select_each",
    "unregister",
]
