"""Shared-prefix scoring: rows with the same ``[before][visual tokens]`` prefix are prefilled
once and their suffixes run on the gathered cache.  It must give the single forward's logits
and scores (to float rounding), and take the single forward wherever sharing is impossible or
saves nothing."""

from __future__ import annotations

import contextlib
import dataclasses

import numpy as np
import pytest
import torch

from studylib.models.llm_pruning import RegistryInLLMPruner
from studylib.models.prefix_cache import prefix_groups, shared_text
from studylib.models import prompts
from studylib.pruners import get_pruner
from studylib.tokens import Selection

ADAPTERS = ["toy_adapter", "tiny_adapter"]
SHORT_SYSTEM = "A chat between a curious user and an artificial intelligence assistant."


@contextlib.contextmanager
def sharing(adapter, enabled: bool):
    previous = adapter._share_prefixes
    adapter._share_prefixes = enabled
    try:
        yield
    finally:
        adapter._share_prefixes = previous


@contextlib.contextmanager
def counted_forwards(adapter):
    """Number of language-model forwards started inside the block (a prefix forward that stops
    before the in-LLM pruner's layer counts)."""
    calls = []
    handle = adapter.model.model.language_model.register_forward_pre_hook(lambda *a: calls.append(1))
    try:
        yield calls
    finally:
        handle.remove()


def both_paths(adapter, *args, **kwargs):
    """``_last_logits`` with and without prefix sharing, and the forwards each ran."""
    results = {}
    for enabled in (True, False):
        with sharing(adapter, enabled), counted_forwards(adapter) as calls:
            logits, kept = adapter._last_logits(*args, **kwargs)
        results[enabled] = (logits, kept, len(calls))
    return results[True], results[False]


def assert_same_logits(shared, single):
    assert torch.equal(shared[1], single[1])
    assert torch.allclose(shared[0], single[0], atol=1e-5), (shared[0] - single[0]).abs().max()


def mixed_batch(world):
    """Several images, each asked several times, yes/no and multiple-choice prompts (different
    suffix lengths) and a shorter system text on some rows (different prefix lengths)."""
    questions = (world.pope("random").questions[:10] + world.scienceqa().questions[:3]
                 + world.pope("adversarial").questions[:4])
    texts = [prompts.build_prompt(q) for q in questions]
    texts = [t.replace(prompts.SYSTEM, SHORT_SYSTEM) if i % 5 == 4 else t for i, t in enumerate(texts)]
    return questions, texts


def encode(adapter, world, questions):
    keys = [q.image_key for q in questions]
    return adapter.encode([world.load_image(k) for k in keys], keys)


def per_image_keep(adapter, tokens, k):
    """The same K indices for every row of an image (as a deterministic pruner keeps)."""
    rows = [torch.randperm(adapter.num_patches, generator=torch.Generator().manual_seed(sum(map(ord, key))))[:k]
            for key in tokens.image_keys]
    return torch.stack(rows)


@pytest.fixture(params=ADAPTERS)
def adapter(request):
    return request.getfixturevalue(request.param)


def test_the_mixed_batch_shares_prefixes(adapter, small_world):
    questions, texts = mixed_batch(small_world)
    tokens = encode(adapter, small_world, questions)
    assert len(set(tokens.image_keys)) < len(questions)
    rows = adapter._prompt_rows(texts, None)
    assert len({len(before) for before, _ in rows}) == 2 and len({len(after) for _, after in rows}) > 2
    visual, indices = adapter._visual_sequence(tokens, None)
    groups = prefix_groups(rows, tokens.image_keys, visual, indices)
    expected = {(rows[i][0], key) for i, key in enumerate(tokens.image_keys)}
    assert groups is not None and max(groups) + 1 == len(expected)


