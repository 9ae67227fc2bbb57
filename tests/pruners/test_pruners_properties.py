"""Property tests (hypothesis) for every registered vision-stage pruner and its main variants.

For random small inputs (N = 16..64): the selection has K distinct ascending indices in [0, N)
(merging pruners: the LLM sees K tokens), is deterministic, keeps everything at K = N, and the
batched result equals the per-image results (batch 1 and batch > 1).
"""

from __future__ import annotations

import pytest
import torch
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from _pruner_helpers import VISION_SPECS, make_tokens
from studylib.tokens import QueryContext
from studylib.pruners import adaptive_count, get_pruner, select_each

SETTINGS = settings(max_examples=25, deadline=None, suppress_health_check=[HealthCheck.too_slow])


@st.composite
def cases(draw):
    rows = draw(st.integers(4, 8))
    cols = draw(st.integers(4, 8))
    n = rows * cols
    b = draw(st.sampled_from([1, 3]))
    dv = draw(st.sampled_from([4, 8, 16]))
    dl = draw(st.sampled_from([6, 12]))
    seed = draw(st.integers(0, 2**31 - 1))
    k = draw(st.integers(1, n))
    tokens, query = make_tokens(seed, b=b, rows=rows, cols=cols, dv=dv, dl=dl, dh=4)
    return tokens, query, k


def _query_row(query: QueryContext, i: int) -> QueryContext:
    return QueryContext(query.text_embedding[i : i + 1], query.text_attention[i : i + 1])


def check_selection(pruner, tokens, sel, k):
    b, n = tokens.batch_size, tokens.num_patches
    idx = sel.indices
    assert idx.dtype == torch.long and idx.dim() == 2 and idx.shape[0] == b
    assert bool((idx >= 0).all()) and bool((idx < n).all())
    if idx.shape[1] > 1:
        assert bool((idx[:, 1:] > idx[:, :-1]).all()), "indices must be strictly ascending (distinct, raster order)"
    if pruner.merges:
        assert sel.merged is not None and sel.merged.shape[:2] == (b, k)
        assert sel.merged.shape[2] == tokens.features.shape[2]
        assert torch.isfinite(sel.merged).all()
        assert sel.num_tokens == k
    else:
        assert sel.merged is None and idx.shape[1] == k


def equal_selections(a, b):
    assert torch.equal(a.indices, b.indices)
    if a.merged is not None:
        torch.testing.assert_close(a.merged, b.merged)


@pytest.mark.parametrize("spec", [s for s in VISION_SPECS if not s.startswith(("full", "agile_count"))])
@SETTINGS
@given(case=cases())
def test_selection_properties(spec, case):
    tokens, query, k = case
    pruner = get_pruner(spec)
    sel = pruner(tokens, k, query)
    check_selection(pruner, tokens, sel, k)
    # deterministic: same inputs (and seed) → same output
    equal_selections(sel, pruner(tokens, k, query))
    # batch > 1 equals batch 1, image by image
    for i in range(tokens.batch_size):
        equal_selections(
            type(sel)(sel.indices[i : i + 1], None if sel.merged is None else sel.merged[i : i + 1]),
            pruner(tokens[i], k, _query_row(query, i)),
        )
    # K = N keeps everything (merging pruners: N tokens in total)
    n = tokens.num_patches
    sel_all = pruner(tokens, n, query)
    check_selection(pruner, tokens, sel_all, n)
    if not pruner.merges:
        assert torch.equal(sel_all.indices, torch.arange(n).expand(tokens.batch_size, n))


@SETTINGS
@given(case=cases())
def test_full_keeps_everything(case):
    tokens, query, _ = case
    n = tokens.num_patches
    sel = get_pruner("full")(tokens, n, query)
    assert torch.equal(sel.indices, torch.arange(n).expand(tokens.batch_size, n))
    if n > 1:
        with pytest.raises(ValueError, match="keeps all"):
            get_pruner("full")(tokens, n - 1)


@SETTINGS
@given(case=cases(), avg=st.floats(0.5, 20.0), change=st.sampled_from([0.0, 0.2, 0.5]))
def test_agile_count_properties(case, avg, change):
    tokens, query, k = case
    pruner = get_pruner("agile_count", erank_avg=avg, max_change=change)
    counts = adaptive_count(tokens, k, erank_avg=avg, max_change=change)
    lo, hi = int(k * (1 - change) + 0.5), int(k * (1 + change) + 0.5)
    assert bool((counts >= max(1, lo - 1)).all()) and bool((counts <= min(tokens.num_patches, hi + 1)).all())
    per_image = select_each(pruner, tokens, k, query)
    for i, sel in enumerate(per_image):
        check_selection(get_pruner("agile"), tokens[i], sel, int(counts[i]))
        # the same selection as plain agile thresholding with that count
        plain = get_pruner("agile", erank_avg=avg)(tokens[i], int(counts[i]))
        assert torch.equal(sel.indices, plain.indices)
    if bool((counts == counts[0]).all()):
        batch = pruner(tokens, k, query)
        assert torch.equal(batch.indices, torch.cat([s.indices for s in per_image]))
    else:
        with pytest.raises(ValueError, match="per image|image by image"):
            pruner(tokens, k, query)
