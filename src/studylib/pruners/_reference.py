"""Naive reference selection loops ("before"), kept to test and time the fast ones against.

Each function here is the straightforward transcription of a selection loop — the official code
where there is one (DivPrune, CDPruner), otherwise the rule as published (FPS, AgilePruner) —
with the same signature as the fast kernel it stands for:

* :func:`max_min_order` for ``divprune.max_min_order`` (divprune, fps, agile_mix): first pick by
  ``kthvalue``, then the ``min`` over **all** selected rows recomputed at every step (O(t·N) per
  step): the official DivPrune loop, plus the explicit mask of picked tokens (divprune.py);
* :func:`threshold_order` for ``agile.threshold_order`` (agile, agile_entropy, agile_count):
  boolean alive / chosen masks, one threshold row per step, the fallback inside the loop (the
  implementation before issue 16);
* :func:`dpp_greedy` for ``cdpruner.dpp_greedy`` (cdpruner): the official fast-greedy loop
  (``cis`` / ``di2s``) with the rank-exhaustion guard checked at every step;
* :func:`cluster_merge` for ``sparsevlm.cluster_merge`` (sparsevlm's recycling): the DPC-KNN of the
  official ``cluster_and_merge`` one image and one token at a time, pairwise distances as written
  (``‖x_i − x_j‖``), the official ``topk`` / ``argmin`` steps as Python loops (no random jitter);
* :func:`select_raters` for ``sparsevlm.select_raters``: the official rater rule on one unpadded row
  at a time (``softmax(V Tᵀ)`` over the text, mean over the image tokens, ``> mean``).

Only the loops differ: similarities, relevance, erank, budgets and output ordering are the
pruners' own code.  :func:`naive_kernels` swaps the kernels for these references while a
pruner runs (every ``studylib.pruners`` module attribute bound to a fast kernel is rebound, then
restored), so ``run_naive(pruner, tokens, k, query)`` is the complete naive pruner on
bit-identical inputs.  ``tests/pruners/test_pruners_fast.py`` checks that fast and naive keep the
same tokens; ``benchmarks/pruners.py`` times both.  Not thread-safe; for tests and benchmarks only.
"""

from __future__ import annotations

import sys
from contextlib import contextmanager
from typing import Iterator

import torch

import math

from studylib.tokens import QueryContext, Selection, VisualTokens
from studylib.pruners import agile, cdpruner, divprune, sparsevlm
from studylib.pruners._similarity import stable_desc_order
from studylib.pruners.registry import Pruner


def max_min_order(dist: torch.Tensor, k: int, first: torch.Tensor | None = None) -> torch.Tensor:
    """Greedy max–min, official DivPrune loop: ``min`` recomputed over every selected row per step."""
    b, n, _ = dist.shape
    dev = dist.device
    rows = torch.arange(b, device=dev)
    if first is None:
        if n >= 2:
            first = torch.kthvalue(dist, 2, dim=1).values.argmax(dim=1)
        else:
            first = torch.zeros(b, dtype=torch.long, device=dev)
    order = torch.empty(b, k, dtype=torch.long, device=dev)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=dev)
    order[:, 0] = first
    chosen[rows, first] = True
    for t in range(1, k):
        selected = dist[rows.unsqueeze(1), order[:, :t]]  # (B, t, N): rows of every selected token
        score = selected.amin(dim=1).masked_fill(chosen, float("-inf"))
        j = score.argmax(dim=1)
        order[:, t] = j
        chosen[rows, j] = True
    return order


def threshold_order(sim: torch.Tensor, attention: torch.Tensor, k: int, scale: torch.Tensor,
                    tau_max: float, order: str = "rank") -> torch.Tensor:
    """AgilePruner thresholding, one pick per step with explicit alive / chosen masks."""
    b, n = attention.shape
    dev = sim.device
    rows = torch.arange(b, device=dev)
    by_attention = stable_desc_order(attention)
    rank_of = torch.empty_like(by_attention)
    rank_of.scatter_(1, by_attention, torch.arange(n, device=dev).expand(b, n).contiguous())
    alive = torch.ones(b, n, dtype=torch.bool, device=dev)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=dev)
    out = torch.empty(b, k, dtype=torch.long, device=dev)
    scale = scale.to(sim.dtype)
    for t in range(k):
        cand = torch.where(alive.any(dim=1, keepdim=True), alive, ~chosen)  # fallback: attention order
        j = torch.where(cand, rank_of, n).argmin(dim=1)
        out[:, t] = j
        position = (rank_of[rows, j] + 1).to(sim.dtype) if order == "rank" else torch.full_like(scale, t + 1)
        tau = (position * scale * agile.TAU_STEP).clamp(max=tau_max)
        dist = 1.0 - sim[rows, j, :]
        alive &= ~(dist < tau.unsqueeze(1))
        alive[rows, j] = False
        chosen[rows, j] = True
    return out


