"""CHAIR: synonym tables, caption → object extraction, and the corpus-level scores."""

import numpy as np
import pytest

from studylib.metrics import (
    ChairVocabulary,
    MetricInputError,
    bootstrap_ci,
    caption_objects,
    chair,
    chair_from_counts,
    coco_vocabulary,
    singularize,
    tokenize,
    toy_vocabulary,
)
from studylib.metrics.hallucination import COCO_DOUBLE_WORDS, COCO_SYNONYMS, load_synonym_table


@pytest.fixture(scope="module")
def coco():
    return coco_vocabulary()


@pytest.fixture(scope="module")
def toy():
    return toy_vocabulary()


def categories(caption, vocabulary):
    return [m.category for m in caption_objects(caption, vocabulary)]


# ---------------------------------------------------------------- tables


def test_coco_table_has_80_categories_and_403_strings_like_chair(coco):
    rows = load_synonym_table(COCO_SYNONYMS)
    assert len(rows) == 80 == len(coco.categories)
    assert len({item for row in rows for item in row}) == 403
    assert len(rows[0]) == 67 and rows[0][0] == "person"
    assert {"dining table", "tv", "couch", "hair drier", "toothbrush"} <= set(coco.categories)
    assert coco.synonyms["desk"] == "dining table" and coco.synonyms["table"] == "dining table"
    assert len(set(COCO_DOUBLE_WORDS)) == 27  # CHAIR's list of 29 repeats "hot dog" and "teddy bear"


def test_toy_table_has_16_colour_shape_categories(toy):
    assert len(toy.categories) == 16
    assert toy.synonyms["red disc"] == "red circle"
    assert toy.synonyms["blue box"] == "blue square"
    assert toy.synonyms["yellow plus"] == "yellow cross"
    assert toy.synonyms["green triangle"] == "green triangle"


def test_toy_table_matches_the_toy_world_when_available(toy):
    toy_world = pytest.importorskip("studylib.toy.world")
    assert set(toy.categories) == set(toy_world.CATEGORIES)


# ---------------------------------------------------------------- text processing


def test_tokenize_lowercases_and_splits_words():
    assert tokenize("A Dog's toy, a T-shirt & 2 cats.") == ["a", "dog", "s", "toy", "a", "t-shirt", "2", "cats"]


@pytest.mark.parametrize(
    "plural, singular",
    [
        ("dogs", "dog"), ("boxes", "box"), ("crosses", "cross"), ("discs", "disc"), ("pluses", "plus"),
        ("benches", "bench"), ("puppies", "puppy"), ("ties", "tie"), ("cookies", "cookie"), ("knives", "knife"),
        ("people", "person"), ("men", "man"), ("policemen", "policeman"), ("children", "child"), ("mice", "mouse"),
        ("skis", "ski"), ("buses", "bus"), ("glasses", "glass"), ("horses", "horse"), ("sheep", "sheep"),
        ("scissors", "scissors"), ("glass", "glass"), ("bus", "bus"), ("tennis", "tennis"), ("is", "is"),
        ("circles", "circle"), ("squares", "square"), ("triangles", "triangle"), ("stoves", "stove"),
    ],
)  # fmt: skip
def test_singularize(plural, singular):
    assert singularize(plural) == singular


# ---------------------------------------------------------------- extraction rules


def test_compound_words_are_merged(coco):
    assert categories("A teddy bear near two hot dogs and a stop sign.", coco) == ["teddy bear", "hot dog", "stop sign"]
    assert categories("Wine glasses on a dining table.", coco) == ["wine glass", "dining table"]


def test_baby_adult_and_passenger_rules_prevent_person(coco):
    assert categories("A baby elephant and an adult giraffe.", coco) == ["elephant", "giraffe"]
    assert categories("A passenger train and a passenger jet.", coco) == ["train", "airplane"]
    assert categories("A baby on a bench.", coco) == ["person", "bench"]


def test_toilet_seat_is_not_a_chair(coco):
    assert categories("The toilet seat is up.", coco) == ["toilet"]
    assert categories("A toilet with its seat up.", coco) == ["toilet"]
    assert categories("A chair with a seat.", coco) == ["chair", "chair"]


def test_bow_tie_and_blocking_phrases(coco):
    assert categories("A man in a bow tie.", coco) == ["person", "tie"]
    assert categories("A batter at home plate by the train track.", coco) == []


def test_chair_table_quirks_are_kept(coco):
    assert categories("A motor bike and a cheesecake.", coco) == []
    assert categories("A motorbike and a cupcake.", coco) == ["motorcycle", "cake"]


def test_longest_table_phrase_wins(coco):
    assert categories("A stove top oven.", coco) == ["oven"]


