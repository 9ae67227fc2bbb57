"""The adapter against the stock Hugging Face model: same logits, same first-token
probabilities as ``generate``, kept tokens in raster order, clear errors on bad input."""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter

ADAPTERS = ["toy_adapter", "tiny_adapter"]


def _questions(world, n_yesno=3, n_mc=3):
    """Mixed-length prompts (yes/no and multiple choice), so batches need padding."""
    return world.pope("random").questions[:n_yesno] + world.scienceqa().questions[:n_mc]


def _encode(adapter, world, questions):
    keys = [q.image_key for q in questions]
    return adapter.encode([world.load_image(k) for k in keys], keys)


def _stock_last_logits(adapter: LlavaAdapter, prompt: str, image) -> torch.Tensor:
    """The unmodified HF forward: K = N image placeholders expanded in the text, pixel values in."""
    before, after = adapter._encode_prompt(prompt)
    ids = torch.tensor([list(before) + [adapter.image_token_id] * adapter.num_patches + list(after)])
    with torch.inference_mode():
        out = adapter.model(input_ids=ids, pixel_values=adapter.pixel_values([image]))
    return out.logits[0, -1].float()


@pytest.mark.parametrize("name", ADAPTERS)
def test_all_tokens_equal_the_stock_forward(name, request, small_world):
    adapter = request.getfixturevalue(name)
    questions = _questions(small_world)
    tokens = _encode(adapter, small_world, questions)
    batch = [prompts.build_prompt(q) for q in questions]
    logits, _ = adapter._last_logits(batch, tokens, None, None, None)
    for i, q in enumerate(questions):
        stock = _stock_last_logits(adapter, batch[i], small_world.load_image(q.image_key))
        assert torch.allclose(logits[i], stock, atol=1e-5), (logits[i] - stock).abs().max()


@pytest.mark.parametrize("name", ADAPTERS)
def test_score_matches_generate_first_step(name, request, small_world):
    adapter = request.getfixturevalue(name)
    questions = _questions(small_world)
    tokens = _encode(adapter, small_world, questions)
    batch = [prompts.build_prompt(q) for q in questions]
    keep = torch.stack([torch.randperm(adapter.num_patches, generator=torch.Generator().manual_seed(i))[:16]
                        for i in range(len(questions))])
    scores = adapter.score(batch, tokens, keep, [prompts.verbalizer(q) for q in questions])
    _, first = adapter.generate(batch, tokens, keep, max_new_tokens=1, output_scores=True)
    log_probs = first.log_softmax(-1)
    for i, q in enumerate(questions):
        ids = adapter.verbalizer_ids(prompts.verbalizer(q))
        per_class = torch.stack([log_probs[i, row].logsumexp(0) for row in ids]).softmax(0).numpy()
        np.testing.assert_allclose(scores.probs[i, : len(ids)], per_class, atol=1e-5)


def test_batched_padded_scores_equal_single_scores(toy_adapter, small_world):
    questions = _questions(small_world)
    tokens = _encode(toy_adapter, small_world, questions)
    batch = [prompts.build_prompt(q) for q in questions]
    verbalizers = [prompts.verbalizer(q) for q in questions]
    together = toy_adapter.score(batch, tokens, None, verbalizers)
    for i in range(len(questions)):
        alone = toy_adapter.score(batch[i:i + 1], tokens[i], None, verbalizers[i:i + 1])
        n = len(verbalizers[i])
        np.testing.assert_allclose(alone.logits[0, :n], together.logits[i, :n], atol=1e-5)


def test_kept_tokens_reach_the_llm_in_raster_order(tiny_adapter, small_world):
    questions = _questions(small_world, 2, 0)
    tokens = _encode(tiny_adapter, small_world, questions)
    keep = torch.tensor([[40, 3, 500, 17], [9, 8, 7, 6]])
    seen = {}
    handle = tiny_adapter.model.model.language_model.register_forward_pre_hook(
        lambda m, a, kw: seen.update(embeds=kw["inputs_embeds"]), with_kwargs=True)
    tiny_adapter._share_prefixes = False  # one forward over the whole prompts, to look at its input
    try:
        scores = tiny_adapter.score([prompts.build_prompt(q) for q in questions], tokens, keep,
                                    prompts.YES_NO_VERBALIZER)
    finally:
        handle.remove()
        tiny_adapter._share_prefixes = True
    assert scores.kept.tolist() == [[3, 17, 40, 500], [6, 7, 8, 9]]
    for i in range(2):
        before, after = tiny_adapter._encode_prompt(prompts.build_prompt(questions[i]))
        row = seen["embeds"][i]
        assert row.shape[0] == len(before) + 4 + len(after)  # exactly K image slots
        image_slots = row[len(before): len(before) + 4]
        assert torch.equal(image_slots, tokens.embeddings[i, scores.kept[i]])


