"""LLaVA-NeXT and Qwen2.5-VL through the same adapter: tiny random models built from configs.

* with every token kept, the adapter's first-token logits equal the stock Hugging Face model
  called with its own processor's outputs (fp32, 1e-5), for a batch of images of different
  sizes;
* Qwen2.5-VL's kept tokens keep their M-RoPE positions of the unpruned sequence
  (transformers' ``get_rope_index``), and so does the text after the image;
* LLaVA-NeXT keeps one image-newline token per high-resolution row that keeps a token;
* budgets above an image's N keep all its tokens; generation runs on both families.
"""

from __future__ import annotations

import numpy as np
import pytest
import torch

from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.models.batching import NO_TOKEN
from studylib.pruners import get_pruner
from studylib.sweep.identity import model_num_tokens
from studylib.tokens import RaggedTokens

FAMILIES = ["tiny-random-llava-next", "tiny-random-qwen2.5-vl"]
SIZES = [(96, 96), (160, 96), (96, 150)]  # (width, height): three token counts per family


@pytest.fixture(scope="module", params=FAMILIES)
def adapter(request) -> LlavaAdapter:
    torch.manual_seed(0)
    return LlavaAdapter.load(request.param)


@pytest.fixture(scope="module")
def batch(small_world):
    """Three yes/no questions about three images of different sizes."""
    questions = small_world.pope("random").questions[::6][:3]
    images = [small_world.load_image(q.image_key).resize(size) for q, size in zip(questions, SIZES)]
    return questions, images, [f"{q.image_key}@{w}x{h}" for q, (w, h) in zip(questions, SIZES)]


def encode(adapter, batch):
    questions, images, keys = batch
    return adapter.encode(images, keys), [adapter.build_prompt(q) for q in questions]


def stock_last_logits(adapter: LlavaAdapter, prompt: str, image) -> torch.Tensor:
    """The unmodified model on its processor's outputs (image tokens expanded by the processor)."""
    inputs = adapter.processor(text=[prompt], images=[image], return_tensors="pt")
    with torch.inference_mode():
        return adapter.model(**inputs).logits[0, -1].float()


def test_images_of_different_sizes_give_ragged_tokens(adapter, batch):
    tokens, _ = encode(adapter, batch)
    assert isinstance(tokens, RaggedTokens)
    counts = [row.num_patches for row in tokens.rows]
    assert len(set(counts)) == 3 and max(counts) <= adapter.num_patches
    assert model_num_tokens(adapter) == adapter.num_patches


@pytest.mark.parametrize("name", FAMILIES)
def test_num_tokens_from_the_name_equals_the_model(name):
    assert model_num_tokens(name) == LlavaAdapter.load(name).num_patches


def test_all_tokens_equal_the_stock_forward(adapter, batch):
    """K = N for every image of a mixed-size batch: logits and first-token probabilities."""
    questions, images, _ = batch
    tokens, texts = encode(adapter, batch)
    verbalizers = [prompts.verbalizer(q) for q in questions]
    scores = adapter.score(texts, tokens, None, verbalizers)
    for i, (text, image) in enumerate(zip(texts, images)):
        stock = stock_last_logits(adapter, text, image)
        ours, _ = adapter._last_logits([text], tokens[i], None, None, None)
        assert torch.allclose(ours[0], stock, atol=1e-5), (ours[0] - stock).abs().max()
        ids = adapter.verbalizer_ids(verbalizers[i])
        log_probs = stock.log_softmax(-1)
        expected = torch.stack([log_probs[row].logsumexp(0) for row in ids]).softmax(0).numpy()
        np.testing.assert_allclose(scores.probs[i, : len(ids)], expected, atol=1e-5)
        assert scores.kept[i].ne(NO_TOKEN).sum() == tokens.rows[i].num_patches


def test_full_pruner_equals_keeping_everything(adapter, batch):
    questions, _, _ = batch
    tokens, texts = encode(adapter, batch)
    verbalizers = [prompts.verbalizer(q) for q in questions]
    full = adapter.score_pruned(texts, tokens, get_pruner("full"), adapter.num_patches, verbalizers)
    everything = adapter.score(texts, tokens, None, verbalizers)
    np.testing.assert_allclose(full.probs, everything.probs, atol=1e-6)


def test_budget_above_an_images_n_keeps_all_its_tokens(adapter, batch):
    questions, _, _ = batch
    tokens, texts = encode(adapter, batch)
    counts = [row.num_patches for row in tokens.rows]
    k = sorted(counts)[1]
    scores = adapter.score_pruned(texts, tokens, get_pruner("random"), k, [prompts.verbalizer(q) for q in questions])
    assert scores.kept.shape == (3, k)
    assert [int(row.ne(NO_TOKEN).sum()) for row in scores.kept] == [min(k, n) for n in counts]