def dpp_greedy(kernel: torch.Tensor, k: int, fill_score: torch.Tensor) -> torch.Tensor:
    """CDPruner's greedy MAP loop (official ``cis`` / ``di2s`` updates) with the exhaustion guard per step."""
    b, n, _ = kernel.shape
    dtype = kernel.dtype
    rows = torch.arange(b, device=kernel.device)
    neg_inf = torch.tensor(float("-inf"), dtype=dtype, device=kernel.device)
    d2 = torch.diagonal(kernel, dim1=1, dim2=2).clone()
    tol = 10.0 * torch.finfo(dtype).eps * d2.amax(dim=1).clamp_min(torch.finfo(dtype).tiny)
    cis = torch.zeros(b, k, n, dtype=dtype, device=kernel.device)
    chosen = torch.zeros(b, n, dtype=torch.bool, device=kernel.device)
    done = torch.zeros(b, dtype=torch.bool, device=kernel.device)
    order = torch.empty(b, k, dtype=torch.long, device=kernel.device)
    for t in range(k):
        j = d2.argmax(dim=1)
        best = d2[rows, j]
        done |= ~(best > tol)  # also catches NaN
        if bool(done.any()):
            fill = torch.where(chosen, neg_inf, fill_score).argmax(dim=1)
            j = torch.where(done, fill, j)
        order[:, t] = j
        chosen[rows, j] = True
        if not bool(done.all()):
            lj = kernel[rows, j, :]  # (B, N)
            if t > 0:
                cj = cis[rows, :t, j]  # (B, t)
                lj = lj - torch.bmm(cj.unsqueeze(1), cis[:, :t, :]).squeeze(1)
            denom = torch.sqrt(torch.where(done, torch.ones_like(best), best))
            e = torch.where(done.unsqueeze(1), torch.zeros_like(lj), lj / denom.unsqueeze(1))
            cis[:, t, :] = e
            d2 = d2 - e * e
        d2[rows, j] = neg_inf
        d2 = torch.where(chosen, neg_inf, d2)
    return order


def cluster_merge(x: torch.Tensor, c: int) -> torch.Tensor:
    """SparseVLM's DPC-KNN merge (official ``cluster_and_merge``), one image and one token at a time."""
    out = []
    for image in x:
        m, d = image.shape
        dist = [[float((image[i] - image[j]).norm()) / math.sqrt(d) for j in range(m)] for i in range(m)]
        density = [math.exp(-sum(v * v for v in sorted(row)[:c]) / c) for row in dist]
        farthest = max(max(row) for row in dist)
        delta = [min([dist[i][j] for j in range(m) if density[j] > density[i]], default=farthest) for i in range(m)]
        centres = sorted(range(m), key=lambda i: (-delta[i] * density[i], i))[:c]
        members: list[list[int]] = [[] for _ in centres]
        for i in range(m):
            nearest = centres.index(i) if i in centres else min(range(c), key=lambda a: (dist[centres[a]][i], a))
            members[nearest].append(i)
        out.append(torch.stack([image[group].sum(dim=0) / (len(group) + 1e-6) for group in members]))
    return torch.stack(out)


def select_raters(visual: torch.Tensor, text: torch.Tensor, valid: torch.Tensor) -> torch.Tensor:
    """SparseVLM's raters, the official rule on one unpadded row at a time."""
    out = torch.zeros_like(valid)
    for b in range(len(visual)):
        columns = valid[b].nonzero().flatten()
        relevance = (visual[b] @ text[b, columns].T).softmax(dim=1).mean(dim=0)
        chosen = relevance > relevance.mean()
        out[b, columns] = chosen if bool(chosen.any()) else True
    return out


#: fast kernel -> naive reference
SWAPS = {
    divprune.max_min_order: max_min_order,
    agile.threshold_order: threshold_order,
    cdpruner.dpp_greedy: dpp_greedy,
    sparsevlm.cluster_merge: cluster_merge,
    sparsevlm.select_raters: select_raters,
}

#: registered pruners whose selection runs through a swapped kernel (the others have one implementation)
NAIVE_PRUNERS = ("divprune", "fps", "agile", "agile_entropy", "agile_mix", "agile_count", "cdpruner")


@contextmanager
def naive_kernels() -> Iterator[None]:
    """Within the block, every pruner runs the naive reference loops instead of the fast kernels."""
    by_id = {id(fast): naive for fast, naive in SWAPS.items()}
    swapped = []
    for name, module in list(sys.modules.items()):
        if module is None or not name.startswith("studylib.pruners."):
            continue
        for attr, value in list(vars(module).items()):
            if id(value) in by_id:
                swapped.append((module, attr, value))
                setattr(module, attr, by_id[id(value)])
    try:
        yield
    finally:
        for module, attr, value in swapped:
            setattr(module, attr, value)


def run_naive(pruner: Pruner, tokens: VisualTokens, k: int, query: QueryContext | None = None) -> Selection:
    """``pruner(tokens, k, query)`` with the naive reference loops."""
    with naive_kernels():
        return pruner(tokens, k, query)
