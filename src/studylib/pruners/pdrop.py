"""``pdrop`` — PyramidDrop: inside the LLM, drop image tokens in stages, keeping at each the ones the
last instruction token attends to most.

Official: Cooperx521/PyramidDrop (CVPR'25) at commit 6444f30: ``llava/model/modeling_llama_pdrop.py``
(``LlamaModel.pdrop_forward``, ``pdrop_rank_drop``), ``llava/eval/model_vqa_loader.py`` (the ratio
list gets 1.0 prepended) and ``scripts/v1_5/pdrop_eval/*.sh`` (``--layer_list '[8,16,24]'
--image_token_ratio_list "[0.5,0.25,0.125]"``, i.e. four stages, ``λ = 0.5``).  Stage ``llm``.

Official rule (N image tokens, drop layers ``ℓ_s = 8s``, ``s = 1, 2, 3``), during prefill::

    before decoder layer ℓ_s, with h the hidden states entering it:
        ĥ = RMSNorm_{ℓ_s}(h)                              (the layer's own input norm)
        a_j = mean_heads softmax( q_last k_jᵀ / √d )      q, k from layer ℓ_s's projections, RoPE at
                                                          the current positions, causal mask
        keep the int(N λ^s) image tokens of largest a_j   (raster order; q_last = last instruction token)
        renumber the positions contiguously (0, 1, …)

Our rule, through the adapter's in-LLM hooks (:mod:`studylib.models.llm_pruning`, which count kept
tokens as for FastV):

* **Budget.**  ``K`` is the number of image tokens kept at the first drop (FastV's count, recorded
  as the configuration's kept tokens); drop ``s`` keeps ``max(1, int(K · λ^(s−1)))``.  With
  ``K = int(N λ)`` this is the official schedule (``K = 288`` of 576: 288, 144, 72).  The LLM thus
  sees all N tokens before the first drop and fewer than K after the second.
* **Layers.**  ``stride`` (8) places the drops before layers ``stride, 2·stride, 3·stride`` of a
  32-layer LLM (LLaVA-1.5-7B; the official scripts use the same layers for 13B); a shallower model
  scales them (:func:`~studylib.pruners._staged.scale_layers`): the 4-layer toy model drops before
  layers 1, 2 and 3, the 3-layer tiny test models before 1 and 2 (the third drop does not fit).
* **Query.**  Scoring runs once per prefill on the last token of each row.  Generation with an
  in-LLM pruner re-runs the sequence at every step (no KV cache, as for FastV here), so later steps
  re-select with the newest token as the query; the official KV-cache path selects once.
* **Ties** go to the lower index (the official ``topk`` order is unspecified).
* **Positions** are renumbered 0, 1, … after every drop (official) on the LLaVA families; on
  Qwen2.5-VL's M-RoPE, which has no contiguous renumbering, the survivors keep their positions
  (deviation; the official code runs LLaVA only).

Calling the pruner on :class:`VisualTokens` raises (it needs the LLM); :func:`pdrop_plan` is the rule.
"""

from __future__ import annotations

from studylib.pruners._staged import StagePlan, scale_layers
from studylib.pruners.registry import Param, register

#: drops of the official configuration (four stages)
DROPS = 3


@register(
    "pdrop",
    Param("ratio", float, 0.5, "λ: each drop keeps λ times the tokens of the one before", alias="lam",
          low=0.0, low_open=True, high=1.0, key=True),
    Param("stride", int, 8, "layers between drops on a 32-layer LLM (official 8, 16, 24; scaled on shallower ones)",
          low=1),
    stage="llm",
    summary="PyramidDrop: in-LLM, drop image tokens in 3 stages by the last token's attention (K, Kλ, Kλ²)",
    family="in-LLM", source="Cooperx521/PyramidDrop modeling_llama_pdrop.py pdrop_rank_drop",
)
def pdrop_plan(n_layers: int, k: int, *, ratio: float, stride: int) -> StagePlan:
    """PyramidDrop's stages on a language model of ``n_layers`` decoder layers at budget ``k``."""
    layers = scale_layers([stride * s for s in range(1, DROPS + 1)], n_layers, "pdrop")
    keep = tuple(max(1, int(k * ratio ** s)) for s in range(len(layers)))
    return StagePlan(layers, keep, score_layer="own")