def test_encode_matches_the_vision_tower_and_caches(tiny_adapter, small_world):
    key = small_world.scenes[0].key
    image = small_world.load_image(key)
    tiny_adapter.clear_cache()
    tokens = tiny_adapter.encode([image], [key])
    with torch.inference_mode():
        out = tiny_adapter.model.model.vision_tower(tiny_adapter.pixel_values([image]),
                                                    output_hidden_states=True, output_attentions=True)
    assert torch.allclose(tokens.features, out.hidden_states[-2][:, 1:])
    assert torch.allclose(tokens.cls_attention, out.attentions[-2][:, :, 0, 1:].mean(1))
    assert tokens.grid == (24, 24) and tokens.num_patches == 576
    calls = []
    handle = tiny_adapter.model.model.vision_tower.register_forward_hook(lambda *a: calls.append(1))
    try:
        again = tiny_adapter.encode([image, image], [key, key])
    finally:
        handle.remove()
    assert calls == [] and torch.equal(again.features[1], tokens.features[0])


def test_batches_of_cached_images_share_their_derived_quantities(toy_adapter, small_world, monkeypatch):
    """A sweep stacks the cached images anew for every config's batch (and the adapter selects once
    per distinct image): the similarity of an image (VisualTokens.derived) is computed for the first
    config and reused by the next ones."""
    from studylib.pruners import get_pruner
    import studylib.pruners._similarity as similarity

    pope = small_world.pope("random").questions
    by_image = {}
    for q in pope:
        by_image.setdefault(q.image_key, []).append(q)
    questions = [qs[0] for qs in list(by_image.values())[:3]] + [list(by_image.values())[0][1]]
    texts = [toy_adapter.build_prompt(q) for q in questions]
    toy_adapter.clear_cache()
    computed = []
    cosine = similarity.cosine_matrix
    monkeypatch.setattr(similarity, "cosine_matrix", lambda x: computed.append(x.shape[0]) or cosine(x))
    first = _encode(toy_adapter, small_world, questions)
    k = first.num_patches // 4
    scores = toy_adapter.score_pruned(texts, first, get_pruner("scope"), k, prompts.YES_NO_VERBALIZER)
    assert computed == [1, 1, 1]  # once per distinct image
    second = _encode(toy_adapter, small_world, questions)
    assert second is not first
    again = toy_adapter.score_pruned(texts, second, get_pruner("scope(alpha=0)"), k, prompts.YES_NO_VERBALIZER)
    toy_adapter.score_pruned(texts, second, get_pruner("vispruner"), k, prompts.YES_NO_VERBALIZER)
    assert computed == [1, 1, 1]  # the next configs' batches reuse the images' similarity
    assert torch.equal(get_pruner("scope")(second[[3, 1]], k).indices, scores.kept[[3, 1]])
    assert computed == [1, 1, 1] and again.kept.shape == scores.kept.shape


def test_fastv_attention_row_equals_eager_attention(toy_adapter, small_world):
    """The single attention row computed by the hook equals layer k-1's full eager attention."""
    questions = _questions(small_world)
    tokens = _encode(toy_adapter, small_world, questions)
    batch = [prompts.build_prompt(q) for q in questions]
    context = toy_adapter.query_context([q.text for q in questions], batch, tokens, layer=2)
    visual, _ = toy_adapter._visual_sequence(tokens, None)
    embeds, mask, positions, image_positions = toy_adapter._inputs(batch, visual)
    model = toy_adapter.model
    model.set_attn_implementation({"text_config": "eager"})
    try:
        with torch.inference_mode():
            out = model(inputs_embeds=embeds, attention_mask=mask, position_ids=positions,
                        output_attentions=True, use_cache=False)
    finally:
        model.set_attn_implementation({"text_config": "sdpa"})
    eager_row = out.attentions[1][:, :, -1, :].mean(1).gather(1, image_positions)
    assert torch.allclose(context.text_attention, eager_row, atol=1e-5)


class _TopAttention:
    layer = 2

    def select_in_llm(self, state, k):
        return state.attention_row.topk(k, dim=1).indices.sort(1).values


