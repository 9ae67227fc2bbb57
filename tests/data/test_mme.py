"""MME loaders on fixtures in the released folder layout (both subtask layouts) and in the
lmms-lab/MME parquet layout: the same questions, answers and scores from both, clear errors,
and scoring end to end through the toy model (scoring itself: tests/metrics)."""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pandas as pd
import pytest
from fixtures import formats

from studylib.data import DataFormatError, DataNotFoundError, load_dataset
from studylib.data.mme import load_mme, load_mme_lmms
from studylib.sweep import score_dataset
from studylib.metrics import MME_SUBTASKS, mme_table, score_mme
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


# ---------------------------------------------------------------- lmms-lab/MME parquet


@pytest.fixture(scope="module")
def both(tmp_path_factory):
    """The same content (all 14 subtasks) as a release folder and as an lmms-lab download."""
    root = tmp_path_factory.mktemp("mme-both")
    return formats.write_mme(root, all_subtasks=True), formats.write_mme_lmms(root, all_subtasks=True)


def _fields(data):
    return [(q.qid, q.task, q.text, q.answer, q.split) for q in data.questions]


def test_lmms_parquet_gives_the_folder_questions(both):
    folder, download = both
    official, lmms = load_mme(folder.root), load_dataset("mme-lmms", path=download)
    assert lmms.name == "mme-lmms" and len(lmms) == 32
    assert _fields(lmms) == _fields(official)
    assert list(dict.fromkeys(q.split for q in lmms.questions)) == list(MME_SUBTASKS)
    assert {"OCR", "code_reasoning", "numerical_calculation"} <= {q.split for q in lmms.questions}
    assert lmms.questions[0].image_key == "existence/000000000.jpg"
    last = lmms.questions[-1]
    assert last.qid == "code_reasoning/2011/2" and last.image_key == "code_reasoning/2011.png"
    for a, b in zip(official.questions, lmms.questions):
        assert np.array_equal(np.asarray(official.load_image(a.image_key)), np.asarray(lmms.load_image(b.image_key)))


@pytest.mark.parametrize("options", [{}, {"subtasks": ["artwork", "OCR"]}, {"subtasks": "existence", "limit": 1},
                                     {"limit": 1}])
def test_lmms_subtasks_and_limit_match_the_folder_loader(both, options):
    folder, download = both
    assert _fields(load_mme_lmms(download / "data", **options)) == _fields(load_mme(folder.root, **options))


def _rows(data, correct_qids):
    return pd.DataFrame({"image": [q.image_key for q in data.questions], "split": [q.split for q in data.questions],
                         "label": [q.answer for q in data.questions],
                         "correct": [q.qid in correct_qids for q in data.questions],
                         "output": ["Yes" if (q.qid in correct_qids) == (q.answer == "yes") else "No"
                                    for q in data.questions]})


def test_both_loaders_score_identically(both):
    folder, download = both
    official, lmms = load_mme(folder.root), load_mme_lmms(download)
    right = {q.qid for i, q in enumerate(official.questions) if i % 3}  # some images half right, some all right
    for column in (None, "output"):
        scores = score_mme(_rows(official, right), text_column=column)
        assert score_mme(_rows(lmms, right), text_column=column) == scores
        assert set(scores) == set(MME_SUBTASKS)
    assert mme_table(scores).equals(mme_table(score_mme(_rows(lmms, right))))


def test_toy_scores_identical_for_both_layouts(toy_adapter, both):
    folder, download = both
    tables = [mme_table(score_mme(score_dataset(toy_adapter, data, get_pruner("full"), toy_adapter.num_patches,
                                                progress=False)))
              for data in (load_mme(folder.root), load_mme_lmms(download))]
    assert list(tables[0].subtask) == list(MME_SUBTASKS)
    pd.testing.assert_frame_equal(tables[0], tables[1])


