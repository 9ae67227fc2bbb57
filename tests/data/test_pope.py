"""POPE loaders on fixtures in the official, LLaVA and lmms-lab formats; clear errors; scored
end to end through the toy model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures import formats

from studylib.data import DataFormatError, DataNotFoundError, ImageNotFoundError, load_dataset
from studylib.metrics.parsing import pope_answer
from studylib.data.pope import POPE_SPLITS, load_pope, load_pope_lmms
from studylib.sweep import score_dataset
from studylib.models import prompts
from studylib.pruners import get_pruner


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return formats.write_pope(tmp_path_factory.mktemp("pope"))


def _expected(split):
    return formats.pope_questions(split)


def test_official_folder_loads_all_splits(files):
    data = load_pope(files.questions, files.images)
    assert len(data) == 3 * len(_expected("random"))
    assert [q.split for q in data.questions[::8]] == list(POPE_SPLITS)
    assert len({q.qid for q in data.questions}) == len(data)
    for split in POPE_SPLITS:
        rows = [q for q in data.questions if q.split == split]
        assert [(q.text, q.answer, q.image_key) for q in rows] == \
            [(r["text"], r["label"], r["image"]) for r in _expected(split)]
        assert rows[0].qid == f"{split}-1"
    assert all(q.task == "yesno" for q in data.questions)
    assert data.load_image(data.questions[0].image_key).size == (96, 96)


def test_single_file_splits_and_limit(files):
    data = load_pope(files.questions / "coco_pope_popular.json", files.images)
    assert {q.split for q in data.questions} == {"popular"}
    limited = load_pope(files.questions, files.images, splits=["adversarial", "random"], limit=3)
    assert [q.split for q in limited.questions] == ["adversarial"] * 3 + ["random"] * 3


def test_official_rows_load_under_any_file_name(tmp_path, files):
    """The loader recognises official rows (question_id, image, text, label) by their fields: the
    split comes from the file name when it names one, else from ``splits``."""
    rows = _expected("adversarial")
    mine = load_pope(_write(tmp_path / "my_questions.jsonl", rows), files.images, splits=["adversarial"])
    assert [(q.qid, q.split, q.text, q.answer) for q in mine.questions] == \
        [(f"adversarial-{r['question_id']}", "adversarial", r["text"], r["label"]) for r in rows]
    named = load_pope(_write(tmp_path / "subset-popular.json", rows), files.images)
    assert {q.split for q in named.questions} == {"popular"}
    assert len(load_dataset("pope", questions=str(tmp_path / "my_questions.jsonl"), images=str(files.images),
                            splits="random")) == len(rows)
    with pytest.raises(DataFormatError, match=r"neither its name nor the splits option says which; pass "
                                              r"splits=\['random'\]"):
        load_pope(tmp_path / "my_questions.jsonl", files.images)


def test_llava_file_is_joined_with_official_labels(files):
    llava = load_pope(files.llava, files.images)
    official = load_pope(files.questions, files.images)
    assert [(q.split, q.text, q.answer, q.image_key) for q in llava.questions] == \
        [(q.split, q.text, q.answer, q.image_key) for q in official.questions]
    assert not any(prompts.SHORT_ANSWER in q.text for q in llava.questions)
    assert llava.questions[0].qid == "random-10000001"
    assert len(load_pope(files.llava.parent, files.images)) == len(official)  # the folder works too


def test_registry_names(files):
    assert len(load_dataset("pope", questions=files.questions, images=files.images, splits="random")) == 8
    assert len(load_dataset("pope-lmms", path=files.parquet, splits="random")) == 8


def test_lmms_parquet_matches_official(files):
    lmms = load_pope_lmms(files.parquet)
    official = load_pope(files.questions, files.images)
    assert [(q.split, q.qid, q.text, q.answer) for q in lmms.questions] == \
        [(q.split, q.qid, q.text, q.answer) for q in official.questions]
    key = lmms.questions[0].image_key
    assert key == official.questions[0].image_key.removesuffix(".jpg")
    assert np.array_equal(np.asarray(lmms.load_image(key)),
                          np.asarray(official.load_image(official.questions[0].image_key)))
    assert len(load_pope_lmms(files.parquet, splits=("popular",), limit=2)) == 2


# ---------------------------------------------------------------- errors


def test_missing_paths_name_the_layout(tmp_path, files):
    with pytest.raises(DataNotFoundError, match=r"coco_pope_\{random,popular,adversarial\}\.json.*RUCAIBox/POPE"):
        load_pope(tmp_path / "nowhere", files.images)
    with pytest.raises(DataNotFoundError, match="COCO val2014 image folder not found.*val2014.zip"):
        load_pope(files.questions, tmp_path / "no-images")
    with pytest.raises(DataNotFoundError, match="lmms-lab/POPE"):
        load_pope_lmms(tmp_path / "nothing")


def test_one_missing_split_file_is_named(tmp_path, files):
    folder = tmp_path / "partial"
    folder.mkdir()
    (folder / "coco_pope_random.json").write_text((files.questions / "coco_pope_random.json").read_text())
    with pytest.raises(DataNotFoundError, match="coco_pope_popular.json"):
        load_pope(folder, files.images)
    assert len(load_pope(folder, files.images, splits="random")) == 8


def _write(path, rows):
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text("".join(json.dumps(r) + "\n" for r in rows))
    return path


@pytest.mark.parametrize("mutate, message", [
    (lambda r: r.pop("label"), r"lacks field\(s\) \['label'\]"),
    (lambda r: r.update(label="Yes"), "label 'Yes'"),
    (lambda r: r.pop("image"), r"lacks field\(s\) \['image'\]"),
])
def test_malformed_rows(tmp_path, files, mutate, message):
    rows = _expected("random")
    mutate(rows[2])
    path = _write(tmp_path / "coco_pope_random.json", rows)
    with pytest.raises(DataFormatError, match=message):
        load_pope(path, files.images)


def test_invalid_json_line_is_located(tmp_path, files):
    path = tmp_path / "coco_pope_random.json"
    path.write_text(json.dumps(_expected("random")[0]) + "\n{not json\n")
    with pytest.raises(DataFormatError, match="line 2"):
        load_pope(path, files.images)


def test_llava_file_without_labels_or_misaligned(tmp_path, files):
    rows = [json.loads(line) for line in files.llava.read_text().splitlines()]
    alone = _write(tmp_path / "alone" / "llava_pope_test.jsonl", rows)
    with pytest.raises(DataNotFoundError, match="carries no labels"):
        load_pope(alone, files.images)
    shifted = tmp_path / "shifted"
    rows_random = _expected("random")
    rows_random[0]["image"], rows_random[2]["image"] = "COCO_val2014_000000999999.jpg", rows_random[0]["image"]
    _write(shifted / "coco" / "coco_pope_random.json", rows_random)
    for split in ("popular", "adversarial"):
        _write(shifted / "coco" / f"coco_pope_{split}.json", _expected(split))
    with pytest.raises(DataFormatError, match="different POPE versions"):
        load_pope(_write(shifted / "llava_pope_test.jsonl", rows), files.images)


def test_missing_image_is_reported_when_loaded(tmp_path, files):
    rows = _expected("random")
    rows[0]["image"] = "COCO_val2014_000000999999.jpg"
    data = load_pope(_write(tmp_path / "coco_pope_random.json", rows), files.images)
    with pytest.raises(ImageNotFoundError, match="COCO_val2014_000000999999.jpg"):
        data.load_image(data.questions[0].image_key)


def test_parquet_without_columns(tmp_path):
    import pyarrow as pa
    import pyarrow.parquet as pq

    pq.write_table(pa.table({"question": ["Is there a dog in the image?"]}), tmp_path / "test.parquet")
    with pytest.raises(DataFormatError, match=r"lacks column\(s\)"):
        load_pope_lmms(tmp_path)


def test_unknown_split():
    with pytest.raises(ValueError, match="unknown POPE split"):
        load_pope("x", "y", splits=("hard",))


# ---------------------------------------------------------------- end to end


def test_toy_scores_end_to_end(toy_adapter, files):
    """Scored rows for every question; LLaVA's file (instruction stripped from its text) gives
    exactly the prompts, hence the scores, of the official files."""
    data = load_pope(files.questions, files.images)
    rows = score_dataset(toy_adapter, data, get_pruner("full"), toy_adapter.num_patches, progress=False)
    assert list(rows.qid) == [q.qid for q in data.questions]
    assert set(rows.split) == set(POPE_SPLITS)
    assert np.allclose([sum(p) for p in rows.probs], 1.0)
    llava = score_dataset(toy_adapter, load_pope(files.llava, files.images), get_pruner("full"),
                          toy_adapter.num_patches, progress=False)
    assert np.allclose(np.stack(llava.probs), np.stack(rows.probs), atol=1e-6)
    assert list(llava.label) == list(rows.label)


def test_toy_generations_parse_with_the_pope_rule(toy_adapter, files):
    data = load_pope_lmms(files.parquet, splits="random", limit=4)
    keys = [q.image_key for q in data.questions]
    tokens = toy_adapter.encode([data.load_image(k) for k in keys], keys)
    texts = toy_adapter.generate([prompts.build_prompt(q) for q in data.questions], tokens, max_new_tokens=4)
    assert all(pope_answer(t) in ("yes", "no") for t in texts)
