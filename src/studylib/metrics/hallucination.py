r"""CHAIR object-hallucination metrics (Rohrbach et al., EMNLP 2018) without NLTK or pattern.

Metrics over a set of captions, each with the ground-truth set of canonical categories of
its image (``../shared/reference/evaluation.md`` §3.1):

* CHAIR_i = #hallucinated mentions / #mentions, micro-averaged over all captions and counted
  with multiplicity ("a dog … the dog" is two mentions);
* CHAIR_s = #captions with at least one hallucinated mention / #captions;
* Recall  = Σ_captions |distinct mentioned ground-truth categories| / Σ_captions |ground truth|
  (micro, as in Maxlinn's standalone CHAIR);
* mean caption length in words (tokens of :func:`tokenize`).

A mention is hallucinated iff its canonical category is not in the image's ground truth.
Undefined ratios (no mentions, no ground truth) are NaN.

Caption → mentions (§3.4, re-implemented):

1. lower-case and tokenise into words with a regex (letters/digits, inner hyphens kept, so
   "t-shirt" is one word; apostrophes split "dog's" into "dog", "s");
2. singularise each word with :func:`singularize`;
3. merge phrases greedily left to right, longest first: every multi-word entry of the
   synonym table maps to itself, and ``phrase_rules`` map a phrase to a replacement word.
   For COCO the rules are CHAIR's: the 29 compound words, "baby/adult X" → X for animals,
   "passenger jet/train" → jet/train, "bow tie" → tie, "toilet seat" → toilet,
   "wine glas" → wine glass.  The merged phrase consumes its words;
4. COCO only: if both "toilet" and "seat" occur, drop every "seat" (so a toilet seat is not a
   chair);
5. keep words found in the synonym table and map them to their canonical category.

Known deviations from the original (NLTK ``word_tokenize`` + ``pattern.en.singularize``):
the singulariser is rule-based (see :func:`singularize`), and table phrases longer than two
words are matched whole ("stove top oven" is one oven mention; CHAIR's bigram merge counts
its "stove" and "oven" separately).
"""

from __future__ import annotations

import re
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass, field
from functools import cached_property
from pathlib import Path

import numpy as np

from studylib.metrics.validation import MetricInputError, as_counts, check_same_length

DATA_DIR = Path(__file__).resolve().parents[3] / "data" / "chair"
COCO_SYNONYMS = DATA_DIR / "coco_synonyms.txt"
TOY_SYNONYMS = DATA_DIR / "toy_synonyms.txt"

COCO_DOUBLE_WORDS = (
    "motor bike", "motor cycle", "air plane", "traffic light", "street light", "traffic signal",
    "stop light", "fire hydrant", "stop sign", "parking meter", "suit case", "sports ball",
    "baseball bat", "baseball glove", "tennis racket", "wine glass", "hot dog", "cell phone",
    "mobile phone", "teddy bear", "hair drier", "potted plant", "bow tie", "laptop computer",
    "stove top oven", "home plate", "train track",
)  # fmt: skip
COCO_ANIMAL_WORDS = (
    "bird", "cat", "dog", "horse", "sheep", "cow", "elephant", "bear", "zebra", "giraffe", "animal", "cub",
)  # fmt: skip
COCO_VEHICLE_WORDS = ("jet", "train")

WORD_PATTERN = re.compile(r"[^\W_]+(?:-[^\W_]+)*")

IRREGULAR_PLURALS = {
    "people": "person", "children": "child", "mice": "mouse", "geese": "goose", "teeth": "tooth",
    "feet": "foot", "oxen": "ox", "dice": "die", "knives": "knife", "wives": "wife", "lives": "life",
    "leaves": "leaf", "loaves": "loaf", "halves": "half", "calves": "calf", "wolves": "wolf",
    "shelves": "shelf", "scarves": "scarf", "thieves": "thief", "elves": "elf", "hooves": "hoof",
    "skis": "ski", "taxis": "taxi", "buses": "bus", "pluses": "plus", "tomatoes": "tomato",
    "potatoes": "potato", "heroes": "hero", "echoes": "echo", "mangoes": "mango",
    "volcanoes": "volcano", "torpedoes": "torpedo", "mosquitoes": "mosquito", "buffaloes": "buffalo",
    "cacti": "cactus", "fungi": "fungus",
}  # fmt: skip
UNINFLECTED = frozenset(
    "sheep deer fish moose bison series species scissors pants jeans shorts trousers news aircraft "
    "swine salmon trout clothes".split()
)
IE_SINGULARS = frozenset(
    "cookie movie collie zombie brownie hoodie selfie rookie goalie pixie prairie calorie bootie "
    "smoothie veggie birdie hippie genie lassie necktie".split()
)
MEN_EXCEPTIONS = frozenset("omen amen semen specimen abdomen stamen yemen".split())