@pytest.mark.parametrize("k", [None, 1, 16, 100])
def test_shared_logits_equal_the_single_forward(adapter, small_world, k):
    questions, texts = mixed_batch(small_world)
    tokens = encode(adapter, small_world, questions)
    keep = None if k is None else per_image_keep(adapter, tokens, k)
    shared, single = both_paths(adapter, texts, tokens, keep, None, None)
    assert (shared[2], single[2]) == (2, 1)
    assert_same_logits(shared, single)


def test_shared_scores_equal_the_single_forward(adapter, small_world):
    questions, texts = mixed_batch(small_world)
    tokens = encode(adapter, small_world, questions)
    keep = per_image_keep(adapter, tokens, 36)
    verbalizers = [prompts.verbalizer(q) for q in questions]
    with sharing(adapter, True):
        shared = adapter.score(texts, tokens, keep, verbalizers)
    with sharing(adapter, False):
        single = adapter.score(texts, tokens, keep, verbalizers)
    np.testing.assert_allclose(shared.probs, single.probs, atol=1e-5)
    np.testing.assert_allclose(shared.logits, single.logits, atol=1e-5)
    np.testing.assert_allclose(shared.verbalizer_mass, single.verbalizer_mass, atol=1e-5)
    assert torch.equal(shared.kept, single.kept)


def test_shared_logits_with_extra_suffix_ids(adapter, small_world):
    questions, texts = mixed_batch(small_world)
    tokens = encode(adapter, small_world, questions)
    vocabulary = adapter.model.config.text_config.vocab_size
    generator = torch.Generator().manual_seed(0)
    suffixes = [torch.randint(5, vocabulary, (i % 4,), generator=generator).tolist() for i in range(len(texts))]
    shared, single = both_paths(adapter, texts, tokens, None, None, None, suffixes=suffixes)
    assert (shared[2], single[2]) == (2, 1)
    assert_same_logits(shared, single)


def merged_selection(adapter, tokens, width=20):
    """A VisionZip-like selection: kept indices plus merged features; the last row has the same
    image key and indices as the first but different merged tokens."""
    indices = per_image_keep(adapter, tokens, 8)
    merged = tokens.features[:, :width].clone()
    merged[-1] += 0.5
    return Selection(indices, merged)


def test_merged_selections_share_only_equal_merged_tokens(adapter, small_world):
    questions, texts = mixed_batch(small_world)
    questions, texts = questions[:7] + questions[:1], texts[:7] + texts[:1]
    tokens = encode(adapter, small_world, questions)
    selection = merged_selection(adapter, tokens)
    visual, indices = adapter._visual_sequence(tokens, selection)
    groups = prefix_groups(adapter._prompt_rows(texts, None), tokens.image_keys, visual, indices)
    assert groups[0] == groups[1] and groups[-1] not in groups[:-1]
    shared, single = both_paths(adapter, texts, tokens, selection, None, None)
    assert shared[2] == 2
    assert_same_logits(shared, single)


def test_a_reused_image_key_with_other_features_is_not_shared(tiny_adapter, small_world):
    questions, texts = mixed_batch(small_world)
    tokens = encode(tiny_adapter, small_world, questions[:4])
    impostor = dataclasses.replace(tokens, embeddings=tokens.embeddings.clone())
    impostor.embeddings[2] += 1.0
    visual, indices = tiny_adapter._visual_sequence(impostor, None)
    groups = prefix_groups(tiny_adapter._prompt_rows(texts[:4], None), impostor.image_keys, visual, indices)
    assert groups[0] == groups[1] == groups[3] != groups[2]
    shared, single = both_paths(tiny_adapter, texts[:4], impostor, None, None, None)
    assert_same_logits(shared, single)


def test_distinct_images_take_one_forward_on_the_cached_system_text(adapter, small_world):
    questions = small_world.scienceqa().questions[:3]
    texts = [prompts.build_prompt(q) for q in questions]
    adapter.clear_cache()
    tokens = encode(adapter, small_world, questions)
    first, single = both_paths(adapter, texts, tokens, None, None, None)
    again, _ = both_paths(adapter, texts, tokens, None, None, None)
    assert (first[2], again[2], single[2]) == (2, 1, 1)  # the system text is prefilled once per adapter
    assert_same_logits(first, single)
    assert torch.equal(first[0], again[0])


