"""``scope_adaptive`` — SCOPE with an image-adaptive saliency weight α (seed 002's rule on seed 000's α).

Seed 000 (§4.2) finds that SCOPE's saliency weight α trades calibration against saliency: α = 0 (pure
coverage) is the best-calibrated setting, α = 1 the official default.  Seed 002 (§4.3, Tables 5–6)
argues that the right balance depends on the image: a **simple** image (low effective rank of its
tokens) is served by attention/saliency, a **complex** one (high erank) by diversity/coverage, and
sets the attention share per image by a linear map of ``erank / erank_avg``.  This pruner applies that
rule to SCOPE's α, per image ``b``::

    s_b   = erank(X_b)                       (signal = erank: all N pre-projector patch features)
          = H(a_b)                           (signal = entropy: [CLS]-attention entropy, nats)
    r_b   = s_b / s_ref                      (s_ref = erank_avg or entropy_avg, a reference mean)
    α_b   = clip(α_ref + σ · slope · (1 − r_b), α_min, α_max)      σ = +1, or −1 when inverse = true
    keep  = SCOPE greedy selection with gain_j · a_j^{α_b}  (scope.py, p = gap_power, combine = mul)

With ``σ = +1`` α is non-increasing in ``s``: simple images (``s < s_ref``) get α above ``α_ref`` (more
saliency), complex ones below (more coverage), as seed 002 argues; ``inverse = true`` flips the
slope, seed 002's "Inverse" ablation (Table 5, "VisPruner + inverse").  ``α_min = α_max = a`` is
exactly ``scope(alpha=a)`` (same similarity, saliency and greedy loop; tested).  The map has the form
of AgilePruner's important ratio (``agile_mix``: ``r + slope · (1 − erank/erank_avg)``).

Reference statistics.  ``s_ref`` is the **mean of the same statistic over a reference image set**,
as AgilePruner's ``erank_avg`` ("the average effective rank of the LLaVA training set").  Compute it
for the model with :func:`studylib.pruners.reference_erank` (``space = vision``) or
:func:`studylib.pruners.reference_entropy` over the reference images and pass it; the defaults are
AgilePruner's placeholders (MME means of seed 002 appendix D: erank 94.87, entropy 4.80 nats), which
do not fit the toy model.  The experiments set it to the mean over the run's own POPE images (the
unpruned rows' ``erank_kept`` / entropy), as ``erank_hallucination`` does for AgilePruner
(``adapt_spec`` replaces both placeholders).  ``erank`` and ``attention_entropy`` are AgilePruner's
functions (``agile.py``), on the same features.

Unpublished choices (parameters): ``α_ref = 0.5`` (the middle of seed 000's α grid 0 / 0.5 / 1),
``slope = 1`` (as ``agile_mix``), ``α ∈ [0, 1]`` (the range seed 000 sweeps).  Selections are
batched: one greedy loop for the batch with one α per image.
"""

from __future__ import annotations

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import selection
from studylib.pruners.agile import ENTROPY_AVG_PLACEHOLDER, ERANK_AVG_PLACEHOLDER, token_entropy, token_erank
from studylib.pruners.registry import Param, PrunerConfigError, register
from studylib.pruners.scope import facility_location_order, scope_inputs

SIGNALS = ("erank", "entropy")


def image_statistic(tokens: VisualTokens, signal: str = "erank") -> torch.Tensor:
    """Per image ``(B,)`` float64: the erank of all N pre-projector features, or the entropy (nats)
    of the [CLS] attention renormalised over the patches."""
    if signal == "erank":
        return token_erank(tokens, "vision")
    if signal == "entropy":
        return token_entropy(tokens)
    raise PrunerConfigError(f"unknown signal {signal!r}; choose one of {SIGNALS}")


