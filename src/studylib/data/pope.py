"""POPE (Li et al., EMNLP 2023) from its official files or from the ``lmms-lab/POPE`` parquet.

Official layout (``github.com/RUCAIBox/POPE``, folder ``output/coco/``)::

    coco_pope_random.json  coco_pope_popular.json  coco_pope_adversarial.json

Each is JSON **lines** despite the suffix: ``{"question_id": 1, "image":
"COCO_val2014_000000310196.jpg", "text": "Is there a snowboard in the image?", "label":
"yes"}``; ``question_id`` restarts at 1 in every file.  Images: the COCO val2014 folder
(``http://images.cocodataset.org/zips/val2014.zip``).

Versions: LLaVA-1.5 pins POPE commit ``e3e39262c85a`` where ``random`` has 2,910 questions
(8,910 in all); the current POPE and ``lmms-lab/POPE`` have 3 x 3,000 = 9,000.  LLaVA's
``llava_pope_test.jsonl`` (from LLaVA's eval.zip) holds the 8,910 questions with a
``category`` field and the short-answer instruction appended to ``text``, but **no labels**:
LLaVA joins it positionally, per category, with the pinned POPE files.  :func:`load_pope`
does the same join, checking that the image names agree row by row.

``lmms-lab/POPE`` (``huggingface-cli download lmms-lab/POPE --repo-type dataset``): parquet
files (``data/test-0000x-of-00003.parquet``, or ``Full/<split>/...``) with columns
``question_id``, ``question``, ``answer`` ("yes"/"no"), ``category``, ``image_source`` (COCO
file stem) and ``image`` (a ``{bytes, path}`` struct as Hugging Face writes images).

Conventions: ``Question.split`` is the POPE category; ``qid`` is ``"<split>-<question_id>"``
(unique across splits); ``text`` is the bare question (the prompt builder adds LLaVA's
instruction); ``image_key`` is the COCO file name (official files) or the ``image_source``
(parquet).  Answers generated as free text are parsed with
:func:`studylib.metrics.parsing.pope_answer`.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from studylib.data.registry import register_dataset
from studylib.data._files import (BytesImages, FolderImages, Layout, PathLike, check_limit, check_unique,
                                  image_bytes, iter_parquet_rows, parquet_files, read_json_lines,
                                  require_dir, require_fields)
from studylib.data.records import Dataset, Question
from studylib.models.prompts import SHORT_ANSWER

POPE_SPLITS = ("random", "popular", "adversarial")
LLAVA_POPE_FILE = "llava_pope_test.jsonl"
#: questions in LLaVA-1.5's POPE file, the set the papers score
LLAVA_POPE_QUESTIONS = 8910
LLAVA_PINNED_COMMIT = "e3e39262c85a"

OFFICIAL = Layout(
    "POPE",
    "coco_pope_{random,popular,adversarial}.json (JSON lines with question_id, image, text, label) "
    "in one folder, or LLaVA's llava_pope_test.jsonl (question_id, image, text, category) with those "
    "files in a coco/ folder beside it, and the COCO val2014 image folder",
    f"github.com/RUCAIBox/POPE output/coco/ (commit {LLAVA_PINNED_COMMIT} for LLaVA's 8,910 questions), "
    "LLaVA's eval.zip (docs/Evaluation.md) and http://images.cocodataset.org/zips/val2014.zip",
)
LMMS = Layout(
    "POPE (lmms-lab parquet)",
    "parquet files with columns question_id, question, answer, category, image ({bytes, path}) "
    "and optionally image_source",
    "huggingface.co/datasets/lmms-lab/POPE "
    "(huggingface-cli download lmms-lab/POPE --repo-type dataset --local-dir ...)",
)
_SPLIT_IN_NAME = re.compile(r"(?<![a-z])(random|popular|adversarial)(?![a-z])")


def _check_splits(splits: Sequence[str]) -> tuple[str, ...]:
    splits = (splits,) if isinstance(splits, str) else tuple(splits)
    unknown = [s for s in splits if s not in POPE_SPLITS]
    if unknown or not splits:
        raise ValueError(f"unknown POPE split(s) {unknown or splits}; choose from {POPE_SPLITS}")
    return splits


def _official_files(folder: Path, splits: tuple[str, ...]) -> dict[str, Path] | None:
    """Per-split official files in ``folder`` or ``folder/coco``; None if neither has any."""
    for candidate in (folder, folder / "coco"):
        files = {s: candidate / f"coco_pope_{s}.json" for s in splits}
        present = [s for s, f in files.items() if f.is_file()]
        if len(present) == len(splits):
            return files
        if present:
            missing = [files[s].name for s in splits if s not in present]
            raise OFFICIAL.missing(f"{candidate} lacks {missing}")
    return None


def _question_text(text: str) -> str:
    return text.strip().removesuffix(SHORT_ANSWER).rstrip()


def _read_official(path: Path, split: str, rows: list[dict] | None = None) -> list[dict]:
    rows = read_json_lines(path, OFFICIAL) if rows is None else rows
    for number, row in enumerate(rows, 1):
        require_fields(row, ("question_id", "image", "text", "label"), f"{path} row {number}", OFFICIAL)
        if row["label"] not in ("yes", "no"):
            raise OFFICIAL.malformed(f"{path} row {number} has label {row['label']!r}, expected 'yes' or 'no'")
        row["category"] = split
    return rows


def _join_labels(rows: list[dict], labels: Path, split: str, source: Path) -> list[dict]:
    """LLaVA's positional join of unlabelled rows with the official file of ``split``."""
    file = labels / f"coco_pope_{split}.json"
    if not file.is_file():
        raise OFFICIAL.missing(f"{source} has no labels and {labels} lacks {file.name} to join them with")
    official = _read_official(file, split)
    if len(official) != len(rows):
        raise OFFICIAL.malformed(f"{source} has {len(rows)} {split} questions but {file} has {len(official)}; "
                                 f"LLaVA's file matches POPE commit {LLAVA_PINNED_COMMIT}")
    for i, (row, truth) in enumerate(zip(rows, official)):
        if row["image"] != truth["image"]:
            raise OFFICIAL.malformed(
                f"{source} {split} question {i + 1} is about {row['image']} but the label file's row {i + 1} "
                f"is about {truth['image']}; the files are from different POPE versions")
        row["label"] = truth["label"]
    return rows


