"""``scope`` — SCOPE: greedy facility-location coverage gain × saliency^alpha (+ gap power p).

Official: kinredon/SCOPE ``scope/clip_encoder.py::SCOPE`` (path ``BASELINE=SCOPE``), pruners.md §2.

Inputs: ``X`` = penultimate-layer patch features before the projector
(``VisualTokens.features``); ``S = X̂ X̂ᵀ`` cosine similarity (rows L2-normalised);
saliency ``a_j`` = CLS-row attention of the same layer.  Greedy, ``K`` steps, with the running
coverage ``m_i = max(0, max_{t∈T} S_it)`` (``m = 0`` for the empty set)::

    gain_j  = Σ_{i=1..N} max(0, S_ij − m_i)^p           (p = 1: the official code exactly)
    score_j = gain_j · a_j^alpha        (combine = "mul", official default)
            = gain_j + a_j^alpha        (combine = "add", official env COMBINED='add')
    j*      = argmax_{j ∉ T} score_j   (first maximum wins);  m_i ← max(m_i, S_ij*)

The gap power ``p`` is seed 000 §5 ("gap power exponent"): ``p = 1`` is the linear gain of the
official code; ``p > 1`` weighs large uncovered gaps more.  ``alpha = 0`` is pure coverage
(seed 000's best-calibrated setting), ``alpha = 1`` the official default.  Kept tokens are
returned in raster order (official ``masked_select``); the CLS token is not kept.

Defaults as official: ``alpha = 1``, ``p = 1``, ``combine = mul``.

Bounds: ``alpha`` in [0, 10] and ``p`` in (0, 10].  Saliencies are head-mean attention shares
(``a_j <= 1``, typically ~1/N) and gaps are cosine differences (``<= 2``), so beyond 10 the
float32 terms ``a_j^alpha`` and ``gap^p`` underflow to 0 for most tokens (or, with the head-sum
scale of ``combine = add``, overflow): every score ties and the greedy step degenerates into
index order.  The studied range (seed 000: alpha 0..1, p 0.5..3) is well inside.

Deviations / choices:

* ``VisualTokens.cls_attention`` is the **head mean**; the official code sums over the 16 heads.
  For ``combine = mul`` the scale is irrelevant (pruners.md §13); for ``combine = add`` we multiply
  by ``heads`` (default 16, CLIP ViT-L/14) to reproduce the official head-sum scale.
* Similarities in float32 (float64 for float64 inputs) instead of the official fp16.  With
  ``alpha = 0`` exact ties occur (pruners.md §13); the first maximal index wins.
* Each step evaluates the gain of every candidate against the running maximum ``m`` (O(N²) per
  step, vectorised over the batch; no recomputation over the selected set), as the official loop.
"""

from __future__ import annotations

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import as_work, selection, token_cosine
from studylib.pruners.registry import Param, register


def facility_location_order(
    sim: torch.Tensor,
    k: int,
    saliency: torch.Tensor | None = None,
    *,
    alpha: float | torch.Tensor = 1.0,
    gap_power: float = 1.0,
    combine: str = "mul",
) -> torch.Tensor:
    """Greedy SCOPE selection on a ``(B, N, N)`` similarity; returns ``(B, k)`` in greedy order.

    ``saliency`` ``(B, N)`` (``None`` = pure coverage, i.e. ``alpha = 0``).  ``alpha`` is one
    exponent, or one per image ``(B,)`` (``scope_adaptive``); a tensor whose entries are all equal
    is used as that one number, so the weights are bit-identical to the scalar call.
    """
    b, n, _ = sim.shape
    # st[b, j, i] = S[b, i, j]: the gain of column j is then a reduction over the last dim
    st = sim.transpose(1, 2).contiguous()
    if isinstance(alpha, torch.Tensor) and bool((alpha == alpha.reshape(-1)[0]).all()):
        alpha = float(alpha.reshape(-1)[0])
    if isinstance(alpha, torch.Tensor):
        weight = torch.ones(b, n, dtype=sim.dtype, device=sim.device) if saliency is None else (
            saliency.to(sim.dtype).pow(alpha.to(device=sim.device, dtype=sim.dtype).unsqueeze(1)))
    elif saliency is None or alpha == 0.0:
        weight = torch.ones(b, n, dtype=sim.dtype, device=sim.device)
    else:
        weight = saliency.to(sim.dtype).pow(alpha)
    m = torch.zeros(b, n, dtype=sim.dtype, device=sim.device)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=sim.device)
    order = torch.empty(b, k, dtype=torch.long, device=sim.device)
    rows = torch.arange(b, device=sim.device)
    gap = torch.empty_like(st)
    neg_inf = torch.tensor(float("-inf"), dtype=sim.dtype, device=sim.device)
    for t in range(k):
        torch.sub(st, m.unsqueeze(1), out=gap)  # gap[b, j, i] = S_ij - m_i
        gap.clamp_(min=0)
        if gap_power == 2.0:
            gap.mul_(gap)
        elif gap_power != 1.0:
            gap.pow_(gap_power)
        gain = gap.sum(dim=2)
        score = gain * weight if combine == "mul" else gain + weight
        score = torch.where(chosen, neg_inf, score)
        j = score.argmax(dim=1)
        order[:, t] = j
        chosen[rows, j] = True
        torch.maximum(m, sim[rows, :, j], out=m)
    return order


def scope_inputs(tokens: VisualTokens, heads: int = 16) -> tuple[torch.Tensor, torch.Tensor]:
    """SCOPE's similarity ``S`` ``(B, N, N)`` (cosine of the pre-projector features) and saliency
    ``(B, N)`` (CLS attention, head mean × ``heads`` = the official head-sum scale)."""
    sim = token_cosine(tokens, "vision")
    return sim, as_work(tokens.cls_attention).to(sim.dtype) * heads


@register(
    "scope",
    Param("alpha", float, 1.0, "saliency exponent (0 = pure coverage)", low=0.0, high=10.0, key=True),
    Param("gap_power", float, 1.0, "gap power p of seed 000 §5 (1 = official)", alias="p", low=0.0, low_open=True,
          high=10.0, key=True),
    Param("combine", str, "mul", "gain · a^alpha (mul, official) or gain + a^alpha (add)", choices=("mul", "add")),
    Param("heads", int, 16, "attention heads: head-mean → head-sum scale (matters for add only)", low=1),
    summary="SCOPE: greedy facility-location coverage × saliency^alpha",
    family="coverage", source="kinredon/SCOPE (pruners.md §2); seed 000",
)
def scope(
    tokens: VisualTokens, k: int, query: QueryContext | None = None, *,
    alpha: float, gap_power: float, combine: str, heads: int,
) -> Selection:
    """SCOPE greedy coverage × saliency^alpha with gap power p, raster-order output."""
    sim, saliency = scope_inputs(tokens, heads)
    order = facility_location_order(sim, k, saliency, alpha=alpha, gap_power=gap_power, combine=combine)
    return selection(order.sort(dim=1).values)
