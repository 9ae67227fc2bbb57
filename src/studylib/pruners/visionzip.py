"""``visionzip`` — VisionZip: dominant tokens by [CLS] attention + merged contextual tokens.

Official: dvlab-research/VisionZip ``CLIPVisionTower_VisionZip.forward`` (pruners.md §4).

A budget of ``K`` LLM tokens is split into ``D`` dominant + ``C`` contextual tokens
(``K = D + C``); the ``D`` dominant tokens **count the CLS token**, exactly as the official
``visionzip(model, dominant=D, contextual=C)`` which keeps CLS + the top ``D − 1`` patches::

    dominant  = [CLS] ∪ top_{D−1}( a ),   a_j = CLS-row attention of layer −2 (head sum/mean)
    remaining = the other M = N − (D − 1) patches, in raster order
    targets   = remaining[0, s, 2s, …][:C],   s = max(1, M // C)
    assign(i) = argmax_t cos(k̂_i, k̂_t)        (k = head-mean keys of layer −2, non-targets i)
    ctx_t     = h_t + mean_{i → t} h_i          (count clamped ≥ 1: an empty cluster gives h_t)

``Selection.merged`` = ``[h_CLS, dominant patch features in raster order, ctx_1..ctx_C]``,
``(B, K, D_v)`` pre-projector features (the adapter projects them); ``Selection.indices`` = the
``D − 1`` dominant patches (raster order).

Split: the official splits are 64 = 54 + 10, 128 = 108 + 20, 192 = 162 + 30 (README, SCOPE's
``builder.py``), i.e. ``C = K·10/64``.  We use ``C = floor(K · contextual_ratio + 1/2)`` with
``contextual_ratio = 0.15625 = 10/64``, which reproduces all three official splits (32 → 27 + 5),
clamped to ``C ≤ K − 1`` so that CLS always fits.

Deviations: ``C = 0`` (tiny budgets) gives no contextual tokens (the official code divides by
zero); ties in the dominant top-k are broken towards the lower index (stable sort); with
``K = N`` the LLM still sees ``N`` tokens, but CLS + ``N − C − 1`` patches + ``C`` merges of the
other ``C + 1`` patches (every patch is accounted for, none is kept "as is" beyond the dominant
set) — VisionZip has no "keep everything" setting.
"""

from __future__ import annotations

import math

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import as_work, l2_normalize, selection, stable_desc_order
from studylib.pruners.registry import Param, register


def split_budget(k: int, contextual_ratio: float) -> tuple[int, int]:
    """``(dominant D incl. CLS, contextual C)`` with ``D + C = k``."""
    c = int(math.floor(k * contextual_ratio + 0.5))
    c = max(0, min(c, k - 1))
    return k - c, c


def contextual_tokens(hidden: torch.Tensor, keys: torch.Tensor, c: int) -> torch.Tensor:
    """VisionZip merge of ``hidden`` ``(B, M, D)`` into ``c`` tokens using ``keys`` ``(B, M, Dh)``."""
    b, m, d = hidden.shape
    if c == 0:
        return hidden.new_zeros(b, 0, d)
    step = max(1, m // c)
    target_pos = torch.arange(0, m, step, device=hidden.device)[:c]
    is_target = torch.zeros(m, dtype=torch.bool, device=hidden.device)
    is_target[target_pos] = True
    kn = l2_normalize(keys)
    targets = kn[:, target_pos]  # (B, C, Dh)
    others = kn[:, ~is_target]  # (B, M - C, Dh)
    sim = torch.bmm(others, targets.transpose(1, 2))  # (B, M - C, C)
    assign = torch.zeros_like(sim).scatter_(2, sim.argmax(dim=2, keepdim=True), 1.0)
    counts = assign.sum(dim=1).clamp(min=1).unsqueeze(-1)  # (B, C, 1)
    hw = as_work(hidden).to(sim.dtype)
    aggregated = torch.bmm(assign.transpose(1, 2), hw[:, ~is_target]) / counts
    return (hw[:, target_pos] + aggregated).to(hidden.dtype)


@register(
    "visionzip",
    Param("contextual_ratio", float, 0.15625, "C = round(K·ratio) contextual tokens (10/64: official splits)",
          alias="cr", low=0.0, high=1.0, high_open=True),
    summary="VisionZip: CLS + dominant by CLS attention + merged contextual tokens",
    merges=True,
    family="saliency", source="dvlab-research/VisionZip (pruners.md §4)",
)
def visionzip(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, contextual_ratio: float) -> Selection:
    """VisionZip dominant (CLS counted) + contextual merges; returns ``merged`` ``(B, K, D_v)``."""
    b, n = tokens.batch_size, tokens.num_patches
    dom, c = split_budget(k, contextual_ratio)
    order = stable_desc_order(as_work(tokens.cls_attention))
    dominant = order[:, : dom - 1].sort(dim=1).values  # (B, D-1) raster order
    rest = order[:, dom - 1 :].sort(dim=1).values  # (B, M) raster order
    rows = torch.arange(b, device=dominant.device).unsqueeze(1)
    feats = tokens.features
    ctx = contextual_tokens(feats[rows, rest], tokens.keys[rows, rest], c)
    merged = torch.cat([tokens.cls_feature.unsqueeze(1).to(feats.dtype), feats[rows, dominant], ctx], dim=1)
    return selection(dominant, merged)
