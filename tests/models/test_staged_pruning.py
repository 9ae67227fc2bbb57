"""PyramidDrop and SparseVLM through the adapter's hooks (left-padded batches, one attention row per
query, re-indexed masks, renumbered rotary positions) against a naive reference: one unpadded row
at a time, decoder layers called one by one, the full eager attention matrix of the scoring layer,
the sequence rebuilt by concatenation with positions ``0 … L'-1`` — the official ``pdrop_forward``
and ``LlamaDynamicvitModel.forward`` written out.  The recycling's DPC-KNN is the module's own here:
image tokens of the toy world's flat colour regions are near-duplicates whose densities tie to
float32 rounding, so a float64 transcription may break those ties differently; the clustering is
tested against the naive loop on tie-free inputs in ``tests/pruners/test_pruners_new_methods.py``."""

from __future__ import annotations

import numpy as np
import pytest
import torch
from transformers.models.llama.modeling_llama import apply_rotary_pos_emb

from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.models.llm_pruning import RegistryInLLMPruner, in_llm_pruning
from studylib.pruners import _reference, get_pruner
from studylib.pruners.sparsevlm import cluster_merge

SPECS = ["pdrop", "pdrop(lam=0.25)", "sparsevlm", "sparsevlm(recycle=false)", "sparsevlm(schedule=64)"]


def _batch(adapter, world):
    """Mixed-length prompts (yes/no and multiple choice): the batch needs padding."""
    questions = world.pope("random").questions[:2] + world.scienceqa().questions[:2]
    keys = [q.image_key for q in questions]
    tokens = adapter.encode([world.load_image(k) for k in keys], keys)
    return questions, tokens, [prompts.build_prompt(q) for q in questions]


def eager_attention(layer, hidden: torch.Tensor, positions: torch.Tensor, rotary) -> torch.Tensor:
    """``(L, L)`` head-mean causal attention probabilities of ``layer`` on its input ``hidden`` (1, L, D)."""
    attn = layer.self_attn
    length, d = hidden.shape[1], attn.head_dim
    normed = layer.input_layernorm(hidden)
    q = attn.q_proj(normed).view(1, length, -1, d).transpose(1, 2)
    k = attn.k_proj(normed).view(1, length, -1, d).transpose(1, 2)
    cos, sin = rotary(hidden, positions)
    q, k = apply_rotary_pos_emb(q, k, cos, sin)
    k = k.repeat_interleave(attn.num_key_value_groups, dim=1)
    scores = (q @ k.transpose(-1, -2)) * attn.scaling
    scores = scores.masked_fill(torch.ones(length, length, dtype=torch.bool).triu(1), float("-inf"))
    return scores.softmax(-1).mean(1)[0]


def naive_staged_logits(adapter: LlavaAdapter, embeds: torch.Tensor, image: list[int], plan):
    """(last-token logits, first drop's kept indices) of one unpadded row ``embeds`` (L, D)."""
    lm = adapter.model.model.language_model
    hidden = embeds.unsqueeze(0)
    start, visual = image[0], list(image)
    raters = None
    if plan.raters is not None:
        text = hidden[:, visual[-1] + 1:]
        chosen = _reference.select_raters(hidden[:, visual], text, torch.ones(text.shape[:2], dtype=torch.bool))[0]
        raters = [visual[-1] + 1 + int(t) for t in chosen.nonzero().flatten()]
    kept, attention = None, None
    for index, layer in enumerate(lm.layers):
        positions = torch.arange(hidden.shape[1]).unsqueeze(0)
        if index in plan.layers:
            stage = plan.layers.index(index)
            if plan.score_layer == "own":
                attention = eager_attention(layer, hidden, positions, lm.rotary_emb)
            rows = [hidden.shape[1] - 1] if raters is None else raters
            score = attention[rows][:, visual].mean(0)
            n = min(plan.keep[stage], len(visual))
            order = sorted(range(len(visual)), key=lambda j: (-float(score[j]), j))
            chosen = sorted(order[:n])
            kept = chosen if kept is None else kept
            dropped = [j for j in range(len(visual)) if j not in chosen]
            parts = [hidden[:, :start], hidden[:, [visual[j] for j in chosen]]]
            if plan.recycle is not None and dropped:
                m = int(0.3 * len(dropped)) + 1
                best = sorted(dropped, key=lambda j: (-float(score[j]), j))[:m]
                parts.append(cluster_merge(hidden[:, [visual[j] for j in best]], int(m / 10) + 1))
            parts.append(hidden[:, visual[-1] + 1:])
            shift = sum(p.shape[1] for p in parts[1:-1]) - len(visual)
            hidden = torch.cat(parts, dim=1)
            visual = list(range(start, start + sum(p.shape[1] for p in parts[1:-1])))
            raters = None if raters is None else [r + shift for r in raters]
            positions = torch.arange(hidden.shape[1]).unsqueeze(0)
        if plan.score_layer == "previous" and index + 1 in plan.layers:
            attention = eager_attention(layer, hidden, positions, lm.rotary_emb)
        hidden = layer(hidden, attention_mask=None, position_ids=positions,
                       position_embeddings=lm.rotary_emb(hidden, positions))
    return adapter.model.lm_head(lm.norm(hidden))[0, -1].float(), kept


