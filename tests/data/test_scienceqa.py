"""ScienceQA-IMG loaders on fixtures in the original and lmms-lab formats; LLaVA's prompt;
2- to 5-option questions; clear errors; scored end to end through the toy model."""

from __future__ import annotations

import json

import numpy as np
import pytest
from fixtures import formats

from studylib.data import Dataset, DataFormatError, DataNotFoundError, ImageNotFoundError, load_dataset
from studylib.metrics.parsing import scienceqa_letter
from studylib.data.scienceqa import load_scienceqa, load_scienceqa_lmms
from studylib.sweep import score_dataset
from studylib.models import prompts
from studylib.pruners import get_pruner


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return formats.write_scienceqa(tmp_path_factory.mktemp("sqa"))


def test_original_layout_keeps_test_questions_with_images(files):
    data = load_scienceqa(files.problems, files.images)
    problems = formats.scienceqa_problems()
    assert [q.qid for q in data.questions] == ["1", "2", "3"]
    for q in data.questions:
        p = problems[q.qid]
        assert q.task == "mc" and q.text == p["question"] and q.hint == p["hint"]
        assert q.choices == tuple(p["choices"]) and q.answer == "ABCDE"[p["answer"]]
        assert q.split == p["subject"]
    assert [len(q.choice_labels) for q in data.questions] == [4, 2, 5]
    assert data.questions[2].choice_labels == ("A", "B", "C", "D", "E")
    image = data.load_image(data.questions[0].image_key)
    assert np.array_equal(np.asarray(image), np.asarray(formats.scienceqa_image("1")))


def test_folder_arguments_and_limit(files):
    assert len(load_scienceqa(files.problems.parent, files.images / "test", limit=2)) == 2
    assert {q.split for q in load_scienceqa(files.problems, files.images, group_by="category").questions} == {"Colors"}
    assert [q.qid for q in load_scienceqa(files.problems, files.images, split="train").questions] == ["5"]


def test_llava_prompt(files):
    q = load_scienceqa(files.problems, files.images).questions[1]
    expected = (f"<image>\nContext: {q.hint}\n{q.text}\nA. {q.choices[0]}\nB. {q.choices[1]}\n"
                "Answer with the option's letter from the given choices directly.")
    assert prompts.user_message(q) == expected
    assert prompts.verbalizer(q) == {"A": ("A",), "B": ("B",)}
    no_hint = load_scienceqa(files.problems, files.images).questions[0]
    assert prompts.user_message(no_hint).startswith(f"<image>\n{no_hint.text}\nA. ")


def test_lmms_parquet_matches_original(files):
    lmms = load_scienceqa_lmms(files.parquet)
    original = load_scienceqa(files.problems, files.images)
    fields = lambda q: (q.text, q.choices, q.answer, q.hint, q.split)  # noqa: E731
    assert [fields(q) for q in lmms.questions] == [fields(q) for q in original.questions]
    assert [q.qid for q in lmms.questions] == ["test-0", "test-1", "test-2"]
    assert np.array_equal(np.asarray(lmms.load_image("test-0")), np.asarray(formats.scienceqa_image("1")))
    assert len(load_dataset("scienceqa-lmms", path=files.parquet / "ScienceQA-IMG", limit=1)) == 1
    assert len(load_dataset("scienceqa", problems=files.problems, images=files.images)) == 3


def test_rows_without_images_are_skipped_in_parquet(tmp_path):
    path = tmp_path / "ScienceQA-FULL" / "test-00000-of-00001.parquet"
    formats.write_scienceqa_parquet(path, formats.scienceqa_problems(), full=True)
    data = load_scienceqa_lmms(tmp_path)
    assert [q.qid for q in data.questions] == ["test-0", "test-1", "test-2"]
    assert len(load_scienceqa_lmms(path, limit=2)) == 2


SPLIT_PIDS = {"train": ["5"], "validation": ["6"], "test": ["1", "2", "3"]}


