"""AgilePruner (seed 002): image-complexity-adaptive pruning driven by the effective rank.

**No official code is public** (repo cvsp-lab/AgilePruner: "code coming soon"; pruners.md §9).
Four registered entries, all built on the image complexity ``erank`` (or attention entropy):

``erank`` (Roy & Vetterli 2007; seed 002 Eq. 3 and appendix Eq. 7), float64::

    σ = singular values of X (N × D token matrix, via eig(X Xᵀ)),  q_i = σ_i / Σσ,
    erank(X) = exp(−Σ q_i log q_i)        (no centring)

``attention entropy`` (seed 002 Eq. 1–2): ``p = a / Σa`` (CLS attention renormalised without the
CLS column), ``H = −Σ p log p``.

1. ``agile`` — adaptive similarity thresholding (seed 002 §4.3, Eq. 6)::

       order tokens by CLS attention (descending); repeat until K picks:
           take the highest-ranked remaining candidate j (its 1-based rank: order_j)
           τ_j = min( order_j · (erank_input / erank_avg) · 0.01 , τ_max )
           remove every candidate i with cosine distance 1 − cos(x_i, x_j) < τ_j

   Complex images (erank > erank_avg) get larger τ (more diversity), simple ones smaller τ.
2. ``agile_entropy`` — the same with attention entropy in place of erank (seed 002 Table 11,
   appendix B.2): ``τ_j = order_j · (H_input / H_avg) · 0.01``.
3. ``agile_mix`` — erank-adaptive mix of an attention pruner and a diversity pruner (Tables 5–6):
   the important ratio ``r(e) = clip(ratio + slope · (1 − erank/erank_avg), 0, 1)`` (more attention
   tokens for simple images; ``slope < 0`` gives the paper's "Inverse" ablation), ``K_att = int(K·r)``.
   ``div = divprune`` / ``fps``: FasterVLM + DivPrune (Table 6): the first ``K − K_att`` picks of the
   diversity pruner's greedy order, then the ``K_att`` highest-attention tokens not yet kept
   (seed 002 Table 3: DivPrune tokens "replaced by tokens having higher attention scores").
   ``div = vispruner``: VisPruner with ``K_imp = K_att`` per image (Table 5, "VisPruner + Ours").
   DivPrune / FPS / VisPruner run with their own defaults (projected embeddings for DivPrune and
   FPS, FPS from token 0, pre-projector features for VisPruner); ``space`` only selects the erank
   features here.
4. ``agile_count`` — adaptive token count (Table 13): ``K_b = round(K · clip(1 + slope ·
   (erank/erank_avg − 1), 1 − max_change, 1 + max_change))`` (±20 % by default), clamped to
   ``[1, N]``, then ``agile`` thresholding with ``K_b`` tokens.  Counts differ per image, which a
   rectangular ``Selection`` cannot hold: a batch whose counts differ raises (run it per image with
   :func:`studylib.pruners.select_each`; :func:`adaptive_count` gives the counts).

Computation.  ``erank`` uses the smaller Gram matrix, as seed 002 appendix A (Eq. 7): for
``N ≤ D`` the ``N × N`` ``C = X Xᵀ`` (``D × D`` ``XᵀX`` otherwise; the non-zero eigenvalues are the
same), ``σ = sqrt(eigvalsh(C))`` — one float64 GEMM and one symmetric eigenvalue problem per image,
batched; at N = 576, D_v = 1024 it is the largest single cost of the erank-driven pruners.  The
thresholding computes one cosine matrix per image and, for ``order = rank``, the whole suppression
matrix ``kill_ji = (1 − S_ji < τ_j)`` in one vectorised pass (``τ_j`` depends on the token's own
attention rank only); the greedy scan is then a masked ``argmin`` and one masked fill per pick for
the whole batch (:func:`threshold_order`; a single image on the CPU scans in numpy,
:func:`~studylib.pruners._similarity.host_loop`).  The cosine matrix and the erank are computed once
per :class:`VisualTokens` object (shared by every config run on it).  The naive loop it replaces
(``_reference.py``) applies the same comparisons to the same values one row at a time, so the picks
are identical.

Unpublished choices (all exposed as parameters, all **[unverified]**):

* ``erank_avg`` — "the average effective rank of the LLaVA training set", value not given.
  Placeholder default **94.87**, the mean erank over MME reported in seed 002 appendix D.  The
  runner must compute the value for its model with :func:`reference_erank` over a reference image
  set (same ``space``) and pass it; the toy model's scale is different.
* ``entropy_avg`` — placeholder **4.80**, MME mean attention entropy (appendix D); compute with
  :func:`reference_entropy`.
* ``tau_max`` — "a statistical upper bound", value not given.  Default **0.25**: the fixed τ at
  which seed 002 Table 12 gives the best POPE accuracy (the τ sweep spans 0–0.5).
* ``order`` — ``rank`` (default): order_j is the selected token's 1-based rank in the attention
  ordering (the paper: "the rank of the token (1-based)"); ``pick``: the pick count 1, 2, …, K.
* ``space`` — features for the erank and the cosine distance: ``vision`` (default, penultimate
  pre-projector features, the study's convention) or ``llm`` (projected embeddings; seed 002 writes the
  erank matrix as ``N × d_l``).
* Fallback: if every candidate is removed before ``K`` picks, the remaining slots take the removed
  tokens in attention order (so exactly ``K`` tokens are kept).
* ``agile_mix`` ``ratio = 0.5`` (VisPruner's default important ratio) and ``slope = 1``, and
  ``agile_count`` ``slope = 1``: the linear maps are not published.  BAT (Table 5) is not
  implemented.
"""