def adaptive_alpha(statistic: torch.Tensor, reference: float, *, alpha_ref: float = 0.5, slope: float = 1.0,
                   alpha_min: float = 0.0, alpha_max: float = 1.0, inverse: bool = False) -> torch.Tensor:
    """``α_b = clip(α_ref + σ · slope · (1 − s_b / s_ref), α_min, α_max)``, ``σ = −1`` if ``inverse``."""
    if not alpha_min <= alpha_max:
        raise PrunerConfigError(f"scope_adaptive: alpha_min = {alpha_min:g} must not exceed alpha_max = {alpha_max:g}")
    sign = -1.0 if inverse else 1.0
    alpha = alpha_ref + sign * slope * (1.0 - statistic.to(torch.float64) / reference)
    return alpha.clamp(alpha_min, alpha_max)


def image_alpha(tokens: VisualTokens, *, signal: str = "erank", erank_avg: float = ERANK_AVG_PLACEHOLDER,
                entropy_avg: float = ENTROPY_AVG_PLACEHOLDER, alpha_ref: float = 0.5, slope: float = 1.0,
                alpha_min: float = 0.0, alpha_max: float = 1.0, inverse: bool = False, **_: object) -> torch.Tensor:
    """The α of each image ``(B,)`` that ``scope_adaptive`` uses (extra keywords, e.g. ``gap_power``,
    are ignored, so ``image_alpha(tokens, **pruner.params)`` works)."""
    reference = erank_avg if signal == "erank" else entropy_avg
    return adaptive_alpha(image_statistic(tokens, signal), reference, alpha_ref=alpha_ref, slope=slope,
                          alpha_min=alpha_min, alpha_max=alpha_max, inverse=inverse)


@register(
    "scope_adaptive",
    Param("signal", str, "erank", "image complexity statistic: erank of all tokens or [CLS]-attention entropy",
          choices=SIGNALS),
    Param("alpha_ref", float, 0.5, "α at the reference complexity (s = s_ref)", alias="a", low=0.0),
    Param("slope", float, 1.0, "change of α per unit of 1 − s/s_ref (unpublished, as agile_mix)", low=0.0, high=100.0),
    Param("alpha_min", float, 0.0, "lower clip of α", low=0.0),
    Param("alpha_max", float, 1.0, "upper clip of α", low=0.0),
    Param("inverse", bool, False, "flip the slope (seed 002's Inverse ablation): complex images get more saliency"),
    Param("erank_avg", float, ERANK_AVG_PLACEHOLDER, "reference mean erank (signal = erank; placeholder = MME mean, "
          "compute with reference_erank)", low=0.0, low_open=True),
    Param("entropy_avg", float, ENTROPY_AVG_PLACEHOLDER, "reference mean attention entropy in nats (signal = "
          "entropy; placeholder = MME mean, compute with reference_entropy)", low=0.0, low_open=True),
    Param("gap_power", float, 1.0, "SCOPE's gap power p", alias="p", low=0.0, low_open=True),
    summary="SCOPE with α per image from its erank (or attention entropy): simple → saliency, complex → coverage",
    family="adaptive",
    source="this study: seed 002's adaptive rule (Tables 5-6) on seed 000's α",
)
def scope_adaptive(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, signal: str, alpha_ref: float,
                   slope: float, alpha_min: float, alpha_max: float, inverse: bool, erank_avg: float,
                   entropy_avg: float, gap_power: float) -> Selection:
    """SCOPE greedy coverage × saliency^α_b with an image-adaptive α_b; raster order."""
    alpha = image_alpha(tokens, signal=signal, erank_avg=erank_avg, entropy_avg=entropy_avg, alpha_ref=alpha_ref,
                        slope=slope, alpha_min=alpha_min, alpha_max=alpha_max, inverse=inverse)
    sim, saliency = scope_inputs(tokens)
    order = facility_location_order(sim, k, saliency, alpha=alpha, gap_power=gap_power, combine="mul")
    return selection(order.sort(dim=1).values)
