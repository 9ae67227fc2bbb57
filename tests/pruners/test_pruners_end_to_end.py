"""Every registered pruner, with its defaults, runs end to end through the toy model."""

from __future__ import annotations

import numpy as np
import pytest

from studylib.models import prompts
from studylib.tokens import QueryContext
from studylib.pruners import get_pruner, list_pruners

BUDGET = 36  # a quarter of the toy's 144 visual tokens


@pytest.fixture(scope="module")
def batch(toy_adapter, small_world):
    questions = small_world.pope("adversarial").questions[:2] + small_world.scienceqa().questions[:2]
    keys = [q.image_key for q in questions]
    tokens = toy_adapter.encode([small_world.load_image(k) for k in keys], keys)
    texts = [prompts.build_prompt(q) for q in questions]
    query = toy_adapter.query_context([q.text for q in questions], texts, tokens)
    return questions, tokens, texts, query


@pytest.mark.parametrize("name", list_pruners())
def test_pruner_scores_through_the_toy_model(name, toy_adapter, batch):
    questions, tokens, texts, query = batch
    pruner = get_pruner(name)
    k = tokens.num_patches if name == "full" else BUDGET
    # agile_count keeps a different number of tokens per image: score it image by image
    groups = [[i] for i in range(len(questions))] if name == "agile_count" else [list(range(len(questions)))]
    for rows in groups:
        sub_query = QueryContext(query.text_embedding[rows], query.text_attention[rows])
        scores = toy_adapter.score_pruned([texts[i] for i in rows], tokens[rows], pruner, k,
                                          [prompts.verbalizer(questions[i]) for i in rows], sub_query)
        assert scores.kept.shape[0] == len(rows)
        for j, i in enumerate(rows):
            p = scores.probs[j, : len(questions[i].choice_labels)]
            assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-6


@pytest.mark.parametrize("name", list_pruners("llm"))
def test_in_llm_pruners_generate(name, toy_adapter, batch):
    questions, tokens, texts, _ = batch
    out, kept = toy_adapter.generate_pruned(texts[:2], tokens[:2], get_pruner(name), BUDGET, max_new_tokens=2)
    assert len(out) == 2 and tuple(kept.shape) == (2, BUDGET)