def tokenize(caption: str) -> list[str]:
    """Lower-cased words of a caption: runs of letters/digits, joined by inner hyphens."""
    return WORD_PATTERN.findall(caption.lower())


def singularize(word: str) -> str:
    """Rule-based English singular of a lower-case word.

    Order: uninflected words ("sheep", "scissors"); an irregular table ("people" → "person",
    "knives" → "knife", "skis" → "ski", "buses" → "bus"); "-men" → "-man"; words of <= 3
    letters and words ending in "ss", "us" or "is" unchanged ("glass", "bus", "tennis");
    "-ies" → "-y" ("puppies" → "puppy") except known "-ie" nouns and 4-letter words
    ("cookies", "ties"); "-sses/-xes/-ches/-shes/-zzes" lose "es" ("boxes" → "box"); any other
    final "s" is dropped.

    Limits: not a lemmatiser.  Unlisted irregulars stay wrong ("cherubim"), unlisted "-oes"
    words keep their "e" ("tomatoes" is listed, "avocadoes" → "avocadoe"), non-nouns ending in
    "s" are stripped ("always" → "alway"; harmless unless the result is a vocabulary word).
    Unlike pattern.en it keeps "glass" (pattern gives "glas", hence CHAIR's "wine glas" rule).
    """
    if word in UNINFLECTED:
        return word
    if word in IRREGULAR_PLURALS:
        return IRREGULAR_PLURALS[word]
    if word.endswith("men") and word not in MEN_EXCEPTIONS:
        return word[:-3] + "man"
    if len(word) <= 3 or word.endswith(("ss", "us", "is")) or not word.endswith("s"):
        return word
    if word.endswith("ies"):
        if word[:-1] in IE_SINGULARS or len(word) <= 4:
            return word[:-1]
        return word[:-3] + "y"
    if word.endswith(("sses", "xes", "ches", "shes", "zzes")):
        return word[:-2]
    return word[:-1]


def load_synonym_table(path: str | Path) -> list[list[str]]:
    """Rows of a CHAIR synonym file: each line split on ", " after stripping the line ends.

    Blank lines and lines starting with "#" are skipped.  Items are kept exactly (CHAIR's
    quirks such as a leading space survive, so such items never match).
    """
    rows = []
    for line in Path(path).read_text(encoding="utf-8").splitlines():
        if line.strip() and not line.lstrip().startswith("#"):
            rows.append(line.strip().split(", "))
    if not rows:
        raise MetricInputError(f"synonym table {path}: no category lines found.")
    return rows


def coco_phrase_rules() -> dict[str, str]:
    """CHAIR's hard-coded MSCOCO phrase rules (module docstring, step 3)."""
    rules = {phrase: phrase for phrase in COCO_DOUBLE_WORDS}
    for animal in COCO_ANIMAL_WORDS:
        rules[f"baby {animal}"] = animal
        rules[f"adult {animal}"] = animal
    for vehicle in COCO_VEHICLE_WORDS:
        rules[f"passenger {vehicle}"] = vehicle
    rules.update({"bow tie": "tie", "toilet seat": "toilet", "wine glas": "wine glass"})
    return rules


@dataclass(frozen=True)
class ChairVocabulary:
    """Canonical categories, the surface → category map, and the phrase rules of one world."""

    categories: tuple[str, ...]
    synonyms: Mapping[str, str]
    phrase_rules: Mapping[str, str] = field(default_factory=dict)
    drop_seat_with_toilet: bool = False

    @classmethod
    def from_file(
        cls, path: str | Path, phrase_rules: Mapping[str, str] | None = None, drop_seat_with_toilet: bool = False
    ) -> ChairVocabulary:
        """Vocabulary from a synonym table; a surface form listed twice maps to its last row (as in CHAIR)."""
        rows = load_synonym_table(path)
        synonyms = {item: row[0] for row in rows for item in row}
        return cls(tuple(row[0] for row in rows), synonyms, dict(phrase_rules or {}), drop_seat_with_toilet)

    @cached_property
    def phrases(self) -> dict[tuple[str, ...], str]:
        """Multi-word phrase (as a word tuple) → the word it becomes; rules override table entries."""
        table = {tuple(item.split(" ")): item for item in self.synonyms if " " in item}
        rules = {tuple(phrase.split(" ")): word for phrase, word in self.phrase_rules.items()}
        return {**table, **rules}

    @cached_property
    def longest_phrase(self) -> int:
        return max((len(p) for p in self.phrases), default=1)


