"""``vispruner`` — VisPruner: important tokens by [CLS] attention + diverse tokens by duplicate removal.

Official: Theia-4869/VisPruner ``llava/model/llava_arch.py::encode_images`` (pruners.md §6).

With budget ``K`` and important ratio ``r``: ``K_imp = int(K·r)``, ``K_div = K − K_imp``::

    order     = argsort(a, descending)                 a = CLS-row attention, layer −2
    important = order[:K_imp];  residual = order[K_imp:]   (descending attention)
    X̂ = X / ||X||                                       X = penultimate features (pre-projector)
    while K_div > 0:
        R = |residual|;  r_t = min(8, R − K_div);  stop if r_t ≤ 0
        A = residual[0::2];  B = residual[1::2]
        s_a = max_{b∈B} cos(X̂_a, X̂_b)
        drop the r_t members of A with the largest s_a
        residual = [A kept, in descending s_a order] ++ B
    keep = important ∪ residual   (raster order)

The loop ends with ``|residual| = K_div`` exactly, so ``K`` tokens are kept.

Defaults: ``r = 0.5`` (argparse default ``--important_ratio``); README examples 128 tokens with
r = 0.5 and 64 tokens with r = 0.75.

Rounds the official code cannot run (pruners.md §13): it only runs when every round has an even
``R`` and ``R/2 ≥ r_t``; otherwise it raises (odd ``R``: its gather assumes ``R//2`` rows of A; too
few rows to drop: negative size) or, in one corner case, keeps ``K − 1`` tokens.  We apply the same
rule with ``A`` = all ``ceil(R/2)`` even positions and ``r_t = min(8, R − K_div, |A|)``, which is
identical whenever the official code runs and returns exactly ``K`` tokens for every valid ``K`` and
``r``.  Ties (equal ``s_a`` or attention) keep the lower position first (stable sorts; the official
``argsort`` is unstable).  Similarities are precomputed once (``N × N``, float32, float64 for float64
inputs — the reproducible reference per the errata; once per :class:`VisualTokens` object, shared by
every config run on it) and each round's block ``S[A, B]`` is gathered by ``index_select`` /
``gather`` (the same values as an advanced-indexing gather, several times faster).
"""

from __future__ import annotations

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import as_work, selection, stable_desc_order, token_cosine
from studylib.pruners.registry import Param, register


def vispruner_select(sim: torch.Tensor, attention: torch.Tensor, k: int, important_ratio: float,
                     k_imp: int | None = None) -> torch.Tensor:
    """VisPruner selection from a ``(B, N, N)`` similarity and ``(B, N)`` attention; raster order.

    ``k_imp`` overrides ``int(k · important_ratio)`` (used by the erank-adaptive mix).
    """
    if k_imp is None:
        k_imp = int(k * important_ratio)
    k_div = k - k_imp
    order = stable_desc_order(attention)
    important = order[:, :k_imp]
    residual = order[:, k_imp:]
    while k_div > 0:
        r_len = residual.shape[1]
        a_idx, b_idx = residual[:, 0::2], residual[:, 1::2]
        drop = min(8, r_len - k_div, a_idx.shape[1])
        if drop <= 0:
            break
        s_a = _block_max(sim, a_idx, b_idx)
        keep_a = stable_desc_order(s_a)[:, drop:]
        residual = torch.cat([a_idx.gather(1, keep_a), b_idx], dim=1)
    chosen = torch.cat([important, residual], dim=1) if k_div > 0 else important
    return chosen.sort(dim=1).values


def _block_max(sim: torch.Tensor, a_idx: torch.Tensor, b_idx: torch.Tensor) -> torch.Tensor:
    """``s_a = max_{b ∈ B} S_ab`` ``(B, |A|)``: the block ``S[A, B]`` gathered by two ``index_select``
    (one image) or two ``gather`` (a batch) — the same values as one advanced-indexing gather
    ``sim[rows, A, B]``, several times faster — then ``amax`` (exact)."""
    b, n, _ = sim.shape
    if b == 1:
        return sim[0].index_select(0, a_idx[0]).index_select(1, b_idx[0]).amax(dim=1).unsqueeze(0)
    rows = sim.gather(1, a_idx.unsqueeze(2).expand(b, a_idx.shape[1], n))  # (B, |A|, N)
    return rows.gather(2, b_idx.unsqueeze(1).expand(b, a_idx.shape[1], b_idx.shape[1])).amax(dim=2)


@register(
    "vispruner",
    Param("important_ratio", float, 0.5, "fraction of K chosen by CLS attention", alias="r", low=0.0, high=1.0, key=True),
    summary="VisPruner: important (CLS attention) + diverse (duplicate removal, <=8 per round)",
    family="hybrid", source="Theia-4869/VisPruner (pruners.md §6)",
)
def vispruner(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, important_ratio: float) -> Selection:
    """VisPruner important + diverse tokens, raster order."""
    sim = token_cosine(tokens, "vision")
    return selection(vispruner_select(sim, as_work(tokens.cls_attention), k, important_ratio))
