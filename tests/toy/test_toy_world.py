"""The toy world is deterministic and built the way POPE / ScienceQA / CHAIR data are."""

from __future__ import annotations

import numpy as np
import pytest

from studylib.toy import world as tw
from studylib.models import prompts


def test_same_seed_same_world():
    a, b = tw.ToyWorld(5, 30), tw.ToyWorld(5, 30)
    assert a.pope_all().questions == b.pope_all().questions
    assert a.scienceqa().questions == b.scienceqa().questions
    assert a.captions().questions == b.captions().questions
    assert np.array_equal(np.asarray(a.load_image("toy-7")), np.asarray(b.load_image("toy-7")))


def test_different_seeds_differ():
    assert tw.ToyWorld(0, 20).scenes != tw.ToyWorld(100, 20).scenes


@pytest.fixture(scope="module")
def world():
    return tw.eval_world(120)


@pytest.mark.parametrize("split", tw.POPE_SPLITS)
def test_pope_split_is_balanced_and_truthful(world, split):
    data = world.pope(split)
    answers = [q.answer for q in data.questions]
    assert answers.count("yes") == answers.count("no") > 0
    assert answers[:2] == ["yes", "no"]  # interleaved as in POPE
    for q in data.questions:
        category = q.text.removeprefix("Is there a ").removeprefix("Is there an ").removesuffix(" in the image?")
        assert category in tw.CATEGORIES
        assert (category in data.objects[q.image_key]) == (q.answer == "yes")


def test_pope_negatives_follow_their_rule(world):
    popular = world.category_frequency()
    co = world.co_occurrence()
    adversarial = world.pope("adversarial").questions
    for yes, no in zip(adversarial[0::2], adversarial[1::2]):
        present = world.objects()[yes.image_key]
        positive = yes.text.split("a ", 1)[1].removesuffix(" in the image?").removeprefix("n ")
        negative = no.text.split("a ", 1)[1].removesuffix(" in the image?").removeprefix("n ")
        ranked = [c for c in co[positive] if c not in present]
        assert negative in ranked[:3]
    for q in world.pope("popular").questions[1::2]:
        negative = q.text.split("a ", 1)[1].removesuffix(" in the image?").removeprefix("n ")
        absent_popular = [c for c in popular if c not in world.objects()[q.image_key]]
        assert negative in absent_popular[:3]


def test_adversarial_negatives_share_colours_more_than_random(world):
    def same_colour_rate(split):
        rows = world.pope(split).questions
        hits = [q.text.split()[3] in {c.split()[0] for c in world.objects()[q.image_key]}
                for q in rows if q.answer == "no"]
        return np.mean(hits)
    assert same_colour_rate("adversarial") > same_colour_rate("random")


def test_multiple_choice_questions_are_well_posed(world):
    for q in world.scienceqa().questions:
        assert len(q.choices) == 4 and len(set(q.choices)) == 4
        assert q.answer in "ABCD"
        scene = next(s for s in world.scenes if s.key == q.image_key)
        truth = q.choices["ABCD".index(q.answer)]
        if q.split == "colour":
            shape = q.text.split()[-1].rstrip("?")
            assert [o.colour for o in scene.objects if o.shape == shape] == [truth]
        elif q.split == "count":
            assert tw.COUNT_WORDS[len(scene.objects)] == truth
    letters = [q.answer for q in world.scienceqa().questions]
    assert len(set(letters)) == 4  # answers are not always in one position


def test_captions_name_exactly_the_objects(world):
    for q in world.captions().questions:
        scene = next(s for s in world.scenes if s.key == q.image_key)
        for category in scene.categories:
            assert category in q.answer


def test_complexity_varies(world):
    counts = [len(s.objects) for s in world.scenes]
    assert min(counts) == 1 and max(counts) == 6
    assert 0.3 < np.mean([s.cluttered for s in world.scenes]) < 0.7


def test_patch_labels_mark_objects():
    scene = tw.sample_scene(3)
    image, labels = tw.render_scene(scene)
    per_patch = tw.patch_labels(labels, 8)
    assert per_patch.shape == (144,)
    assert set(per_patch) - {tw.BACKGROUND_CLASS} == {tw.CATEGORIES.index(c) for c in scene.categories}


def test_every_prompt_word_is_in_the_toy_vocabulary(world):
    from studylib.toy.model import build_tokenizer

    tokenizer = build_tokenizer()
    texts = [prompts.build_prompt(q) for q in world.pope_all().questions + world.scienceqa().questions]
    texts += [prompts.build_prompt(q) + " " + q.answer for q in world.captions().questions]
    ids = {i for t in texts for i in tokenizer(t).input_ids}
    assert tokenizer.unk_token_id not in ids
