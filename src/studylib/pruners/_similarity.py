"""Shared numerics of the pruners: precision, normalisation, cosine matrices, budget checks.

Config-independent per-image quantities (the cosine matrices, FPS's distances, the erank) are
memoised on the :class:`~studylib.tokens.VisualTokens` object (:func:`token_cosine`,
:meth:`VisualTokens.derived`): a sweep of many configurations on one batch pays one ``N × N``
product per image and space.  The memo holds the very tensors the plain call computes, so the
selections are the same with or without it.

Precision rule (all pruners): similarities are computed in ``float32`` at least; ``float64``
inputs stay ``float64`` (the reproducible reference, see pruners.md §13 errata), ``float16`` /
``bfloat16`` inputs (the official code's fp16) are promoted to ``float32``.
"""

from __future__ import annotations

import numbers

import torch

from studylib.tokens import QueryContext, Selection, VisualTokens

#: greedy loops of a single image on the CPU step in numpy (:func:`host_loop`); ``False`` forces the
#: batched torch loops everywhere (the tests compare both)
HOST_LOOPS = True

#: eps of the row L2 normalisation (guards zero vectors; official code divides by the plain norm)
NORM_EPS = 1e-12


def work_dtype(x: torch.Tensor) -> torch.dtype:
    """``float64`` stays ``float64``; everything else is computed in ``float32``."""
    return torch.float64 if x.dtype == torch.float64 else torch.float32


def as_work(x: torch.Tensor) -> torch.Tensor:
    return x.to(work_dtype(x))


def l2_normalize(x: torch.Tensor) -> torch.Tensor:
    """Row-wise ``x / ||x||`` in the working precision (last dimension)."""
    x = as_work(x)
    return x / x.norm(dim=-1, keepdim=True).clamp_min(NORM_EPS)


def cosine_matrix(x: torch.Tensor) -> torch.Tensor:
    """``(B, N, D) -> (B, N, N)`` cosine similarities ``S = X̂ X̂ᵀ`` (batched ``bmm``)."""
    xn = l2_normalize(x)
    return torch.bmm(xn, xn.transpose(1, 2))


def space_features(tokens: VisualTokens, space: str) -> torch.Tensor:
    """``llm``: the projected embeddings; ``vision``: the pre-projector features."""
    return tokens.embeddings if space == "llm" else tokens.features


def token_cosine(tokens: VisualTokens, space: str) -> torch.Tensor:
    """:func:`cosine_matrix` of ``space``'s features, computed once per ``tokens`` object
    (:meth:`VisualTokens.derived`) and shared by every pruner called on it: do not modify it in place."""
    x = space_features(tokens, space)
    return tokens.derived(("cosine", space, work_dtype(x)), lambda t: cosine_matrix(space_features(t, space)))


def host_loop(x: torch.Tensor) -> bool:
    """Whether a greedy loop over ``x`` (batch first) steps in numpy: one image on the CPU.

    A torch operation costs ~5–10 µs of dispatch whatever its size, so at batch 1 a K-step loop of
    four operations spends most of its time there; numpy's per-call cost is ~1 µs.  The numpy loops
    apply the same exact operations (first-index ``argmax`` / ``argmin``, ``minimum``, comparisons,
    fills) to the same values, so the picks are identical; batches keep the torch loop, which
    moves every image of the batch in one operation (and runs on any device)."""
    return HOST_LOOPS and x.device.type == "cpu" and x.shape[0] == 1


def check_budget(k: int, n: int, name: str) -> int:
    """Validate the budget ``1 <= k <= n``; return it as a plain ``int``."""
    if isinstance(k, bool) or not isinstance(k, numbers.Integral):  # numpy integers are Integral
        raise ValueError(f"{name}: the budget k must be an int, got {k!r}")
    k = int(k)
    if not 1 <= k <= n:
        raise ValueError(f"{name}: the budget k must satisfy 1 <= k <= N = {n}, got k = {k}")
    return k


def check_tokens(tokens: object, name: str) -> VisualTokens:
    if not isinstance(tokens, VisualTokens):
        raise TypeError(f"{name}: expected VisualTokens, got {type(tokens).__name__}")
    return tokens


def column_second_smallest(d: torch.Tensor) -> torch.Tensor:
    """``(B, N, N) -> (B, N)``: the 2nd-smallest entry of every column (over dim 1), ``N >= 2``.

    The same values as ``torch.kthvalue(d, 2, dim=1).values`` (an order statistic does not depend
    on how it is found), in a few vectorised passes instead of one selection per column::

        lo_j = min_i d_ij ;   2nd_j = lo_j if lo_j occurs twice in column j, else min_{i: d_ij > lo_j} d_ij

    ``kthvalue`` along a strided dimension costs milliseconds at N = 576; this costs ~0.2 ms.
    Finite inputs (NaN handling is not reproduced).
    """
    lo = d.amin(dim=1, keepdim=True)
    at_lo = d == lo
    rest = d.masked_fill(at_lo, float("inf")).amin(dim=1)
    return torch.where(at_lo.sum(dim=1) >= 2, lo.squeeze(1), rest)


def flat_rows(mat: torch.Tensor) -> tuple[torch.Tensor, torch.Tensor | None]:
    """``(B, N, M) -> ((B·N, M) view, row offsets)`` for greedy loops.

    Row ``j[b]`` of every image is then one ``index_select`` of the view at ``flat_index(j, base)``
    (an advanced-indexing gather ``mat[rows, j]`` costs twice as much per step).  The same flat
    indices address entry ``j[b]`` of a contiguous ``(B, N)`` tensor's ``view(-1)``.  ``base`` is
    ``None`` for a single image (the index is ``j`` itself).
    """
    b, n, m = mat.shape
    base = torch.arange(b, device=mat.device) * n if b > 1 else None
    return mat.reshape(b * n, m), base


def flat_index(j: torch.Tensor, base: torch.Tensor | None) -> torch.Tensor:
    return j if base is None else j + base


def stable_desc_order(score: torch.Tensor) -> torch.Tensor:
    """Indices sorting ``score`` descending along the last dim; ties keep the lower index first.

    (``torch.topk`` leaves tie order unspecified; a stable sort makes every selection
    deterministic.)
    """
    return torch.sort(score, dim=-1, descending=True, stable=True).indices


def top_k_raster(score: torch.Tensor, k: int) -> torch.Tensor:
    """The ``k`` highest scores per row, returned as ascending (raster-order) indices."""
    return stable_desc_order(score)[..., :k].sort(dim=-1).values


def mask_to_indices(mask: torch.Tensor, k: int, name: str) -> torch.Tensor:
    """``(B, N)`` boolean mask with exactly ``k`` True per row -> ``(B, k)`` ascending indices."""
    counts = mask.sum(dim=1)
    if not bool((counts == k).all()):
        raise RuntimeError(f"{name}: internal error, the selection holds {counts.tolist()} tokens instead of {k}")
    # a stable descending sort of the mask puts the True entries first, in ascending index order
    return torch.sort(mask.to(torch.int8), dim=1, descending=True, stable=True).indices[:, :k]


def selection(indices: torch.Tensor, merged: torch.Tensor | None = None) -> Selection:
    return Selection(indices=indices.to(torch.long).contiguous(), merged=merged)


def require_query(query: QueryContext | None, name: str, what: str) -> QueryContext:
    if query is None:
        raise ValueError(f"{name} needs the question: pass query=QueryContext(...) with {what}")
    return query
