"""The fast selection kernels keep exactly the tokens of their naive references (``studylib.pruners._reference``).

Kernels are compared on the same inputs (batch > 1, several K, continuous values and inputs full
of exact ties), and every pruner built on them is compared end to end with
``run_naive`` (the naive loops swapped in).  Equality is exact: same picks, same order.
"""

from __future__ import annotations

import pytest
import torch

from _pruner_helpers import make_tokens
from studylib.tokens import VisualTokens
from studylib.pruners import _reference as ref
from studylib.pruners import agile, cdpruner, divprune, fps, get_pruner
from studylib.pruners._similarity import column_second_smallest, cosine_matrix

SEEDS = [0, 1, 2]
DTYPES = [torch.float32, torch.float64]


def _features(seed: int, b: int, n: int, d: int, dtype: torch.dtype, ties: bool) -> torch.Tensor:
    """Continuous features, or (``ties``) small integers with duplicated tokens: many exact ties."""
    g = torch.Generator().manual_seed(seed)
    if not ties:
        return torch.randn(b, n, d, generator=g, dtype=torch.float64).to(dtype)
    x = torch.randint(-2, 3, (b, n, d), generator=g).to(dtype)
    x[:, 1::4] = x[:, 0::4][:, : x[:, 1::4].shape[1]]  # exact duplicates
    x[:, :, 0] += 0.5  # no zero rows
    return x


def _quantized(x: torch.Tensor, step: float = 0.25) -> torch.Tensor:
    return torch.round(x / step) * step


def _tied_tokens(seed: int, b: int = 3, dtype: torch.dtype = torch.float32) -> tuple[VisualTokens, object]:
    """Tokens whose features, embeddings and attention repeat in pairs (exact ties everywhere)."""
    tokens, query = make_tokens(seed, b=b, rows=6, cols=6, dtype=dtype)
    pair = torch.arange(36) // 2 * 2
    tokens = VisualTokens(tokens.features[:, pair], tokens.embeddings[:, pair], tokens.cls_attention[:, pair],
                          tokens.cls_feature, tokens.keys[:, pair], tokens.grid, tokens.image_keys)
    return tokens, query


# --- building blocks -----------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("ties", [False, True])
def test_column_second_smallest_equals_kthvalue(seed, ties):
    d = 1.0 - cosine_matrix(_features(seed, 3, 30, 5, torch.float32, ties))
    if ties:
        d = _quantized(d)
    assert torch.equal(column_second_smallest(d), torch.kthvalue(d, 2, dim=1).values)
    two = torch.tensor([[[0.0, 1.0], [1.0, 0.0]], [[0.5, 0.5], [0.5, 0.5]]])
    assert column_second_smallest(two).tolist() == [[1.0, 1.0], [0.5, 0.5]]


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True])
def test_max_min_order_equals_naive(seed, dtype, ties):
    x = _features(seed, 3, 40, 6, dtype, ties)
    dists = [1.0 - cosine_matrix(x), fps.sq_distance_matrix(x)]
    if ties:
        dists.append(_quantized(dists[0]))
    first = torch.tensor([0, 17, 39])
    for dist in dists:
        for k in (1, 2, 7, 23, 40):
            assert torch.equal(divprune.max_min_order(dist, k), ref.max_min_order(dist, k))
            assert torch.equal(divprune.max_min_order(dist, k, first), ref.max_min_order(dist, k, first))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True])
@pytest.mark.parametrize("order", ["rank", "pick"])
def test_threshold_order_equals_naive(seed, dtype, ties, order):
    b, n = 3, 40
    sim = cosine_matrix(_features(seed, b, n, 6, dtype, ties))
    g = torch.Generator().manual_seed(seed + 100)
    attention = torch.rand(b, n, generator=g, dtype=torch.float64).to(dtype)
    if ties:
        sim = _quantized(sim, 0.125)
        attention = _quantized(attention, 0.125)
    scales = [torch.tensor([0.5, 1.0, 2.0]), torch.tensor([0.0, 1.0, 40.0]), torch.tensor([3.0, 3.0, 3.0])]
    for scale in scales:
        for tau_max in (0.0, 0.1, 0.25, 2.0):  # 2.0 empties the candidates: the fallback
            for k in (1, 5, 17, 40):
                fast = agile.threshold_order(sim, attention, k, scale, tau_max, order)
                naive = ref.threshold_order(sim, attention, k, scale, tau_max, order)
                assert torch.equal(fast, naive), (scale.tolist(), tau_max, k)