def coco_vocabulary(path: str | Path = COCO_SYNONYMS) -> ChairVocabulary:
    """The 80 MSCOCO categories with CHAIR's synonyms and rules (``data/chair/coco_synonyms.txt``)."""
    return ChairVocabulary.from_file(path, coco_phrase_rules(), drop_seat_with_toilet=True)


def toy_vocabulary(path: str | Path = TOY_SYNONYMS) -> ChairVocabulary:
    """The toy world's 16 colour+shape categories (``data/chair/toy_synonyms.txt``), no extra rules."""
    return ChairVocabulary.from_file(path)


CHAIR_VOCABULARIES = {"coco": coco_vocabulary, "toy": toy_vocabulary}


def chair_vocabulary(name: str) -> ChairVocabulary:
    """The CHAIR vocabulary a dataset names (``Dataset.chair_vocabulary``): ``"coco"`` or ``"toy"``."""
    try:
        return CHAIR_VOCABULARIES[name]()
    except KeyError:
        raise ValueError(f"unknown CHAIR vocabulary {name!r}; choose one of {sorted(CHAIR_VOCABULARIES)}") from None


@dataclass(frozen=True)
class ObjectMention:
    """One object mention: the matched ``word`` (after merging), its ``category``, and the
    ``position`` of its first word among the caption's tokens."""

    word: str
    category: str
    position: int


def merge_phrases(words: Sequence[str], vocabulary: ChairVocabulary) -> list[tuple[str, int]]:
    """Greedy left-to-right, longest-first phrase merge; returns (word, first-token position) pairs."""
    merged, i = [], 0
    while i < len(words):
        for length in range(min(vocabulary.longest_phrase, len(words) - i), 1, -1):
            replacement = vocabulary.phrases.get(tuple(words[i : i + length]))
            if replacement is not None:
                merged.append((replacement, i))
                i += length
                break
        else:
            merged.append((words[i], i))
            i += 1
    return merged


def caption_objects(caption: str, vocabulary: ChairVocabulary) -> tuple[ObjectMention, ...]:
    """Object mentions of a caption, in order, with multiplicity (module docstring, steps 1–5)."""
    merged = merge_phrases([singularize(w) for w in tokenize(caption)], vocabulary)
    words = {word for word, _ in merged}
    if vocabulary.drop_seat_with_toilet and "toilet" in words and "seat" in words:
        merged = [(word, position) for word, position in merged if word != "seat"]
    return tuple(
        ObjectMention(word, vocabulary.synonyms[word], position) for word, position in merged if word in vocabulary.synonyms
    )


@dataclass(frozen=True)
class CaptionChair:
    """CHAIR details of one caption: its ``mentions``, the image's ``ground_truth`` and its ``length`` in words."""

    mentions: tuple[ObjectMention, ...]
    ground_truth: frozenset[str]
    length: int

    @property
    def hallucinated(self) -> tuple[ObjectMention, ...]:
        return tuple(m for m in self.mentions if m.category not in self.ground_truth)

    @property
    def recalled(self) -> frozenset[str]:
        return frozenset(m.category for m in self.mentions) & self.ground_truth

    @property
    def is_hallucinated(self) -> bool:
        return bool(self.hallucinated)


@dataclass(frozen=True)
class ChairResult:
    """Corpus-level CHAIR scores (fractions, not ×100) and the per-caption details."""

    chair_s: float
    chair_i: float
    recall: float
    mean_length: float
    captions: tuple[CaptionChair, ...]

    @property
    def n_mentions(self) -> int:
        return sum(len(c.mentions) for c in self.captions)

    @property
    def n_hallucinated(self) -> int:
        return sum(len(c.hallucinated) for c in self.captions)

    def counts(self) -> dict[str, np.ndarray]:
        """Per-caption counts for resampling (see :func:`caption_counts`)."""
        return caption_counts(self.captions)