@pytest.mark.parametrize("name,spec", [("toy_adapter", s) for s in SPECS]
                         + [("tiny_adapter", "pdrop"), ("tiny_adapter", "sparsevlm")])
def test_staged_hooks_equal_the_naive_layer_loop(name, spec, request, small_world):
    """Toy: 4 layers, drops before 1, 2, 3; tiny-random: LLaVA-1.5's 576 tokens, 3 layers, drops before 1, 2."""
    adapter = request.getfixturevalue(name)
    questions, tokens, texts = _batch(adapter, small_world)
    k = adapter.num_patches // 4
    pruner = get_pruner(spec)
    with torch.inference_mode():
        logits, kept = adapter._last_logits(texts, tokens, None, RegistryInLLMPruner(pruner), k)
        visual, _ = adapter._visual_sequence(tokens, None)
        embeds, mask, _, image_positions = adapter._inputs(texts, visual)
        plan = pruner.rule(len(adapter.model.model.language_model.layers), k)
        for i in range(len(questions)):
            pad = int((mask[i] == 0).sum())
            expected, expected_kept = naive_staged_logits(adapter, embeds[i, pad:],
                                                          (image_positions[i] - pad).tolist(), plan)
            assert kept[i].tolist() == expected_kept
            assert torch.allclose(logits[i], expected, atol=1e-5), (logits[i] - expected).abs().max()


@pytest.mark.parametrize("spec", ["pdrop", "sparsevlm"])
def test_staged_pruners_score_and_generate(toy_adapter, small_world, spec):
    questions, tokens, texts = _batch(toy_adapter, small_world)
    verbalizers = [prompts.verbalizer(q) for q in questions]
    pruner = get_pruner(spec)
    scores = toy_adapter.score_pruned(texts, tokens, pruner, 16, verbalizers)
    assert scores.kept.shape == (4, 16) and bool((scores.kept[:, 1:] > scores.kept[:, :-1]).all())
    everything = toy_adapter.score(texts, tokens, None, verbalizers)
    assert not np.allclose(np.nan_to_num(scores.logits), np.nan_to_num(everything.logits))
    out, kept = toy_adapter.generate_pruned(texts[:2], tokens[:2], pruner, 16, max_new_tokens=2)
    assert len(out) == 2 and torch.equal(kept, scores.kept[:2])


def test_staged_pruners_keep_m_rope_positions():
    """Qwen2.5-VL (M-RoPE, no contiguous renumbering): the survivors keep their rotary embeddings."""
    adapter = LlavaAdapter.load("tiny-random-qwen2.5-vl")
    layers = adapter.model.model.language_model.layers
    seen, hooks = [], []
    embeds = torch.randn(1, 20, adapter.model.config.text_config.hidden_size)
    try:
        with torch.inference_mode(), in_llm_pruning(adapter.model, RegistryInLLMPruner(get_pruner("pdrop")), 4,
                                                    torch.arange(4, 12).unsqueeze(0), torch.ones(1, 20, dtype=torch.long)):
            hooks = [layer.register_forward_pre_hook(  # after the pruning hooks: what the layer receives
                lambda m, a, kw: seen.append(kw["position_embeddings"][0].clone()), with_kwargs=True)
                for layer in (layers[0], layers[-1])]
            adapter.model.model.language_model(inputs_embeds=embeds, position_ids=torch.arange(20).expand(3, 1, 20))
    finally:
        for hook in hooks:
            hook.remove()
    first, last = seen
    assert last.shape[1] == 20 - 8 + 2  # two drops before the last layer: 4, then 2 image tokens
    assert torch.equal(last[:, :4], first[:, :4]) and torch.equal(last[:, -8:], first[:, -8:])
