"""ScienceQA-IMG (Lu et al., NeurIPS 2022): the image questions of the test split, 2,017 of them.

Original layout (``github.com/lupantech/ScienceQA``, ``data/scienceqa/``; LLaVA keeps the same
files under ``playground/data/eval/scienceqa/``)::

    problems.json                 {pid: {question, choices, answer, hint, image, split, subject, ...}}
    images/test/<pid>/image.png   (images/{train,val,test}/ from the repository's tools/download.sh)

``answer`` is the 0-based index of the correct choice; ``image`` is ``"image.png"`` or null;
``split`` is train / val / test.  Test problems with an image: 2,017 (of 4,241).

``lmms-lab/ScienceQA`` (``huggingface-cli download lmms-lab/ScienceQA --repo-type dataset``),
configuration ``ScienceQA-IMG``: one shard per split, ``ScienceQA-IMG/train-00000-of-00001.parquet``,
``validation-00000-of-00001.parquet`` and ``test-00000-of-00001.parquet`` (test 2,017 rows,
validation 2,097; lmms-eval's ``scienceqa_img`` task reads ``test``), with columns ``image``
(``{bytes, path}`` struct), ``question``, ``choices`` (list of strings), ``answer`` (int8 index),
``hint``, ``task``, ``grade``, ``subject``, ``topic``, ``category``, ``skill``, ``lecture``,
``solution``.  The ``ScienceQA-FULL`` files also work: rows without an image are skipped.
Split names: the parquet shards say ``validation`` where ``problems.json`` says ``val``; both
loaders accept either name.

Prompt (LLaVA-1.5 ``llava_test_CQM-A.json`` = lmms-eval default, built by
:func:`studylib.models.prompts.build_prompt`): ``Context: {hint}`` line only when the hint is
non-empty, the question, one ``A. {choice}`` line per option, then "Answer with the option's
letter from the given choices directly."

Options: ScienceQA questions have 2 to 5 options.  ``Question.choices`` keeps all of them and
``Question.choice_labels`` gives their letters (A.. up to E), so first-token scoring is
restricted to the letters the question has (evaluation.md §7.2) and a 5-option question is
scored over A–E.  The paper reproduced here (seed 000, §3.2–3.3) states that every example has
four options and normalises the probabilities of A, B, C, D "within the four candidates"; that
is exactly our rule for 4-option questions, while for 2- and 3-option questions we do not put
mass on letters that are not options, and for 5-option questions we include E (the paper does
not address them).  Generated answers are parsed with
:func:`studylib.metrics.parsing.scienceqa_letter` (LLaVA's rule).

Conventions: ``Question.split`` is the ``subject`` (natural / social / language science, the
grouping of ScienceQA's own NAT / SOC / LAN columns) unless ``group_by`` names another field;
``qid`` is the problem id (original layout) or ``"<split>-<row>"`` (parquet row number over the
split's files in sorted order).
"""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path

from studylib.data.registry import register_dataset
from studylib.data._files import (BytesImages, FolderImages, Layout, PathLike, check_limit, image_bytes,
                                  iter_parquet_rows, read_json, repeated, require_dir, require_file)
from studylib.data.records import LETTERS, Dataset, Question

MAX_OPTIONS = 5
GROUP_FIELDS = ("subject", "category", "topic", "grade", "task", "skill")
#: split names of problems.json and of the lmms-lab shards, and the other loader's name for each
ORIGINAL_SPLITS = ("train", "val", "test")
LMMS_SPLITS = ("train", "validation", "test")
_OTHER_NAME = {"validation": "val", "val": "validation"}

ORIGINAL = Layout(
    "ScienceQA",
    "problems.json (a JSON object {pid: {question, choices, answer, hint, image, split, subject, ...}}) "
    "and an image folder holding <split>/<pid>/image.png",
    "github.com/lupantech/ScienceQA (data/scienceqa/problems.json; images via tools/download.sh) "
    "or LLaVA's playground/data/eval/scienceqa",
)
LMMS = Layout(
    "ScienceQA (lmms-lab parquet)",
    "ScienceQA-IMG/<split>-*.parquet for split train, validation or test (e.g. "
    "ScienceQA-IMG/validation-00000-of-00001.parquet) with columns image ({bytes, path}), question, choices, "
    "answer, hint, subject and the other metadata columns",
    "huggingface.co/datasets/lmms-lab/ScienceQA (huggingface-cli download lmms-lab/ScienceQA "
    "--repo-type dataset --local-dir ...)",
)


