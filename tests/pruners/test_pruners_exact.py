"""Exact special cases: each fast implementation against a naive transcription of its rule, and hand examples.

Inputs are continuous random float64 (no ties, pruners.md §13), so orders must agree exactly.
"""

from __future__ import annotations

import math

import numpy as np
import pytest
import torch

from _pruner_helpers import make_tokens, tokens_from
from studylib.tokens import QueryContext
from studylib.pruners import (
    attention_entropy,
    dart_rule,
    erank,
    fastv_rule,
    get_pruner,
    reference_entropy,
    reference_erank,
)
from studylib.pruners.agile import threshold_order
from studylib.pruners.divprune import divprune_order
from studylib.pruners.fps import fps_order
from studylib.pruners.scope import facility_location_order

SEEDS = [0, 1, 2, 3]


def _np(x: torch.Tensor) -> np.ndarray:
    return x.detach().to(torch.float64).numpy()


def _cos(x: np.ndarray) -> np.ndarray:
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    return xn @ xn.T


def _stable_desc(a: np.ndarray) -> list[int]:
    return sorted(range(len(a)), key=lambda i: (-a[i], i))


# --- SCOPE ---------------------------------------------------------------------------------------

def naive_scope(x, a, k, alpha=1.0, p=1.0, combine="mul"):
    """Facility-location greedy written out: recompute every gain from scratch at each step."""
    s = _cos(x)
    n = len(x)
    selected: list[int] = []
    for _ in range(k):
        cover = [max([0.0] + [s[i, t] for t in selected]) for i in range(n)]
        best, best_j = -math.inf, -1
        for j in range(n):
            if j in selected:
                continue
            gain = sum(max(0.0, s[i, j] - cover[i]) ** p for i in range(n))
            sal = a[j] ** alpha
            score = gain * sal if combine == "mul" else gain + sal
            if score > best:
                best, best_j = score, j
        selected.append(best_j)
    return selected


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha,p,combine", [(0.0, 1.0, "mul"), (1.0, 1.0, "mul"), (0.5, 2.0, "mul"), (1.0, 1.0, "add")])
def test_scope_equals_naive_facility_location(seed, alpha, p, combine):
    tokens, _ = make_tokens(seed, b=1, rows=5, cols=6, dtype=torch.float64)
    k = 12
    x, a = _np(tokens.features[0]), _np(tokens.cls_attention[0]) * 16  # official head-sum scale
    expected = naive_scope(x, a, k, alpha, p, combine)
    sim = torch.from_numpy(_cos(x)).unsqueeze(0)
    order = facility_location_order(sim, k, torch.from_numpy(a).unsqueeze(0), alpha=alpha, gap_power=p, combine=combine)
    assert order[0].tolist() == expected
    sel = get_pruner("scope", alpha=alpha, gap_power=p, combine=combine)(tokens, k)
    assert sel.indices[0].tolist() == sorted(expected)


def test_scope_alpha_zero_ignores_saliency_and_scale_invariance():
    tokens, _ = make_tokens(7, b=2, dtype=torch.float64)
    base = get_pruner("scope(alpha=0,p=1)")(tokens, 9).indices
    flat = type(tokens)(tokens.features, tokens.embeddings, torch.rand_like(tokens.cls_attention),
                        tokens.cls_feature, tokens.keys, tokens.grid, tokens.image_keys)
    assert torch.equal(get_pruner("scope(alpha=0,p=1)")(flat, 9).indices, base)
    # head-sum vs head-mean: scaling the saliency never changes the multiplicative selection
    assert torch.equal(get_pruner("scope", heads=1)(tokens, 9).indices, get_pruner("scope")(tokens, 9).indices)


# --- saliency / FastV ----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_saliency_equals_topk(seed):
    tokens, _ = make_tokens(seed, b=3)
    for k in (1, 5, 17, 36):
        expected = torch.topk(tokens.cls_attention, k, dim=1).indices.sort(dim=1).values
        assert torch.equal(get_pruner("saliency")(tokens, k).indices, expected)
        assert torch.equal(get_pruner("fastervlm")(tokens, k).indices, expected)