def caption_counts(captions: Sequence[CaptionChair]) -> dict[str, np.ndarray]:
    """Per-caption integer arrays ``mentions``, ``hallucinated``, ``recalled``,
    ``ground_truth`` (set sizes) and ``length``, the inputs of :func:`chair_from_counts`."""
    return {
        "mentions": np.array([len(c.mentions) for c in captions], dtype=np.int64),
        "hallucinated": np.array([len(c.hallucinated) for c in captions], dtype=np.int64),
        "recalled": np.array([len(c.recalled) for c in captions], dtype=np.int64),
        "ground_truth": np.array([len(c.ground_truth) for c in captions], dtype=np.int64),
        "length": np.array([c.length for c in captions], dtype=np.int64),
    }


def _safe_ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else float("nan")


def chair_from_counts(mentions, hallucinated, recalled, ground_truth) -> dict[str, float]:
    """CHAIR_s, CHAIR_i and recall from per-caption counts (ratios of sums; NaN when undefined).

    For a bootstrap CI resample the per-caption counts, e.g. CHAIR_i:
    ``bootstrap_ci(lambda h, m: h.sum() / m.sum(), counts["hallucinated"], counts["mentions"], groups=images)``.
    """
    mentions, hallucinated = as_counts(mentions, "mentions"), as_counts(hallucinated, "hallucinated")
    recalled, ground_truth = as_counts(recalled, "recalled"), as_counts(ground_truth, "ground_truth")
    check_same_length(mentions=mentions, hallucinated=hallucinated, recalled=recalled, ground_truth=ground_truth)
    for part, whole, names in ((hallucinated, mentions, "hallucinated > mentions"),
                               (recalled, ground_truth, "recalled > ground_truth")):
        if (part > whole).any():
            i = int(np.argmax(part > whole))
            raise MetricInputError(f"caption {i}: {names} ({part[i]} > {whole[i]}); a caption cannot hallucinate more "
                                   "objects than it mentions nor recall more than its image has")
    return {
        "chair_s": _safe_ratio(np.sum(hallucinated > 0), len(hallucinated)),
        "chair_i": _safe_ratio(np.sum(hallucinated), np.sum(mentions)),
        "recall": _safe_ratio(np.sum(recalled), np.sum(ground_truth)),
    }


def _ground_truth_sets(ground_truth: Iterable, vocabulary: ChairVocabulary) -> list[frozenset[str]]:
    known = set(vocabulary.categories)
    sets = []
    for i, objects in enumerate(ground_truth):
        if isinstance(objects, str):
            raise MetricInputError(f"ground_truth[{i}]: is a string; pass a set of category names, e.g. {{{objects!r}}}.")
        objects = frozenset(objects)
        unknown = objects - known
        if unknown:
            raise MetricInputError(
                f"ground_truth[{i}]: {sorted(unknown)} are not canonical categories of this vocabulary "
                "(use the first name of a synonym-table line, e.g. 'dining table')."
            )
        sets.append(objects)
    return sets


def chair(captions: Sequence[str], ground_truth: Sequence[Iterable[str]], vocabulary: ChairVocabulary) -> ChairResult:
    """CHAIR_s, CHAIR_i, recall and mean length of ``captions`` (module docstring).

    ``ground_truth[i]`` is the set of canonical categories present in caption i's image
    (for COCO: instance-annotation categories plus objects of the reference captions).
    """
    captions = list(captions)
    if not captions:
        raise MetricInputError("captions: is empty; CHAIR needs at least one caption.")
    if not all(isinstance(c, str) for c in captions):
        raise MetricInputError("captions: every caption must be a string.")
    truth = _ground_truth_sets(ground_truth, vocabulary)
    check_same_length(captions=captions, ground_truth=truth)
    details = tuple(
        CaptionChair(caption_objects(text, vocabulary), objects, len(tokenize(text)))
        for text, objects in zip(captions, truth)
    )
    counts = caption_counts(details)
    rates = chair_from_counts(counts["mentions"], counts["hallucinated"], counts["recalled"], counts["ground_truth"])
    return ChairResult(
        chair_s=rates["chair_s"],
        chair_i=rates["chair_i"],
        recall=rates["recall"],
        mean_length=float(np.mean(counts["length"])),
        captions=details,
    )