from __future__ import annotations

from typing import Iterable

import numpy as np
import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import (
    as_work, flat_index, flat_rows, host_loop, mask_to_indices, selection, space_features, stable_desc_order,
    token_cosine,
)
from studylib.pruners.divprune import token_divprune_order
from studylib.pruners.fps import token_fps_order
from studylib.pruners.registry import Param, register
from studylib.pruners.vispruner import vispruner_select

#: placeholder for erank_avg (seed 002 appendix D, MME mean) until the runner computes it
ERANK_AVG_PLACEHOLDER = 94.87
#: placeholder for the mean attention entropy (seed 002 appendix D, MME mean)
ENTROPY_AVG_PLACEHOLDER = 4.80
#: default cap of the adaptive threshold (seed 002 Table 12: best fixed τ on POPE)
TAU_MAX_DEFAULT = 0.25
#: the constant of seed 002 Eq. 6
TAU_STEP = 0.01
#: where the AgilePruner entries come from (no public code)
AGILE_SOURCE = "seed 002 (no public code; pruners.md §9)"


# --- complexity measures -------------------------------------------------------------------------

def erank(x: torch.Tensor) -> torch.Tensor:
    """Effective rank (Roy & Vetterli) of each ``(N, D)`` matrix of ``x`` ``(B, N, D)``, float64 ``(B,)``."""
    if x.dim() == 2:
        x = x.unsqueeze(0)
    x = x.to(torch.float64)
    gram = torch.bmm(x, x.transpose(1, 2)) if x.shape[1] <= x.shape[2] else torch.bmm(x.transpose(1, 2), x)
    sigma = torch.linalg.eigvalsh(gram).clamp_min(0.0).sqrt()
    total = sigma.sum(dim=1, keepdim=True)
    q = sigma / torch.where(total > 0, total, torch.ones_like(total))
    h = -(q * torch.log(torch.where(q > 0, q, torch.ones_like(q)))).sum(dim=1)
    return torch.exp(h)


def attention_entropy(attention: torch.Tensor) -> torch.Tensor:
    """Shannon entropy of the CLS attention renormalised over the patches, float64 ``(B,)``."""
    a = attention.to(torch.float64)
    if a.dim() == 1:
        a = a.unsqueeze(0)
    p = a / a.sum(dim=1, keepdim=True)
    return -(p * torch.log(torch.where(p > 0, p, torch.ones_like(p)))).sum(dim=1)


def token_erank(tokens: VisualTokens, space: str) -> torch.Tensor:
    """:func:`erank` of ``space``'s features ``(B,)``, once per ``tokens`` object (shared: read only)."""
    return tokens.derived(("erank", space), lambda t: erank(space_features(t, space)))


def token_entropy(tokens: VisualTokens) -> torch.Tensor:
    """:func:`attention_entropy` of the CLS attention ``(B,)``, once per ``tokens`` object."""
    return tokens.derived(("attention_entropy",), lambda t: attention_entropy(t.cls_attention))


