"""``cdpruner`` — CDPruner: conditional DPP, fast greedy MAP inference.

Official: Theia-4869/CDPruner ``llava/model/llava_arch.py::encode_images`` (pruners.md §7).

    S_ij   = cos(x_i, x_j)                     x = projected tokens (``VisualTokens.embeddings``)
    rel_i  = −cos(x_i, q)                      (official sign: minus)
    rel    = (rel − min rel + 1e−6) / (max rel − min rel)
    L      = diag(rel) · S · diag(rel)
    fast greedy MAP (Chen et al. 2018):  d²_i = L_ii;  repeat K times:
        j = argmax d²;  e = (L_j· − Σ_{s<t} c_sj c_s·) / sqrt(d²_j);  c_t = e;  d² −= e²;  d²_j = −inf
    keep = the K picks in raster order

The first pick is the most relevant token (``L_ii = rel_i²``).

Computation: ``d²_i`` is the Schur complement ``L_ii − L_iT L_T⁻¹ L_Ti = det L_{T∪i} / det L_T``
(the argmax is the largest ``log det`` gain), kept up to date by an incremental Cholesky factor
``C`` (row ``t`` = the new factor column extended to every token): O(t·N) per pick instead of a
determinant.  The whole batch is updated in lockstep (one gathered kernel row, one batched
``1 × t`` by ``t × N`` product and elementwise updates per pick; the rank-exhaustion check below
runs once after the loop; a single image on the CPU steps in numpy, :func:`_dpp_scan_host`).  The
kernel is computed once per call, the cosine similarity once per :class:`VisualTokens` object
(shared by every config run on it).  Picks are
identical to the official loop's (transcribed in ``_reference.py``): same operations, same
order, same values.

Documented deviations:

* **Relevance source.**  The official relevance is CLIP's joint space: ``visual_projection(
  post_layernorm(h_{-2}))`` against ``CLIPTextModelWithProjection`` embeddings of the question.
  LLaVA-HF checkpoints carry no CLIP text tower, so we use ``QueryContext.text_embedding`` (the
  mean LM input embedding of the question) against the projected image tokens
  (``VisualTokens.embeddings``, the space of the kernel), keeping the official sign convention
  (``negate = true``; set ``negate = false`` for plain cosine relevance) and min–max normalisation.
  A query is therefore required.
* **Normalisation scope.**  The official min–max runs over the whole vision batch (the crops of
  one image); we normalise per image, which is the same for LLaVA-1.5 (one crop per image) and
  keeps images of a batch independent.  A constant relevance (max = min) gives ``rel = 1``.
* **Rank exhaustion.**  When ``K`` exceeds the numerical rank of ``L`` (e.g. ``K > D``) the official
  greedy divides by ``sqrt(d² ≤ 0)`` and produces NaNs / fewer than ``K`` tokens (pruners.md §13).
  We stop the determinant update for an image once its largest remaining ``d²`` falls to
  ``≤ 10·eps(dtype)·max_i L_ii`` and fill the remaining slots with the most relevant unselected
  tokens (highest ``rel``, lower index on ties).  Before that point the picks are the official ones.
* Kernel in float32 (official: fp16 L2-normalisation, then fp32) or float64 for float64 inputs.
"""

from __future__ import annotations

import numpy as np
import torch

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners._similarity import (
    flat_index, flat_rows, host_loop, l2_normalize, require_query, selection, stable_desc_order, token_cosine,
)
from studylib.pruners.registry import Param, register


def relevance(embeddings: torch.Tensor, text: torch.Tensor, negate: bool = True) -> torch.Tensor:
    """Per-image min–max normalised relevance ``(B, N)`` (official CDPruner formula, one text)."""
    img = l2_normalize(embeddings)
    txt = l2_normalize(text).to(img.dtype)
    rel = torch.bmm(img, txt.unsqueeze(2)).squeeze(2)
    if negate:
        rel = -rel
    lo = rel.amin(dim=1, keepdim=True)
    hi = rel.amax(dim=1, keepdim=True)
    span = hi - lo
    out = (rel - lo + 1e-6) / torch.where(span > 0, span, torch.ones_like(span))
    return torch.where(span > 0, out, torch.ones_like(out))


