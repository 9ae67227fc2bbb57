"""``saliency`` — FasterVLM: keep the top-``K`` tokens by [CLS] attention.

    keep = top_K( a ),   a_j = mean_h attentions[-2][:, h, 0, 1 + j]

(CLS query row of the penultimate ViT layer, softmax over all 577 keys, not renormalised, mean
over heads — ``VisualTokens.cls_attention``.)  Kept tokens are returned in raster order.
Official: Theia-4869/FasterVLM ``encode_images`` (pruners.md §11).  Seed 000's "saliency-only"
baseline is this rule.  Ties: ``torch.topk`` leaves tie order unspecified; we use a stable sort,
so among equal scores the lower index wins.
"""

from __future__ import annotations

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import as_work, selection, top_k_raster
from studylib.pruners.registry import register


@register("saliency", summary="FasterVLM: top-K by [CLS] attention", aliases=("fastervlm",),
          family="saliency", source="Theia-4869/FasterVLM (pruners.md §11); seed 000 'saliency-only'")
def saliency(tokens: VisualTokens, k: int, query: QueryContext | None = None) -> Selection:
    """Top-``K`` by CLS attention (FasterVLM), raster order."""
    return selection(top_k_raster(as_work(tokens.cls_attention), k))