def test_toy_phrases_are_matched_with_synonyms_and_plurals(toy):
    caption = "There are a red disc, two blue boxes, a yellow plus and a green triangle."
    assert categories(caption, toy) == ["red circle", "blue square", "yellow cross", "green triangle"]
    assert categories("A red thing and a circle.", toy) == []


def test_custom_vocabulary_generalises_multiword_matching(tmp_path):
    table = tmp_path / "table.txt"
    table.write_text("# comment\nbig red ball, huge red ball\nred, crimson\n")
    vocabulary = ChairVocabulary.from_file(table)
    assert categories("A huge red ball, a big red ball and crimson paint.", vocabulary) == ["big red ball", "big red ball", "red"]


# ---------------------------------------------------------------- scores


def test_chair_scores_on_a_hand_computed_example(coco):
    captions = [
        "A dog chases a dog and a cat.",  # dog, dog, cat; gt {dog}: 1 hallucinated of 3
        "A man rides a horse.",  # person, horse; gt {person, horse, car}: clean, recall 2/3
        "An empty street.",  # no mentions; gt {car}: clean, recall 0/1
    ]
    truth = [{"dog"}, {"person", "horse", "car"}, {"car"}]
    result = chair(captions, truth, coco)
    assert result.chair_i == pytest.approx(1 / 5)
    assert result.chair_s == pytest.approx(1 / 3)
    assert result.recall == pytest.approx((1 + 2 + 0) / (1 + 3 + 1))
    assert result.mean_length == pytest.approx((8 + 5 + 3) / 3)
    assert (result.n_mentions, result.n_hallucinated) == (5, 1)
    first = result.captions[0]
    assert [m.category for m in first.hallucinated] == ["cat"]
    assert first.recalled == {"dog"} and first.is_hallucinated
    assert [m.position for m in first.mentions] == [1, 4, 7]


def test_chair_i_counts_mentions_with_multiplicity(toy):
    result = chair(["a red disc, a red circle and a red disc"], [{"blue square"}], toy)
    assert result.chair_i == 1.0 and result.n_hallucinated == 3


def test_chair_on_toy_captions(toy):
    captions = ["There are a red circle, a blue box and a green cross.", "There is a yellow triangle."]
    truth = [{"red circle", "blue square"}, {"yellow triangle", "red cross"}]
    result = chair(captions, truth, toy)
    assert result.chair_i == pytest.approx(1 / 4)
    assert result.chair_s == pytest.approx(1 / 2)
    assert result.recall == pytest.approx(3 / 4)


def test_counts_feed_the_bootstrap(toy):
    captions = ["a red disc", "a blue box", "a red disc and a blue box"] * 10
    truth = [{"red circle"}, {"red circle"}, {"red circle", "blue square"}] * 10
    result = chair(captions, truth, toy)
    counts = result.counts()
    rates = chair_from_counts(counts["mentions"], counts["hallucinated"], counts["recalled"], counts["ground_truth"])
    assert rates == {"chair_s": result.chair_s, "chair_i": result.chair_i, "recall": result.recall}
    ci = bootstrap_ci(lambda h, m: h.sum() / m.sum(), counts["hallucinated"], counts["mentions"], n_resamples=200, groups=None)
    assert ci.estimate == pytest.approx(result.chair_i) and ci.low <= ci.estimate <= ci.high


def test_undefined_ratios_are_nan(toy):
    result = chair(["nothing here"], [set()], toy)
    assert np.isnan(result.chair_i) and np.isnan(result.recall) and result.chair_s == 0.0


def test_ground_truth_must_use_canonical_names(coco):
    with pytest.raises(ValueError, match="canonical"):
        chair(["a dog"], [{"puppy"}], coco)
    with pytest.raises(ValueError, match="is a string"):
        chair(["a dog"], ["dog"], coco)


def test_bad_caption_inputs_raise(coco):
    with pytest.raises(ValueError, match="empty"):
        chair([], [], coco)
    with pytest.raises(ValueError, match="mismatched lengths"):
        chair(["a dog", "a cat"], [{"dog"}], coco)
    with pytest.raises(ValueError, match="string"):
        chair([None], [{"dog"}], coco)


@pytest.mark.parametrize("counts, match", [
    (([1, 2], [3, 0], [0, 0], [1, 1]), "hallucinated > mentions"),
    (([1, 2], [0, 0], [2, 0], [1, 1]), "recalled > ground_truth"),
    (([1, -2], [0, 0], [0, 0], [1, 1]), "non-negative integer"),
    (([1, float("nan")], [0, 0], [0, 0], [1, 1]), "NaN|finite"),
    (([1, 2.5], [0, 0], [0, 0], [1, 1]), "integer"),
])
def test_chair_from_counts_refuses_impossible_counts(counts, match):
    with pytest.raises(MetricInputError, match=match):
        chair_from_counts(*counts)