def reference_erank(tokens_list: Iterable[VisualTokens], space: str = "vision") -> float:
    """Mean erank over a reference image set (every image of every batch) — ``erank_avg``."""
    values = [token_erank(t, space) for t in tokens_list]
    if not values:
        raise ValueError("reference_erank needs at least one VisualTokens batch")
    return float(torch.cat(values).mean())


def reference_entropy(tokens_list: Iterable[VisualTokens]) -> float:
    """Mean CLS-attention entropy over a reference image set — ``entropy_avg``."""
    values = [token_entropy(t) for t in tokens_list]
    if not values:
        raise ValueError("reference_entropy needs at least one VisualTokens batch")
    return float(torch.cat(values).mean())


# --- adaptive thresholding -----------------------------------------------------------------------

def threshold_order(sim: torch.Tensor, attention: torch.Tensor, k: int, scale: torch.Tensor,
                    tau_max: float, order: str = "rank") -> torch.Tensor:
    """Attention-ordered selection with adaptive cosine-distance threshold; ``(B, k)`` pick order.

    ``scale`` ``(B,)`` = complexity_input / complexity_avg; ``τ = min(order · scale · 0.01, τ_max)``.

    Vectorised suppression: the pick ``j`` removes the candidates ``i`` with ``1 − S_ji < τ_j``.
    With ``order = rank`` every token's ``τ`` is known in advance (its own rank), so the whole
    suppression matrix ``kill_ji = (1 − S_ji < τ_j) ∨ (i = j)`` is one elementwise pass over the
    similarity; with ``order = pick``, ``τ`` depends only on the pick count ``t`` and the row of the
    pick is compared with ``τ_t``.  Each candidate carries its attention rank, or ``N`` once removed;
    a step is ``j = argmin`` of those keys (the best-ranked remaining candidate) and one masked fill
    with ``kill_j``.  These are the same comparisons, on the same values, as the naive loop
    (``_reference.py``), so the picks are identical.  When no candidate remains (every key is
    ``N``) the remaining slots take the unpicked tokens in attention order, as the naive loop's
    fallback; that is applied after the loop (it does not change the earlier picks).
    """
    b, n = attention.shape
    dev = sim.device
    by_attention = stable_desc_order(attention)
    rank_of = torch.empty_like(by_attention)
    rank_of.scatter_(1, by_attention, torch.arange(n, device=dev).expand(b, n).contiguous())
    scale = scale.to(sim.dtype)
    dist = 1.0 - sim
    if order == "rank":
        tau = ((rank_of + 1).to(sim.dtype) * scale.unsqueeze(1) * TAU_STEP).clamp(max=tau_max)  # τ of each token
        kill = dist < tau.unsqueeze(2)
        kill.diagonal(dim1=1, dim2=2).fill_(True)
        rows, base = flat_rows(kill)
    else:
        steps = torch.arange(1, k + 1, device=dev).to(sim.dtype)
        tau = (steps.unsqueeze(0) * scale.unsqueeze(1) * TAU_STEP).clamp(max=tau_max)  # (B, k): τ of pick t
        rows, base = flat_rows(dist)
    if host_loop(sim):
        out, best = _threshold_scan_host(rows, rank_of, k, None if order == "rank" else tau)
    else:
        key = rank_of.clone()
        picks, keys = [], []
        for t in range(k):
            best, j = key.min(dim=1)
            idx = flat_index(j, base)
            if order == "rank":
                key.masked_fill_(rows.index_select(0, idx), n)
            else:
                key.masked_fill_(rows.index_select(0, idx) < tau[:, t : t + 1], n)
                key.view(-1).index_fill_(0, idx, n)
            picks.append(j)
            keys.append(best)
        out, best = torch.stack(picks, dim=1), torch.stack(keys, dim=1)
    ran_out = best == n  # no candidate left at that step
    for i in ran_out.any(dim=1).nonzero().flatten().tolist():
        t0 = int(ran_out[i].nonzero()[0])
        taken = torch.zeros(n, dtype=torch.bool, device=dev)
        taken[out[i, :t0]] = True
        rest = by_attention[i][~taken[by_attention[i]]]
        out[i, t0:] = rest[: k - t0]
    return out


