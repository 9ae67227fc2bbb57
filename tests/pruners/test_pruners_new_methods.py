"""HiRED, PyramidDrop and SparseVLM (issue 28): their rules against naive transcriptions of the official
code and hand-checked official settings.  The in-LLM passes themselves are tested through the toy
model in ``tests/models/test_staged_pruning.py``."""

from __future__ import annotations

import pytest
import torch

from _pruner_helpers import make_tokens
from studylib.tokens import VisualTokens
from studylib.pruners import _reference, get_pruner
from studylib.pruners._staged import StagePlan, scale_layers
from studylib.pruners.sparsevlm import cluster_merge, recycle_dropped, recycled_counts, select_raters

SEEDS = [0, 1, 2, 3]


# --- HiRED -----------------------------------------------------------------------------------------

@pytest.mark.parametrize("seed", SEEDS)
def test_hired_on_one_partition_is_the_official_top_k(seed):
    """One raster grid (LLaVA-1.5, the toy): the official single-partition code, top-K [CLS] attention."""
    tokens, _ = make_tokens(seed, b=2, rows=6, cols=7, dtype=torch.float64)
    for k in (1, 5, 20, 42):
        sel = get_pruner("hired")(tokens, k).indices
        assert torch.equal(sel, get_pruner("saliency")(tokens, k).indices)
        for b in range(2):
            a = tokens.cls_attention[b].tolist()
            assert sel[b].tolist() == sorted(sorted(range(42), key=lambda j: (-a[j], j))[:k])
        assert torch.equal(get_pruner("hired(alpha=0.1)")(tokens, k).indices, sel)  # alpha: partitions only


def next_tokens(seed: int, base=(3, 3), high=(4, 5)) -> VisualTokens:
    """LLaVA-NeXT-shaped tokens: a base tile, then a stitched high-resolution grid."""
    tokens, _ = make_tokens(seed, b=2, rows=1, cols=base[0] * base[1] + high[0] * high[1], dtype=torch.float64)
    n = tokens.num_patches
    return VisualTokens(tokens.features, tokens.embeddings, tokens.cls_attention, tokens.cls_feature, tokens.keys,
                        (1, n), tokens.image_keys, layout=(base, high))


def naive_hired(attention: list[float], k: int, alpha: float, n_full: int) -> list[int]:
    """The official budget split written out: int(α·K) for the full image (at most its size), the rest
    to the sub-images (at most theirs), each part's top tokens by attention."""
    n_sub = len(attention) - n_full
    k_full = min(int(alpha * k), n_full)
    k_sub = min(k - k_full, n_sub)
    k_full = k - k_sub
    top = lambda idx, m: sorted(idx, key=lambda j: (-attention[j], j))[:m]  # noqa: E731
    return sorted(top(range(n_full), k_full) + top(range(n_full, len(attention)), k_sub))


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("alpha", [0.0, 0.5, 0.8, 1.0])
def test_hired_splits_the_budget_between_the_full_image_and_the_sub_images(seed, alpha):
    tokens = next_tokens(seed)
    n = tokens.num_patches
    for k in (1, 4, 9, 10, 15, 25, n):
        sel = get_pruner("hired", alpha=alpha)(tokens, k).indices
        assert sel.shape == (2, k)
        for b in range(2):
            assert sel[b].tolist() == naive_hired(tokens.cls_attention[b].tolist(), k, alpha, 9)


def test_hired_official_setting_counts():
    """Scripts: rate 0.2, α = 0.5.  LLaVA-NeXT with 5 partitions of 576: B = int(5·576·0.2) = 576,
    288 for the full image (= min(int(0.5·576), 576)), 288 for the sub-images."""
    from studylib.pruners.hired import partition_budgets

    assert partition_budgets(int(5 * 576 * 0.2), 0.5, 576, 4 * 576) == (288, 288)
    assert partition_budgets(100, 0.5, 9, 20) == (80, 20)  # the sub-images hold only 20


# --- stage plans ------------------------------------------------------------------------------------

def test_pdrop_plan_reproduces_the_official_schedule():
    """layer_list [8, 16, 24], ratios [1, 0.5, 0.25, 0.125] of N = 576: 288, 144, 72 (K = int(N·λ))."""
    plan = get_pruner("pdrop").rule(32, 288)
    assert plan == StagePlan((8, 16, 24), (288, 144, 72), "own")
    assert get_pruner("pdrop").rule(40, 288).layers == (8, 16, 24)  # 13B: the same layers (official scripts)
    assert get_pruner("pdrop(lam=0.25)").rule(32, 64).keep == (64, 16, 4)
    assert get_pruner("pdrop(stride=4)").rule(32, 64).layers == (4, 8, 12)
    assert get_pruner("pdrop").rule(32, 3).keep == (3, 1, 1)  # at least one token


