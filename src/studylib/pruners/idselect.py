"""``idselect`` — ID-Selection (seed 003): importance scores + iterative similarity suppression.

**No official code is public** (pruners.md §8); the seed gives the idea, the importance cues and
``γ = 20``, but not the update rule.  This module implements the documented reading and exposes
the unpublished choices as parameters.

Importance ``s⁰`` (``importance``):

* ``saliency`` — visual saliency: CLS-row attention of the penultimate ViT layer
  (``VisualTokens.cls_attention``, FasterVLM's score).  **Default** — an unpublished choice: it
  works without a question, and seed 003 shows [CLS] attention as LLaVA-1.5's visual saliency
  (Fig. 3; the Fig. 2 caption "For the LLaVA series …" is truncated in the seed).
* ``relevance`` — instruction relevance: the last text token's attention over the image tokens,
  ``softmax(q_last K_imgᵀ / √d)`` (seed 003 Eq. 3–4) = ``QueryContext.text_attention``.
* ``unified`` — ``mix · norm(saliency) + (1 − mix) · norm(relevance)`` with per-image min–max
  ``norm`` (seed 003 Eq. 6 is not public; equal weights by default, ``mix = 0.5``).

For ``saliency`` and ``relevance`` the raw score is min–max normalised per image too (unpublished;
the shift changes how strongly the multiplicative suppression competes with importance, and the
least important token gets score 0, i.e. it is picked last).

Iterative selection (seed 003 Eq. 8, reading of pruners.md §8), ``sim_ij = max(0, cos(x_i, x_j))``
on the penultimate vision features (``space = vision``; ``llm`` = projected embeddings)::

    repeat K times:  j* = argmax_{i ∉ T} s_i ;  T ← T ∪ {j*}
    update = sum (default):  s_i ← s_i · exp(−γ · sim_{i j*})      (progressive, compounding)
             i.e.            s_i = s⁰_i · exp(−γ Σ_{j ∈ T} sim_ij)
    update = max:            s_i = s⁰_i · exp(−γ max_{j ∈ T} sim_ij)   (nearest pick only)

``γ = 20`` (fixed across the paper's experiments).  ``γ = 0`` is plain top-K by importance.
Scores are kept in log space (``log s⁰ − γ·…``) so the compounding exponentials never underflow
into ties; the argmax is the same as in exact linear-space arithmetic.  A token of importance
exactly 0 (the least important one after min–max) keeps score ``0 · exp(…) = 0`` while every other
score stays positive, so it is picked only after every token of positive importance, zeros among
themselves in index order (they tie at 0); in log space it is ``−∞`` (kept as the dtype's lowest
finite value, below every reachable ``log s⁰ − γ·…``).  Before issue 28 ``s⁰`` was floored at 1e-30
(log −69), and at large K/N a heavily suppressed positive token fell below the floored zero, which
was then kept first.  Other ties: lower index.  The cosine matrix is computed once per :class:`VisualTokens` object (shared by every config
run on it); a single image on the CPU steps in numpy
(:func:`~studylib.pruners._similarity.host_loop`, the same operations and picks).  Output in raster
order.  ``relevance``/``unified`` need ``query.text_attention``.
"""

from __future__ import annotations

import numpy as np
import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import as_work, host_loop, require_query, selection, token_cosine
from studylib.pruners.registry import Param, register


def minmax(x: torch.Tensor) -> torch.Tensor:
    """Per-row min–max normalisation to [0, 1] (a constant row maps to 1)."""
    lo = x.amin(dim=1, keepdim=True)
    span = x.amax(dim=1, keepdim=True) - lo
    safe = torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, (x - lo) / safe, torch.ones_like(x))


def importance_scores(tokens: VisualTokens, query: QueryContext | None, importance: str, mix: float) -> torch.Tensor:
    sal = as_work(tokens.cls_attention)
    if importance == "saliency":
        return minmax(sal)
    query = require_query(query, f"idselect(importance={importance})", "text_attention (B, N)")
    if query.text_attention is None:
        raise ValueError(f"idselect(importance={importance}) needs query.text_attention (B, N); it is None")
    rel = as_work(query.text_attention).to(sal.dtype)
    if rel.shape != sal.shape:
        raise ValueError(f"idselect: text_attention has shape {tuple(rel.shape)}, expected {tuple(sal.shape)}")
    if importance == "relevance":
        return minmax(rel)
    return mix * minmax(sal) + (1.0 - mix) * minmax(rel)