def test_qwen_kept_tokens_keep_their_unpruned_positions(small_world):
    adapter = LlavaAdapter.load("tiny-random-qwen2.5-vl")
    question = small_world.pope("random").questions[0]
    image = small_world.load_image(question.image_key).resize((160, 96))
    tokens = adapter.encode([image], ["wide"])
    text = adapter.build_prompt(question)
    inputs = adapter.processor(text=[text], images=[image], return_tensors="pt")
    full, _ = adapter.model.model.get_rope_index(inputs["input_ids"], inputs["mm_token_type_ids"],
                                                 inputs["image_grid_thw"], attention_mask=inputs["attention_mask"])
    is_image = inputs["input_ids"][0] == adapter.image_token_id
    image_full = full[:, 0, is_image]  # (3, N) the unpruned image positions
    after_full = full[:, 0, is_image.nonzero().max() + 1:]
    n = tokens.num_patches
    keep = torch.randperm(n, generator=torch.Generator().manual_seed(0))[: n // 3].sort().values[None]
    visual, indices = adapter._visual_sequence(tokens, keep)
    _, mask, positions, image_positions = adapter._inputs([text], visual)
    assert positions.shape[0] == 3
    assert torch.equal(positions[:, 0, image_positions[0]], image_full[:, indices[0]])
    assert torch.equal(positions[:, 0, image_positions[0, -1] + 1:], after_full)
    shared, _ = adapter._last_logits([text, text], tokens[[0, 0]], keep.expand(2, -1), None, None)
    adapter._share_prefixes = False
    try:
        single, _ = adapter._last_logits([text, text], tokens[[0, 0]], keep.expand(2, -1), None, None)
    finally:
        adapter._share_prefixes = True
    assert torch.allclose(shared, single, atol=1e-5)


def test_next_keeps_a_newline_per_surviving_row(small_world):
    adapter = LlavaAdapter.load("tiny-random-llava-next")
    question = small_world.pope("random").questions[0]
    image = small_world.load_image(question.image_key).resize((160, 96))
    tokens = adapter.encode([image], ["wide"])
    (rows, cols), (high_rows, high_cols) = tokens.layout
    base = rows * cols
    stock = adapter.processor(text=[adapter.build_prompt(question)], images=[image], return_tensors="pt")
    assert int((stock["input_ids"] == adapter.image_token_id).sum()) == tokens.num_patches + high_rows
    full, _ = adapter._visual_sequence(tokens, None)
    assert full[0].length == tokens.num_patches + high_rows
    keep = torch.tensor([[0, base + 1, base + 2, base + 2 * high_cols]])  # base, row 0 twice, row 2
    visual, _ = adapter._visual_sequence(tokens, keep)
    newline = adapter.model.model.image_newline
    assert visual[0].length == 4 + 2 and visual[0].patch_slots.tolist() == [0, 1, 2, 4]
    assert torch.equal(visual[0].embeds[3], newline) and torch.equal(visual[0].embeds[5], newline)


def test_next_section_scope_splits_the_budget(batch):
    adapter = LlavaAdapter.load("tiny-random-llava-next", prune_scope="section")
    tokens, _ = encode(adapter, batch)
    row = tokens.rows[1]
    (rows, cols), _ = row.layout
    kept = adapter._route(get_pruner("saliency"), row, 40, None)[0].indices
    assert kept.shape == (1, 40)
    assert int((kept < rows * cols).sum()) == round(40 * rows * cols / row.num_patches)


@pytest.mark.parametrize("name", ["fastv", "visionzip"])
def test_generation_first_step_matches_scoring(adapter, batch, name):
    questions, _, _ = batch
    tokens, texts = encode(adapter, batch)
    row = tokens.rows[0]
    pruner = get_pruner(name)
    texts_out, kept = adapter.generate_pruned(texts[:1], row, pruner, 16, max_new_tokens=3)
    assert len(texts_out) == 1 and kept.shape[0] == 1
    if name == "visionzip":
        keep = adapter._route(pruner, row, 16, None)[0]
        _, first = adapter.generate(texts[:1], row, keep, max_new_tokens=1, output_scores=True)
        logits, _ = adapter._last_logits(texts[:1], row, keep, None, None)
        assert torch.allclose(first, logits, atol=1e-5)