def _read_unlabelled(path: Path, splits: tuple[str, ...], labels: Path | None) -> dict[str, list[dict]]:
    rows = read_json_lines(path, OFFICIAL)
    for number, row in enumerate(rows, 1):
        require_fields(row, ("question_id", "image", "text", "category"), f"{path} row {number}", OFFICIAL)
    if any("label" in row for row in rows):
        missing = [n for n, row in enumerate(rows, 1) if "label" not in row]
        if missing:
            raise OFFICIAL.malformed(f"{path} row {missing[0]} has no label while other rows do")
        return {s: [r for r in rows if r["category"] == s] for s in splits}
    folder = labels if labels is not None else path.parent / "coco"
    if not folder.is_dir():
        raise OFFICIAL.missing(
            f"{path} carries no labels; pass labels=<folder with coco_pope_<split>.json> "
            f"(POPE commit {LLAVA_PINNED_COMMIT}) or put that folder at {folder}")
    return {s: _join_labels([r for r in rows if r["category"] == s], folder, s, path) for s in splits}


def _rows_by_split(questions: Path, splits: tuple[str, ...], labels: PathLike | None) -> dict[str, list[dict]]:
    labels = Path(labels).expanduser() if labels is not None else None
    if questions.is_dir():
        files = _official_files(questions, splits)
        if files is not None:
            return {s: _read_official(f, s) for s, f in files.items()}
        if (questions / LLAVA_POPE_FILE).is_file():
            return _read_unlabelled(questions / LLAVA_POPE_FILE, splits, labels)
        raise OFFICIAL.missing(f"POPE questions not found in {questions}")
    if not questions.is_file():
        raise OFFICIAL.missing(f"POPE questions not found at {questions}")
    rows = read_json_lines(questions, OFFICIAL)
    if rows and "category" not in rows[0] and "label" in rows[0]:  # official rows, whatever the file's name
        split = _split_of(questions, splits)
        return {split: _read_official(questions, split, rows)} if split in splits else {}
    return _read_unlabelled(questions, splits, labels)


