"""The synthetic toy world: coloured shapes on plain or cluttered backgrounds.

Every image, question and caption is a pure function of an integer seed, so the toy
benchmarks are identical on every machine.  The world mirrors the structure of the real
benchmarks the study uses:

* **POPE-style** existence questions ("Is there a red circle in the image?") with three
  splits built the way POPE builds them: per image, up to three positive categories and as
  many negatives drawn at random (``random``), from the most frequent categories of the image
  set (``popular``), or from the categories that co-occur most with the image's positives
  (``adversarial``); answers alternate yes, no, yes, no, ...
* **ScienceQA-style** four-option questions (colour of a shape, shape of a colour, number of
  objects), answered with a letter.
* **Captions** listing the objects left to right, with the object sets needed by CHAIR.

Objects cluster by colour: each image has a theme colour that most of its objects share, so
"same colour, other shape" categories co-occur and the adversarial split is the hardest, as
in POPE.  Complexity varies: 1-6 objects on a plain or cluttered background, so that the
effective rank and attention entropy of the visual tokens vary across images.
"""

from __future__ import annotations

from dataclasses import dataclass
from functools import cached_property

import numpy as np
from PIL import Image, ImageDraw

from studylib.data.registry import register_dataset
from studylib.data.records import LETTERS, Dataset, Question

IMAGE_SIZE = 96
COLOURS: dict[str, tuple[int, int, int]] = {
    "red": (215, 45, 45),
    "green": (45, 170, 70),
    "blue": (50, 85, 215),
    "yellow": (225, 205, 45),
}
SHAPES = ("circle", "square", "triangle", "cross")
SHAPE_WEIGHTS = np.array([0.4, 0.3, 0.2, 0.1])  # makes some categories "popular"
SHAPE_SYNONYMS = {"circle": "disc", "square": "box", "cross": "plus"}
CATEGORIES = tuple(f"{c} {s}" for c in COLOURS for s in SHAPES)
COUNT_WORDS = ("zero", "one", "two", "three", "four", "five", "six", "seven", "eight", "nine")
POPE_SPLITS = ("random", "popular", "adversarial")
CAPTION_PROMPT = "Please describe this image in detail."
BACKGROUND_CLASS = len(CATEGORIES)  # label of background patches in the per-patch map


@dataclass(frozen=True)
class ToyObject:
    category: str
    x: int  # centre, pixels
    y: int
    radius: int

    @property
    def colour(self) -> str:
        return self.category.split()[0]

    @property
    def shape(self) -> str:
        return self.category.split()[1]


@dataclass(frozen=True)
class ToyScene:
    """One image's content; ``render`` draws it deterministically from ``seed``."""

    seed: int
    objects: tuple[ToyObject, ...]
    cluttered: bool
    background: tuple[int, int, int]

    @property
    def key(self) -> str:
        return f"toy-{self.seed}"

    @property
    def categories(self) -> frozenset[str]:
        return frozenset(o.category for o in self.objects)

    def render(self) -> Image.Image:
        return render_scene(self)[0]


def sample_scene(seed: int) -> ToyScene:
    """Draw a scene's content from ``seed`` (objects do not overlap)."""
    rng = np.random.default_rng([seed, 1])
    n_objects = int(rng.choice(np.arange(1, 7), p=[0.12, 0.18, 0.2, 0.2, 0.16, 0.14]))
    theme = rng.choice(list(COLOURS))
    objects: list[ToyObject] = []
    for _ in range(200):
        if len(objects) == n_objects:
            break
        colour = theme if rng.random() < 0.65 else rng.choice(list(COLOURS))
        shape = rng.choice(SHAPES, p=SHAPE_WEIGHTS)
        r = int(rng.integers(6, 11))
        x, y = (int(v) for v in rng.integers(r + 1, IMAGE_SIZE - r - 1, size=2))
        if all((x - o.x) ** 2 + (y - o.y) ** 2 > (r + o.radius + 2) ** 2 for o in objects):
            objects.append(ToyObject(f"{colour} {shape}", x, y, r))
    cluttered = bool(rng.random() < 0.5)
    if cluttered or rng.random() < 0.5:
        background = tuple(int(v) for v in rng.integers(90, 200, size=3))
    else:
        background = (128, 128, 128)
    return ToyScene(seed, tuple(objects), cluttered, background)


