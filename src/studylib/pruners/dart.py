"""``dart`` — DART: duplicate-aware pruning inside the LLM around pivot tokens.

Official: ZichenWen1/DART ``DART.get_retained_image_token`` (read via upstream commit 5a19452;
pruners.md §10).  Stage ``llm``, before decoder layer ``layer`` (default 2), prefill only.

Inputs at layer ``K = layer``: ``keys`` = key states of layer ``K − 1`` (post-RoPE, heads
concatenated, ``(B, L, H·d)``; ``(B, H, L, d)`` is accepted), ``hidden`` = hidden states leaving
layer ``K − 1`` passed through the model's final RMSNorm ``(B, L, D)``.  Rule::

    img_pivots = top-P_img image tokens by ||k_i||_1
    txt_pivots = top-P_txt tokens after the image span by ||k_i||_1
    cand = image tokens − img_pivots
    for each pivot p:  take the q_p candidates with the LOWEST cos(h_p, h_i); remove them from cand
    keep = img_pivots ∪ taken           (raster order; survivors keep original position ids)

Defaults: ``layer = 2``, ``P_img = 4``, ``P_txt = 4`` (scripts ``pivot_image_token=4``,
``pivot_text_token=4``).

Budget (documented deviation): the official code takes ``q_p = TOPK = max_num_trunction //
(P_img + P_txt)`` per pivot and so keeps ``P_img + 8·TOPK`` tokens (132 for its "128" setting).
We keep exactly ``K``: the ``K − P_img`` non-pivot slots are split as evenly as possible over the
pivots, ``q_p = ⌊(K − P_img)/P⌋`` plus one for the first ``(K − P_img) mod P`` pivots in iteration
order.  When ``K − P_img`` is a multiple of ``P`` this is the official rule (``K = 132`` reproduces
the official "128" run).  ``K ≤ P_img`` keeps the ``K`` image pivots with the largest key norm.
If fewer than ``P_txt`` text tokens follow the image (or are unmasked), all of them are pivots.

Pivot order: the official loop iterates a Python ``set`` of the pivot indices (hash order); we
iterate in ascending sequence position (image pivots, then text pivots).  Ties: lower index.
Only the selection rule lives here; the adapter's decoder-layer hook slices hidden states,
position ids and masks.  Calling the pruner on :class:`VisualTokens` raises.
"""

from __future__ import annotations

import torch

from studylib.pruners._similarity import as_work, check_budget, l2_normalize, mask_to_indices, stable_desc_order
from studylib.pruners.registry import Param, register


@register(
    "dart",
    Param("layer", int, 2, "decoder layer before which tokens are pruned", low=1, key=True),
    Param("pivot_image", int, 4, "image pivots (largest key L1 norm)", alias="pi", low=0),
    Param("pivot_text", int, 4, "text pivots after the image span", alias="pt", low=0),
    stage="llm",
    summary="DART: keep the tokens least similar to key-norm pivots (in-LLM, exactly K)",
    family="in-LLM", source="ZichenWen1/DART (pruners.md §10)",
)
def dart_rule(
    keys: torch.Tensor,
    hidden: torch.Tensor,
    image_start: int,
    num_image: int,
    k: int,
    *,
    pivot_image: int = 4,
    pivot_text: int = 4,
    text_mask: torch.Tensor | None = None,
) -> torch.Tensor:
    """DART selection; returns ``(B, k)`` indices into the image span ``[0, num_image)``, ascending.

    ``text_mask`` ``(B, L)`` optional: False marks padding (never a text pivot).
    """
    if keys.dim() == 4:  # (B, H, L, d) -> (B, L, H*d)
        keys = keys.transpose(1, 2).reshape(keys.shape[0], keys.shape[2], -1)
    b, length, _ = keys.shape
    if hidden.shape[:2] != (b, length):
        raise ValueError(f"dart: hidden {tuple(hidden.shape)} does not match keys {tuple(keys.shape)}")
    n = num_image
    if image_start < 0 or n < 1 or image_start + n > length:
        raise ValueError(f"dart: image span [{image_start}, {image_start + n}) outside sequence of length {length}")
    k = check_budget(k, n, "dart")
    dev = keys.device
    rows = torch.arange(b, device=dev)
    norm1 = as_work(keys).abs().sum(dim=2)  # (B, L)
    img_norm = norm1[:, image_start : image_start + n]
    p_img = min(pivot_image, n)
    by_norm = stable_desc_order(img_norm)
    if k <= p_img:
        return by_norm[:, :k].sort(dim=1).values

    img_pivots = by_norm[:, :p_img]  # relative indices
    h = l2_normalize(hidden)
    h_img = h[:, image_start : image_start + n]  # (B, N, D)

    # text pivots: positions after the image span (valid ones), by key norm
    txt_norm = norm1[:, image_start + n :]
    valid = torch.ones_like(txt_norm, dtype=torch.bool)
    if text_mask is not None:
        valid = text_mask[:, image_start + n :].to(torch.bool)
    n_txt = min(pivot_text, txt_norm.shape[1])
    txt_rel = stable_desc_order(txt_norm.masked_fill(~valid, float("-inf")))[:, :n_txt].sort(dim=1).values
    txt_active = valid.gather(1, txt_rel)  # padding picked only when too few valid tokens: inactive
    txt_pivots = txt_rel + image_start + n  # absolute positions, ascending

    # pivot hidden states in iteration order: image pivots (ascending position), then text pivots
    img_piv_sorted = img_pivots.sort(dim=1).values
    piv_h = torch.cat([h_img[rows[:, None], img_piv_sorted], h[rows[:, None], txt_pivots]], dim=1)  # (B, P, D)
    active = torch.cat([torch.ones(b, p_img, dtype=torch.bool, device=dev), txt_active], dim=1)  # (B, P)
    n_piv = active.sum(dim=1)  # (B,)
    rest = k - p_img
    base = rest // n_piv
    extra = rest - base * n_piv
    slot = active.long().cumsum(dim=1) - 1  # index among active pivots
    quota = torch.where(active, base.unsqueeze(1) + (slot < extra.unsqueeze(1)).long(), torch.zeros_like(slot))

    chosen = torch.zeros(b, n, dtype=torch.bool, device=dev)
    chosen[rows[:, None], img_pivots] = True
    sims = torch.bmm(piv_h, h_img.transpose(1, 2))  # (B, P, N)
    arange_n = torch.arange(n, device=dev).unsqueeze(0)
    for p in range(piv_h.shape[1]):
        score = sims[:, p].masked_fill(chosen, float("inf"))
        order = torch.sort(score, dim=1, stable=True).indices  # lowest similarity first
        take = arange_n < quota[:, p].unsqueeze(1)
        chosen[rows[:, None].expand(b, n)[take], order[take]] = True
    return mask_to_indices(chosen, k, "dart")