def _threshold_scan_host(rows: torch.Tensor, rank_of: torch.Tensor, k: int,
                         tau: torch.Tensor | None) -> tuple[torch.Tensor, torch.Tensor]:
    """The scan of :func:`threshold_order` for one image in numpy
    (:func:`~studylib.pruners._similarity.host_loop`): the same first-minimum pick and the same
    fills (``rows`` = the kill matrix, or with ``tau`` = the distance compared with ``τ_t``)."""
    n = rank_of.shape[1]
    rows_np = rows.detach().numpy()
    key = rank_of[0].numpy().copy()
    tau_np = None if tau is None else tau[0].numpy()
    picks, keys = [], []
    for t in range(k):
        j = int(key.argmin())
        keys.append(int(key[j]))
        if tau_np is None:
            key[rows_np[j]] = n
        else:
            key[rows_np[j] < tau_np[t]] = n
            key[j] = n
        picks.append(j)
    return torch.tensor([picks], device=rows.device), torch.tensor([keys], device=rows.device)


def _agile_select(tokens: VisualTokens, k: int, scale: torch.Tensor, tau_max: float, order: str, space: str) -> torch.Tensor:
    sim = token_cosine(tokens, space)
    picks = threshold_order(sim, as_work(tokens.cls_attention).to(sim.dtype), k, scale, tau_max, order)
    return picks.sort(dim=1).values


ERANK_AVG = Param("erank_avg", float, ERANK_AVG_PLACEHOLDER, "reference mean erank (unpublished; placeholder = MME mean, "
                  "compute with reference_erank)", low=0.0, low_open=True, key=True)
TAU_MAX = Param("tau_max", float, TAU_MAX_DEFAULT, "cap of the adaptive threshold (unpublished)", low=0.0, key=True)
ORDER = Param("order", str, "rank", "order_i: attention rank of the pick (rank) or pick count (pick)", choices=("rank", "pick"))
SPACE = Param("space", str, "vision", "features for erank and cosine distance", choices=("vision", "llm"))
SLOPE = Param("slope", float, 1.0, "slope of the linear erank map (unpublished; < 0 = inverse)", low=-100.0, high=100.0)


@register("agile", ERANK_AVG, TAU_MAX, ORDER, SPACE,
          summary="AgilePruner: attention order + erank-adaptive cosine-distance threshold",
          family="adaptive", source=AGILE_SOURCE)
def agile(tokens: VisualTokens, k: int, query: QueryContext | None = None, *,
          erank_avg: float, tau_max: float, order: str, space: str) -> Selection:
    """AgilePruner adaptive thresholding with erank complexity; raster order."""
    scale = token_erank(tokens, space) / erank_avg
    return selection(_agile_select(tokens, k, scale, tau_max, order, space))


@register(
    "agile_entropy",
    Param("entropy_avg", float, ENTROPY_AVG_PLACEHOLDER, "reference mean attention entropy (unpublished; placeholder "
          "= MME mean, compute with reference_entropy)", low=0.0, low_open=True, key=True),
    TAU_MAX, ORDER, SPACE,
    summary="AgilePruner thresholding with attention entropy instead of erank (seed 002 Table 11)",
    family="adaptive", source=AGILE_SOURCE,
)
def agile_entropy(tokens: VisualTokens, k: int, query: QueryContext | None = None, *,
                  entropy_avg: float, tau_max: float, order: str, space: str) -> Selection:
    """AgilePruner adaptive thresholding with attention-entropy complexity; raster order."""
    scale = token_entropy(tokens) / entropy_avg
    return selection(_agile_select(tokens, k, scale, tau_max, order, space))


def important_ratio(e: torch.Tensor, erank_avg: float, ratio: float, slope: float) -> torch.Tensor:
    """Erank-adaptive important (attention) ratio, ``(B,)`` in [0, 1]."""
    return (ratio + slope * (1.0 - e / erank_avg)).clamp(0.0, 1.0)