def _shape_polygon(shape: str, x: int, y: int, r: int) -> list[tuple[float, float]]:
    if shape == "triangle":
        return [(x, y - r), (x - r * 0.95, y + r * 0.8), (x + r * 0.95, y + r * 0.8)]
    if shape == "cross":
        t = r * 0.38
        return [(x - t, y - r), (x + t, y - r), (x + t, y - t), (x + r, y - t), (x + r, y + t),
                (x + t, y + t), (x + t, y + r), (x - t, y + r), (x - t, y + t), (x - r, y + t),
                (x - r, y - t), (x - t, y - t)]
    raise ValueError(shape)


def _draw_shape(draw: ImageDraw.ImageDraw, shape: str, x: int, y: int, r: int, fill) -> None:
    if shape == "circle":
        draw.ellipse((x - r, y - r, x + r, y + r), fill=fill)
    elif shape == "square":
        s = r * 0.85
        draw.rectangle((x - s, y - s, x + s, y + s), fill=fill)
    else:
        draw.polygon(_shape_polygon(shape, x, y, r), fill=fill)


def render_scene(scene: ToyScene) -> tuple[Image.Image, np.ndarray]:
    """Draw the scene; also return the per-pixel category map (``BACKGROUND_CLASS`` = none)."""
    rng = np.random.default_rng([scene.seed, 2])
    canvas = np.empty((IMAGE_SIZE, IMAGE_SIZE, 3), dtype=np.float32)
    canvas[:] = scene.background
    if scene.cluttered:  # a smooth colour gradient under the clutter
        ramp = np.linspace(-1, 1, IMAGE_SIZE, dtype=np.float32)
        direction = rng.normal(size=(2, 3)).astype(np.float32) * 30
        canvas += ramp[:, None, None] * direction[0] + ramp[None, :, None] * direction[1]
    image = Image.fromarray(np.clip(canvas, 0, 255).astype(np.uint8))
    labels = Image.new("L", image.size, color=BACKGROUND_CLASS)
    draw, draw_labels = ImageDraw.Draw(image), ImageDraw.Draw(labels)
    if scene.cluttered:  # gray distractor blobs that are not categories
        for _ in range(int(rng.integers(3, 8))):
            gray = int(rng.integers(60, 220))
            x, y = (int(v) for v in rng.integers(0, IMAGE_SIZE, size=2))
            r = int(rng.integers(2, 6))
            _draw_shape(draw, str(rng.choice(SHAPES)), x, y, r, (gray, gray, gray))
    for obj in scene.objects:
        jitter = rng.integers(-25, 26, size=3)
        fill = tuple(int(np.clip(c + j, 0, 255)) for c, j in zip(COLOURS[obj.colour], jitter))
        _draw_shape(draw, obj.shape, obj.x, obj.y, obj.radius, fill)
        _draw_shape(draw_labels, obj.shape, obj.x, obj.y, obj.radius, CATEGORIES.index(obj.category))
    pixels = np.asarray(image, dtype=np.float32) + rng.normal(0, 10, size=(IMAGE_SIZE, IMAGE_SIZE, 3))
    image = Image.fromarray(np.clip(pixels, 0, 255).astype(np.uint8))
    return image, np.asarray(labels, dtype=np.int64)


def patch_labels(label_map: np.ndarray, patch: int) -> np.ndarray:
    """Per-patch class: the object category covering most of the patch if it covers >= 1/4 of
    it, else ``BACKGROUND_CLASS``.  Raster order, shape ``(N,)``."""
    g = label_map.shape[0] // patch
    blocks = label_map.reshape(g, patch, g, patch).transpose(0, 2, 1, 3).reshape(g * g, patch * patch)
    counts = np.stack([(blocks == c).sum(1) for c in range(len(CATEGORIES))], axis=1)
    best = counts.argmax(1)
    return np.where(counts.max(1) * 4 >= patch * patch, best, BACKGROUND_CLASS)


