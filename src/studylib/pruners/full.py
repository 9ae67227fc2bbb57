"""``full`` — no pruning: the LLM sees all ``N`` patch tokens in raster order.

``indices = [0, 1, ..., N-1]``.  The budget must equal ``N`` (a smaller ``k`` is an error rather
than silently ignored, so a result row can never claim a budget that was not applied).
"""

from __future__ import annotations

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import selection
from studylib.pruners.registry import register


@register("full", summary="no pruning (all N tokens)", aliases=("none",),
          family="unpruned", source="reference (seed 000 Table 1, K = 576)")
def full(tokens: VisualTokens, k: int, query: QueryContext | None = None) -> Selection:
    """No pruning: keep every token (``k`` must equal ``N``)."""
    n = tokens.num_patches
    if k != n:
        raise ValueError(f"full keeps all N = {n} tokens; call it with k = {n} (got k = {k})")
    idx = torch.arange(n, device=tokens.features.device).expand(tokens.batch_size, n)
    return selection(idx)