def dpp_greedy(kernel: torch.Tensor, k: int, fill_score: torch.Tensor) -> torch.Tensor:
    """Fast greedy MAP on ``(B, N, N)`` kernels; returns ``(B, k)`` in pick order.

    Images whose kernel is exhausted (rank < k) continue by ``fill_score`` (descending).

    Incremental Cholesky (Chen et al. 2018): row ``t`` of ``C`` is the new column of the Cholesky
    factor of ``L_T`` extended to every candidate, so ``d²_i = L_ii − Σ_t c_ti²`` is the Schur
    complement ``det L_{T∪i} / det L_T`` after ``O(t·N)`` work per step (one ``1 × t`` by
    ``t × N`` product), never a determinant.  The whole batch moves in lockstep: one
    ``index_select`` of the picks' kernel rows, one batched product, elementwise updates.  The
    rank-exhaustion stop (module docstring) is checked once after the loop: an image's picks
    before its first step with ``d²_j ≤ tol`` are final (images never interact), the rest are
    replaced by the fill.  Same operations in the same order as the naive loop of
    ``_reference.py`` (the official loop plus the exhaustion guard), hence the same picks.
    """
    b, n, _ = kernel.shape
    dtype = kernel.dtype
    d2 = torch.diagonal(kernel, dim1=1, dim2=2).clone()
    tol = 10.0 * torch.finfo(dtype).eps * d2.amax(dim=1).clamp_min(torch.finfo(dtype).tiny)
    cis = torch.zeros(b, k, n, dtype=dtype, device=kernel.device)
    if host_loop(kernel):
        out, best = _dpp_scan_host(kernel, k, d2, cis)
    else:
        rows, base = flat_rows(kernel)
        picks, bests = [], []
        for t in range(k):
            best, j = d2.max(dim=1)
            idx = flat_index(j, base)
            lj = rows.index_select(0, idx)  # L[j, :]
            if t > 0:
                cj = cis[:, :t, :].gather(2, j.view(b, 1, 1).expand(b, t, 1)).view(b, 1, t)  # C[:t, j]
                lj = lj - torch.bmm(cj, cis[:, :t, :]).squeeze(1)
            torch.div(lj, torch.sqrt(best).unsqueeze(1), out=cis[:, t, :])
            e = cis[:, t, :]
            d2.sub_(e * e)
            d2.view(-1).index_fill_(0, idx, float("-inf"))
            picks.append(j)
            bests.append(best)
        out, best = torch.stack(picks, dim=1), torch.stack(bests, dim=1)
    exhausted = ~(best > tol.unsqueeze(1))  # also catches NaN
    for i in exhausted.any(dim=1).nonzero().flatten().tolist():
        t0 = int(exhausted[i].nonzero()[0])
        score = fill_score[i].clone()
        score[out[i, :t0]] = float("-inf")
        out[i, t0:] = stable_desc_order(score)[: k - t0]
    return out


def _dpp_scan_host(kernel: torch.Tensor, k: int, d2: torch.Tensor,
                   cis: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor]:
    """The loop of :func:`dpp_greedy` for one image, stepping in numpy
    (:func:`~studylib.pruners._similarity.host_loop`) on the same buffers.  The ``1 × t`` by
    ``t × N`` product stays ``torch.bmm`` on operands of the same shapes, strides and allocator
    (the gathered ``C[:t, j]`` is copied into a torch buffer), so it returns the same bits; the
    rest is elementwise (``−``, ``/``, ``sqrt``, ``·``: correctly rounded in both) and the
    first-maximum ``argmax`` of ``torch.max``."""
    rows = kernel[0].detach().numpy()
    d2_np = d2[0].numpy()  # d2 and cis are fresh torch buffers: the numpy views write into them
    cis_np = cis[0].numpy()
    cj = torch.empty(1, 1, k, dtype=kernel.dtype)
    cj_np = cj.view(-1).numpy()
    picks, bests = [], []
    with np.errstate(invalid="ignore", divide="ignore"):  # an exhausted kernel's NaNs, as in torch (replaced later)
        for t in range(k):
            j = int(d2_np.argmax())
            best = d2_np[j]
            lj = rows[j]
            if t > 0:
                cj_np[:t] = cis_np[:t, j]
                lj = lj - torch.bmm(cj[:, :, :t], cis[:, :t, :])[0, 0].numpy()
            np.divide(lj, np.sqrt(best), out=cis_np[t])
            e = cis_np[t]
            d2_np -= e * e
            d2_np[j] = -np.inf
            picks.append(j)
            bests.append(best)
    return (torch.tensor([picks], dtype=torch.long, device=kernel.device),
            torch.from_numpy(np.array([bests], dtype=d2_np.dtype)).to(kernel.device))


@register(
    "cdpruner",
    Param("negate", bool, True, "relevance = −cos (official sign) or +cos"),
    summary="CDPruner: conditional DPP (relevance-weighted cosine kernel), fast greedy MAP",
    needs_query=("text_embedding",),
    family="diversity", source="Theia-4869/CDPruner (pruners.md §7)",
)
def cdpruner(tokens: VisualTokens, k: int, query: QueryContext | None = None, *, negate: bool) -> Selection:
    """Conditional DPP on projected tokens with question relevance; raster order."""
    query = require_query(query, "cdpruner", "text_embedding (B, D_l)")
    text = query.text_embedding
    if text.shape != (tokens.batch_size, tokens.embeddings.shape[2]):
        raise ValueError(
            f"cdpruner: text_embedding has shape {tuple(text.shape)}, expected "
            f"({tokens.batch_size}, {tokens.embeddings.shape[2]})"
        )
    sim = token_cosine(tokens, "llm")
    rel = relevance(tokens.embeddings, text, negate).to(sim.dtype)
    kernel = rel.unsqueeze(2) * sim * rel.unsqueeze(1)
    order = dpp_greedy(kernel, k, rel)
    return selection(order.sort(dim=1).values)
