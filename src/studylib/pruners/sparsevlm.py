"""``sparsevlm`` — SparseVLM: inside the LLM, text-guided sparsification in stages, with the dropped
tokens recycled into a few merged ones.

Official: Gumpest/SparseVLMs (ICML'25), branch ``v1.5`` (March 2025; ``main`` at 26a5f48 runs the same
code with ``USE_VERSION=1_0``): ``llava/model/language_model/modelling_sparse_llama.py``
(``LlamaDynamicvitModel.forward``: raters, ``pruning_loc = [2, 6, 15]``, recycling),
``llava/model/language_model/score.py`` (``attn_postprocess_topk``, the token schedules),
``llava/model/language_model/utils.py`` (``cluster_and_merge``, a DPC-KNN clustering).  Stage ``llm``.

Official rule (LLaVA-1.5, batch 1), ``RETAIN_TOKN = 192`` (the default) keeping 300, 200, 110 tokens::

    raters (once, on the input embeddings E):  with V = E[image], T = E[after the image],
        r = mean_over_V softmax_over_T( V Tᵀ ) ;   raters = { t : r_t > mean(r) }
    at layer p_s ∈ {2, 6, 15} (run on all current tokens):
        A = mean_heads attention probabilities of layer p_s
        score_j = mean_{t ∈ raters} A[t, j]                 over the current visual tokens j
        keep the top min(n_s, V_cur − 1) by score            (raster order)
        recycle: of the dropped tokens, the m = int(0.3 · #dropped) + 1 with the largest score are
                 clustered (DPC-KNN on layer p_s's output, k = c neighbours) into c = int(m/10) + 1
                 groups; each group's mean becomes one token placed after the kept visual tokens
        layer p_s's output loses the dropped tokens; positions are renumbered 0, 1, … (truncation)

DPC-KNN (``cluster_and_merge``): ``d_ij = ‖x_i − x_j‖ / √D``; density ``ρ_i = exp(−mean of the c
smallest d_ij²)`` (self included); ``δ_i = min_{j: ρ_j > ρ_i} d_ij`` (the largest ``d`` for the densest);
centres = the ``c`` largest ``δ_i ρ_i``; every token joins its nearest centre (centres themselves);
merged token = ``Σ members / (count + 1e-6)``, in centre order.

Our rule, through the adapter's in-LLM hooks (:mod:`studylib.models.llm_pruning`; kept tokens counted
as for FastV):

* **Budget.**  ``K`` is the number of image tokens kept at the first drop (recorded as kept).  The
  official schedules are hard-coded per ``RETAIN_TOKN`` ∈ {192, 128, 96, 64}, which is the token count
  *averaged over the 32 layers* (score.py's comment: ``2·576 + 4·300 + 10·200 + 16·110 ≈ 32 · 191``), not
  a count any layer sees; on a 4-layer model that average cannot go below N/4.  We keep ``K`` at the first drop and
  the official schedule's proportions after it: ``n_s = max(1, ⌊K · n_s^off / n_1^off + ½⌋)``,
  ``schedule`` choosing which official list (``192`` = 300, 200, 110 by default).  ``K = 300`` with
  ``schedule = 192`` is the official "192" run (``K = 303``, ``128``; ``238``, ``96``; ``66``, ``64``).  The
  first drop keeps exactly ``K`` (official ``min(n, V − 1)`` keeps N − 1 at K = N).
* **Recycling** adds ``c`` merged tokens after each drop (K = 32 of 144: 112 dropped, m = 34, c = 4),
  so the LLM sees ``K + c`` visual slots after the first drop; ``recycle = false`` switches it off
  (SparseVLM+'s "cancel merge").  The official code adds ``U(0, 1e-6)`` noise to the densities to break
  ties; we add none (deterministic; ties to the lower index).
* **Layers.**  The drops act before layers 3, 7 and 16 (after 2, 6, 15) of a 32-layer LLM, from the
  attention of the layer before — FastV's convention; a shallower model scales them
  (:func:`~studylib.pruners._staged.scale_layers`): the 4-layer toy model drops before layers 1, 2, 3
  (scored at layers 0, 1, 2), the 3-layer tiny test models before 1 and 2.
* **Scores** come from one query row per rater, recomputed from the layer's projections and RoPE
  (the official code takes them from the full attention matrix of that layer: the same numbers).
  Rows of a batch are scored together with their own raters and padding (official: batch 1).
  Generation re-runs the sequence at every step (no KV cache, as for FastV here), so the raters
  then include the generated tokens.
* **Positions** are renumbered 0, 1, … after every drop (official) on the LLaVA families; on
  Qwen2.5-VL's M-RoPE, which has no contiguous renumbering, the survivors keep their positions
  (deviation; the official code runs LLaVA only).
* Not implemented: SparseVLM v1's rank-adaptive counts (replaced by the fixed schedules in v1.5)
  and SparseVLM+ (``USE_VERSION=2_0``: RoPE "gravity" correction, head selection, original positions).

Calling the pruner on :class:`VisualTokens` raises (it needs the LLM); :func:`sparsevlm_plan` is the rule.
"""

from __future__ import annotations

import math

import torch

from studylib.pruners._similarity import as_work, stable_desc_order
from studylib.pruners._staged import StagePlan, scale_layers
from studylib.pruners.registry import Param, register