@pytest.mark.parametrize("schedule,k", [("192", 300), ("128", 303), ("96", 238), ("64", 66)])
def test_sparsevlm_plan_reproduces_the_official_schedules(schedule, k):
    from studylib.pruners.sparsevlm import SCHEDULES

    plan = get_pruner("sparsevlm", schedule=schedule).rule(32, k)
    assert plan.layers == (3, 7, 16) and plan.keep == SCHEDULES[schedule] and plan.score_layer == "previous"
    assert plan.raters is not None and plan.recycle is not None
    assert get_pruner("sparsevlm(recycle=false)").rule(32, k).recycle is None


def test_schedules_on_shallow_models():
    """The 4-layer toy: drops before layers 1, 2, 3; the 3-layer tiny models: 1, 2."""
    assert get_pruner("pdrop").rule(4, 32).layers == (1, 2, 3)
    assert get_pruner("sparsevlm").rule(4, 32).layers == (1, 2, 3)
    assert get_pruner("sparsevlm").rule(4, 32).keep == (32, 21, 12)  # 32 · (300, 200, 110) / 300, rounded
    assert get_pruner("pdrop").rule(3, 32).layers == (1, 2) and get_pruner("sparsevlm").rule(3, 32).layers == (1, 2)
    assert scale_layers([8, 16, 24], 16, "x") == (4, 8, 12)
    assert scale_layers([3, 7, 16], 2, "x") == (1,)
    with pytest.raises(ValueError, match="at least 2 decoder layers"):
        get_pruner("pdrop").rule(1, 8)
    with pytest.raises(ValueError, match="does not fit"):
        get_pruner("pdrop(stride=40)").rule(32, 8)


# --- SparseVLM's raters and recycling -----------------------------------------------------------

def _rater_inputs(seed: int):
    g = torch.Generator().manual_seed(seed)
    visual = torch.randn(3, 12, 16, generator=g, dtype=torch.float64)
    text = torch.randn(3, 9, 16, generator=g, dtype=torch.float64)
    valid = torch.arange(9).expand(3, 9) >= torch.tensor([[0], [3], [5]])  # left-aligned padding
    return visual, text, valid


@pytest.mark.parametrize("seed", SEEDS)
def test_raters_equal_the_official_rule_row_by_row(seed):
    visual, text, valid = _rater_inputs(seed)
    raters = select_raters(visual, text, valid)
    assert torch.equal(raters, _reference.select_raters(visual, text, valid))
    assert bool((raters <= valid).all()) and bool(raters.any(dim=1).all())


def test_a_lone_text_token_rates():
    """One text token: its relevance is the mean, none is above it; it rates (official: no rows)."""
    visual, text, _ = _rater_inputs(0)
    valid = torch.zeros(3, 9, dtype=torch.bool)
    valid[:, -1] = True
    assert torch.equal(select_raters(visual, text, valid), valid)
    assert torch.equal(_reference.select_raters(visual, text, valid), valid)


@pytest.mark.parametrize("seed", SEEDS)
@pytest.mark.parametrize("m,c", [(1, 1), (7, 1), (34, 4), (40, 5)])
def test_cluster_merge_equals_the_naive_dpc_knn(seed, m, c):
    g = torch.Generator().manual_seed(seed)
    centres = torch.randn(2, 4, 12, generator=g, dtype=torch.float64) * 3
    x = centres[:, torch.randint(4, (m,), generator=g)] + torch.randn(2, m, 12, generator=g, dtype=torch.float64)
    fast = cluster_merge(x, c)
    assert fast.shape == (2, c, 12)
    torch.testing.assert_close(fast, _reference.cluster_merge(x, c), rtol=1e-12, atol=1e-12)


def test_recycled_counts_follow_the_official_formula():
    assert recycled_counts(112) == (34, 4)  # the toy at K = 32 of 144
    assert recycled_counts(276) == (83, 9)  # LLaVA-1.5, 300 of 576 kept
    assert recycled_counts(1) == (1, 1)
    g = torch.Generator().manual_seed(0)
    hidden, score = torch.randn(2, 50, 6, generator=g), torch.rand(2, 50, generator=g)
    out = recycle_dropped(hidden, score)
    best = torch.sort(score, dim=1, descending=True, stable=True).indices[:, :16]
    assert out.shape == (2, 2, 6)
    torch.testing.assert_close(out, cluster_merge(hidden.gather(1, best.unsqueeze(-1).expand(-1, -1, 6)), 2))


def test_sweep_validation_accepts_staged_pruners_on_any_depth_of_two_or_more():
    from studylib.sweep.validate import layer_problems

    assert layer_problems(["pdrop", "sparsevlm", "fastv"], 4) == []
    problems = layer_problems(["pdrop", "sparsevlm(recycle=false)"], 1)
    assert len(problems) == 2 and "after the first decoder layer" in problems[0]