@register(
    "agile_mix",
    ERANK_AVG,
    Param("ratio", float, 0.5, "important ratio at erank = erank_avg", alias="r", low=0.0, high=1.0, key=True),
    SLOPE,
    Param("div", str, "divprune", "diversity part: DivPrune / FPS (+ FasterVLM top attention) or VisPruner",
          choices=("divprune", "fps", "vispruner")),
    SPACE,
    summary="AgilePruner erank-adaptive mix of attention and diversity pruning (seed 002 Tables 5-6)",
    family="adaptive", source=AGILE_SOURCE,
)
def agile_mix(tokens: VisualTokens, k: int, query: QueryContext | None = None, *,
              erank_avg: float, ratio: float, slope: float, div: str, space: str) -> Selection:
    """Erank-adaptive attention/diversity mix; raster order."""
    b, n = tokens.batch_size, tokens.num_patches
    e = token_erank(tokens, space)
    k_att = (k * important_ratio(e, erank_avg, ratio, slope)).floor().long().clamp(0, k)  # int(K·r)
    attention = as_work(tokens.cls_attention)
    if div == "vispruner":
        sim = token_cosine(tokens, "vision")
        out = torch.empty(b, k, dtype=torch.long, device=attention.device)
        for value in torch.unique(k_att).tolist():
            group = (k_att == value).nonzero().squeeze(1)
            out[group] = vispruner_select(sim[group], attention[group].to(sim.dtype), k, 0.0, k_imp=int(value))
        return selection(out)
    dev = attention.device
    rows = torch.arange(b, device=dev)
    k_div = (k - k_att).to(dev)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=dev)
    kmax = int(k_div.max())
    if kmax > 0:
        if div == "divprune":
            picks = token_divprune_order(tokens, "llm", kmax)
        else:
            picks = token_fps_order(tokens, "llm", kmax, torch.zeros(b, dtype=torch.long, device=dev))
        take = torch.arange(kmax, device=dev).unsqueeze(0) < k_div.unsqueeze(1)
        chosen[rows.unsqueeze(1).expand(b, kmax)[take], picks[take]] = True
    fill_order = stable_desc_order(attention.masked_fill(chosen, float("-inf")))
    fill = torch.arange(n, device=dev).unsqueeze(0) < k_att.to(dev).unsqueeze(1)
    chosen[rows.unsqueeze(1).expand(b, n)[fill], fill_order[fill]] = True
    return selection(mask_to_indices(chosen, k, "agile_mix"))


def _counts(e: torch.Tensor, k: int, n: int, erank_avg: float, slope: float, max_change: float) -> torch.Tensor:
    factor = (1.0 + slope * (e / erank_avg - 1.0)).clamp(1.0 - max_change, 1.0 + max_change)
    return torch.floor(k * factor + 0.5).long().clamp(1, n)


def adaptive_count(tokens: VisualTokens, k: int, *, erank_avg: float = ERANK_AVG_PLACEHOLDER, slope: float = 1.0,
                   max_change: float = 0.2, space: str = "vision") -> torch.Tensor:
    """Per-image token counts ``(B,)`` of ``agile_count`` for the reference budget ``k``."""
    e = token_erank(tokens, space)
    return _counts(e, k, tokens.num_patches, erank_avg, slope, max_change)


@register(
    "agile_count",
    ERANK_AVG,
    Param("max_change", float, 0.2, "largest relative change of the count (seed 002: 20%)", low=0.0, high=1.0, high_open=True),
    SLOPE, TAU_MAX, ORDER, SPACE,
    summary="AgilePruner adaptive token count (±20% by erank, seed 002 Table 13) + thresholding",
    exact_k=False,
    family="adaptive", source=AGILE_SOURCE,
)
def agile_count(tokens: VisualTokens, k: int, query: QueryContext | None = None, *,
                erank_avg: float, max_change: float, slope: float, tau_max: float, order: str, space: str) -> Selection:
    """Adaptive count per image, then AgilePruner thresholding; raster order."""
    e = token_erank(tokens, space)
    counts = _counts(e, k, tokens.num_patches, erank_avg, slope, max_change)
    if bool((counts != counts[0]).any()):
        raise ValueError(
            f"agile_count keeps a different number of tokens per image ({counts.tolist()}) and a Selection is "
            "rectangular: run it image by image (studylib.pruners.select_each) or group images by "
            "studylib.pruners.agile.adaptive_count"
        )
    return selection(_agile_select(tokens, int(counts[0]), e / erank_avg, tau_max, order, space))
