"""MME loader on a fixture in the released folder layout (both subtask layouts), its
acc / acc+ / score helper, clear errors, and scoring end to end through the toy model."""

from __future__ import annotations

import numpy as np
import pandas as pd
import pytest
from fixtures import formats

from studylib.data import DataFormatError, DataNotFoundError, load_dataset
from studylib.data.mme import load_mme, mme_table, score_mme
from studylib.sweep import score_dataset
from studylib.models import prompts
from studylib.pruners import get_pruner


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return formats.write_mme(tmp_path_factory.mktemp("mme"))


def test_both_layouts_load_in_official_order(files):
    data = load_mme(files.root)
    assert [q.split for q in data.questions] == ["existence"] * 4 + ["artwork"] * 4
    assert data.questions[0].qid == "existence/000000000/1"
    assert data.questions[0].image_key == "existence/000000000.jpg"
    assert data.questions[4].image_key == "artwork/images/10000.png"
    assert [q.answer for q in data.questions] == ["yes", "no"] * 4
    for q in data.questions:
        assert q.task == "yesno" and q.text.endswith("in the image?")
        assert prompts.user_message(q).endswith("in the image?\nAnswer the question using a single word or phrase.")
    assert data.load_image(data.questions[4].image_key).size == (96, 96)


def test_parent_folder_subtasks_and_limit(files):
    data = load_mme(files.root.parent, subtasks=["artwork"], limit=1)
    assert [q.qid for q in data.questions] == ["artwork/10000/1", "artwork/10000/2"]
    assert len(load_dataset("mme", root=files.root, subtasks="existence")) == 4


def test_scores_per_subtask():
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
    table = mme_table(scores)
    assert list(table.subtask) == ["existence", "OCR"]
    assert list(table.group) == ["perception", "perception"]
    parsed = score_mme(rows, text_column="output")  # MME's 4-character rule: "not sure" -> "no"
    assert parsed["OCR"].acc == 0.5 and parsed["existence"].acc == 0.75


def test_score_helper_needs_columns():
    with pytest.raises(ValueError, match=r"lack column\(s\) \['correct'\]"):
        score_mme(pd.DataFrame({"image": ["a"], "split": ["OCR"], "label": ["yes"]}))


# ---------------------------------------------------------------- errors


def test_missing_folders_name_the_layout(tmp_path, files):
    with pytest.raises(DataNotFoundError, match="MME benchmark folder not found.*questions_answers_YN"):
        load_mme(tmp_path / "none")
    with pytest.raises(DataNotFoundError, match="no MME subtask folder"):
        load_mme(tmp_path)
    with pytest.raises(DataNotFoundError, match=r"\['count'\] not found"):
        load_mme(files.root, subtasks=["existence", "count"])
    with pytest.raises(ValueError, match="unknown MME subtask"):
        load_mme(files.root, subtasks=["poster"])


def _copy(files, tmp_path):
    import shutil

    target = tmp_path / "MME_Benchmark_release_version"
    shutil.copytree(files.root, target)
    return target


def test_malformed_question_file(tmp_path, files):
    root = _copy(files, tmp_path)
    (root / "existence" / "000000001.txt").write_text("Is there a red circle in the image? Please answer yes or no.\n")
    with pytest.raises(DataFormatError, match=r"000000001.txt line 1 .*question<TAB>Yes\|No"):
        load_mme(root)
    (root / "existence" / "000000001.txt").write_text("Is there a dog?\tMaybe\n")
    with pytest.raises(DataFormatError, match="line 1"):
        load_mme(root)


def test_question_without_image(tmp_path, files):
    root = _copy(files, tmp_path)
    (root / "artwork" / "images" / "10001.png").unlink()
    with pytest.raises(DataNotFoundError, match="no image 10001"):
        load_mme(root)


# ---------------------------------------------------------------- end to end


def test_toy_scores_end_to_end(toy_adapter, files):
    data = load_mme(files.root)
    rows = score_dataset(toy_adapter, data, get_pruner("full"), toy_adapter.num_patches, progress=False)
    table = mme_table(score_mme(rows))
    assert list(table.subtask) == ["existence", "artwork"]
    assert (table.n_images == 2).all() and (table.n_questions == 4).all()
    assert np.all((0 <= table.score) & (table.score <= 200))
