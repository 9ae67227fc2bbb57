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

Distances are squared L2 via ``||x_j||² − 2 x_j·x_m + ||x_m||²`` (clamped at 0; same argmax as
L2), all ``N × N`` of them from one Gram matrix (a single GEMM) and three elementwise passes.
Fast algorithm (identical picks to the naive loop of ``_reference.py``, which recomputes
``min_{s ∈ S}`` over every selected row at each step): DivPrune's greedy max–min
(:func:`studylib.pruners.divprune.max_min_order`) on that matrix — a running minimum updated with
one row per step, exact because ``min`` is exact; O(N) per step instead of O(|S|·N).
Ties: first maximal index.
"""

from __future__ import annotations

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import as_work, selection, space_features, work_dtype
from studylib.pruners.divprune import SPACE, max_min_order, most_isolated
from studylib.pruners.registry import Param, register


def sq_distance_matrix(x: torch.Tensor) -> torch.Tensor:
    """``(B, N, D) -> (B, N, N)`` squared L2 distances ``((||x_m||² − 2 x_j·x_m) + ||x_j||²)⁺``."""
    x = as_work(x)
    gram = torch.bmm(x, x.transpose(1, 2))  # one GEMM
    sq = (x * x).sum(dim=2)  # (B, N)
    return ((sq.unsqueeze(1) - 2.0 * gram) + sq.unsqueeze(2)).clamp_min(0.0)


def fps_order(x: torch.Tensor, k: int, first: torch.Tensor) -> torch.Tensor:
    """Farthest point sampling on ``x`` ``(B, N, D)`` from ``first`` ``(B,)``; greedy order."""
    return max_min_order(sq_distance_matrix(x), k, first)


def token_sq_distance(tokens: VisualTokens, space: str) -> torch.Tensor:
    """:func:`sq_distance_matrix` of ``space``'s features, once per ``tokens`` object (shared: read only)."""
    key = ("sq_distance", space, work_dtype(space_features(tokens, space)))
    return tokens.derived(key, lambda t: sq_distance_matrix(space_features(t, space)))


def token_fps_order(tokens: VisualTokens, space: str, k: int, first: torch.Tensor) -> torch.Tensor:
    """``fps_order(space's features, k, first)`` with the squared distances memoised per ``tokens`` object."""
    return max_min_order(token_sq_distance(tokens, space), k, first)


def _isolated(t: VisualTokens, space: str) -> torch.Tensor:
    xw = as_work(space_features(t, space))
    return most_isolated(torch.cdist(xw, xw))


def _first_pick(tokens: VisualTokens, space: str, start: str) -> torch.Tensor:
    if start == "first":
        return torch.zeros(tokens.batch_size, dtype=torch.long, device=tokens.features.device)
    if start == "saliency":
        return torch.sort(tokens.cls_attention, dim=1, descending=True, stable=True).indices[:, 0]
    return tokens.derived(("fps_isolated", space, work_dtype(space_features(tokens, space))),
                          lambda t: _isolated(t, space))


@register(
    "fps",
    SPACE,
    Param("start", str, "first", "initial point: token 0, most isolated, or highest CLS attention",
          choices=("first", "isolated", "saliency")),
    summary="farthest point sampling, L2 (seed 002 appendix C)",
    family="diversity", source="seed 002 appendix C (FPSPruner)",
)
def fps(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, space: str, start: str) -> Selection:
    """Farthest point sampling (L2), raster-order output."""
    order = token_fps_order(tokens, space, k, _first_pick(tokens, space, start))
    return selection(order.sort(dim=1).values)