def _check_group(group_by: str) -> str:
    if group_by not in GROUP_FIELDS:
        raise ValueError(f"group_by must be one of {GROUP_FIELDS}, got {group_by!r}")
    return group_by


def _check_split(split: str, names: tuple[str, ...], layout: Layout) -> str:
    """``split`` in this layout's spelling (``val`` and ``validation`` name the same split)."""
    split = split if split in names else _OTHER_NAME.get(split, split)
    if split not in names:
        raise ValueError(f"unknown {layout.benchmark} split {split!r}; choose from {names}")
    return split


def _describe(counts: Mapping[str, list[int]]) -> str:
    """``{split: [rows with an image, rows without]}`` as "test: 3 with an image, 1 without; val: no rows"."""
    return "; ".join(f"{split}: {n[0]} with an image, {n[1]} without" if sum(n) else f"{split}: no rows"
                     for split, n in sorted(counts.items()))


def _question(qid: str, image_key: str, problem: Mapping, group_by: str, where: str, layout: Layout) -> Question:
    """One ScienceQA problem as a multiple-choice question, validated."""
    missing = [f for f in ("question", "choices", "answer", group_by) if f not in problem]
    if missing:
        raise layout.malformed(f"{where} lacks field(s) {missing}")
    choices = problem["choices"]
    if not isinstance(choices, (list, tuple)) or not 2 <= len(choices) <= MAX_OPTIONS \
            or not all(isinstance(c, str) for c in choices):
        raise layout.malformed(f"{where} has choices {choices!r}; expected a list of 2 to {MAX_OPTIONS} strings")
    twice = repeated([c.strip() for c in choices])
    if twice:
        raise layout.malformed(f"{where} has the option(s) {twice} twice in its choices {choices!r}; the answer letters "
                               f"cannot tell them apart: fix or drop that problem")
    answer = problem["answer"]
    if isinstance(answer, bool) or not isinstance(answer, int) or not 0 <= answer < len(choices):
        raise layout.malformed(f"{where} has answer {answer!r}; "
                               f"expected a 0-based index into its {len(choices)} choices")
    return Question(qid, image_key, "mc", str(problem["question"]), answer=LETTERS[answer],
                    choices=tuple(choices), hint=str(problem.get("hint") or ""),
                    split=str(problem[group_by]))


def _problems_file(problems: PathLike) -> Path:
    path = Path(problems).expanduser()
    return require_file(path / "problems.json" if path.is_dir() else path, "problems.json", ORIGINAL)


def _image_root(images: PathLike, split: str) -> Path:
    root = require_dir(images, "ScienceQA image folder", ORIGINAL)
    return root / split if (root / split).is_dir() else root


def load_scienceqa(problems: PathLike, images: PathLike, split: str = "test", limit: int | None = None,
                   group_by: str = "subject") -> Dataset:
    """ScienceQA-IMG from the original ``problems.json`` and image folder.

    ``problems``: ``problems.json`` or the folder holding it.  ``images``: the folder holding
    ``<split>/<pid>/image.png`` (or the ``<split>`` folder itself).  Keeps problems of ``split``
    that have an image, in file order; ``limit`` keeps the first ``limit`` of them.
    """
    limit = check_limit(limit)
    group_by = _check_group(group_by)
    split = _check_split(split, ORIGINAL_SPLITS, ORIGINAL)
    path = _problems_file(problems)
    root = _image_root(images, split)
    table = read_json(path, ORIGINAL)
    if not isinstance(table, dict):
        raise ORIGINAL.malformed(f"{path} holds a {type(table).__name__}, not an object keyed by problem id")
    questions = []
    found: dict[str, list[int]] = {}
    for pid, problem in table.items():
        if not isinstance(problem, dict):
            raise ORIGINAL.malformed(f"{path} problem {pid!r} is not an object")
        found.setdefault(str(problem.get("split")), [0, 0])[0 if problem.get("image") else 1] += 1
        if problem.get("split") != split or not problem.get("image"):
            continue
        questions.append(_question(str(pid), f"{pid}/{problem['image']}", problem, group_by,
                                   f"{path} problem {pid!r}", ORIGINAL))
        if limit is not None and len(questions) == limit:
            break
    if not questions:
        raise ORIGINAL.malformed(f"{path} has no {split!r} problems with an image (by their 'split' and 'image' "
                                 f"fields it holds {_describe(found) or 'no problems'})")
    return Dataset("scienceqa", questions, FolderImages(root, ORIGINAL))


