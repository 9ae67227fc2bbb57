"""MME (Fu et al., 2023): 14 yes/no subtasks, two questions per image, from either public copy.

**Official release** (``load_dataset("mme", root=...)``): the ``MME_Benchmark_release_version/``
folder (request it via ``github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation``)::

    <subtask>/images/<name>.jpg + <subtask>/questions_answers_YN/<name>.txt   (artwork, celebrity,
                                                                                landmark, posters, scene)
    <subtask>/<name>.jpg|png    + <subtask>/<name>.txt                        (the other 9 subtasks)

Each ``.txt`` holds one line per question, ``question<TAB>answer`` with answer ``Yes``/``No``;
every image has two (one yes, one no).  Subtasks: existence, count, position, color, posters,
celebrity, scene, landmark, artwork, OCR (perception); commonsense_reasoning,
numerical_calculation, text_translation, code_reasoning (cognition); 2,374 questions in all.

**lmms-lab/MME** (``load_dataset("mme-lmms", path=...)``), the copy lmms-eval's ``mme`` task
downloads (``huggingface-cli download lmms-lab/MME --repo-type dataset --local-dir ...``): one
configuration, one split ``test`` of 2,374 rows in parquet shards
``data/test-00000-of-00004-<hash>.parquet`` .. ``data/test-00003-of-00004-<hash>.parquet`` with
columns

* ``question_id`` — ``"<subtask>/<image file>"`` (e.g. ``"code_reasoning/0020.png"``), shared by
  an image's two questions (lmms-eval pairs them by it; LLaVA's ``convert_answer_to_mme.py``
  maps its last part to the release's ``<name>.txt``);
* ``image`` — ``{bytes, path}`` struct (Hugging Face's Image feature), on every row;
* ``question`` — with MME's " Please answer yes or no."; ``answer`` — ``"Yes"``/``"No"``;
* ``category`` — the subtask, spelled as the release's folder names (``"OCR"``,
  ``"code_reasoning"``, ``"numerical_calculation"``, ...).

lmms-eval strips " Please answer yes or no." and appends "\nAnswer the question using a single
word or phrase." (its default prompt = LLaVA-1.5's = ours).  Some past revisions of the
repository held two copies of a shard under different hashes; a folder holding both is refused
(it would count questions twice), as is one missing a shard.

Both loaders build the same records (one parser, :func:`_question`): questions end with
" Please answer yes or no."; LLaVA-1.5 replaces that by its short-answer instruction, which
our prompt builder adds for every yes/no question, so the suffix is stripped from
``Question.text``.  ``Question.split`` is the subtask, ``qid`` ``"<subtask>/<name>/<n>"`` with
``<name>`` the image's file stem and ``<n>`` the question's place among that image's questions
(line of the ``.txt``, or row order in the parquet).  Order: official subtask order, images
sorted by name, an image's questions adjacent in file / row order (as MME's tool expects).
``image_key`` is the image path relative to the release root, or the ``question_id``.

Scoring is not done here: :func:`studylib.metrics.score_mme` scores result rows of either
loader and :func:`studylib.metrics.mme_table` lays the scores out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path, PurePosixPath

from studylib.data.registry import register_dataset
from studylib.data._files import (BytesImages, FolderImages, Layout, PathLike, check_limit, check_unique,
                                  image_bytes, iter_parquet_rows, require_dir)
from studylib.data.records import Dataset, Question
from studylib.metrics.classification import MME_SUBTASKS

SUBTASKS = MME_SUBTASKS
RELEASE_FOLDER = "MME_Benchmark_release_version"
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")
MME_SUFFIX = re.compile(r"\s*Please answer yes or no\.?\s*$")

LAYOUT = Layout(
    "MME",
    f"{RELEASE_FOLDER}/<subtask>/ holding either images/ + questions_answers_YN/*.txt or the images and "
    "*.txt side by side; each .txt line is 'question<TAB>Yes|No'",
    "github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation (MME download form)",
)

LMMS_SHARDS = "data/test-*.parquet"
LMMS_COLUMNS = ("question_id", "image", "question", "answer", "category")
LMMS = Layout(
    "MME (lmms-lab parquet)",
    f"the lmms-lab/MME download: parquet shards {LMMS_SHARDS} (data/test-00000-of-00004-<hash>.parquet, ...) "
    "with columns question_id, image ({bytes, path}), question, answer, category",
    "huggingface.co/datasets/lmms-lab/MME (huggingface-cli download lmms-lab/MME --repo-type dataset "
    "--local-dir ...)",
)
_SHARD_NAME = re.compile(r"test-(\d+)-of-(\d+)(?:-[0-9a-f]+)?\.parquet$")


# ---------------------------------------------------------------- shared by both layouts


def _question(subtask: str, name: str, number: int, question: str, answer: str, image_key: str,
              where: str, layout: Layout) -> Question:
    """One MME question, validated: suffix stripped, answer lower-cased, qid ``<subtask>/<name>/<number>``."""
    label = answer.strip().lower() if isinstance(answer, str) else answer
    if label not in ("yes", "no") or not isinstance(question, str) or not question.strip():
        raise layout.malformed(f"{where} has question {question!r} and answer {answer!r}; "
                               "expected a question and the answer Yes or No")
    return Question(f"{subtask}/{name}/{number}", image_key, "yesno", MME_SUFFIX.sub("", question.strip()),
                    answer=label, split=subtask)


def _check_subtasks(subtasks: Sequence[str] | str | None) -> list[str] | None:
    if subtasks is None:
        return None
    subtasks = [subtasks] if isinstance(subtasks, str) else list(subtasks)
    unknown = [s for s in subtasks if s not in SUBTASKS]
    if unknown or not subtasks:
        raise ValueError(f"unknown MME subtask(s) {unknown or subtasks}; choose from {list(SUBTASKS)}")
    return subtasks


# ---------------------------------------------------------------- official folder release


def _root(root: PathLike) -> Path:
    path = require_dir(root, "MME benchmark folder", LAYOUT)
    return path / RELEASE_FOLDER if (path / RELEASE_FOLDER).is_dir() else path


def _subtask_dirs(root: Path, subtasks: Sequence[str] | None) -> list[tuple[str, Path]]:
    if subtasks is None:
        found = [(s, root / s) for s in SUBTASKS if (root / s).is_dir()]
        if not found:
            raise LAYOUT.missing(f"no MME subtask folder ({', '.join(SUBTASKS)}) in {root}")
        return found
    missing = [s for s in subtasks if not (root / s).is_dir()]
    if missing:
        raise LAYOUT.missing(f"subtask folder(s) {missing} not found in {root}")
    return [(s, root / s) for s in subtasks]


def _pairs(folder: Path) -> tuple[Path, Path]:
    """(question-file folder, image folder) of one subtask."""
    if (folder / "questions_answers_YN").is_dir():
        return folder / "questions_answers_YN", folder / "images"
    return folder, folder


def _image_for(text_file: Path, image_dir: Path) -> Path:
    for suffix in IMAGE_SUFFIXES:
        candidate = image_dir / (text_file.stem + suffix)
        if candidate.is_file():
            return candidate
    raise LAYOUT.missing(f"no image {text_file.stem}{{.jpg,.png}} in {image_dir} for {text_file}")


def _read_questions(text_file: Path, subtask: str, image_key: str) -> list[Question]:
    questions = []
    lines = [line for line in text_file.read_text(encoding="utf-8").splitlines() if line.strip()]
    if not lines:
        raise LAYOUT.malformed(f"{text_file} is empty")
    for number, line in enumerate(lines, 1):
        parts = line.split("\t")
        if len(parts) != 2:
            raise LAYOUT.malformed(f"{text_file} line {number} is {line!r}, not 'question<TAB>Yes|No'")
        questions.append(_question(subtask, text_file.stem, number, parts[0], parts[1], image_key,
                                   f"{text_file} line {number}", LAYOUT))
    return questions


def load_mme(root: PathLike, subtasks: Sequence[str] | None = None, limit: int | None = None) -> Dataset:
    """MME from the released folder.

    ``root``: ``MME_Benchmark_release_version`` or its parent.  ``subtasks``: the subtasks to
    load (each must exist); ``None`` loads every known subtask folder present.  ``limit`` keeps
    the first ``limit`` images (with all their questions) of each subtask, by file name.
    """
    limit = check_limit(limit)
    subtasks = _check_subtasks(subtasks)
    base = _root(root)
    questions: list[Question] = []
    for subtask, folder in _subtask_dirs(base, subtasks):
        text_dir, image_dir = _pairs(folder)
        # by image name, as load_mme_lmms sorts, so that ``limit`` keeps the same images in both layouts
        text_files = sorted(text_dir.glob("*.txt"), key=lambda f: f.stem)[:limit]
        if not text_files:
            raise LAYOUT.missing(f"no question files (*.txt) in {text_dir}")
        for text_file in text_files:
            image_key = _image_for(text_file, image_dir).relative_to(base).as_posix()
            questions += _read_questions(text_file, subtask, image_key)
    return Dataset("mme", questions, FolderImages(base, LAYOUT))


# ---------------------------------------------------------------- lmms-lab/MME parquet


def _check_shard_set(folder: Path, shards: list[Path]) -> list[Path]:
    """Refuse a shard set with a shard twice (old and new hashes side by side) or one missing."""
    numbered: dict[tuple[int, int], list[str]] = {}
    for shard in shards:
        match = _SHARD_NAME.match(shard.name)
        if match:
            numbered.setdefault((int(match[1]), int(match[2])), []).append(shard.name)
    twice = [names for names in numbered.values() if len(names) > 1]
    if twice:
        raise LMMS.malformed(f"{folder} holds shard copies {twice[0]} of the same rows (an older snapshot "
                             "left beside a newer one); keep one shard per number")
    totals = sorted({total for _, total in numbered})
    if len(totals) > 1:
        raise LMMS.malformed(f"{folder} mixes shard sets of {totals} files; keep one download")
    present = {index for index, _ in numbered}
    absent = [index for index in range(totals[0]) if index not in present] if totals else []
    if absent:
        raise LMMS.missing(f"{folder} lacks shard(s) {absent} of {totals[0]} (an incomplete download)")
    return shards


def _lmms_shards(path: PathLike) -> list[Path]:
    """The parquet shards at ``path``: a shard file, the download folder (``data/``) or ``data/`` itself."""
    path = Path(path).expanduser()
    if path.is_file():
        return [path]
    if not path.is_dir():
        raise LMMS.missing(f"no folder or file at {path}")
    for folder in (path / "data", path):
        shards = sorted(folder.glob("test-*.parquet"))
        if shards:
            return _check_shard_set(folder, shards)
    found = sorted(entry.name + "/" * entry.is_dir() for entry in path.iterdir())
    listing = f"it holds {found[:8]}{f' and {len(found) - 8} more' if len(found) > 8 else ''}" if found \
        else "it is empty"
    if (path / RELEASE_FOLDER).is_dir() or any((path / s).is_dir() for s in SUBTASKS):
        listing += " (the official release layout: load it with load_dataset('mme', root=...))"
    raise LMMS.missing(f"no shard matching {LMMS_SHARDS!r} (or test-*.parquet) in {path}; {listing}")


def _lmms_groups(files: list[Path]) -> dict[tuple[str, str], list[tuple[str, dict]]]:
    """Text columns of every row, checked, grouped by (subtask, image file stem) in row order;
    each row comes with its location ``<file> row <n>`` for error messages."""
    groups: dict[tuple[str, str], list[tuple[str, dict]]] = {}
    seen: set[tuple[str, str]] = set()
    text_columns = [c for c in LMMS_COLUMNS if c != "image"]
    for index, (file, row) in enumerate(iter_parquet_rows(files, text_columns, LMMS, required=("image",))):
        where = f"{file} row {index}"
        subtask, question_id = row["category"], row["question_id"]
        if subtask not in SUBTASKS:
            raise LMMS.malformed(f"{where} has category {subtask!r}, not one of the 14 MME subtasks {list(SUBTASKS)}")
        if not isinstance(question_id, str) or not question_id.strip():
            raise LMMS.malformed(f"{where} has question_id {question_id!r}; expected '<subtask>/<image file>'")
        if (question_id, row["question"]) in seen:
            raise LMMS.malformed(f"{where} repeats question {row['question']!r} of {question_id!r}; "
                                 "the folder holds two copies of some rows")
        seen.add((question_id, row["question"]))
        groups.setdefault((subtask, PurePosixPath(question_id).stem), []).append((where, row))
    return groups


def _lmms_images(files: list[Path], wanted: set[str]) -> dict[str, bytes]:
    """Encoded image of each wanted ``question_id`` (first row of each; a second pass, so text
    checks fail fast and only the kept images are held in memory)."""
    images: dict[str, bytes] = {}
    for index, (file, row) in enumerate(iter_parquet_rows(files, ("question_id", "image"), LMMS)):
        key = row["question_id"]
        if key in wanted and key not in images:
            images[key] = image_bytes(row["image"], f"{file} row {index}", LMMS)
    return images


def load_mme_lmms(path: PathLike, subtasks: Sequence[str] | None = None, limit: int | None = None) -> Dataset:
    """MME from the ``lmms-lab/MME`` parquet download (layout in the module docstring).

    ``path``: the downloaded folder (shards in its ``data/``), the ``data`` folder, or one shard.
    ``subtasks`` and ``limit`` as in :func:`load_mme` (``limit``: first images by name per
    subtask); the records equal :func:`load_mme`'s on the same content, except ``image_key``
    (the ``question_id``).  Images are decoded from the parquet bytes, one copy per image.
    """
    limit = check_limit(limit)
    subtasks = _check_subtasks(subtasks)
    files = _lmms_shards(path)
    groups = _lmms_groups(files)
    present = {task for task, _ in groups}
    missing = [s for s in subtasks or () if s not in present]
    if missing:
        raise LMMS.missing(f"no rows of subtask(s) {missing} in {path} (its rows are of {sorted(present)})")
    if not groups:
        raise LMMS.malformed(f"the shards {[f.name for f in files]} in {path} hold no rows")
    questions: list[Question] = []
    for subtask in SUBTASKS if subtasks is None else subtasks:
        for name in sorted(name for task, name in groups if task == subtask)[:limit]:
            questions += [_question(subtask, name, number, row["question"], row["answer"], row["question_id"],
                                    where, LMMS) for number, (where, row) in enumerate(groups[subtask, name], 1)]
    check_unique([q.qid for q in questions], LMMS)
    images = _lmms_images(files, {q.image_key for q in questions})
    return Dataset("mme-lmms", questions, BytesImages(images, LMMS))


register_dataset("mme")(load_mme)
register_dataset("mme-lmms")(load_mme_lmms)