def test_fastv_rule_and_stage():
    att = torch.softmax(torch.randn(2, 4, 50, generator=torch.Generator().manual_seed(0)), dim=-1)
    pruner = get_pruner("fastv")
    assert pruner.stage == "llm" and pruner.layer == 2
    expected = torch.topk(att.mean(dim=1), 20, dim=1).indices.sort(dim=1).values
    assert torch.equal(pruner.rule(att, 20), expected)
    assert torch.equal(fastv_rule(att.mean(dim=1), 20), expected)
    tokens, _ = make_tokens(0)
    with pytest.raises(RuntimeError, match="inside the language model"):
        pruner(tokens, 4)
    with pytest.raises(ValueError):
        fastv_rule(att.mean(dim=1), 51)


# --- DivPrune / FPS ------------------------------------------------------------------------------

def test_divprune_hand_example():
    # unit vectors at 0°, 20°, 90°, 95°, 200°.  Nearest-neighbour cosine distances: 0.060, 0.060,
    # 0.0038, 0.0038, 1.259 → first pick 4 (most isolated).  Distances to 4: 1.940, 2.000, 1.342,
    # 1.259 → pick 1.  min(d to 4, d to 1): 0.060, 0.658, 0.741 → pick 3.
    ang = np.deg2rad([0, 20, 90, 95, 200])
    pts = np.stack([np.cos(ang), np.sin(ang)], axis=1)
    tokens = tokens_from(embeddings=pts)
    assert divprune_order(tokens.embeddings, 3)[0].tolist() == [4, 1, 3]
    assert get_pruner("divprune")(tokens, 3).indices[0].tolist() == [1, 3, 4]
    # the vision space is used only when asked for
    assert get_pruner("divprune(space=vision)")(tokens_from(features=pts, embeddings=np.eye(5)), 3).indices[0].tolist() == [1, 3, 4]


def naive_divprune(x, k):
    """Official loop: first = argmax of each column's 2nd-smallest distance, then argmax of the min
    over all selected rows (recomputed every step)."""
    d = 1.0 - _cos(x)
    sel = [int(np.argmax(np.sort(d, axis=0)[1]))]
    while len(sel) < k:
        sel.append(int(np.argmax(d[sel].min(axis=0))))
    return sel


@pytest.mark.parametrize("seed", SEEDS)
def test_divprune_equals_official_loop(seed):
    tokens, _ = make_tokens(seed, b=2, dtype=torch.float64)
    order = divprune_order(tokens.embeddings, 15)
    for b in range(2):
        assert order[b].tolist() == naive_divprune(_np(tokens.embeddings[b]), 15)


def test_fps_hand_example():
    # p0=(0,0) p1=(1,0) p2=(5,0) p3=(5,1.5) p4=(2,4).  From p0: distances 1, 5, 5.22, 4.47 → p3;
    # min distances 1, 1.5, 3.91 → p4; then 1, 1.5 → p2.
    pts = np.array([[0, 0], [1, 0], [5, 0], [5, 1.5], [2, 4]], dtype=float)
    tokens = tokens_from(embeddings=pts)
    first = torch.zeros(1, dtype=torch.long)
    assert fps_order(tokens.embeddings, 4, first)[0].tolist() == [0, 3, 4, 2]
    assert get_pruner("fps")(tokens, 3).indices[0].tolist() == [0, 3, 4]
    # most isolated start: nearest-neighbour distances 1, 1, 1.5, 1.5, 3.91 → p4; then p2 (5), p0, p3
    assert get_pruner("fps(start=isolated)")(tokens, 4).indices[0].tolist() == [0, 2, 3, 4]
    assert get_pruner("fps(start=isolated)")(tokens, 2).indices[0].tolist() == [2, 4]
    att = [0.1, 0.5, 0.1, 0.1, 0.1]
    tokens = tokens_from(embeddings=pts, attention=att)
    assert get_pruner("fps(start=saliency)")(tokens, 2).indices[0].tolist() == [1, 3]


# --- VisionZip -----------------------------------------------------------------------------------