def _has_image(cell) -> bool:
    return cell is not None and not (isinstance(cell, Mapping) and not cell.get("bytes"))


def _lmms_folder(path: Path) -> Path:
    return path / "ScienceQA-IMG" if (path / "ScienceQA-IMG").is_dir() else path


def _lmms_files(path: Path, split: str) -> list[Path]:
    """The ``<split>-*.parquet`` shards at ``path`` (a shard, the ``ScienceQA-IMG`` folder or the download)."""
    if path.is_file():
        named = path.name.split("-", 1)[0]
        if named in LMMS_SPLITS and named != split:
            raise ValueError(f"{path} is a {named!r} shard but split={split!r} was asked; "
                             f"pass split={named!r} or the {split} shard")
        return [path]
    folder = _lmms_folder(path)
    if not folder.is_dir():
        raise LMMS.missing(f"parquet data not found at {path}")
    files = sorted(folder.rglob(f"{split}-*.parquet"))
    if not files:
        raise LMMS.missing(f"no {split!r} shard matching '{split}-*.parquet' under {folder}; "
                           f"{_split_summary(folder)}")
    return files


def _split_summary(folder: Path) -> str:
    """What the shards under ``folder`` hold, per split (for error messages)."""
    files = sorted(folder.rglob("*.parquet"))
    if not files:
        return f"{folder} holds no parquet file"
    counts = {file.name.split("-", 1)[0]: [0, 0] for file in files}
    for file, row in iter_parquet_rows(files, ("image",), LMMS):
        counts[file.name.split("-", 1)[0]][0 if _has_image(row["image"]) else 1] += 1
    return f"found in {folder}: {[f.relative_to(folder).as_posix() for f in files]} holding {_describe(counts)}"


def load_scienceqa_lmms(path: PathLike, split: str = "test", limit: int | None = None,
                        group_by: str = "subject") -> Dataset:
    """ScienceQA-IMG from ``lmms-lab/ScienceQA`` parquet.

    ``path``: a parquet shard, the ``ScienceQA-IMG`` folder, or the downloaded repository (its
    ``ScienceQA-IMG`` folder is used).  ``split``: train, validation (or val) or test; reads
    ``<split>-*.parquet`` (a shard given directly must be of that split).  Rows without an
    image are skipped; ``limit`` keeps the first ``limit`` image questions.  A split without
    image rows is refused with what each split's shards hold.
    """
    limit = check_limit(limit)
    group_by = _check_group(group_by)
    split = _check_split(split, LMMS_SPLITS, LMMS)
    path = Path(path).expanduser()
    files = _lmms_files(path, split)
    columns = ("image", "question", "choices", "answer", "hint", group_by)
    questions, images = [], {}
    for index, (file, row) in enumerate(iter_parquet_rows(files, columns, LMMS)):
        if not _has_image(row["image"]):
            continue
        qid = f"{split}-{index}"
        images[qid] = image_bytes(row["image"], f"{file} row {index}", LMMS)
        questions.append(_question(qid, qid, row, group_by, f"{file} row {index}", LMMS))
        if limit is not None and len(questions) == limit:
            break
    if not questions:
        folder = path.parent if path.is_file() else _lmms_folder(path)
        raise LMMS.malformed(f"no {split!r} rows with an image in {[f.name for f in files]} (rows without image "
                             f"bytes are skipped); {_split_summary(folder)}")
    return Dataset("scienceqa-lmms", questions, BytesImages(images, LMMS))


register_dataset("scienceqa")(load_scienceqa)
register_dataset("scienceqa-lmms")(load_scienceqa_lmms)
