"""The per-object memo of config-independent quantities (``VisualTokens.derived``).

A sweep runs many pruner configurations on one batch of tokens; the cosine matrices, FPS's
distances and the erank are computed once per tokens object (and, for a batch stacked from the
adapter's single-image cache, once per image).  These tests check that the memo (a) really
spares the recomputation, (b) never changes a selection, (c) is never modified by a pruner, and
(d) stays out of equality, hashing and pickling.
"""

from __future__ import annotations

import copy
import dataclasses
import gc
import pickle

import pytest
import torch

import studylib.pruners._similarity as similarity
import studylib.pruners.agile as agile_module
import studylib.pruners.fps as fps_module
from studylib.pruners import get_pruner
from studylib.pruners._reference import run_naive
from studylib.tokens import VisualTokens, memo_bytes_used, set_memo_budget, stack_tokens

from _pruner_helpers import VISION_SPECS, make_tokens

K = 7
#: every vision-stage configuration but ``full`` (it keeps all N); ``agile_count`` (a count per image)
#: runs on single images only
SPECS = [s for s in VISION_SPECS if not s.startswith("full")]


def fresh(tokens: VisualTokens) -> VisualTokens:
    """The same tensors in a new object (``dataclasses.replace`` starts an empty memo)."""
    out = dataclasses.replace(tokens)
    assert out._memo == {} and out._parts == ()
    return out


@pytest.fixture
def no_memo():
    old = set_memo_budget(0)
    yield
    set_memo_budget(old)


def run_all(tokens, query, specs):
    return {spec: get_pruner_cached(spec)(tokens, K, query).indices for spec in specs
            if tokens.batch_size == 1 or get_pruner_cached(spec).info.exact_k}


_PRUNERS: dict = {}


def get_pruner_cached(spec):
    if spec not in _PRUNERS:
        _PRUNERS[spec] = get_pruner(spec)
    return _PRUNERS[spec]


def counting(monkeypatch, module, name, counts):
    original = getattr(module, name)

    def wrapper(*args, **kwargs):
        counts[name] = counts.get(name, 0) + 1
        return original(*args, **kwargs)

    monkeypatch.setattr(module, name, wrapper)


def test_second_call_does_not_recompute(monkeypatch):
    tokens, query = make_tokens(0, b=2)
    counts: dict[str, int] = {}
    counting(monkeypatch, similarity, "cosine_matrix", counts)
    counting(monkeypatch, fps_module, "sq_distance_matrix", counts)
    counting(monkeypatch, agile_module, "erank", counts)
    run_all(tokens, query, SPECS)
    # one cosine matrix and one FPS distance per space, one erank (every erank config uses the vision space)
    assert counts == {"cosine_matrix": 2, "sq_distance_matrix": 2, "erank": 1}
    run_all(tokens, query, SPECS)
    assert counts == {"cosine_matrix": 2, "sq_distance_matrix": 2, "erank": 1}


def test_second_call_runs_no_gemm(monkeypatch):
    """The literal claim: a second similarity pruner on the same tokens multiplies no N x N product."""
    tokens, query = make_tokens(1, b=1)
    calls = []
    bmm = torch.bmm
    monkeypatch.setattr(torch, "bmm", lambda *a, **kw: calls.append(a[0].shape) or bmm(*a, **kw))
    for spec in ("scope", "divprune", "fps", "agile"):
        get_pruner(spec)(tokens, K, query)
    before = len(calls)
    for spec in ("scope(alpha=0)", "vispruner", "idselect", "divprune(space=llm)", "fps(start=saliency)", "agile_mix",
                 "agile(order=pick)", "scope_adaptive"):
        get_pruner(spec)(tokens, K, query)
    assert len(calls) == before


@pytest.mark.parametrize("spec", SPECS)
def test_memo_changes_no_selection(spec, no_memo):
    """(b) every registered pruner: the plain computation (memo off) = the memoised one, after every
    other pruner has filled (and could have corrupted) the memo of the shared object."""
    tokens, query = make_tokens(2, b=1 if spec.startswith("agile_count") else 3)
    query_fresh = copy.deepcopy(query)
    plain = get_pruner(spec)(fresh(tokens), K, query_fresh)
    set_memo_budget(1 << 30)
    shared = fresh(tokens)
    run_all(shared, query, SPECS)
    again = get_pruner(spec)(shared, K, query)
    assert torch.equal(plain.indices, again.indices)
    if plain.merged is not None:
        assert torch.equal(plain.merged, again.merged)


@pytest.mark.parametrize("b", [1, 2])
def test_order_of_calls_does_not_matter(b):
    """(c) running the configurations in any order on one object gives the same selections, and the
    memoised tensors still equal a fresh computation afterwards (nothing modified them in place)."""
    tokens, query = make_tokens(3, b=b)
    forward = fresh(tokens)
    backward = fresh(tokens)
    a = run_all(forward, query, SPECS)
    b = run_all(backward, query, list(reversed(SPECS)))
    c = run_all(fresh(tokens), query, SPECS[1::2] + SPECS[0::2])
    assert a.keys() == b.keys() == c.keys()
    for spec in a:
        assert torch.equal(a[spec], b[spec]), spec
        assert torch.equal(a[spec], c[spec]), spec
    for space in ("vision", "llm"):
        assert torch.equal(similarity.token_cosine(forward, space),
                           similarity.cosine_matrix(similarity.space_features(tokens, space)))
        assert torch.equal(fps_module.token_sq_distance(backward, space),
                           fps_module.sq_distance_matrix(similarity.space_features(tokens, space)))
        assert torch.equal(agile_module.token_erank(forward, space),
                           agile_module.erank(similarity.space_features(tokens, space)))


