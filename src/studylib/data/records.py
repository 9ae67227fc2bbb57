"""The records every dataset loader produces, toy or real.

A benchmark is a list of :class:`Question` plus a way to fetch each image by key.  The model
adapter never sees file formats: loaders translate their format into these records.
:func:`check_unique_records` refuses what would make results ambiguous, whatever the loader:
two questions with one id (the store keys rows by id) and a question with one option twice
(the letters' probabilities would split one answer).
"""

from __future__ import annotations

from dataclasses import dataclass, field
from typing import Callable, Literal

from PIL import Image

from studylib.data._files import DataFormatError, repeated

Task = Literal["yesno", "mc", "caption"]
LETTERS = "ABCDEFGHIJ"


@dataclass(frozen=True)
class Question:
    """One question about one image.

    Attributes
    ----------
    qid: unique id within the dataset (string, stable across runs).
    image_key: key of the image in the dataset's image store.
    task: ``"yesno"`` (answer "yes"/"no"), ``"mc"`` (answer a letter) or ``"caption"``.
    text: the question as the benchmark states it, without LLaVA's answer instruction.
    answer: ``"yes"``/``"no"``, an option letter ``"A"``.., or ``""`` for captions.
    choices: option texts for ``"mc"`` (their letters are ``A, B, ...`` in this order).
    hint: ScienceQA-style context line (empty when absent).
    split: POPE split, MME subtask, ScienceQA subject, ... (grouping for per-split metrics).
    """

    qid: str
    image_key: str
    task: Task
    text: str
    answer: str = ""
    choices: tuple[str, ...] = ()
    hint: str = ""
    split: str = ""

    @property
    def choice_labels(self) -> tuple[str, ...]:
        """Labels the model chooses between: ("yes", "no") or the option letters."""
        if self.task == "yesno":
            return ("yes", "no")
        if self.task == "mc":
            return tuple(LETTERS[: len(self.choices)])
        return ()


@dataclass
class Dataset:
    """Questions plus an image store.

    ``objects`` maps an image key to its ground-truth object categories (for CHAIR);
    it is empty for benchmarks without object annotations.  ``chair_vocabulary`` names the
    object vocabulary those categories come from (``"coco"``: MSCOCO's 80 with CHAIR's
    synonyms; ``"toy"``: the toy world's 16), see :func:`studylib.metrics.chair_vocabulary`.
    """

    name: str
    questions: list[Question]
    load_image: Callable[[str], Image.Image]
    objects: dict[str, frozenset[str]] = field(default_factory=dict)
    chair_vocabulary: str = "coco"

    def __len__(self) -> int:
        return len(self.questions)

    def image_keys(self) -> list[str]:
        """Distinct image keys in question order."""
        return list(dict.fromkeys(q.image_key for q in self.questions))


def check_unique_records(dataset: Dataset, options: dict) -> None:
    """:class:`~studylib.data.DataFormatError` naming every repeated question id, or every
    question with an option twice (after trimming spaces), and the fix."""
    where = f"dataset {dataset.name!r} (options {options})"
    twice = repeated([q.qid for q in dataset.questions])
    if twice:
        raise DataFormatError(f"{where}: question id(s) {twice[:5]} occur more than once ({len(twice)} repeated); the "
                              f"store keys rows by question id: keep one record per id in the data file")
    ambiguous = {q.qid: repeated([c.strip() for c in q.choices]) for q in dataset.questions if q.task == "mc"}
    ambiguous = {qid: options for qid, options in ambiguous.items() if options}
    if ambiguous:
        qid, options = next(iter(ambiguous.items()))
        raise DataFormatError(f"{where}: question {qid!r} has the option(s) {options} twice; the answer letters cannot "
                              f"tell them apart ({len(ambiguous)} such question(s): {list(ambiguous)[:5]}); fix or drop "
                              f"those records in the data file")