def test_lmms_one_shard_file(both):
    _, download = both
    shards = sorted((download / "data").glob("test-*.parquet"))
    parts = [[f[1:] for f in _fields(load_mme_lmms(shard))] for shard in shards]  # without qids:
    assert [len(p) for p in parts] == [17, 15]  # an image's two questions may sit in different shards
    assert sorted(parts[0] + parts[1]) == sorted(f[1:] for f in _fields(load_mme_lmms(download)))


def _tree(root):
    return sorted((p.relative_to(root).as_posix(), p.stat().st_size, p.stat().st_mtime_ns) for p in root.rglob("*"))


def test_lmms_wrong_layout_names_folder_pattern_and_columns(both):
    folder, download = both
    before = _tree(folder.root.parent)
    with pytest.raises(DataNotFoundError) as error:
        load_dataset("mme-lmms", path=folder.root)
    message = str(error.value)
    assert str(folder.root) in message and "'data/test-*.parquet'" in message
    assert "columns question_id, image ({bytes, path}), question, answer, category" in message
    assert "load_dataset('mme', root=...)" in message and "huggingface-cli download lmms-lab/MME" in message
    assert _tree(folder.root.parent) == before  # nothing written, nothing moved


def test_lmms_shards_without_the_columns(tmp_path):
    sqa = formats.write_scienceqa_parquet(tmp_path / "x.parquet", formats.scienceqa_problems())
    (tmp_path / "data").mkdir()
    shard = sqa.rename(tmp_path / "data" / "test-00000-of-00001.parquet")
    before = _tree(tmp_path)
    with pytest.raises(DataFormatError) as error:
        load_mme_lmms(tmp_path)
    message = str(error.value)
    assert str(shard) in message and "lacks column(s) ['question_id'] (has ['answer', 'category', 'choices'" in message
    assert "data/test-*.parquet" in message
    assert "question_id, image ({bytes, path}), question, answer, category" in message
    assert _tree(tmp_path) == before


def test_lmms_rows_of_another_benchmark(tmp_path):
    formats.write_pope_parquet(tmp_path / "data" / "test-00000-of-00001.parquet")  # same column names as MME
    with pytest.raises(DataFormatError, match="category 'random', not one of the 14 MME subtasks"):
        load_mme_lmms(tmp_path)


def _copy_download(download, tmp_path):
    import shutil

    return Path(shutil.copytree(download, tmp_path / "lmms-MME"))


def test_lmms_duplicate_or_missing_shards(both, tmp_path):
    _, download = both
    copy = _copy_download(download, tmp_path)
    first = sorted((copy / "data").glob("*.parquet"))[0]
    twin = first.with_name(first.name.rsplit("-", 1)[0] + "-0123456789abcdef.parquet")
    twin.write_bytes(first.read_bytes())
    with pytest.raises(DataFormatError, match=r"shard copies .*test-00000-of-00002.* keep one shard per number"):
        load_mme_lmms(copy)
    twin.unlink()
    first.unlink()
    with pytest.raises(DataNotFoundError, match=r"lacks shard\(s\) \[0\] of 2"):
        load_mme_lmms(copy)


def test_lmms_bad_answer_and_subtasks(both, tmp_path):
    import pyarrow.parquet as pq

    _, download = both
    with pytest.raises(ValueError, match="unknown MME subtask"):
        load_mme_lmms(download, subtasks=["ocr"])
    rows = formats.mme_lmms_rows(formats.mme_images())
    rows[1]["answer"] = "Maybe"
    columns = {name: [r[name] for r in rows] for name in rows[0]}
    path = tmp_path / "data" / "test-00000-of-00001.parquet"
    path.parent.mkdir()
    pq.write_table(formats.hf_image_table(columns), path)
    with pytest.raises(DataFormatError, match=r"row 1 has question .* answer 'Maybe'; expected .* Yes or No"):
        load_mme_lmms(tmp_path)
    with pytest.raises(DataNotFoundError, match=r"no rows of subtask\(s\) \['count'\]"):
        load_mme_lmms(tmp_path, subtasks=["existence", "count"])
