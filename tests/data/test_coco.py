"""COCO captions for CHAIR: ground truth from instances + reference captions, the image list,
clear errors, and captions generated end to end through the toy model."""

from __future__ import annotations

import json

import pytest
from fixtures import formats

from studylib.data import DataFormatError, DataNotFoundError, load_dataset
from studylib.data.coco import CAPTION_PROMPT, MAX_NEW_TOKENS, load_coco_captions, read_image_ids
from studylib.metrics import chair, coco_vocabulary
from studylib.models import prompts


@pytest.fixture(scope="module")
def files(tmp_path_factory):
    return formats.write_coco(tmp_path_factory.mktemp("coco"))


def test_default_list_is_sorted_ids_and_ground_truth_follows_chair(files):
    data = load_coco_captions(files.annotations, files.images)
    assert [q.qid for q in data.questions] == ["7", "42", "73"]
    assert all(q.task == "caption" and q.text == CAPTION_PROMPT for q in data.questions)
    assert data.questions[0].image_key == "COCO_val2014_000000000007.jpg"
    assert data.objects == {
        formats.coco_name(42): frozenset({"person", "horse", "car"}),  # car only from a caption
        formats.coco_name(73): frozenset({"chair", "dining table", "cup"}),  # "table" -> dining table
        formats.coco_name(7): frozenset({"toilet", "sink", "dog"}),  # no instances; toilet seat is no chair
    }
    assert data.load_image(formats.coco_name(42)).size == (96, 96)
    assert "Please describe this image in detail." in prompts.build_prompt(data.questions[0])
    assert MAX_NEW_TOKENS == 512


def test_image_list_file_list_and_seed(files):
    from_file = load_coco_captions(files.annotations, files.images, image_ids=files.image_list)
    assert [q.qid for q in from_file.questions] == ["73", "42"]
    assert set(from_file.objects) == {formats.coco_name(73), formats.coco_name(42)}
    names = files.image_list.parent / "ids.txt"
    names.write_text(f"{formats.coco_name(42)}\n7\n")
    assert read_image_ids(names) == [42, 7]
    assert [q.qid for q in load_coco_captions(files.annotations, files.images, image_ids=[7]).questions] == ["7"]
    assert len(load_coco_captions(files.annotations, files.images, n_images=2)) == 2
    seeded = [q.qid for q in load_coco_captions(files.annotations, files.images, n_images=3, seed=1).questions]
    assert sorted(seeded) == ["42", "7", "73"]
    assert seeded == [q.qid for q in load_coco_captions(files.annotations, files.images, n_images=3, seed=1).questions]
    assert len(load_dataset("coco-captions", annotations=files.annotations, images=files.images, n_images=1)) == 1


def test_json_list_of_ids(files, tmp_path):
    path = tmp_path / "ids.json"
    path.write_text(json.dumps([42, 73]))
    assert read_image_ids(path) == [42, 73]


# ---------------------------------------------------------------- errors


def test_missing_files_name_the_layout(tmp_path, files):
    with pytest.raises(DataNotFoundError, match="instances_val2014.json not found.*annotations_trainval2014.zip"):
        load_coco_captions(tmp_path, files.images)
    with pytest.raises(DataNotFoundError, match="COCO val2014 image folder not found"):
        load_coco_captions(files.annotations, tmp_path / "none")
    with pytest.raises(DataNotFoundError, match="image list not found"):
        load_coco_captions(files.annotations, files.images, image_ids=tmp_path / "none.txt")


def test_malformed_annotations(tmp_path, files):
    folder = tmp_path / "annotations"
    folder.mkdir()
    (folder / "captions_val2014.json").write_text((files.annotations / "captions_val2014.json").read_text())
    (folder / "instances_val2014.json").write_text(json.dumps({"images": []}))
    with pytest.raises(DataFormatError, match=r"list field\(s\) \['images', 'annotations', 'categories'\]"):
        load_coco_captions(folder, files.images)
    instances = json.loads((files.annotations / "instances_val2014.json").read_text())
    instances["categories"][0]["name"] = "unicorn"
    (folder / "instances_val2014.json").write_text(json.dumps(instances))
    with pytest.raises(DataFormatError, match="'unicorn'"):
        load_coco_captions(folder, files.images)


def test_unknown_or_repeated_ids(files):
    with pytest.raises(DataFormatError, match=r"\[5\] are not in instances_val2014.json"):
        load_coco_captions(files.annotations, files.images, image_ids=[42, 5])
    with pytest.raises(DataFormatError, match="repeats"):
        load_coco_captions(files.annotations, files.images, image_ids=[42, 42])


# ---------------------------------------------------------------- end to end


def test_toy_generates_captions_scored_by_chair(toy_adapter, files):
    data = load_coco_captions(files.annotations, files.images)
    keys = [q.image_key for q in data.questions]
    tokens = toy_adapter.encode([data.load_image(k) for k in keys], keys)
    captions = toy_adapter.generate([prompts.build_prompt(q) for q in data.questions], tokens, max_new_tokens=12)
    assert len(captions) == 3 and all(isinstance(c, str) and c for c in captions)
    result = chair(captions, [data.objects[k] for k in keys], coco_vocabulary())
    assert result.mean_length > 0
