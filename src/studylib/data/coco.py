"""COCO val2014 caption requests with CHAIR ground truth (Rohrbach et al., EMNLP 2018).

Layout (``http://images.cocodataset.org/annotations/annotations_trainval2014.zip`` and
``http://images.cocodataset.org/zips/val2014.zip``)::

    annotations/instances_val2014.json   {images: [{id, file_name}], annotations: [{image_id, category_id}],
                                          categories: [{id, name}]}
    annotations/captions_val2014.json    {annotations: [{image_id, caption}]}  (5 reference captions per image)
    val2014/COCO_val2014_000000xxxxxx.jpg

Ground truth per image (CHAIR, evaluation.md §3.2): the canonical names of its instance
categories united with the objects :func:`studylib.metrics.caption_objects` finds in its
reference captions.  CHAIR also loads the train2014 files; for val2014 images only the val
files contribute.

Image list: OPERA-style evaluations caption 500 val2014 images.  Pass ``image_ids`` (a list of
ids, or a file: one id or COCO file name per line, a JSON list, or JSON lines with an
``image_id`` field such as OPERA's ``log/chair_eval_results/llava-1.5/greedy.jsonl`` — reuse
that list to compare with OPERA, since its own shuffle of ``os.listdir`` is not reproducible).
Without it the first ``n_images`` ids in increasing order are used, or, with ``seed``, the first
``n_images`` of ``numpy.random.default_rng(seed).permutation(sorted ids)``.

Questions: task ``"caption"``, text :data:`CAPTION_PROMPT`, ``qid`` = the image id,
``image_key`` = the file name; ``Dataset.objects`` maps each file name to its ground truth.
Generate with ``max_new_tokens=`` :data:`MAX_NEW_TOKENS` (greedy) and score with
:func:`studylib.metrics.chair` using the same vocabulary.
"""

from __future__ import annotations

import json
import numbers
import os
import re
from collections.abc import Sequence
from pathlib import Path

import numpy as np

from studylib.data.registry import register_dataset
from studylib.data._files import FolderImages, Layout, PathLike, read_json, require_dir, require_file
from studylib.data.records import Dataset, Question
from studylib.metrics.hallucination import ChairVocabulary, caption_objects, coco_vocabulary

CAPTION_PROMPT = "Please describe this image in detail."
MAX_NEW_TOKENS = 512
N_IMAGES = 500
INSTANCES = "instances_val2014.json"
CAPTIONS = "captions_val2014.json"

LAYOUT = Layout(
    "COCO captions (CHAIR)",
    f"an annotations folder with {INSTANCES} (images, annotations with image_id/category_id, categories) "
    f"and {CAPTIONS} (annotations with image_id/caption), and the val2014 image folder",
    "http://images.cocodataset.org/annotations/annotations_trainval2014.zip and "
    "http://images.cocodataset.org/zips/val2014.zip",
)
_DIGITS = re.compile(r"(\d+)(?:\.\w+)?$")


def _annotation(folder: Path, name: str, keys: Sequence[str]) -> dict:
    path = require_file(folder / name, name, LAYOUT)
    data = read_json(path, LAYOUT)
    if not isinstance(data, dict) or any(not isinstance(data.get(k), list) for k in keys):
        raise LAYOUT.malformed(f"{path} must be a JSON object with list field(s) {list(keys)}")
    return data


def _parse_id(value, where: str) -> int:
    if isinstance(value, dict):
        value = value.get("image_id")
    if isinstance(value, numbers.Integral) and not isinstance(value, bool):
        return int(value)
    match = _DIGITS.search(str(value).strip()) if isinstance(value, str) else None
    if not match:
        raise LAYOUT.malformed(f"{where}: {value!r} is not a COCO image id or file name")
    return int(match.group(1))