# ---------------------------------------------------------------- questions


def article(noun_phrase: str) -> str:
    return "an" if noun_phrase[0] in "aeiou" else "a"


def existence_question(category: str) -> str:
    return f"Is there {article(category)} {category} in the image?"


def caption_of(scene: ToyScene, rng: np.random.Generator | None = None) -> str:
    """Objects left to right: "a red circle, a blue box and a green cross."; with ``rng`` a
    shape is sometimes named by its synonym (disc, box, plus)."""
    names = []
    for obj in sorted(scene.objects, key=lambda o: (o.x, o.y)):
        shape = obj.shape
        if rng is not None and shape in SHAPE_SYNONYMS and rng.random() < 0.2:
            shape = SHAPE_SYNONYMS[shape]
        names.append(f"{article(obj.colour)} {obj.colour} {shape}")
    if len(names) == 1:
        return f"There is {names[0]}."
    return f"There are {', '.join(names[:-1])} and {names[-1]}."


def multiple_choice_candidates(scene: ToyScene) -> list[tuple[str, str, tuple[str, ...]]]:
    """All well-posed (kind, question, options-with-answer-first) for a scene."""
    out = []
    shapes = [o.shape for o in scene.objects]
    colours = [o.colour for o in scene.objects]
    for obj in scene.objects:
        if shapes.count(obj.shape) == 1:
            others = tuple(c for c in COLOURS if c != obj.colour)
            out.append(("colour", f"What color is the {obj.shape}?", (obj.colour, *others)))
        if colours.count(obj.colour) == 1:
            others = tuple(s for s in SHAPES if s != obj.shape)
            out.append(("shape", f"What shape is the {obj.colour} object?", (obj.shape, *others)))
    n = len(scene.objects)
    lo = int(np.clip(n - 1, 1, 3))
    counts = [COUNT_WORDS[i] for i in range(lo, lo + 4)]
    out.append(("count", "How many colored objects are in the image?",
                (COUNT_WORDS[n], *[c for c in counts if c != COUNT_WORDS[n]][:3])))
    return out


def multiple_choice_question(scene: ToyScene, rng: np.random.Generator, qid: str,
                             candidates: list[tuple[str, str, tuple[str, ...]]] | None = None) -> Question:
    """One four-option question drawn from ``candidates`` (default: all of the scene's), its
    options in random order."""
    if candidates is None:
        candidates = multiple_choice_candidates(scene)
    kind, text, options = candidates[int(rng.integers(len(candidates)))]
    order = rng.permutation(len(options))
    choices = tuple(options[i] for i in order)
    answer = LETTERS[int(np.flatnonzero(order == 0)[0])]
    return Question(qid, scene.key, "mc", text, answer=answer, choices=choices, split=kind)


# ---------------------------------------------------------------- benchmarks


