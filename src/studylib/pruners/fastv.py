"""``fastv`` — FastV: inside the LLM, keep the image tokens the last prompt token attends to most.

Official: pkunlp-icler/FastV (pruners.md §5).  Stage ``llm``: the model adapter runs the prefill up
to decoder layer ``layer − 1``, takes that layer's post-softmax attention of the **last prompt
token** over the image span, averaged over heads (every official variant uses this row, not the
paper's "attention received from all tokens"), and before decoder layer ``layer`` keeps::

    keep = top_K( attn[layer − 1][-1, image span] )      (raster order; non-image tokens all kept)

Survivors keep their original position ids (official in-place / KV-cache variants).  Defaults:
``layer = 2`` (paper's K = 2, "1/2 tokens after layer 2"); the budget is given as the number of
image tokens kept (``attention_rank`` in the official code; R = 50 % ↔ K = 288 for N = 576).

:func:`fastv_rule` is the pure selection rule; ``get_pruner("fastv").rule`` is the same function.
Calling the pruner on :class:`VisualTokens` raises (it needs the LLM).  Ties: lower index first
(stable sort; official ``topk`` order is unspecified).
"""

from __future__ import annotations

import torch

from studylib.pruners._similarity import as_work, check_budget, top_k_raster
from studylib.pruners.registry import Param, register


@register(
    "fastv",
    Param("layer", int, 2, "decoder layer before which tokens are pruned (attention of layer-1)", low=1, key=True),
    stage="llm",
    summary="FastV: top-K image tokens by the last prompt token's attention at layer K-1 (in-LLM)",
    family="in-LLM", source="pkunlp-icler/FastV (pruners.md §5)",
)
def fastv_rule(attention: torch.Tensor, k: int) -> torch.Tensor:
    """Top-``k`` image tokens by attention; ``attention`` ``(B, N)`` or ``(B, H, N)`` (head-averaged).

    Returns ``(B, k)`` indices into the image span, ascending.
    """
    if attention.dim() == 3:
        attention = attention.mean(dim=1)
    if attention.dim() != 2:
        raise ValueError(f"fastv: attention must be (B, N) or (B, H, N), got {tuple(attention.shape)}")
    k = check_budget(k, attention.shape[1], "fastv")
    return top_k_raster(as_work(attention), k)