def _split_of(path: Path, splits: tuple[str, ...]) -> str:
    """The split of a file of official rows (which carry none): the one split named in the file
    name (``coco_pope_random.json``), else the one split asked for (``splits=["random"]``)."""
    named = set(_SPLIT_IN_NAME.findall(path.name.lower()))
    if len(named) == 1:
        return named.pop()
    if len(splits) == 1:
        return splits[0]
    raise OFFICIAL.malformed(
        f"{path} holds POPE rows (question_id, image, text, label) of one split, and neither its name nor the "
        f"splits option says which; pass splits=['random'] (or 'popular', 'adversarial'), or put the split in the "
        f"file name")


def _question(row: dict, split: str, image_key: str) -> Question:
    return Question(f"{split}-{row['question_id']}", image_key, "yesno", _question_text(row["text"]),
                    answer=row["label"], split=split)


def load_pope(questions: PathLike, images: PathLike, splits: Sequence[str] = POPE_SPLITS,
              limit: int | None = None, labels: PathLike | None = None) -> Dataset:
    """POPE from the official question files and the COCO val2014 image folder.

    ``questions``: one file of official rows under any name (question_id, image, text, label; its
    split from the file name, e.g. ``coco_pope_random.json``, or else from ``splits`` naming one
    split), a folder holding the three ``coco_pope_<split>.json`` files (directly or in
    ``coco/``), LLaVA's ``llava_pope_test.jsonl`` (rows with ``category``), or a folder holding it.  ``labels``: the folder of official files LLaVA's unlabelled file is joined with
    (default: ``coco/`` beside it).  ``splits`` selects categories in this order; ``limit``
    keeps the first ``limit`` questions of each split.
    """
    splits = _check_splits(splits)
    limit = check_limit(limit)
    image_dir = require_dir(images, "COCO val2014 image folder", OFFICIAL)
    by_split = _rows_by_split(Path(questions).expanduser(), splits, labels)
    questions_out = [_question(row, split, row["image"]) for split in splits for row in by_split.get(split, [])[:limit]]
    if not questions_out:
        raise OFFICIAL.malformed(f"no questions of split(s) {list(splits)} in {questions}")
    check_unique([q.qid for q in questions_out], OFFICIAL)
    return Dataset("pope", questions_out, FolderImages(image_dir, OFFICIAL))


def load_pope_lmms(path: PathLike, splits: Sequence[str] = POPE_SPLITS, limit: int | None = None) -> Dataset:
    """POPE from ``lmms-lab/POPE`` parquet: one file or a folder searched recursively.

    Point at one configuration's files (the default ``data/`` or ``Full/``), not the whole
    repository: the two hold the same questions and duplicates are refused.  Images are decoded
    from the parquet bytes (one copy kept per ``image_source``).
    """
    splits = _check_splits(splits)
    limit = check_limit(limit)
    files = parquet_files(path, "*.parquet", LMMS)
    by_split: dict[str, list[Question]] = {s: [] for s in splits}
    images: dict[str, bytes] = {}
    columns = ("question_id", "question", "answer", "category", "image")
    for index, (file, row) in enumerate(iter_parquet_rows(files, columns, LMMS, optional=("image_source",))):
        split = row["category"]
        if split not in POPE_SPLITS:
            raise LMMS.malformed(f"{file} row {index} has category {split!r}, expected one of {POPE_SPLITS}")
        if row["answer"] not in ("yes", "no"):
            raise LMMS.malformed(f"{file} row {index} has answer {row['answer']!r}, expected 'yes' or 'no'")
        if split not in by_split or (limit is not None and len(by_split[split]) >= limit):
            continue
        key = row.get("image_source") or f"{split}-{row['question_id']}"
        if key not in images:
            images[key] = image_bytes(row["image"], f"{file} row {index}", LMMS)
        by_split[split].append(Question(f"{split}-{row['question_id']}", key, "yesno",
                                        _question_text(row["question"]), answer=row["answer"], split=split))
    questions = [q for s in splits for q in by_split[s]]
    if not questions:
        raise LMMS.malformed(f"no questions of split(s) {list(splits)} under {path}")
    check_unique([q.qid for q in questions], LMMS)
    return Dataset("pope-lmms", questions, BytesImages(images, LMMS))


register_dataset("pope")(load_pope)
register_dataset("pope-lmms")(load_pope_lmms)