@dataclass
class ToyWorld:
    """A fixed set of scenes, identified by consecutive seeds from ``first_seed``."""

    first_seed: int
    n_images: int

    @cached_property
    def scenes(self) -> list[ToyScene]:
        return [sample_scene(self.first_seed + i) for i in range(self.n_images)]

    @cached_property
    def _by_key(self) -> dict[str, ToyScene]:
        return {s.key: s for s in self.scenes}

    def load_image(self, key: str) -> Image.Image:
        try:
            return self._by_key[key].render()
        except KeyError:
            raise KeyError(f"image {key!r} is not in this toy world "
                           f"(seeds {self.first_seed}..{self.first_seed + self.n_images - 1})") from None

    def category_frequency(self) -> list[str]:
        """Categories by number of images containing them, most frequent first (ties by name)."""
        counts = {c: 0 for c in CATEGORIES}
        for s in self.scenes:
            for c in s.categories:
                counts[c] += 1
        return sorted(CATEGORIES, key=lambda c: (-counts[c], c))

    def co_occurrence(self) -> dict[str, list[str]]:
        """For each category, the others ranked by how many images contain both."""
        counts = {c: {d: 0 for d in CATEGORIES if d != c} for c in CATEGORIES}
        for s in self.scenes:
            for c in s.categories:
                for d in s.categories - {c}:
                    counts[c][d] += 1
        return {c: sorted(row, key=lambda d: (-row[d], d)) for c, row in counts.items()}

    def pope(self, split: str, seed: int = 0) -> Dataset:
        """POPE-style existence questions for one split over images with >= 2 categories."""
        if split not in POPE_SPLITS:
            raise ValueError(f"unknown POPE split {split!r}; choose one of {POPE_SPLITS}")
        rng = np.random.default_rng([seed, POPE_SPLITS.index(split)])
        popular = self.category_frequency()
        co_occurring = self.co_occurrence()
        questions: list[Question] = []
        for scene in self.scenes:
            present = [c for c in CATEGORIES if c in scene.categories]
            if len(present) < 2:
                continue
            positives = [present[i] for i in rng.permutation(len(present))[:3]]
            absent = [c for c in CATEGORIES if c not in scene.categories]
            negatives = _pope_negatives(split, positives, absent, popular, co_occurring, rng)
            for i, (pos, neg) in enumerate(zip(positives, negatives)):
                for label, cat in (("yes", pos), ("no", neg)):
                    qid = f"{split}-{scene.seed}-{len(questions)}"
                    questions.append(Question(qid, scene.key, "yesno", existence_question(cat),
                                              answer=label, split=split))
        return Dataset(f"toy-pope-{split}", questions, self.load_image, self.objects(), "toy")

    def pope_all(self, seed: int = 0) -> Dataset:
        parts = [self.pope(s, seed) for s in POPE_SPLITS]
        return Dataset("toy-pope", [q for p in parts for q in p.questions], self.load_image, self.objects(), "toy")

    def scienceqa(self, seed: int = 0) -> Dataset:
        """One four-option question per image."""
        rng = np.random.default_rng([seed, 10])
        questions = [multiple_choice_question(s, rng, f"mc-{s.seed}") for s in self.scenes]
        return Dataset("toy-scienceqa", questions, self.load_image, self.objects(), "toy")

    def captions(self) -> Dataset:
        """One caption request per image, ``answer`` holds the reference caption."""
        questions = [Question(f"cap-{s.seed}", s.key, "caption", CAPTION_PROMPT, answer=caption_of(s))
                     for s in self.scenes]
        return Dataset("toy-captions", questions, self.load_image, self.objects(), "toy")

    def objects(self) -> dict[str, frozenset[str]]:
        return {s.key: s.categories for s in self.scenes}


def _pope_negatives(split, positives, absent, popular, co_occurring, rng) -> list[str]:
    chosen: list[str] = []
    for pos in positives:
        pool = [c for c in absent if c not in chosen]
        if split == "popular":
            ranked = [c for c in popular if c in pool]
        elif split == "adversarial":
            ranked = [c for c in co_occurring[pos] if c in pool]
        else:
            ranked = [pool[i] for i in rng.permutation(len(pool))]
        chosen.append(ranked[0])
    return chosen


# Seeds of the fixed worlds: training draws fresh seeds from TRAIN_SEED_BASE upward; the
# evaluation world never overlaps it.
TRAIN_SEED_BASE = 1_000_000
EVAL_FIRST_SEED = 0


def eval_world(n_images: int = 500) -> ToyWorld:
    """The held-out evaluation world (seeds 0 .. n_images-1)."""
    return ToyWorld(EVAL_FIRST_SEED, n_images)


@register_dataset("toy-pope")
def toy_pope(split: str = "all", n_images: int = 500, seed: int = 0) -> Dataset:
    """Toy POPE-style questions: one split (random / popular / adversarial) or "all"."""
    world = eval_world(n_images)
    return world.pope_all(seed) if split == "all" else world.pope(split, seed)


@register_dataset("toy-scienceqa")
def toy_scienceqa(n_images: int = 500, seed: int = 0) -> Dataset:
    """Toy four-option questions, one per image."""
    return eval_world(n_images).scienceqa(seed)


@register_dataset("toy-captions")
def toy_captions(n_images: int = 500) -> Dataset:
    """Toy caption requests with per-image object sets (CHAIR)."""
    return eval_world(n_images).captions()