@pytest.mark.parametrize("split", ["train", "validation", "test", "val"])
def test_each_lmms_split_loads_from_its_shard(files, split):
    """lmms-lab/ScienceQA 'ScienceQA-IMG' has train / validation / test shards; each loads like
    the same split of problems.json (where validation is called 'val')."""
    lmms = load_scienceqa_lmms(files.parquet, split=split)
    name = "validation" if split == "val" else split
    original = load_scienceqa(files.problems, files.images, split=split)
    fields = lambda q: (q.text, q.choices, q.answer, q.hint, q.split)  # noqa: E731
    assert [fields(q) for q in lmms.questions] == [fields(q) for q in original.questions]
    assert [q.qid for q in original.questions] == SPLIT_PIDS[name]
    assert [q.qid for q in lmms.questions] == [f"{name}-{i}" for i in range(len(SPLIT_PIDS[name]))]
    shard = files.parquet / "ScienceQA-IMG" / f"{name}-00000-of-00001.parquet"
    assert [fields(q) for q in load_scienceqa_lmms(shard, split=split).questions] == [fields(q) for q in lmms.questions]
    pid = SPLIT_PIDS[name][0]
    image = lmms.load_image(lmms.questions[0].image_key)
    assert np.array_equal(np.asarray(image), np.asarray(formats.scienceqa_image(pid)))


def test_lmms_split_without_image_rows_says_what_was_found(tmp_path):
    """The reported refusal: a validation shard without image rows (here: only the image-less
    val problem, as ScienceQA-FULL keeps it) names the split and what each split holds."""
    folder = tmp_path / "ScienceQA-IMG"
    problems = formats.scienceqa_problems()
    formats.write_scienceqa_parquet(folder / "test-00000-of-00001.parquet", problems, "test", full=True)
    problems["6"]["image"] = None
    formats.write_scienceqa_parquet(folder / "validation-00000-of-00001.parquet", problems, "validation", full=True)
    with pytest.raises(DataFormatError) as error:
        load_scienceqa_lmms(tmp_path, split="validation")
    message = str(error.value)
    assert "no 'validation' rows with an image in ['validation-00000-of-00001.parquet']" in message
    assert "test: 3 with an image, 1 without; validation: 0 with an image, 2 without" in message
    assert len(load_scienceqa_lmms(tmp_path)) == 3


def test_lmms_empty_shard_and_missing_split(tmp_path):
    folder = tmp_path / "ScienceQA-IMG"
    problems = formats.scienceqa_problems()
    formats.write_scienceqa_parquet(folder / "test-00000-of-00001.parquet", problems, "test")
    for p in problems.values():
        p["split"] = "test"  # a validation shard written from rows of no val problem: 0 rows
    formats.write_scienceqa_parquet(folder / "validation-00000-of-00001.parquet", problems, "validation")
    with pytest.raises(DataFormatError, match="holding test: 3 with an image, 0 without; validation: no rows"):
        load_scienceqa_lmms(folder, split="validation")
    with pytest.raises(DataNotFoundError, match=r"no 'train' shard matching 'train-\*\.parquet'.*"
                                                r"test: 3 with an image, 0 without"):
        load_scienceqa_lmms(tmp_path, split="train")


def test_lmms_split_names(files):
    shard = files.parquet / "ScienceQA-IMG" / "validation-00000-of-00001.parquet"
    with pytest.raises(ValueError, match="is a 'validation' shard but split='test' was asked"):
        load_scienceqa_lmms(shard)
    with pytest.raises(ValueError, match=r"unknown ScienceQA \(lmms-lab parquet\) split 'dev'"):
        load_scienceqa_lmms(files.parquet, split="dev")
    with pytest.raises(ValueError, match=r"unknown ScienceQA split 'minival'; choose from \('train', 'val', 'test'\)"):
        load_scienceqa(files.problems, files.images, split="minival")


