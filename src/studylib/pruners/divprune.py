"""``divprune`` — DivPrune: greedy max–min diversity on cosine distance of projected tokens.

Official: vbdi/divprune ``LLaVA/llava/model/llava_arch.py::DivPrune`` (pruners.md §3).

Features: the **projected** visual tokens (LLM input embeddings, ``VisualTokens.embeddings``);
distance ``D_ij = 1 − cos(x_i, x_j)``.  Greedy::

    j_1 = argmax_j  min_{i ≠ j} D_ij              (most isolated token: 2nd-smallest of column j)
    j_t = argmax_{j ∉ T}  min_{s ∈ T} D_sj        (farthest from the current set)

First maximum wins on ties (``torch.argmax``).  Output in raster order, as the public code
(issue #8: the paper's numbers used selection order).

Budget: the official code uses ``K = round(0.098·N)``; here ``K`` is given directly.

Fast algorithm (identical picks to the official loop, kept in ``_reference.py``): ``D`` is
computed once per image (one batched GEMM); the first pick takes each column's 2nd-smallest
entry by two vectorised ``amin`` passes instead of ``kthvalue``
(:func:`~studylib.pruners._similarity.column_second_smallest`, the same order statistic); the
loop keeps a running minimum ``r_j = min_{s ∈ T} D_sj`` updated with the new pick's row
(``r ← min(r, D_{j_t ·})``), O(N) per step instead of the official O(t·N) recomputation over
all selected rows.  ``min`` is exact in floating point, so ``r`` holds bit for bit the values the
official loop recomputes, and the argmax (first maximum) is the same.  Picked tokens are set to
``−∞`` in ``r`` (``min(−∞, ·) = −∞``), the explicit mask below.  The loop runs over the whole
batch at once: four small tensor operations per step; a single image on the CPU steps in numpy
instead (the same operations without torch's per-call overhead,
:func:`~studylib.pruners._similarity.host_loop`).  The cosine matrix and the first pick are
computed once per :class:`VisualTokens` object and shared by every config run on it.

Deviations: already-selected tokens are masked explicitly (the official code relies on their
self-distance ≈ 0, which can re-pick a token when exact duplicates or rounding make every
remaining distance ≤ the self-distance); similarities in float32 instead of fp16.
``space = vision`` (pre-projector features) is an extension for ablations; default ``llm`` is
the official space.
"""

from __future__ import annotations

import numpy as np
import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import (
    column_second_smallest, cosine_matrix, flat_index, flat_rows, host_loop, selection, token_cosine,
)
from studylib.pruners.registry import Param, register

SPACE = Param("space", str, "llm", "feature space: llm = projected embeddings, vision = pre-projector", choices=("llm", "vision"))


def most_isolated(dist: torch.Tensor) -> torch.Tensor:
    """DivPrune's first pick ``(B,)``: argmax over columns of the 2nd-smallest entry (the smallest
    is the self-distance); token 0 when ``N = 1``."""
    b, n, _ = dist.shape
    if n < 2:
        return torch.zeros(b, dtype=torch.long, device=dist.device)
    return column_second_smallest(dist).argmax(dim=1)


def max_min_order(dist: torch.Tensor, k: int, first: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy max–min on a ``(B, N, N)`` distance; returns ``(B, k)`` in greedy order.

    ``first``: optional ``(B,)`` first pick (default: :func:`most_isolated`, DivPrune's rule).
    Running minimum over the picks' rows, picks held at ``−∞``; finite distances.
    """
    if first is None:
        first = most_isolated(dist)
    if host_loop(dist):
        return _max_min_order_host(dist, k, first)
    flat, base = flat_rows(dist)
    idx = flat_index(first, base)
    running = flat.index_select(0, idx)  # (B, N): distance to the set {first}
    running.view(-1).index_fill_(0, idx, float("-inf"))
    picks = [first]
    for _ in range(1, k):
        j = running.argmax(dim=1)
        idx = flat_index(j, base)
        torch.minimum(running, flat.index_select(0, idx), out=running)
        running.view(-1).index_fill_(0, idx, float("-inf"))
        picks.append(j)
    return torch.stack(picks, dim=1)


def _max_min_order_host(dist: torch.Tensor, k: int, first: torch.Tensor) -> torch.Tensor:
    """:func:`max_min_order` of one image in numpy (:func:`~studylib.pruners._similarity.host_loop`):
    the same running minimum, first-maximum ``argmax`` and ``−∞`` fill, step for step."""
    rows = dist[0].detach().numpy()
    j = int(first[0])
    running = rows[j].copy()
    running[j] = -np.inf
    picks = [j]
    for _ in range(1, k):
        j = int(running.argmax())
        np.minimum(running, rows[j], out=running)
        running[j] = -np.inf
        picks.append(j)
    return torch.tensor([picks], dtype=torch.long, device=dist.device)


def divprune_order(x: torch.Tensor, k: int) -> torch.Tensor:
    """DivPrune greedy order on features ``x`` ``(B, N, D)`` (cosine distance)."""
    return max_min_order(1.0 - cosine_matrix(x), k)


def token_divprune_order(tokens: VisualTokens, space: str, k: int) -> torch.Tensor:
    """``divprune_order(space's features, k)`` with the cosine matrix and the first pick (the most
    isolated token, a config-independent O(N²) pass) memoised per ``tokens`` object."""
    dist = 1.0 - token_cosine(tokens, space)
    first = tokens.derived(("divprune_first", space, dist.dtype), lambda t: most_isolated(1.0 - token_cosine(t, space)))
    return max_min_order(dist, k, first)


@register("divprune", SPACE, summary="DivPrune: max-min diversity on 1 - cosine of projected tokens",
          family="diversity", source="vbdi/divprune (pruners.md §3)")
def divprune(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, space: str) -> Selection:
    """DivPrune max–min diversity, most-isolated first pick, raster-order output."""
    order = token_divprune_order(tokens, space, k)
    return selection(order.sort(dim=1).values)