def _kernel(x: torch.Tensor, rel: torch.Tensor) -> torch.Tensor:
    sim = cosine_matrix(x)
    rel = rel.to(sim.dtype)
    return rel.unsqueeze(2) * sim * rel.unsqueeze(1)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("dtype", DTYPES)
@pytest.mark.parametrize("ties", [False, True])
def test_dpp_greedy_equals_naive(seed, dtype, ties):
    b, n = 3, 40
    g = torch.Generator().manual_seed(seed + 200)
    rel = torch.rand(b, n, generator=g, dtype=torch.float64).to(dtype) + 0.1
    if ties:
        rel[0] = 1.0  # constant relevance: the first pick is a tie over every token
        rel[1] = _quantized(rel[1], 0.25)
    for d in (3, 8, 40):  # d = 3, 8: rank(L) < K, the exhaustion fill (per image, at different steps)
        x = _features(seed, b, n, d, dtype, ties)
        if d == 8:
            x[1] = x[1, :, :4].repeat(1, 2)  # image 1 exhausts earlier than the others
        kernel = _kernel(x, rel)
        for k in (1, 2, 9, 25, 40):
            assert torch.equal(cdpruner.dpp_greedy(kernel, k, rel), ref.dpp_greedy(kernel, k, rel)), (d, k)


# --- whole pruners -------------------------------------------------------------------------------

PRUNER_SPECS = [
    "divprune", "divprune(space=vision)", "fps", "fps(start=isolated)", "fps(start=saliency,space=vision)",
    "agile", "agile(order=pick)", "agile(tau_max=2)", "agile(erank_avg=3)", "agile_entropy", "agile_entropy(space=llm)",
    "agile_mix", "agile_mix(div=fps)", "agile_mix(slope=-2)", "agile_mix(ratio=0)",
    "agile_count(erank_avg=1000,max_change=0.5)", "cdpruner", "cdpruner(negate=false)",
]


def test_every_naive_pruner_is_covered():
    assert {get_pruner(s).name for s in PRUNER_SPECS} == set(ref.NAIVE_PRUNERS)


@pytest.mark.parametrize("spec", PRUNER_SPECS)
@pytest.mark.parametrize("ties", [False, True])
def test_pruner_equals_naive_reference(spec, ties):
    pruner = get_pruner(spec)
    for seed, dtype in [(0, torch.float32), (1, torch.float32), (2, torch.float64)]:
        tokens, query = _tied_tokens(seed, dtype=dtype) if ties else make_tokens(seed, b=3, dtype=dtype)
        for k in (1, 4, 12, 29, 36):
            fast = pruner(tokens, k, query)
            naive = ref.run_naive(pruner, tokens, k, query)
            assert torch.equal(fast.indices, naive.indices), (seed, k)


def test_naive_kernels_swap_and_restore():
    fast = (divprune.max_min_order, fps.max_min_order, agile.threshold_order, cdpruner.dpp_greedy)
    with ref.naive_kernels():
        assert divprune.max_min_order is ref.max_min_order and fps.max_min_order is ref.max_min_order
        assert agile.threshold_order is ref.threshold_order and cdpruner.dpp_greedy is ref.dpp_greedy
    assert (divprune.max_min_order, fps.max_min_order, agile.threshold_order, cdpruner.dpp_greedy) == fast


@pytest.mark.parametrize("b", [1, 3])
def test_vispruner_block_max_equals_the_advanced_indexing_gather(b):
    from studylib.pruners.vispruner import _block_max

    tokens, _ = make_tokens(12, b=b, rows=12, cols=12)
    sim = cosine_matrix(tokens.features)
    g = torch.Generator().manual_seed(0)
    for size in (144, 61, 9, 2):
        perm = torch.stack([torch.randperm(144, generator=g)[:size] for _ in range(b)])
        a_idx, b_idx = perm[:, 0::2], perm[:, 1::2]
        rows = torch.arange(b)
        block = sim[rows[:, None, None], a_idx[:, :, None], b_idx[:, None, :]]
        assert torch.equal(_block_max(sim, a_idx, b_idx), block.amax(dim=2))
