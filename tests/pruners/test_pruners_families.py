"""Every registered pruner, with its defaults, runs end to end on tiny random LLaVA-NeXT and
Qwen2.5-VL models, on a batch of two images of different sizes (different N)."""

from __future__ import annotations

import numpy as np
import pytest

from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.models.batching import NO_TOKEN
from studylib.pruners import get_pruner, list_pruners
from studylib.tokens import RaggedTokens

BUDGET = 24
FAMILIES = ["tiny-random-llava-next", "tiny-random-qwen2.5-vl"]


@pytest.fixture(scope="module", params=FAMILIES)
def family_batch(request, small_world):
    adapter = LlavaAdapter.load(request.param)
    questions = small_world.pope("adversarial").questions[:1] + small_world.scienceqa().questions[:1]
    images = [small_world.load_image(q.image_key).resize(size) for q, size in zip(questions, [(96, 96), (150, 96)])]
    keys = [f"{q.image_key}-{i}" for i, q in enumerate(questions)]
    tokens = adapter.encode(images, keys)
    assert isinstance(tokens, RaggedTokens)
    texts = [adapter.build_prompt(q) for q in questions]
    query = adapter.query_context([q.text for q in questions], texts, tokens)
    return adapter, questions, tokens, texts, query


@pytest.mark.parametrize("name", list_pruners())
def test_pruner_scores_on_each_family(name, family_batch):
    adapter, questions, tokens, texts, query = family_batch
    pruner = get_pruner(name)
    k = adapter.num_patches if name == "full" else BUDGET
    rows = [[0], [1]] if name == "agile_count" else [[0, 1]]
    for members in rows:
        sub_query = type(query)(query.text_embedding[members], query.text_attention[members])
        scores = adapter.score_pruned([texts[i] for i in members], tokens[members], pruner, k,
                                      [prompts.verbalizer(questions[i]) for i in members], sub_query)
        for j, i in enumerate(members):
            p = scores.probs[j, : len(questions[i].choice_labels)]
            assert np.isfinite(p).all() and abs(p.sum() - 1) < 1e-6
            kept = scores.kept[j][scores.kept[j] != NO_TOKEN]
            assert len(set(kept.tolist())) == len(kept) and int(kept.max()) < tokens.rows[i].num_patches