def naive_visionzip(h, cls, keys, a, dom, ctx):
    order = _stable_desc(a)
    dominant = sorted(order[: dom - 1])
    rest = [i for i in range(len(a)) if i not in dominant]
    m = len(rest)
    if ctx == 0:
        return dominant, np.concatenate([cls[None], h[dominant]])
    step = max(1, m // ctx)
    targets = list(range(0, m, step))[:ctx]
    kn = keys[rest] / np.linalg.norm(keys[rest], axis=1, keepdims=True)
    sums = {t: np.zeros(h.shape[1]) for t in targets}
    counts = {t: 0 for t in targets}
    for pos in range(m):
        if pos in targets:
            continue
        t = targets[int(np.argmax([kn[pos] @ kn[t] for t in targets]))]
        sums[t] += h[rest[pos]]
        counts[t] += 1
    contextual = [h[rest[t]] + sums[t] / max(counts[t], 1) for t in targets]
    return dominant, np.concatenate([cls[None], h[dominant], np.stack(contextual)])


@pytest.mark.parametrize("k,split", [(64, (54, 10)), (128, (108, 20)), (192, (162, 30)), (32, (27, 5)), (3, (3, 0))])
def test_visionzip_official_splits(k, split):
    from studylib.pruners.visionzip import split_budget

    assert split_budget(k, 0.15625) == split


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k", [1, 4, 10, 36])
def test_visionzip_equals_naive(seed, k):
    tokens, _ = make_tokens(seed, b=2, dtype=torch.float64)
    from studylib.pruners.visionzip import split_budget

    dom, ctx = split_budget(k, 0.15625)
    sel = get_pruner("visionzip")(tokens, k)
    for b in range(2):
        dominant, merged = naive_visionzip(_np(tokens.features[b]), _np(tokens.cls_feature[b]), _np(tokens.keys[b]),
                                           _np(tokens.cls_attention[b]), dom, ctx)
        assert sel.indices[b].tolist() == dominant
        np.testing.assert_allclose(_np(sel.merged[b]), merged, rtol=1e-10, atol=1e-10)


# --- VisPruner -----------------------------------------------------------------------------------

def naive_vispruner(x, a, k, r):
    """Official loop; asserts it stays in the regime the official code can run."""
    xn = x / np.linalg.norm(x, axis=1, keepdims=True)
    order = _stable_desc(a)
    k_imp = int(k * r)
    k_div = k - k_imp
    important, residual = order[:k_imp], order[k_imp:]
    while k_div > 0:
        big_r = len(residual)
        drop = min(8, big_r - k_div)
        if drop <= 0:
            break
        assert big_r % 2 == 0 and big_r // 2 >= drop, "outside the official code's regime"
        a_set, b_set = residual[0::2], residual[1::2]
        s = [max(xn[i] @ xn[j] for j in b_set) for i in a_set]
        keep = _stable_desc(np.array(s))[drop:]
        residual = [a_set[i] for i in keep] + b_set
    return sorted(important + (residual if k_div > 0 else []))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("k,r", [(16, 0.5), (12, 0.5), (19, 0.75), (25, 0.75), (20, 0.0), (24, 0.25), (64, 0.5), (5, 1.0)])
def test_vispruner_equals_official_loop(seed, k, r):
    tokens, _ = make_tokens(seed, b=2, rows=8, cols=8, dtype=torch.float64)
    sel = get_pruner("vispruner", important_ratio=r)(tokens, k)
    for b in range(2):
        assert sel.indices[b].tolist() == naive_vispruner(_np(tokens.features[b]), _np(tokens.cls_attention[b]), k, r)


def test_vispruner_exact_budget_where_official_fails():
    # N = 35: odd residuals and too-short rounds, which crash the official code (pruners.md §13)
    tokens, _ = make_tokens(5, b=2, rows=5, cols=7)
    for r in (0.0, 0.25, 0.5, 0.75, 1.0):
        pruner = get_pruner("vispruner", r=r)
        for k in range(1, 36):
            idx = pruner(tokens, k).indices
            assert idx.shape == (2, k) and bool((idx[:, 1:] > idx[:, :-1]).all())


# --- CDPruner ------------------------------------------------------------------------------------

def naive_cdpruner(emb, text, k):
    s = _cos(emb)
    t = text / np.linalg.norm(text)
    rel = -(emb / np.linalg.norm(emb, axis=1, keepdims=True)) @ t
    rel = (rel - rel.min() + 1e-6) / (rel.max() - rel.min())
    kernel = rel[:, None] * s * rel[None, :]
    d2 = np.diag(kernel).copy()
    c = np.zeros((k, len(rel)))
    sel = []
    for step in range(k):
        j = int(np.argmax(d2))
        sel.append(j)
        e = (kernel[j] - c[:step, j] @ c[:step]) / math.sqrt(d2[j])
        c[step] = e
        d2 -= e**2
        d2[j] = -np.inf
    return sorted(sel)


@pytest.mark.parametrize("seed", SEEDS)
def test_cdpruner_equals_official_loop(seed):
    tokens, query = make_tokens(seed, b=2, dl=24, dtype=torch.float64)
    sel = get_pruner("cdpruner")(tokens, 12, query)
    for b in range(2):
        assert sel.indices[b].tolist() == naive_cdpruner(_np(tokens.embeddings[b]), _np(query.text_embedding[b]), 12)


def test_cdpruner_rank_exhaustion_and_query():
    tokens, query = make_tokens(3, b=2, rows=6, cols=6, dl=4)  # rank ≤ 4 < K
    for dtype in (torch.float32, torch.float64):
        t = tokens.to("cpu")
        t = type(t)(t.features.to(dtype), t.embeddings.to(dtype), t.cls_attention.to(dtype), t.cls_feature.to(dtype),
                    t.keys.to(dtype), t.grid, t.image_keys)
        q = QueryContext(query.text_embedding.to(dtype))
        sel = get_pruner("cdpruner")(t, 20, q)
        assert sel.indices.shape == (2, 20) and bool((sel.indices[:, 1:] > sel.indices[:, :-1]).all())
        # the first rank(L) = 4 picks are the official ones; then the most relevant remaining tokens
        from studylib.pruners.cdpruner import relevance

        rel = relevance(t.embeddings, q.text_embedding)
        for b in range(2):
            dpp = naive_cdpruner(_np(t.embeddings[b]), _np(q.text_embedding[b]), 4)
            rest = [i for i in _stable_desc(_np(rel[b])) if i not in dpp][:16]
            assert sel.indices[b].tolist() == sorted(dpp + rest)
    with pytest.raises(ValueError, match="query"):
        get_pruner("cdpruner")(tokens, 5)


# --- ID-Selection --------------------------------------------------------------------------------

def naive_idselect(x, s0, k, gamma, update):
    sim = np.maximum(_cos(x), 0.0)
    score = s0.copy()
    sel: list[int] = []
    for _ in range(k):
        cand = [i for i in range(len(s0)) if i not in sel]
        j = max(cand, key=lambda i: (score[i], -i))
        sel.append(j)
        if update == "sum":
            score = score * np.exp(-gamma * sim[j])
        else:
            score = s0 * np.exp(-gamma * sim[sel].max(axis=0))
    return sorted(sel)


def _minmax(v):
    return (v - v.min()) / (v.max() - v.min())


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("importance,update", [("saliency", "sum"), ("unified", "sum"), ("relevance", "max")])
def test_idselect_equals_naive(seed, importance, update):
    tokens, query = make_tokens(seed, b=2, dtype=torch.float64)
    gamma, k = 3.0, 10
    sel = get_pruner("idselect", importance=importance, gamma=gamma, update=update)(tokens, k, query)
    for b in range(2):
        sal, rel = _minmax(_np(tokens.cls_attention[b])), _minmax(_np(query.text_attention[b]))
        s0 = {"saliency": sal, "relevance": rel, "unified": 0.5 * sal + 0.5 * rel}[importance]
        assert sel.indices[b].tolist() == naive_idselect(_np(tokens.features[b]), s0, k, gamma, update)


def test_idselect_gamma_zero_is_topk_and_needs_query():
    tokens, query = make_tokens(2, b=2)
    expected = get_pruner("saliency")(tokens, 7).indices
    assert torch.equal(get_pruner("idselect(gamma=0)")(tokens, 7).indices, expected)
    # γ = 20 with many picks must not underflow into index-order ties
    sel = get_pruner("idselect")(tokens, 30).indices
    assert not torch.equal(sel, torch.arange(30).expand(2, 30))
    with pytest.raises(ValueError, match="query"):
        get_pruner("idselect(imp=relevance)")(tokens, 5)
    with pytest.raises(ValueError, match="text_attention"):
        get_pruner("idselect(imp=unified)")(tokens, 5, QueryContext(query.text_embedding))



def exact_suppression_order(s0: np.ndarray, sim: np.ndarray, k: int, gamma: float) -> list[int]:
    """ID-Selection's compounding update in linear space with :mod:`decimal` numbers (no underflow:
    ``exp(-774)`` stays positive), first maximum on ties: the reference for large K/N."""
    from decimal import Decimal, localcontext

    with localcontext() as context:
        context.prec = 40
        score = [Decimal(float(v)) for v in s0]
        picks: list[int] = []
        for _ in range(k):
            j = max((i for i in range(len(score)) if i not in picks), key=lambda i: (score[i], -i))
            picks.append(j)
            score = [v * Decimal(-gamma * max(float(sim[j, i]), 0.0)).exp() for i, v in enumerate(score)]
    return picks


@pytest.mark.parametrize("host", [True, False])
def test_idselect_keeps_zero_importance_last_issue_28(host, monkeypatch):
    """Issue 28: N = 144, D = 64, K = 128, seed 0.  The old floor s⁰ ≥ 1e-30 (log −69) kept the
    least salient token (importance 0 after min–max, token 23 here) at step 118 and left the positive
    token 79 out; in exact arithmetic a zero score stays below every positive one."""
    import studylib.pruners._similarity as similarity
    from studylib.pruners.idselect import importance_scores, suppression_order
    from studylib.pruners._similarity import token_cosine

    monkeypatch.setattr(similarity, "HOST_LOOPS", host)
    tokens, _ = make_tokens(0, b=1, rows=12, cols=12, dv=64, dl=16, dh=8)
    score = importance_scores(tokens, None, "saliency", 0.5)
    sim = token_cosine(tokens, "vision")
    order = suppression_order(score, sim, 128, 20.0, "sum")[0].tolist()
    assert int(score[0].argmin()) == 23 and float(score[0, 23]) == 0.0
    assert 23 not in order and 79 in order
    assert order == exact_suppression_order(_np(score[0]), _np(sim[0]), 128, 20.0)
    full = suppression_order(score, sim, 144, 20.0, "sum")[0].tolist()
    zeros = (score[0] == 0).nonzero().flatten().tolist()
    assert full[-len(zeros):] == zeros  # zeros last, in index order
    assert get_pruner("idselect")(tokens, 128).indices[0].tolist() == sorted(order)

# --- AgilePruner ---------------------------------------------------------------------------------

def test_erank_and_entropy_known_values():
    x = torch.zeros(1, 6, 5, dtype=torch.float64)
    x[0, :3, :3] = torch.eye(3)
    assert erank(x).item() == pytest.approx(3.0)
    rank1 = torch.outer(torch.arange(1.0, 7.0), torch.arange(1.0, 6.0)).unsqueeze(0)
    assert erank(rank1).item() == pytest.approx(1.0, abs=1e-6)
    rng = np.random.default_rng(0)
    m = rng.normal(size=(9, 4))
    sv = np.linalg.svd(m, compute_uv=False)
    q = sv / sv.sum()
    assert erank(torch.from_numpy(m)).item() == pytest.approx(float(np.exp(-(q * np.log(q)).sum())))
    assert erank(torch.from_numpy(m.T.copy())).item() == pytest.approx(float(np.exp(-(q * np.log(q)).sum())))
    assert attention_entropy(torch.full((2, 8), 0.1)).tolist() == pytest.approx([math.log(8)] * 2)
    t1, _ = make_tokens(0, b=2)
    t2, _ = make_tokens(1, b=1)
    expected = torch.cat([erank(t1.features), erank(t2.features)]).mean().item()
    assert reference_erank([t1, t2]) == pytest.approx(expected)
    assert reference_entropy([t1, t2]) == pytest.approx(
        torch.cat([attention_entropy(t1.cls_attention), attention_entropy(t2.cls_attention)]).mean().item())


def naive_agile(x, a, k, scale, tau_max, order_mode):
    cos = _cos(x)
    ranking = _stable_desc(a)
    cands = list(ranking)
    sel: list[int] = []
    while len(sel) < k and cands:
        j = cands.pop(0)
        position = ranking.index(j) + 1 if order_mode == "rank" else len(sel) + 1
        tau = min(position * scale * 0.01, tau_max)
        sel.append(j)
        cands = [i for i in cands if 1.0 - cos[i, j] >= tau]
    sel += [i for i in ranking if i not in sel][: k - len(sel)]
    return sorted(sel)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("avg,tau_max,order", [(5.0, 0.25, "rank"), (2.0, 0.5, "pick"), (1.0, 2.0, "rank"), (8.0, 0.1, "pick")])
def test_agile_equals_naive(seed, avg, tau_max, order):
    tokens, _ = make_tokens(seed, b=2, dtype=torch.float64)
    k = 14
    sel = get_pruner("agile", erank_avg=avg, tau_max=tau_max, order=order)(tokens, k)
    scale = erank(tokens.features) / avg
    for b in range(2):
        expected = naive_agile(_np(tokens.features[b]), _np(tokens.cls_attention[b]), k, scale[b].item(), tau_max, order)
        assert sel.indices[b].tolist() == expected


def test_agile_limits():
    tokens, _ = make_tokens(4, b=2)
    sal = get_pruner("saliency")(tokens, 9).indices
    # τ = 0 removes nothing: plain attention order
    assert torch.equal(get_pruner("agile", tau_max=0.0)(tokens, 9).indices, sal)
    assert torch.equal(get_pruner("agile_entropy", tau_max=0.0)(tokens, 9).indices, sal)
    # τ ≥ 2 removes every candidate after the first pick: the fallback refills in attention order
    sim = torch.eye(4).unsqueeze(0)
    out = threshold_order(sim, torch.tensor([[0.1, 0.4, 0.3, 0.2]]), 3, torch.tensor([1e4]), 2.0)
    assert out[0].tolist() == [1, 2, 3]


def test_agile_mix_limits():
    tokens, _ = make_tokens(6, b=2)
    k = 10
    assert torch.equal(get_pruner("agile_mix", ratio=1.0, slope=0.0)(tokens, k).indices, get_pruner("saliency")(tokens, k).indices)
    assert torch.equal(get_pruner("agile_mix", ratio=0.0, slope=0.0)(tokens, k).indices, get_pruner("divprune")(tokens, k).indices)
    assert torch.equal(get_pruner("agile_mix", ratio=0.0, slope=0.0, div="fps")(tokens, k).indices, get_pruner("fps")(tokens, k).indices)
    for r in (0.3, 0.5, 0.8):
        assert torch.equal(get_pruner("agile_mix", ratio=r, slope=0.0, div="vispruner")(tokens, k).indices,
                           get_pruner("vispruner", r=r)(tokens, k).indices)
    # mix = top-(K - K_div) attention ∪ first K_div DivPrune picks
    sel = get_pruner("agile_mix", ratio=0.5, slope=0.0)(tokens, k).indices
    div = divprune_order(tokens.embeddings, 5)
    for b in range(2):
        kept = set(sel[b].tolist())
        assert set(div[b].tolist()) <= kept
        rest = [i for i in _stable_desc(_np(tokens.cls_attention[b])) if i not in set(div[b].tolist())][:5]
        assert kept == set(div[b].tolist()) | set(rest)
    # adaptivity: a higher reference erank makes every image "simpler" → more attention tokens
    e = erank(tokens.features)
    from studylib.pruners.agile import important_ratio

    assert bool((important_ratio(e, 2 * e.max().item(), 0.5, 1.0) > 0.5).all())


# --- DART ----------------------------------------------------------------------------------------

def naive_dart(keys, hidden, start, n, p_img, p_txt, topk):
    norm = np.abs(keys).sum(axis=1)
    img = list(range(start, start + n))
    img_piv = sorted(img, key=lambda i: (-norm[i], i))[:p_img]
    txt = list(range(start + n, len(keys)))
    txt_piv = sorted(txt, key=lambda i: (-norm[i], i))[:p_txt]
    hn = hidden / np.linalg.norm(hidden, axis=1, keepdims=True)
    cand = [i for i in img if i not in img_piv]
    keep = set(img_piv)
    for p in sorted(img_piv + txt_piv):
        sims = [(hn[p] @ hn[c], c) for c in cand]
        taken = [c for _, c in sorted(sims)[:topk]]
        keep |= set(taken)
        cand = [c for c in cand if c not in taken]
    return sorted(i - start for i in keep)


@pytest.mark.parametrize("seed", SEEDS)
def test_dart_equals_official_rule(seed):
    g = torch.Generator().manual_seed(seed)
    b, start, n, length = 2, 5, 60, 80
    keys = torch.randn(b, length, 16, generator=g, dtype=torch.float64)
    hidden = torch.randn(b, length, 12, generator=g, dtype=torch.float64)
    pruner = get_pruner("dart")
    assert pruner.stage == "llm" and pruner.layer == 2
    k = 4 + 8 * 3  # the official budget P_img + (P_img + P_txt)·TOPK
    out = pruner.rule(keys, hidden, start, n, k)
    for i in range(b):
        assert out[i].tolist() == naive_dart(_np(keys[i]), _np(hidden[i]), start, n, 4, 4, 3)
    for k in (1, 4, 5, 13, 33, 60):
        out = dart_rule(keys, hidden, start, n, k)
        assert out.shape == (b, k) and bool((out[:, 1:] > out[:, :-1]).all()) and bool((out < n).all())
    # (B, H, L, d) keys are accepted
    out4 = dart_rule(keys.view(b, length, 2, 8).transpose(1, 2), hidden, start, n, 28)
    assert torch.equal(out4, dart_rule(keys, hidden, start, n, 28))
    # padding never becomes a text pivot; with no text after the image only image pivots remain
    assert dart_rule(keys[:, : start + n], hidden[:, : start + n], start, n, 20).shape == (b, 20)
    mask = torch.ones(b, length, dtype=torch.bool)
    mask[:, start + n :] = False
    torch.testing.assert_close(dart_rule(keys, hidden, start, n, 20, text_mask=mask),
                               dart_rule(keys[:, : start + n], hidden[:, : start + n], start, n, 20))
    tokens, _ = make_tokens(0)
    with pytest.raises(RuntimeError, match="inside the language model"):
        pruner(tokens, 4)


# --- random, budgets -----------------------------------------------------------------------------

def test_random_is_seeded_per_image_key():
    tokens, _ = make_tokens(0, b=3, rows=8, cols=8)
    a = get_pruner("random", seed=0)(tokens, 10).indices
    assert torch.equal(a, get_pruner("random", seed=0)(tokens, 10).indices)
    assert not torch.equal(a, get_pruner("random", seed=1)(tokens, 10).indices)
    assert torch.equal(a[2:3], get_pruner("random", seed=0)(tokens[2], 10).indices)  # batch-independent
    assert not torch.equal(a[0], a[1])  # independent per image


@pytest.mark.parametrize("bad", [0, -1, 37, 2.0, True, "4"])
def test_budget_validation(bad):
    tokens, query = make_tokens(0)
    with pytest.raises(ValueError, match="budget k"):
        get_pruner("scope")(tokens, bad, query)
    assert get_pruner("scope")(tokens, np.int64(4)).indices.shape == (2, 4)
