"""``hired`` — HiRED: a [CLS]-attention token budget per image partition, the top tokens within each.

Official: hasanar1f/HiRED (AAAI'25), a patched transformers fork read at commit 502d6dd:
``transformers/src/transformers/models/llava_next/modeling_llava_next.py`` (``ViT_Attn_Hook``,
``HiRED_token_selection``, ``HiRED_sub_img_budgets``: the multi-partition method for LLaVA-NeXT),
``transformers/src/transformers/models/llava/modeling_llava.py`` (``HiRED_token_selection``: the
"single image partition version", LLaVA-1.5) and ``accuracy_benchmarks/*.sh``
(``token_budget_rate = 0.2``, ``alpha = 0.5``).  Stage ``vision``, question-blind.

Scores.  ``a^(l)_j = Σ_h softmax(q_CLS k_jᵀ / √d)`` — the [CLS] row of ViT layer ``l``'s attention over
all keys (recomputed from the hooked ``q_proj`` / ``k_proj`` outputs), patch columns, summed over
heads.  Token selection uses ``l = 22`` (LLaVA's layer −2: ``VisualTokens.cls_attention``, whose head
mean ranks the same as the sum); the budget split uses ``l = 0``, the first layer.

Multi-partition rule (LLaVA-NeXT: the full image as the base tile plus ``P − 1`` sub-images of
``N`` tokens each, budget rate ``r``, share ``α``)::

    B      = int(P · N · r)                       total budget
    B_full = min(int(α · B), N)                   top-B_full of the full image by a^(22)
    B_sub  = min(B − B_full, (P − 1) · N)
    M      = top-int((1 − α) · N) tokens of the full image by a^(0)
    b_i    = min(int(B_sub · |M ∩ region_i| / |M|), N)      sub-image i keeps its top-b_i by a^(22)

Single partition (LLaVA-1.5, ``P = 1``)::

    keep = top-int(N · r) by a^(22)               — FasterVLM's rule, the registered ``saliency``

Our rule.  The budget is ``K`` tokens (``r = K / N``; ``int(N · K/N) = K``), kept in raster order,
ties to the lower index (the official ``topk`` order is unspecified).

* One raster grid (LLaVA-1.5, the toy model, Qwen2.5-VL's merged grid): the official single-
  partition code, top-``K`` by [CLS] attention — the same selection as ``saliency`` (tested).  The
  toy's 144 tokens are one 12 × 12 partition (its 96-pixel image is one CLIP tile), so on the toy
  HiRED *is* ``saliency``; ``alpha`` has no effect there.
* LLaVA-NeXT (``VisualTokens.layout`` = base tile, then the unpadded high-resolution grid):
  ``K_full = min(int(α · K), N_base)`` top base-tile tokens, and the other ``K − K_full`` (at most the
  grid's size; any excess goes back to the base tile) the top tokens of the stitched
  high-resolution grid by each tile's own layer −2 [CLS] attention.  **Deviation:** the official
  split of the sub-image budget over the sub-images (``b_i`` above, from the full image's layer-0
  attention mapped onto the sub-image grid) is not reproduced — the encoder records only layer
  −2's [CLS] row, and the unpadded stitched grid no longer marks the tile borders — so the
  sub-images compete through one top-``K_sub`` over their attention rows.  (The official map is
  ``M.reshape(n_h, n_w, −1)`` over the flattened ``N`` tokens: it assigns sub-image ``i`` the ``i``-th
  band of consecutive raster rows of the full image, not its spatial quadrant.)  The official
  ``int`` floors keep up to ``P − 1`` tokens fewer than ``B``; we keep exactly ``K``.
"""

from __future__ import annotations

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import as_work, selection, top_k_raster
from studylib.pruners.registry import Param, register


def partition_budgets(k: int, alpha: float, n_full: int, n_sub: int) -> tuple[int, int]:
    """``(K_full, K_sub)``: ``K_full = min(int(α·K), N_full)``, the rest to the sub-images (at most
    their ``N_sub`` tokens; what they cannot hold goes back to the full image)."""
    k_full = min(int(alpha * k), n_full)
    k_sub = min(k - k_full, n_sub)
    return k - k_sub, k_sub


def hired_select(attention: torch.Tensor, k: int, alpha: float, n_full: int | None = None) -> torch.Tensor:
    """HiRED's kept indices ``(B, K)``, ascending.  ``attention`` ``(B, N)``: [CLS] attention of
    layer −2; ``n_full``: the full image's leading token count (LLaVA-NeXT's base tile), ``None``
    for one partition."""
    if n_full is None:
        return top_k_raster(attention, k)
    k_full, k_sub = partition_budgets(k, alpha, n_full, attention.shape[1] - n_full)
    full = top_k_raster(attention[:, :n_full], k_full)
    sub = top_k_raster(attention[:, n_full:], k_sub) + n_full
    return torch.cat([full, sub], dim=1)


@register(
    "hired",
    Param("alpha", float, 0.5, "share of the budget for the full image (LLaVA-NeXT only)", low=0.0, high=1.0),
    summary="HiRED: [CLS]-attention budget per image partition, top tokens in each (one partition: top-K)",
    family="saliency", source="hasanar1f/HiRED modeling_llava(_next).py HiRED_token_selection",
)
def hired(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, alpha: float) -> Selection:
    """HiRED (question-blind), raster order."""
    n_full = None
    if len(tokens.layout) == 2:  # LLaVA-NeXT: the base tile (the full image), then the sub-image grid
        rows, cols = tokens.layout[0]
        n_full = rows * cols
    return selection(hired_select(as_work(tokens.cls_attention), k, alpha, n_full))
