"""``divprune`` — DivPrune: greedy max–min diversity on cosine distance of projected tokens.

Official: vbdi/divprune ``LLaVA/llava/model/llava_arch.py::DivPrune`` (pruners.md §3).

Features: the **projected** visual tokens (LLM input embeddings, ``VisualTokens.embeddings``);
distance ``D_ij = 1 − cos(x_i, x_j)``.  Greedy::

    j_1 = argmax_j  min_{i ≠ j} D_ij              (most isolated token: 2nd-smallest of column j)
    j_t = argmax_{j ∉ T}  min_{s ∈ T} D_sj        (farthest from the current set)

with a running minimum over the selected rows (O(N) per step instead of the official O(t·N)
recomputation; identical values).  First maximum wins on ties (``torch.argmax``).  Output in
raster order, as the public code (issue #8: the paper's numbers used selection order).

Budget: the official code uses ``K = round(0.098·N)``; here ``K`` is given directly.

Deviations: already-selected tokens are masked explicitly (the official code relies on their
self-distance ≈ 0, which can re-pick a token when exact duplicates or rounding make every
remaining distance ≤ the self-distance); similarities in float32 instead of fp16.
``space = vision`` (pre-projector features) is an extension for ablations; default ``llm`` is
the official space.
"""

from __future__ import annotations

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import cosine_matrix, selection
from studylib.pruners.registry import Param, register

SPACE = Param("space", str, "llm", "feature space: llm = projected embeddings, vision = pre-projector", choices=("llm", "vision"))


def space_features(tokens: VisualTokens, space: str) -> torch.Tensor:
    return tokens.embeddings if space == "llm" else tokens.features


def max_min_order(dist: torch.Tensor, k: int, first: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy max–min on a ``(B, N, N)`` distance; returns ``(B, k)`` in greedy order.

    ``first``: optional ``(B,)`` first pick (default: the most isolated token, DivPrune's rule:
    argmax over columns of the 2nd-smallest entry).
    """
    b, n, _ = dist.shape
    rows = torch.arange(b, device=dist.device)
    neg_inf = torch.tensor(float("-inf"), dtype=dist.dtype, device=dist.device)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=dist.device)
    order = torch.empty(b, k, dtype=torch.long, device=dist.device)
    if first is None:
        if n >= 2:
            # 2nd-smallest entry of each column (the smallest is the self-distance)
            first = torch.kthvalue(dist, 2, dim=1).values.argmax(dim=1)
        else:
            first = torch.zeros(b, dtype=torch.long, device=dist.device)
    order[:, 0] = first
    chosen[rows, first] = True
    running = dist[rows, first, :].clone()
    for t in range(1, k):
        j = torch.where(chosen, neg_inf, running).argmax(dim=1)
        order[:, t] = j
        chosen[rows, j] = True
        torch.minimum(running, dist[rows, j, :], out=running)
    return order


def divprune_order(x: torch.Tensor, k: int) -> torch.Tensor:
    """DivPrune greedy order on features ``x`` ``(B, N, D)`` (cosine distance)."""
    return max_min_order(1.0 - cosine_matrix(x), k)


@register("divprune", SPACE, summary="DivPrune: max-min diversity on 1 - cosine of projected tokens")
def divprune(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, space: str) -> Selection:
    """DivPrune max–min diversity, most-isolated first pick, raster-order output."""
    order = divprune_order(space_features(tokens, space), k)
    return selection(order.sort(dim=1).values)
