"""``fps`` — farthest point sampling with Euclidean distance (seed 002, appendix C).

    d(p_j) = min_{s ∈ S} ||p_j − s||_2 ,     p_{i_t} = argmax_{p_j ∈ P \\ S} d(p_j)

repeated until ``K`` points are chosen; output in raster order.  Seed 002 uses it as
"FPPSPruner", the plain diversity baseline next to DivPrune.

Unpublished choices (documented, exposed as parameters):

* ``start`` — the seed says only "starting from an initial point".  Default ``first``: token 0,
  the usual deterministic FPS convention; ``isolated``: DivPrune's most-isolated token (largest
  nearest-neighbour distance); ``saliency``: the highest-CLS-attention token.
* ``space`` — default ``llm`` (projected embeddings, the space of DivPrune, the method it is
  compared with); ``vision`` = pre-projector features.

Distances are squared L2 via ``||x||² − 2 x·y + ||y||²`` (clamped at 0; same argmax as L2) from
one Gram matrix (a single GEMM); each step gathers one row and updates a running minimum — no
recomputation over the selected set.
Ties: first maximal index.
"""

from __future__ import annotations

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import as_work, selection
from studylib.pruners.divprune import SPACE, space_features
from studylib.pruners.registry import Param, register


def fps_order(x: torch.Tensor, k: int, first: torch.Tensor) -> torch.Tensor:
    """Farthest point sampling on ``x`` ``(B, N, D)`` from ``first`` ``(B,)``; greedy order."""
    x = as_work(x)
    b, n, _ = x.shape
    rows = torch.arange(b, device=x.device)
    gram = torch.bmm(x, x.transpose(1, 2))  # one GEMM; rows are gathered per step
    sq = (x * x).sum(dim=2)  # (B, N)
    neg_inf = torch.tensor(float("-inf"), dtype=x.dtype, device=x.device)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=x.device)
    order = torch.empty(b, k, dtype=torch.long, device=x.device)

    def dist_to(j: torch.Tensor) -> torch.Tensor:
        return (sq - 2.0 * gram[rows, j, :] + sq[rows, j].unsqueeze(1)).clamp_min(0.0)

    j = first
    order[:, 0] = j
    chosen[rows, j] = True
    running = dist_to(j)
    for t in range(1, k):
        j = torch.where(chosen, neg_inf, running).argmax(dim=1)
        order[:, t] = j
        chosen[rows, j] = True
        torch.minimum(running, dist_to(j), out=running)
    return order


def _first_pick(tokens: VisualTokens, x: torch.Tensor, start: str) -> torch.Tensor:
    b, n = tokens.batch_size, tokens.num_patches
    if start == "first":
        return torch.zeros(b, dtype=torch.long, device=x.device)
    if start == "saliency":
        return torch.sort(tokens.cls_attention, dim=1, descending=True, stable=True).indices[:, 0]
    if n < 2:
        return torch.zeros(b, dtype=torch.long, device=x.device)
    xw = as_work(x)
    d = torch.cdist(xw, xw)
    return torch.kthvalue(d, 2, dim=1).values.argmax(dim=1)


@register(
    "fps",
    SPACE,
    Param("start", str, "first", "initial point: token 0, most isolated, or highest CLS attention",
          choices=("first", "isolated", "saliency")),
    summary="farthest point sampling, L2 (seed 002 appendix C)",
)
def fps(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, space: str, start: str) -> Selection:
    """Farthest point sampling (L2), raster-order output."""
    x = space_features(tokens, space)
    order = fps_order(x, k, _first_pick(tokens, x, start))
    return selection(order.sort(dim=1).values)