def test_in_llm_pruning_keeps_all_when_k_is_n_and_is_batch_invariant(toy_adapter, small_world):
    questions = _questions(small_world)
    tokens = _encode(toy_adapter, small_world, questions)
    batch = [prompts.build_prompt(q) for q in questions]
    verbalizers = [prompts.verbalizer(q) for q in questions]
    plain = toy_adapter.score(batch, tokens, None, verbalizers)
    everything = toy_adapter.score(batch, tokens, None, verbalizers, in_llm=_TopAttention(), in_llm_k=144)
    np.testing.assert_allclose(everything.logits, plain.logits, atol=1e-5)
    pruned = toy_adapter.score(batch, tokens, None, verbalizers, in_llm=_TopAttention(), in_llm_k=16)
    assert pruned.kept.shape == (len(questions), 16)
    assert not np.allclose(np.nan_to_num(pruned.logits), np.nan_to_num(plain.logits))
    for i in range(len(questions)):
        alone = toy_adapter.score(batch[i:i + 1], tokens[i], None, verbalizers[i:i + 1],
                                  in_llm=_TopAttention(), in_llm_k=16)
        assert torch.equal(alone.kept[0], pruned.kept[i])
        n = len(verbalizers[i])
        np.testing.assert_allclose(alone.logits[0, :n], pruned.logits[i, :n], atol=1e-5)


def test_in_llm_generation_first_step_equals_score(toy_adapter, small_world):
    questions = _questions(small_world, 2, 0)
    tokens = _encode(toy_adapter, small_world, questions)
    batch = [prompts.build_prompt(q) for q in questions]
    scores = toy_adapter.score(batch, tokens, None, prompts.YES_NO_VERBALIZER, in_llm=_TopAttention(), in_llm_k=16)
    texts, first = toy_adapter.generate(batch, tokens, None, 2, in_llm=_TopAttention(), in_llm_k=16,
                                        output_scores=True)
    assert len(texts) == 2
    ids = toy_adapter.verbalizer_ids(prompts.YES_NO_VERBALIZER)
    per_class = torch.stack([first.log_softmax(-1)[:, row].logsumexp(1) for row in ids], 1).softmax(1)
    np.testing.assert_allclose(scores.probs, per_class.numpy(), atol=1e-5)


def test_same_inputs_give_identical_scores(toy_adapter, small_world):
    questions = _questions(small_world)
    batch = [prompts.build_prompt(q) for q in questions]
    verbalizers = [prompts.verbalizer(q) for q in questions]
    first = toy_adapter.score(batch, _encode(toy_adapter, small_world, questions), None, verbalizers)
    toy_adapter.clear_cache()
    second = toy_adapter.score(batch, _encode(toy_adapter, small_world, questions), None, verbalizers)
    np.testing.assert_array_equal(first.probs, second.probs)


# ---------------------------------------------------------------- bad input


@pytest.fixture
def one(tiny_adapter, small_world):
    q = small_world.pope("random").questions[0]
    return tiny_adapter, [prompts.build_prompt(q)], _encode(tiny_adapter, small_world, [q])


@pytest.mark.parametrize("keep, message", [
    (torch.zeros((1, 0), dtype=torch.long), "budget K"),
    (torch.arange(577)[None], "budget K"),
    (torch.tensor([[0, 576]]), "out of range"),
    (torch.tensor([[-1, 5]]), "out of range"),
    (torch.tensor([[3, 3]]), "duplicates"),
    (torch.tensor([[0.0, 1.0]]), "integers"),
    (torch.tensor([0, 1]), "shape"),
])
def test_bad_kept_indices(one, keep, message):
    adapter, batch, tokens = one
    with pytest.raises(ValueError, match=message):
        adapter.score(batch, tokens, keep, prompts.YES_NO_VERBALIZER)


def test_empty_prompt_batch(one):
    adapter, _, tokens = one
    with pytest.raises(ValueError, match="prompt batch is empty"):
        adapter.score([], tokens, None, prompts.YES_NO_VERBALIZER)


def test_prompt_without_image_placeholder(one):
    adapter, _, tokens = one
    with pytest.raises(ValueError, match="exactly one '<image>'"):
        adapter.score(["Is there a red circle?"], tokens, None, prompts.YES_NO_VERBALIZER)


def test_verbalizer_word_must_be_one_token(one):
    adapter, batch, tokens = one
    with pytest.raises(ValueError, match="not a single token"):
        adapter.score(batch, tokens, None, {"yes": ("Yes please",), "no": ("No",)})
    with pytest.raises(ValueError, match="not a single token"):
        adapter.score(batch, tokens, None, {"yes": ("Affirmative",), "no": ("No",)})


def test_in_llm_budget_is_checked(one):
    adapter, batch, tokens = one
    with pytest.raises(ValueError, match="budget K"):
        adapter.score(batch, tokens, None, prompts.YES_NO_VERBALIZER, in_llm=_TopAttention(), in_llm_k=0)


def test_undecodable_image(tiny_adapter, tmp_path):
    broken = tmp_path / "broken.jpg"
    broken.write_bytes(b"not a jpeg at all")
    with pytest.raises(ValueError, match="could not be decoded"):
        tiny_adapter.encode([broken])
    with pytest.raises(ValueError, match="could not be decoded"):
        tiny_adapter.encode([b"\x00\x01"], ["bytes-image"])
