r"""Task scores: accuracy, POPE precision/recall/F1/yes-ratio, MME acc / acc+ / score.

POPE (``../shared/reference/evaluation.md`` §1.5), positive class = "yes":
accuracy = (TP+TN)/N, precision = TP/(TP+FP), recall = TP/(TP+FN), F1 = 2PR/(P+R), and
**yes-ratio = #predicted yes / N** (of the predictions; lmms-eval's aggregate counts
ground-truth yeses instead, which is always ≈ 0.5).  A ratio with a zero denominator is 0
(lmms-eval's convention).  LLaVA's headline POPE number is the mean F1 over the three splits
(:func:`pope_metrics_by_split`).

MME (§4): per subtask, acc = fraction of questions answered correctly, acc+ = fraction of
images whose questions (two per image) are all correct, score = 100·acc + 100·acc+ (max 200);
perception and cognition totals are sums of subtask scores.  Result rows of either MME loader
(``mme``: the official folder, ``mme-lmms``: lmms-lab parquet) are scored by :func:`score_mme`
and laid out by :func:`mme_table`.
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np
import pandas as pd

from studylib.metrics.parsing import mme_answer
from studylib.metrics.validation import MetricInputError, check_same_length

PERCEPTION_SUBTASKS = (
    "existence",
    "count",
    "position",
    "color",
    "posters",
    "celebrity",
    "scene",
    "landmark",
    "artwork",
    "OCR",
)
COGNITION_SUBTASKS = ("commonsense_reasoning", "numerical_calculation", "text_translation", "code_reasoning")
#: The 14 MME subtasks in the official order, spelled as the release's folder names (= lmms-lab's ``category``).
MME_SUBTASKS = PERCEPTION_SUBTASKS + COGNITION_SUBTASKS


@dataclass(frozen=True)
class PopeMetrics:
    """POPE scores of one split (fractions in [0, 1]) and the confusion counts."""

    accuracy: float
    precision: float
    recall: float
    f1: float
    yes_ratio: float
    tp: int
    fp: int
    tn: int
    fn: int

    @property
    def n(self) -> int:
        return self.tp + self.fp + self.tn + self.fn


@dataclass(frozen=True)
class MmeScore:
    """MME scores of one subtask: ``acc`` and ``acc_plus`` in [0, 1], ``score`` = 100·(acc + acc+)."""

    acc: float
    acc_plus: float
    n_questions: int
    n_images: int

    @property
    def score(self) -> float:
        return 100.0 * self.acc + 100.0 * self.acc_plus


def _as_sequence(values, name: str) -> np.ndarray:
    array = np.asarray(values)
    if array.ndim != 1:
        raise MetricInputError(f"{name}: expected a 1-D sequence, got shape {array.shape}.")
    if array.size == 0:
        raise MetricInputError(f"{name}: is empty; a metric needs at least one sample.")
    return array


def _ratio(numerator: float, denominator: float) -> float:
    return float(numerator / denominator) if denominator else 0.0


def accuracy(predictions, labels) -> float:
    r"""Accuracy :math:`\frac1N\sum_i 1[\hat y_i = y_i]` of predictions against labels (numbers or strings)."""
    predictions = _as_sequence(predictions, "predictions")
    labels = _as_sequence(labels, "labels")
    check_same_length(predictions=predictions, labels=labels)
    return float(np.mean(predictions == labels))


def as_yes(values, name: str) -> np.ndarray:
    """Boolean "is yes" array from booleans, 0/1, or the strings "yes"/"no" (any case, stripped)."""
    array = _as_sequence(values, name)
    if array.dtype == bool:
        return array
    if array.dtype.kind in "iuf":
        not_binary = ~np.isin(array, (0, 1))
        if not_binary.any():
            raise MetricInputError(f"{name}: numeric answers must be 0 (no) or 1 (yes), got {array[not_binary][0]!r}.")
        return array.astype(bool)
    if array.dtype.kind in "UO":
        words = np.char.lower(np.char.strip(array.astype(str)))
        unknown = ~np.isin(words, ("yes", "no"))
        if unknown.any():
            raise MetricInputError(
                f"{name}: answers must be 'yes' or 'no' after parsing, got {array[unknown][0]!r}; "
                "parse raw model output with the POPE rule first."
            )
        return words == "yes"
    raise MetricInputError(f"{name}: expected booleans, 0/1 or 'yes'/'no', got dtype {array.dtype}.")


def pope_metrics(predictions, labels) -> PopeMetrics:
    """POPE accuracy, precision, recall, F1 and yes-ratio of predictions (module docstring).

    ``predictions`` and ``labels``: booleans (True = yes), 0/1, or "yes"/"no" strings.
    """
    predicted_yes = as_yes(predictions, "predictions")
    label_yes = as_yes(labels, "labels")
    n = check_same_length(predictions=predicted_yes, labels=label_yes)
    tp = int(np.sum(predicted_yes & label_yes))
    fp = int(np.sum(predicted_yes & ~label_yes))
    tn = int(np.sum(~predicted_yes & ~label_yes))
    fn = int(np.sum(~predicted_yes & label_yes))
    precision = _ratio(tp, tp + fp)
    recall = _ratio(tp, tp + fn)
    return PopeMetrics(
        accuracy=(tp + tn) / n,
        precision=precision,
        recall=recall,
        f1=_ratio(2 * precision * recall, precision + recall),
        yes_ratio=(tp + fp) / n,
        tp=tp,
        fp=fp,
        tn=tn,
        fn=fn,
    )


def pope_metrics_by_split(predictions, labels, splits) -> dict[str, PopeMetrics]:
    """:func:`pope_metrics` per split (e.g. random / popular / adversarial), keyed by split name."""
    splits = _as_sequence(splits, "splits")
    predictions = as_yes(predictions, "predictions")
    labels = as_yes(labels, "labels")
    check_same_length(predictions=predictions, labels=labels, splits=splits)
    return {str(s): pope_metrics(predictions[splits == s], labels[splits == s]) for s in np.unique(splits)}


def mme_scores(correct, image_ids, subtasks, questions_per_image: int | None = 2) -> dict[str, MmeScore]:
    """MME acc, acc+ and score per subtask, pairing questions by image id.

    ``correct``: per-question correctness (bool or 0/1); ``image_ids``: the image of each
    question (questions of one image are paired, whatever their order); ``subtasks``: the
    subtask of each question.  Every image must have exactly ``questions_per_image`` questions
    (2 in MME); pass ``None`` to skip that check, acc+ then asks all of an image's questions.
    """
    correct = _as_sequence(correct, "correct")
    if correct.dtype != bool:
        if correct.dtype.kind not in "iuf" or not np.isin(correct, (0, 1)).all():
            raise MetricInputError("correct: expected booleans or 0/1 values.")
        correct = correct.astype(bool)
    image_ids = _as_sequence(image_ids, "image_ids")
    subtasks = _as_sequence(subtasks, "subtasks")
    check_same_length(correct=correct, image_ids=image_ids, subtasks=subtasks)
    return {
        str(task): _mme_subtask(correct[subtasks == task], image_ids[subtasks == task], str(task), questions_per_image)
        for task in np.unique(subtasks)
    }


def _mme_subtask(correct: np.ndarray, image_ids: np.ndarray, task: str, questions_per_image: int | None) -> MmeScore:
    _, image_of, per_image = np.unique(image_ids, return_inverse=True, return_counts=True)
    if questions_per_image is not None and (per_image != questions_per_image).any():
        image = image_ids[np.flatnonzero(per_image[image_of] != questions_per_image)[0]]
        raise MetricInputError(
            f"mme: subtask {task!r} image {image!r} has {per_image[image_of][image_ids == image][0]} question(s), "
            f"expected {questions_per_image}; check the image ids or pass questions_per_image=None."
        )
    correct_per_image = np.bincount(image_of, weights=correct.astype(np.float64))
    return MmeScore(
        acc=float(np.mean(correct)),
        acc_plus=float(np.mean(correct_per_image == per_image)),
        n_questions=len(correct),
        n_images=len(per_image),
    )


def mme_total(scores: dict[str, MmeScore], subtasks=PERCEPTION_SUBTASKS) -> float:
    """Sum of subtask scores over ``subtasks`` (perception: max 2000; cognition: max 800).

    Raises when a listed subtask is missing, so a partial run cannot pass for a total.
    """
    missing = [task for task in subtasks if task not in scores]
    if missing:
        raise MetricInputError(
            f"mme_total: no scores for subtask(s) {missing}; score them or pass the subtasks you have."
        )
    return float(sum(scores[task].score for task in subtasks))


def score_mme(rows, text_column: str | None = None) -> dict[str, MmeScore]:
    """Per-subtask MME scores of result rows, whichever MME loader produced the questions.

    ``rows``: a DataFrame (or list of dicts) with columns ``image`` (image key: pairs an
    image's questions), ``split`` (subtask) and ``label`` ("yes"/"no"), plus ``correct``
    (first-token scoring, :func:`studylib.sweep.score_dataset`) or, with ``text_column``,
    generated answers parsed by MME's rule (:func:`studylib.metrics.parsing.mme_answer`).
    """
    frame = pd.DataFrame(rows)
    needed = ["image", "split", "label", text_column or "correct"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise MetricInputError(f"score_mme: result rows lack column(s) {missing}; expected {needed}.")
    if text_column is None:
        correct = frame["correct"].astype(bool).to_numpy()
    else:
        correct = (frame[text_column].map(mme_answer) == frame["label"].str.lower()).to_numpy()
    return mme_scores(correct, frame["image"].to_numpy(), frame["split"].to_numpy())


def mme_table(scores: dict[str, MmeScore]):
    """One row per subtask (official order, unknown names last): group, acc, acc+, score, counts.

    Perception / cognition totals: :func:`mme_total`, which refuses partial sets.
    """
    order = [s for s in MME_SUBTASKS if s in scores] + sorted(set(scores) - set(MME_SUBTASKS))
    return pd.DataFrame([{
        "subtask": s, "group": "cognition" if s in COGNITION_SUBTASKS else "perception",
        "acc": scores[s].acc, "acc_plus": scores[s].acc_plus, "score": scores[s].score,
        "n_questions": scores[s].n_questions, "n_images": scores[s].n_images,
    } for s in order])