def test_naive_reference_agrees_on_a_warm_memo():
    tokens, query = make_tokens(4, b=2)
    run_all(tokens, query, SPECS)
    for spec in ("divprune", "fps", "agile", "agile_mix", "agile_count", "cdpruner"):
        pruner = get_pruner(spec)
        assert torch.equal(run_naive(pruner, tokens, K, query).indices, pruner(fresh(tokens), K, query).indices)


def test_stacked_batch_shares_the_images_memo(monkeypatch):
    """A batch stacked from single images (the adapter's cache) computes per image and keeps the rows
    on the images: a later batch with the same images (the next configuration) computes nothing, and a
    repeated image is computed once."""
    tokens, query = make_tokens(5, b=3)
    rows = [tokens[i] for i in range(3)]
    counts: dict[str, int] = {}
    counting(monkeypatch, similarity, "cosine_matrix", counts)
    first = stack_tokens([rows[0], rows[1], rows[0], rows[2]])
    q4 = type(query)(torch.cat([query.text_embedding[[0, 1, 0, 2]]]), query.text_attention[[0, 1, 0, 2]])
    get_pruner("scope")(first, K, q4)
    assert counts == {"cosine_matrix": 3}  # one per distinct image
    second = stack_tokens([rows[2], rows[0]])
    get_pruner("vispruner")(second, K, None)
    assert counts == {"cosine_matrix": 3}
    sub = first[[3, 1]]  # a sub-batch (the adapter's distinct images) keeps the images as its parts
    assert sub._parts[0] is rows[2] and sub._parts[1] is rows[1]
    get_pruner("idselect")(sub, K, None)
    assert counts == {"cosine_matrix": 3}
    # and the selections are those of the directly built batch (batched computation)
    direct = fresh(VisualTokens.concat([fresh(r) for r in (rows[0], rows[1], rows[0], rows[2])]))
    for spec in SPECS:
        pruner = get_pruner(spec)
        if not pruner.info.exact_k:
            continue
        assert torch.equal(pruner(first, K, q4).indices, pruner(direct, K, q4).indices), spec


def test_ragged_batches_keep_the_single_images():
    """Images of several sizes: the rows of a RaggedTokens are the images themselves (their memo
    serves every later batch)."""
    small, _ = make_tokens(8, b=1, rows=4, cols=4)
    large, _ = make_tokens(9, b=1)
    ragged = stack_tokens([small, large, small])
    assert ragged.rows[0] is small and ragged.rows[1] is large and ragged.rows[2] is small
    get_pruner("scope")(small, 5)
    (_, group), _ = ragged.groups()
    assert torch.equal(group.derived(("cosine", "vision", torch.float32), lambda t: None)[0],
                       small._memo["cosine", "vision", torch.float32][0])


def test_memo_is_private_state():
    tokens, query = make_tokens(6, b=2)
    plain = fresh(tokens)
    h = hash(tokens)
    get_pruner("scope")(tokens, K, query)
    assert tokens._memo and not plain._memo
    assert hash(tokens) == h
    assert "memo" not in repr(tokens)
    clone = pickle.loads(pickle.dumps(tokens))
    assert clone._memo == {} and torch.equal(clone.features, tokens.features) and clone.grid == tokens.grid
    assert copy.copy(tokens)._memo == {} and copy.deepcopy(tokens)._memo == {}
    assert tokens[0]._memo == {} and tokens.to("cpu")._memo == {}
    assert len(pickle.dumps(tokens)) == len(pickle.dumps(plain))


def test_budget_bounds_what_is_kept(no_memo):
    tokens, query = make_tokens(7, b=2)
    base = memo_bytes_used()
    get_pruner("scope")(tokens, K, query)
    assert tokens._memo == {} and memo_bytes_used() == base
    set_memo_budget(1 << 30)
    get_pruner("scope")(tokens, K, query)
    n = tokens.num_patches
    assert memo_bytes_used() == base + 2 * n * n * 4
    del tokens
    gc.collect()
    assert memo_bytes_used() == base


def test_small_values_are_kept_beyond_the_budget(no_memo, monkeypatch):
    """Issue 28: with the budget used up by N × N matrices the per-image erank (8 bytes, ~40 ms at
    LLaVA-1.5's shape) is still kept, so every erank-driven configuration of a sweep reuses it."""
    erank = agile_module.erank
    calls = []
    monkeypatch.setattr(agile_module, "erank", lambda x: calls.append(x.shape[0]) or erank(x))
    tokens, query = make_tokens(8, b=2)
    base = memo_bytes_used()
    get_pruner("agile")(tokens, K, query)
    assert calls == [2] and list(tokens._memo) == [("erank", "vision")]  # the cosine matrix did not fit
    assert memo_bytes_used() == base + 2 * 8
    get_pruner("agile_mix")(tokens, K, query)
    get_pruner("agile(tau_max=0.1)")(tokens, K, query)
    assert calls == [2]