#: official ``pruning_loc``: the layers whose attention decides; their outputs lose the dropped tokens
PRUNING_LAYERS = (2, 6, 15)
#: official ``sparse_token_list_<RETAIN_TOKN>`` (score.py, branch v1.5 and main's USE_VERSION=1_0)
SCHEDULES = {"192": (300, 200, 110), "128": (303, 110, 36), "96": (238, 48, 26), "64": (66, 30, 17)}
#: share of the dropped tokens that are recycled, and tokens per cluster
RECYCLE_SHARE, TOKENS_PER_CLUSTER = 0.3, 10


def select_raters(visual: torch.Tensor, text: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """SparseVLM's raters ``(B, T)``: the text tokens whose image relevance ``r`` (softmax over the
    text of ``V Tᵀ``, averaged over the image tokens) is above the mean over the row's text tokens.

    ``visual`` ``(B, N, D)`` and ``text`` ``(B, T, D)`` input embeddings; ``valid`` ``(B, T)`` marks the
    row's text tokens (rows hold different numbers).  A row whose text tokens all tie rates with all
    of them (the official code would average over no rows)."""
    logits = torch.bmm(as_work(visual), as_work(text).transpose(1, 2))
    relevance = logits.masked_fill(~valid.unsqueeze(1), float("-inf")).softmax(dim=2).mean(dim=1)
    relevance = relevance.masked_fill(~valid, 0.0)
    mean = relevance.sum(dim=1, keepdim=True) / valid.sum(dim=1, keepdim=True)
    raters = valid & (relevance > mean)
    return torch.where(raters.any(dim=1, keepdim=True), raters, valid)  # all tied: every text token rates


def recycled_counts(n_dropped: int) -> tuple[int, int]:
    """``(m, c)``: the dropped tokens that are recycled, ``int(0.3 · n) + 1``, and their clusters, ``int(m/10) + 1``."""
    m = int(RECYCLE_SHARE * n_dropped) + 1
    return m, int(m / TOKENS_PER_CLUSTER) + 1


def recycle_dropped(hidden: torch.Tensor, score: torch.Tensor) -> torch.Tensor:
    """SparseVLM's recycled tokens ``(B, c, D)`` from the dropped tokens' hidden states ``(B, n, D)``
    and scores ``(B, n)``: the ``m`` best-scored, clustered by :func:`cluster_merge`."""
    m, c = recycled_counts(hidden.shape[1])
    best = stable_desc_order(score)[:, :m]
    chosen = hidden.gather(1, best.unsqueeze(-1).expand(-1, -1, hidden.shape[-1]))
    return cluster_merge(chosen, c)


def cluster_merge(x: torch.Tensor, c: int) -> torch.Tensor:
    """DPC-KNN clustering of ``x`` ``(B, m, D)`` into ``c`` groups, each merged into its mean
    (module docstring); ``(B, c, D)`` in the order of the centre scores ``δ ρ`` (largest first)."""
    b, m, d = x.shape
    work = as_work(x)
    dist = torch.cdist(work, work, compute_mode="donot_use_mm_for_euclid_dist") / math.sqrt(d)
    nearest = torch.sort(dist, dim=-1).values[..., :c]
    density = torch.exp(-(nearest ** 2).mean(dim=-1))  # (B, m)
    denser = density.unsqueeze(1) > density.unsqueeze(2)  # [b, i, j]: ρ_j > ρ_i
    farthest = dist.flatten(1).amax(dim=1)[:, None, None]
    delta = torch.where(denser, dist, farthest).amin(dim=-1)
    centres = stable_desc_order(delta * density)[:, :c]  # (B, c)
    to_centre = dist.gather(1, centres.unsqueeze(-1).expand(-1, -1, m))  # (B, c, m)
    cluster = to_centre.argmin(dim=1)  # (B, m), first minimum on ties
    cluster.scatter_(1, centres, torch.arange(c, device=x.device).expand(b, c))
    sums = torch.zeros(b, c, d, dtype=work.dtype, device=x.device).scatter_add_(
        1, cluster.unsqueeze(-1).expand(-1, -1, d), work)
    counts = torch.zeros(b, c, dtype=work.dtype, device=x.device).scatter_add_(1, cluster, torch.ones_like(density))
    return (sums / (counts.unsqueeze(-1) + 1e-6)).to(x.dtype)


def stage_counts(k: int, schedule: str, n_stages: int) -> tuple[int, ...]:
    """Visual tokens kept at each drop: ``K``, then the official schedule's proportions of ``K``."""
    official = SCHEDULES[schedule]
    return tuple(max(1, int(k * n / official[0] + 0.5)) for n in official[:n_stages])


@register(
    "sparsevlm",
    Param("schedule", str, "192", "official RETAIN_TOKN list whose proportions the later drops follow "
          "(192: 300, 200, 110)", choices=tuple(SCHEDULES)),
    Param("recycle", bool, True, "merge the best-scored dropped tokens into a few recycled tokens"),
    stage="llm",
    summary="SparseVLM: in-LLM, text-rater attention drops image tokens in 3 stages, dropped ones recycled",
    family="in-LLM", source="Gumpest/SparseVLMs (v1.5) modelling_sparse_llama.py, score.py, utils.py",
)
def sparsevlm_plan(n_layers: int, k: int, *, schedule: str, recycle: bool) -> StagePlan:
    """SparseVLM's stages on a language model of ``n_layers`` decoder layers at budget ``k``."""
    layers = scale_layers([p + 1 for p in PRUNING_LAYERS], n_layers, "sparsevlm")
    return StagePlan(layers, stage_counts(k, schedule, len(layers)), score_layer="previous",
                     raters=select_raters, recycle=recycle_dropped if recycle else None)