def test_shared_text_stops_before_each_rows_last_token():
    rows = [((1,), (5, 6, 7, 8)), ((1,), (5, 6, 9)), ((1,), (5, 6)), ((1,), (4, 6, 7))]
    assert shared_text(rows, [0, 0, 0, 1]) == [1, 2]
    assert shared_text(rows[:2], [0, 0]) == [2]


def test_tokens_without_image_keys_take_the_single_forward(tiny_adapter, small_world):
    questions, texts = mixed_batch(small_world)
    tokens = dataclasses.replace(encode(tiny_adapter, small_world, questions[:4]), image_keys=())
    shared, single = both_paths(tiny_adapter, texts[:4], tokens, None, None, None)
    assert shared[2] == single[2] == 1


class _KeepFirst:
    layer = 2

    def select_in_llm(self, state, k):
        return torch.arange(k).expand(state.attention_row.shape[0], k)


def test_in_llm_pruning_takes_the_single_forward(toy_adapter, small_world):
    questions, texts = mixed_batch(small_world)
    tokens = encode(toy_adapter, small_world, questions[:4])
    with sharing(toy_adapter, True), counted_forwards(toy_adapter) as calls:
        toy_adapter._last_logits(texts[:4], tokens, None, _KeepFirst(), 16)
    assert len(calls) == 1


@pytest.mark.parametrize("name", ["fastv", "dart"])
@pytest.mark.parametrize("layer", [1, 2])
@pytest.mark.parametrize("k", [1, 6, 16, 100])
def test_a_single_drop_shares_prefixes_below_its_layer_with_the_single_forwards_picks(adapter, small_world,
                                                                                      name, layer, k):
    """FastV and DART run the layers below their drop on the shared prefixes (two forwards: the
    prefixes, stopped at the drop, then the suffixes) and keep the single forward's tokens and
    logits, with a shorter system text on some rows, different suffix lengths and a pruned vision
    input."""
    if layer >= adapter.model.config.text_config.num_hidden_layers:
        pytest.skip("the model has no such layer")
    questions, texts = mixed_batch(small_world)
    tokens = encode(adapter, small_world, questions)
    pruner = RegistryInLLMPruner(get_pruner(name, layer=layer))
    for keep in (None, per_image_keep(adapter, tokens, 120)):
        shared, single = both_paths(adapter, texts, tokens, keep, pruner, k)
        assert (shared[2], single[2]) == (2, 1)
        assert_same_logits(shared, single)


@pytest.mark.parametrize("name", ["fastv", "dart"])
def test_single_drop_scores_equal_the_single_forward_on_pope_rows(toy_adapter, small_world, name):
    """A batch of POPE questions (the every-pruner cells): same probabilities and kept tokens."""
    questions = small_world.pope("random").questions[:24]
    texts = [prompts.build_prompt(q) for q in questions]
    tokens = encode(toy_adapter, small_world, questions)
    verbalizers = [prompts.verbalizer(q) for q in questions]
    pruner = get_pruner(name)
    with sharing(toy_adapter, True):
        shared = toy_adapter.score_pruned(texts, tokens, pruner, 8, verbalizers)
    with sharing(toy_adapter, False):
        single = toy_adapter.score_pruned(texts, tokens, pruner, 8, verbalizers)
    np.testing.assert_allclose(shared.probs, single.probs, atol=1e-6)
    assert torch.equal(shared.kept, single.kept)


