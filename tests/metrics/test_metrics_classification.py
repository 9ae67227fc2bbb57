"""Accuracy, POPE precision/recall/F1/yes-ratio, MME acc/acc+/score (arrays and result rows)."""

import numpy as np
import pandas as pd
import pytest

from studylib.metrics import (
    COGNITION_SUBTASKS,
    MME_SUBTASKS,
    PERCEPTION_SUBTASKS,
    MetricInputError,
    accuracy,
    mme_scores,
    mme_table,
    mme_total,
    pope_metrics,
    pope_metrics_by_split,
    score_mme,
)


def test_accuracy_on_numbers_and_strings():
    assert accuracy([0, 1, 2, 2], [0, 1, 1, 2]) == 0.75
    assert accuracy(["A", "B", "C"], ["A", "C", "C"]) == pytest.approx(2 / 3)


def test_pope_metrics_from_a_known_confusion_matrix():
    # TP=3, FN=1, FP=2, TN=4
    labels = ["yes"] * 4 + ["no"] * 6
    predictions = ["yes", "yes", "yes", "no", "yes", "yes", "no", "no", "no", "no"]
    m = pope_metrics(predictions, labels)
    assert (m.tp, m.fn, m.fp, m.tn, m.n) == (3, 1, 2, 4, 10)
    assert m.accuracy == pytest.approx(0.7)
    assert m.precision == pytest.approx(3 / 5)
    assert m.recall == pytest.approx(3 / 4)
    assert m.f1 == pytest.approx(2 * 0.6 * 0.75 / 1.35)
    assert m.yes_ratio == pytest.approx(5 / 10)


def test_yes_ratio_counts_predictions_not_labels():
    m = pope_metrics([True] * 10, [True] * 5 + [False] * 5)
    assert m.yes_ratio == 1.0
    assert pope_metrics([False] * 10, [True] * 5 + [False] * 5).yes_ratio == 0.0


def test_pope_zero_denominators_give_zero():
    m = pope_metrics(["no", "no"], ["no", "no"])
    assert (m.precision, m.recall, m.f1, m.accuracy) == (0.0, 0.0, 0.0, 1.0)


def test_pope_accepts_booleans_numbers_and_any_case_strings():
    a = pope_metrics(["Yes", " no", "YES"], [1, 0, 0])
    b = pope_metrics(np.array([True, False, True]), np.array([True, False, False]))
    assert a == b


def test_pope_rejects_unparsed_answers():
    with pytest.raises(ValueError, match="'yes' or 'no'"):
        pope_metrics(["Yes.", "no"], ["yes", "no"])


def test_pope_by_split_and_mean_f1():
    splits = np.array(["random"] * 4 + ["adversarial"] * 4)
    predictions = np.array([1, 1, 0, 0, 1, 1, 1, 0])
    labels = np.array([1, 0, 0, 1, 1, 0, 1, 0])
    per_split = pope_metrics_by_split(predictions, labels, splits)
    assert set(per_split) == {"random", "adversarial"}
    assert per_split["random"] == pope_metrics(predictions[:4], labels[:4])
    assert per_split["adversarial"].f1 == pytest.approx(0.8)


def test_mme_score_pairs_questions_by_image():
    # image i1 both right, i2 one right, i3 both right -> acc 5/6, acc+ 2/3
    correct = [True, True, True, False, True, True]
    images = ["i1", "i1", "i2", "i2", "i3", "i3"]
    scores = mme_scores(correct, images, ["count"] * 6)
    assert scores["count"].acc == pytest.approx(5 / 6)
    assert scores["count"].acc_plus == pytest.approx(2 / 3)
    assert scores["count"].score == pytest.approx(100 * 5 / 6 + 100 * 2 / 3)
    assert (scores["count"].n_questions, scores["count"].n_images) == (6, 3)


def test_mme_pairing_does_not_depend_on_line_order():
    correct = np.array([True, True, True, False, True, True])
    images = np.array(["i1", "i1", "i2", "i2", "i3", "i3"])
    order = [5, 2, 0, 3, 1, 4]
    assert mme_scores(correct[order], images[order], ["count"] * 6) == mme_scores(correct, images, ["count"] * 6)


def test_mme_requires_two_questions_per_image_unless_told_otherwise():
    with pytest.raises(ValueError, match="expected 2"):
        mme_scores([True, True, False], ["i1", "i1", "i2"], ["count"] * 3)
    relaxed = mme_scores([True, True, False], ["i1", "i1", "i2"], ["count"] * 3, questions_per_image=None)
    assert relaxed["count"].acc_plus == 0.5


def test_mme_totals_sum_subtask_scores_and_refuse_missing_subtasks():
    tasks = PERCEPTION_SUBTASKS + COGNITION_SUBTASKS
    correct = np.ones(2 * len(tasks), dtype=bool)
    images = np.repeat([f"img{i}" for i in range(len(tasks))], 2)
    scores = mme_scores(correct, images, np.repeat(tasks, 2))
    assert mme_total(scores) == pytest.approx(2000.0)
    assert mme_total(scores, COGNITION_SUBTASKS) == pytest.approx(800.0)
    with pytest.raises(ValueError, match="no scores"):
        mme_total({"count": scores["count"]})


def test_mismatched_lengths_raise():
    with pytest.raises(ValueError, match="mismatched lengths"):
        pope_metrics(["yes"], ["yes", "no"])
    with pytest.raises(ValueError, match="mismatched lengths"):
        accuracy([1, 2], [1])


def test_empty_inputs_raise():
    with pytest.raises(ValueError, match="empty"):
        pope_metrics([], [])


def test_score_mme_from_result_rows_per_subtask():
    rows = pd.DataFrame({
        "image": ["a", "a", "b", "b", "c", "c"],
        "split": ["existence"] * 4 + ["OCR"] * 2,
        "label": ["yes", "no"] * 3,
        "correct": [True, True, True, False, False, True],
        "output": ["Yes", "No.", "yes", "yes", "Not sure", "no"],
    })
    scores = score_mme(rows)
    assert scores["existence"].acc == 0.75 and scores["existence"].acc_plus == 0.5
    assert scores["existence"].score == pytest.approx(125.0)
    assert scores == mme_scores(rows.correct, rows.image, rows.split)
    parsed = score_mme(rows, text_column="output")  # MME's 4-character rule: "not sure" -> "no"
    assert parsed["OCR"].acc == 0.5 and parsed["existence"].acc == 0.75
    assert score_mme(rows.to_dict("records")) == scores


def test_mme_table_official_order_and_groups():
    tasks = ["code_reasoning", "OCR", "existence", "mystery"]
    scores = mme_scores([True] * 8, [f"i{i // 2}" for i in range(8)], np.repeat(tasks, 2))
    table = mme_table(scores)
    assert list(table.subtask) == ["existence", "OCR", "code_reasoning", "mystery"]
    assert list(table.group[:3]) == ["perception", "perception", "cognition"]
    assert list(table.columns) == ["subtask", "group", "acc", "acc_plus", "score", "n_questions", "n_images"]
    assert MME_SUBTASKS == PERCEPTION_SUBTASKS + COGNITION_SUBTASKS and len(MME_SUBTASKS) == 14


def test_score_mme_needs_columns():
    with pytest.raises(MetricInputError, match=r"lack column\(s\) \['correct'\]"):
        score_mme(pd.DataFrame({"image": ["a"], "split": ["OCR"], "label": ["yes"]}))
    with pytest.raises(MetricInputError, match=r"lack column\(s\) \['text'\]"):
        score_mme(pd.DataFrame({"image": ["a"], "split": ["OCR"], "label": ["yes"]}), text_column="text")