def log_importance(score: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """``(log s⁰, s⁰ == 0)``: the log importance (0 where ``s⁰ = 0``, whose flag then ranks the
    token below every positive one; see the module docstring)."""
    zero = score <= 0
    return torch.log(torch.where(zero, torch.ones_like(score), score)), zero


def suppression_order(score: torch.Tensor, sim: torch.Tensor, k: int, gamma: float, update: str) -> torch.Tensor:
    """Greedy pick with exponential similarity suppression on a ``(B, N, N)`` cosine matrix.

    Returns ``(B, k)`` in pick order; O(N) work per step (one similarity row).
    """
    b, n = score.shape
    rows = torch.arange(b, device=score.device)
    base, zero = log_importance(score.to(sim.dtype))
    if host_loop(sim):
        return _suppression_order_host(base, zero, sim, k, gamma, update)
    pressure = torch.zeros_like(base)
    neg_inf = torch.tensor(float("-inf"), dtype=sim.dtype, device=sim.device)
    lowest = torch.tensor(torch.finfo(sim.dtype).min, dtype=sim.dtype, device=sim.device)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=sim.device)
    order = torch.empty(b, k, dtype=torch.long, device=sim.device)
    for t in range(k):
        j = torch.where(chosen, neg_inf, torch.where(zero, lowest, base - gamma * pressure)).argmax(dim=1)
        order[:, t] = j
        chosen[rows, j] = True
        s = sim[rows, j, :].clamp_min(0.0)
        if update == "sum":
            pressure += s
        else:
            torch.maximum(pressure, s, out=pressure)
    return order


def _suppression_order_host(base: torch.Tensor, zero: torch.Tensor, sim: torch.Tensor, k: int, gamma: float,
                            update: str) -> torch.Tensor:
    """:func:`suppression_order` of one image in numpy (:func:`~studylib.pruners._similarity.host_loop`):
    the same float operations in the same order (``gamma`` rounded to the working dtype, as torch
    does with a Python scalar), the same first-maximum ``argmax``."""
    logs = base[0].numpy()
    is_zero = zero[0].numpy()
    rows = sim[0].detach().numpy()
    pressure = np.zeros_like(logs)
    chosen = np.zeros(logs.shape[0], dtype=bool)
    g = logs.dtype.type(gamma)
    lowest = np.finfo(logs.dtype).min
    picks = []
    for _ in range(k):
        score = logs - g * pressure
        score[is_zero] = lowest
        score[chosen] = -np.inf
        j = int(score.argmax())
        picks.append(j)
        chosen[j] = True
        s = np.maximum(rows[j], 0.0, dtype=logs.dtype)
        if update == "sum":
            pressure += s
        else:
            np.maximum(pressure, s, out=pressure)
    return torch.tensor([picks], dtype=torch.long, device=sim.device)


@register(
    "idselect",
    Param("importance", str, "saliency", "importance cue", alias="imp", choices=("saliency", "relevance", "unified"), key=True),
    Param("gamma", float, 20.0, "suppression strength γ", low=0.0, key=True),
    Param("update", str, "sum", "suppression rule: compounding (sum) or nearest pick (max) — unpublished",
          choices=("sum", "max")),
    Param("mix", float, 0.5, "weight of saliency in the unified score", low=0.0, high=1.0),
    Param("space", str, "vision", "similarity space: vision = pre-projector, llm = projected", choices=("vision", "llm")),
    summary="ID-Selection: importance + iterative exponential similarity suppression (γ=20)",
    needs_query=lambda params: () if params["importance"] == "saliency" else ("text_attention",),
    family="hybrid", source="seed 003 (no public code; pruners.md §8)",
)
def idselect(
    tokens: VisualTokens, k: int, query: QueryContext | None = None, *,
    importance: str, gamma: float, update: str, mix: float, space: str,
) -> Selection:
    """ID-Selection importance + suppression, raster order."""
    score = importance_scores(tokens, query, importance, mix)
    sim = token_cosine(tokens, space)
    order = suppression_order(score, sim, k, gamma, update)
    return selection(order.sort(dim=1).values)