@pytest.mark.parametrize("name", ["pdrop", "sparsevlm"])
def test_staged_in_llm_pruners_take_the_single_forward(toy_adapter, small_world, name):
    questions, texts = mixed_batch(small_world)
    tokens = encode(toy_adapter, small_world, questions[:6])
    with sharing(toy_adapter, True), counted_forwards(toy_adapter) as calls:
        toy_adapter._last_logits(texts[:6], tokens, None, RegistryInLLMPruner(get_pruner(name)), 16)
    assert len(calls) == 1


def test_bad_batches_fail_the_same_way_with_sharing(tiny_adapter, small_world):
    questions, texts = mixed_batch(small_world)
    tokens = encode(tiny_adapter, small_world, questions[:2])
    with sharing(tiny_adapter, True):
        with pytest.raises(ValueError, match="prompt batch is empty"):
            tiny_adapter.score([], tokens, None, prompts.YES_NO_VERBALIZER)
        with pytest.raises(ValueError, match="3 prompts but visual tokens for 2 images"):
            tiny_adapter.score(texts[:3], tokens, None, prompts.YES_NO_VERBALIZER)
        with pytest.raises(ValueError, match="exactly one '<image>'"):
            tiny_adapter.score(["no image here", texts[1]], tokens, None, prompts.YES_NO_VERBALIZER)



class CountingPruner:
    """A registry pruner that records the batch size of every call."""

    def __init__(self, pruner):
        self.pruner, self.batches = pruner, []

    def __getattr__(self, name):
        return getattr(self.pruner, name)

    def __call__(self, tokens, k, query=None):
        self.batches.append(tokens.batch_size)
        return self.pruner(tokens, k, query)


@pytest.mark.parametrize("name", ["scope", "visionzip", "random"])
def test_a_question_blind_pruner_selects_once_per_image(adapter, small_world, name):
    """Rows of one image get their image's selection, computed on the distinct images only, and
    it equals selecting row by row."""
    questions, texts = mixed_batch(small_world)
    tokens = encode(adapter, small_world, questions)
    pruner = CountingPruner(get_pruner(name))
    keep, _, _ = adapter._route(pruner, tokens, 16, None)
    per_row = adapter._select(pruner, tokens, 16, None)
    assert pruner.batches == [len(set(tokens.image_keys)), len(questions)]
    assert torch.equal(keep.indices, per_row.indices)
    assert (keep.merged is None) == (per_row.merged is None)
    if keep.merged is not None:
        assert torch.allclose(keep.merged, per_row.merged, atol=1e-6)


@pytest.mark.parametrize("name", ["fastv", "dart"])
@pytest.mark.parametrize("layer", [1, 2])
def test_in_llm_generation_runs_the_prompts_below_the_drop_once(adapter, small_world, name, layer):
    """Captions under FastV and DART: the prompts run up to the drop once, then one forward per
    generated token; same texts, first-step logits and kept tokens as re-running every sequence,
    with rows that finish at different steps and a pruned vision input."""
    if layer >= adapter.model.config.text_config.num_hidden_layers:
        pytest.skip("the model has no such layer")
    questions = small_world.captions().questions[:5] + small_world.pope("random").questions[:2]
    texts = [prompts.build_prompt(q) for q in questions]
    texts[2] = texts[2].replace(prompts.SYSTEM, SHORT_SYSTEM)
    tokens = encode(adapter, small_world, questions)
    pruner = RegistryInLLMPruner(get_pruner(name, layer=layer))
    for keep in (None, per_image_keep(adapter, tokens, 100)):
        results = {}
        for enabled in (True, False):
            with sharing(adapter, enabled), counted_forwards(adapter) as calls:
                out = adapter._generate_without_cache(texts, tokens, keep, 30, pruner, 16)
            results[enabled] = (out, len(calls))
        (shared, n_shared), (single, n_single) = results[True], results[False]
        assert shared[0] == single[0]
        assert torch.equal(shared[2], single[2])
        assert torch.allclose(shared[1], single[1], atol=1e-5), (shared[1] - single[1]).abs().max()
        assert n_shared == n_single + 1  # the prefix forward, then one per step as before