def read_image_ids(path: PathLike) -> list[int]:
    """Image ids from a list file: JSON list, JSON lines (ints or objects with ``image_id``),
    or plain text with one id or COCO file name per line."""
    path = require_file(path, "image list", LAYOUT)
    text = path.read_text(encoding="utf-8")
    try:
        data = json.loads(text)
        items = data if isinstance(data, list) else [data]
    except json.JSONDecodeError:
        lines = [line for line in text.splitlines() if line.strip()]
        try:
            items = [json.loads(line) for line in lines]
        except json.JSONDecodeError:
            items = [line.strip() for line in lines]
    return [_parse_id(item, f"{path} entry {i + 1}") for i, item in enumerate(items)]


def _select(available: Sequence[int], image_ids, n_images: int, seed: int | None) -> list[int]:
    if image_ids is None:
        ordered = sorted(available)
        if seed is not None:
            ordered = [int(i) for i in np.random.default_rng(seed).permutation(ordered)]
        return ordered[:n_images]
    if isinstance(image_ids, (str, os.PathLike)):
        ids = read_image_ids(image_ids)
    else:
        ids = [_parse_id(i, "image_ids") for i in image_ids]
    known = set(available)
    unknown = [i for i in ids if i not in known]
    if unknown:
        raise LAYOUT.malformed(f"image id(s) {unknown[:5]} are not in {INSTANCES}")
    if len(set(ids)) != len(ids):
        raise LAYOUT.malformed("the image list repeats an image id")
    return ids


def _ground_truth(ids: set[int], instances: dict, captions: dict, vocabulary: ChairVocabulary) -> dict[int, set[str]]:
    names = {c["id"]: c["name"] for c in instances.get("categories", [])}
    truth: dict[int, set[str]] = {i: set() for i in ids}
    for ann in instances["annotations"]:
        if ann.get("image_id") in truth:
            name = names.get(ann.get("category_id"))
            if name not in vocabulary.synonyms:
                raise LAYOUT.malformed(f"{INSTANCES}: category id {ann.get('category_id')!r} ({name!r}) "
                                       f"is not a COCO category of the CHAIR vocabulary")
            truth[ann["image_id"]].add(vocabulary.synonyms[name])
    for ann in captions["annotations"]:
        if ann.get("image_id") in truth:
            truth[ann["image_id"]].update(m.category for m in caption_objects(str(ann.get("caption", "")), vocabulary))
    return truth


def load_coco_captions(annotations: PathLike, images: PathLike, image_ids: PathLike | Sequence[int] | None = None,
                       n_images: int = N_IMAGES, seed: int | None = None,
                       vocabulary: ChairVocabulary | None = None) -> Dataset:
    """Caption requests for COCO val2014 images with their CHAIR ground-truth objects.

    ``annotations``: the folder holding ``instances_val2014.json`` and ``captions_val2014.json``;
    ``images``: the val2014 image folder; ``image_ids``, ``n_images``, ``seed``: the image list
    (module docstring; a given ``image_ids`` is used whole, in its order); ``vocabulary``: CHAIR's
    COCO vocabulary by default.
    """
    if not isinstance(n_images, int) or n_images < 1:
        raise ValueError(f"n_images must be a positive integer, got {n_images!r}")
    vocabulary = vocabulary or coco_vocabulary()
    folder = require_dir(annotations, "COCO annotations folder", LAYOUT)
    image_dir = require_dir(images, "COCO val2014 image folder", LAYOUT)
    instances = _annotation(folder, INSTANCES, ("images", "annotations", "categories"))
    captions = _annotation(folder, CAPTIONS, ("annotations",))
    files = {img["id"]: img["file_name"] for img in instances["images"] if "id" in img and "file_name" in img}
    if not files:
        raise LAYOUT.malformed(f"{INSTANCES} lists no images with id and file_name")
    chosen = _select(list(files), image_ids, n_images, seed)
    truth = _ground_truth(set(chosen), instances, captions, vocabulary)
    questions = [Question(str(i), files[i], "caption", CAPTION_PROMPT) for i in chosen]
    objects = {files[i]: frozenset(truth[i]) for i in chosen}
    return Dataset("coco-captions", questions, FolderImages(image_dir, LAYOUT), objects)


register_dataset("coco-captions")(load_coco_captions)