def test_original_split_without_images_says_what_was_found(tmp_path, files):
    problems = formats.scienceqa_problems()
    problems["6"]["image"] = None
    path = tmp_path / "problems.json"
    path.write_text(json.dumps(problems))
    with pytest.raises(DataFormatError, match="no 'val' problems with an image .*"
                                              "test: 3 with an image, 1 without; train: 1 with an image, 0 without; "
                                              "val: 0 with an image, 2 without"):
        load_scienceqa(path, files.images, split="validation")


# ---------------------------------------------------------------- errors


def test_missing_files_name_the_layout(tmp_path, files):
    with pytest.raises(DataNotFoundError, match="problems.json not found.*lupantech/ScienceQA"):
        load_scienceqa(tmp_path, files.images)
    with pytest.raises(DataNotFoundError, match="ScienceQA image folder not found"):
        load_scienceqa(files.problems, tmp_path / "none")
    with pytest.raises(DataNotFoundError, match=r"test-\*\.parquet.*lmms-lab/ScienceQA"):
        load_scienceqa_lmms(tmp_path)


@pytest.mark.parametrize("mutate, message", [
    (lambda p: p.update(answer=4), "answer 4; expected a 0-based index"),
    (lambda p: p.update(choices=["only one"]), "expected a list of 2 to 5 strings"),
    (lambda p: p.update(choices=list("abcdef")), "expected a list of 2 to 5 strings"),
    (lambda p: p.pop("question"), r"lacks field\(s\) \['question'\]"),
    (lambda p: p.pop("subject"), r"lacks field\(s\) \['subject'\]"),
])
def test_malformed_problems(tmp_path, files, mutate, message):
    problems = formats.scienceqa_problems()
    mutate(problems["2"])
    path = tmp_path / "problems.json"
    path.write_text(json.dumps(problems))
    with pytest.raises(DataFormatError, match=message):
        load_scienceqa(path, files.images)


def test_not_json_and_wrong_shape(tmp_path, files):
    path = tmp_path / "problems.json"
    path.write_text("{oops")
    with pytest.raises(DataFormatError, match="not valid JSON"):
        load_scienceqa(path, files.images)
    path.write_text(json.dumps([1, 2]))
    with pytest.raises(DataFormatError, match="not an object keyed by problem id"):
        load_scienceqa(path, files.images)


def test_missing_image_is_reported_when_loaded(tmp_path, files):
    problems = formats.scienceqa_problems()
    problems["9"] = {**problems["1"]}
    path = tmp_path / "problems.json"
    path.write_text(json.dumps(problems))
    data = load_scienceqa(path, files.images)
    with pytest.raises(ImageNotFoundError, match="9/image.png"):
        data.load_image(data.questions[-1].image_key)


# ---------------------------------------------------------------- end to end


def test_toy_scores_end_to_end(toy_adapter, files):
    """The toy vocabulary has letters A-D only, so its 5-option question fails with the adapter's
    clear verbalizer error; the LLaVA tokenizer has ▁E (see tests/models/test_llama_token_ids.py)."""
    data = load_scienceqa(files.problems, files.images)
    up_to_four = Dataset(data.name, [q for q in data.questions if len(q.choices) <= 4], data.load_image)
    rows = score_dataset(toy_adapter, up_to_four, get_pruner("full"), toy_adapter.num_patches, progress=False)
    assert [len(c) for c in rows.choices] == [4, 2]
    assert np.allclose([sum(p) for p in rows.probs], 1.0)
    keys = [q.image_key for q in data.questions]
    texts = toy_adapter.generate([prompts.build_prompt(q) for q in data.questions],
                                 toy_adapter.encode([data.load_image(k) for k in keys], keys), max_new_tokens=2)
    parsed = [scienceqa_letter(t, len(q.choices)) for t, q in zip(texts, data.questions)]
    assert all(p in "ABCDE" or p == "FAILED" for p in parsed)
    with pytest.raises(ValueError, match="'E' is not a single token"):
        score_dataset(toy_adapter, data, get_pruner("full"), toy_adapter.num_patches, progress=False)
