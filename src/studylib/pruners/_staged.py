"""What a staged in-LLM pruner (PyramidDrop, SparseVLM) tells the model adapter: a :class:`StagePlan`.

FastV and DART drop image tokens once, before one decoder layer (their ``layer`` parameter).
PyramidDrop and SparseVLM drop them several times, at layers fixed by their official code for a
32-layer LLM; their registered rule is ``rule(n_layers, k) -> StagePlan``, and they have no
``layer`` parameter (``pruner.layer`` is ``None``).  The hook mechanics live in
:mod:`studylib.models.llm_pruning`; the method-specific maths (the rater choice, the recycling) are
functions of the pruner modules, carried by the plan.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Callable, Sequence

import torch

#: decoder layers of LLaVA-1.5-7B's language model, the depth the official schedules were written for
OFFICIAL_DEPTH = 32


@dataclass(frozen=True)
class StagePlan:
    """Where image tokens are dropped and how many survive each drop.

    ``layers``: decoder layers before which tokens are dropped, ascending; ``keep``: visual tokens
    selected at each drop, from those still present (``keep[0]`` is the budget K, what the adapter
    records as kept).  Scores are the head-mean attention of query rows over the visual tokens,
    averaged over the rows: ``score_layer = "own"`` computes it with the projections of the layer
    about to run, on its input (PyramidDrop), ``"previous"`` with those of the layer before, on that
    layer's input (SparseVLM; FastV's convention).  ``raters(visual, text, valid) -> (B, T) bool``
    picks the query rows among the text tokens after the image from the input embeddings
    (SparseVLM); ``None`` queries the last token only (PyramidDrop).  ``recycle(hidden, score) ->
    (B, c, D)`` turns the dropped tokens' hidden states into ``c`` new tokens placed after the kept
    visual tokens (SparseVLM), or ``None``.  After every drop the rotary positions are renumbered
    contiguously (both official codes)."""

    layers: tuple[int, ...]
    keep: tuple[int, ...]
    score_layer: str
    raters: Callable[[torch.Tensor, torch.Tensor, torch.Tensor], torch.Tensor] | None = None
    recycle: Callable[[torch.Tensor, torch.Tensor], torch.Tensor] | None = None

    def __post_init__(self) -> None:
        if len(self.layers) != len(self.keep) or not self.layers:
            raise ValueError(f"a stage plan needs one keep count per layer, got {self.layers} and {self.keep}")
        if self.score_layer not in ("own", "previous"):
            raise ValueError(f"score_layer must be 'own' or 'previous', got {self.score_layer!r}")


def scale_layers(layers: Sequence[int], n_layers: int, name: str) -> tuple[int, ...]:
    """The official drop layers on a language model with ``n_layers`` decoder layers.

    Models at least as deep as LLaVA-1.5-7B (:data:`OFFICIAL_DEPTH`) use them as they are (the
    official scripts use the same layers for the 40-layer 13B model); shallower ones scale them,
    ``ℓ' = max(1, ⌊ℓ · n_layers / 32 + ½⌋)``, each at least one layer after the previous, and drop
    those that reach the last layer (a 4-layer model: 8, 16, 24 → 1, 2, 3)."""
    if n_layers < 2:
        raise ValueError(f"{name} drops tokens before a decoder layer after the first: it needs a language "
                         f"model with at least 2 decoder layers, this one has {n_layers}")
    out: list[int] = []
    for layer in layers:
        scaled = layer if n_layers >= OFFICIAL_DEPTH else max(1, int(layer * n_layers / OFFICIAL_DEPTH + 0.5))
        scaled = max(scaled, out[-1] + 1) if out else scaled
        if scaled < n_layers:
            out.append(scaled)
    if not out:
        raise ValueError(f"{name}: its first drop, before decoder layer {layers[0]}, does not fit this language "
                         f"model's {n_layers} decoder layers; choose earlier layers")
    return tuple(out)
