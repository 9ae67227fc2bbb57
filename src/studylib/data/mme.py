"""MME (Fu et al., 2023): 14 yes/no subtasks, two questions per image, scored by acc and acc+.

Layout of the released ``MME_Benchmark_release_version/`` folder (request it via
``github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation``)::

    <subtask>/images/<name>.jpg + <subtask>/questions_answers_YN/<name>.txt   (artwork, celebrity,
                                                                                landmark, posters, scene)
    <subtask>/<name>.jpg|png    + <subtask>/<name>.txt                        (the other 9 subtasks)

Each ``.txt`` holds one line per question, ``question<TAB>answer`` with answer ``Yes``/``No``;
every image has two (one yes, one no).  Subtasks: existence, count, position, color, posters,
celebrity, scene, landmark, artwork, OCR (perception); commonsense_reasoning,
numerical_calculation, text_translation, code_reasoning (cognition); 2,374 questions in all.

Questions end with " Please answer yes or no."; LLaVA-1.5 replaces that by its short-answer
instruction, which our prompt builder adds for every yes/no question, so the suffix is
stripped from ``Question.text``.  ``Question.split`` is the subtask, ``image_key`` the image
path relative to the root, ``qid`` ``"<subtask>/<name>/<line>"``.  Questions stay in file order
(an image's two questions adjacent, as MME's tool expects).

Scoring: :func:`score_mme` turns result rows (``studylib.sweep.score_dataset`` columns, or
generated texts parsed with MME's rule) into per-subtask acc / acc+ / score
(:func:`studylib.metrics.mme_scores`); :func:`mme_table` lays them out.
"""

from __future__ import annotations

import re
from collections.abc import Sequence
from pathlib import Path

from studylib.data import register_dataset
from studylib.data._files import FolderImages, Layout, PathLike, check_limit, require_dir
from studylib.data.parsing import mme_answer
from studylib.data.records import Dataset, Question
from studylib.metrics.classification import COGNITION_SUBTASKS, PERCEPTION_SUBTASKS, MmeScore, mme_scores

SUBTASKS = PERCEPTION_SUBTASKS + COGNITION_SUBTASKS
RELEASE_FOLDER = "MME_Benchmark_release_version"
IMAGE_SUFFIXES = (".jpg", ".png", ".jpeg", ".JPG", ".PNG", ".JPEG")
MME_SUFFIX = re.compile(r"\s*Please answer yes or no\.?\s*$")

LAYOUT = Layout(
    "MME",
    f"{RELEASE_FOLDER}/<subtask>/ holding either images/ + questions_answers_YN/*.txt or the images and "
    "*.txt side by side; each .txt line is 'question<TAB>Yes|No'",
    "github.com/BradyFU/Awesome-Multimodal-Large-Language-Models/tree/Evaluation (MME download form)",
)


def _root(root: PathLike) -> Path:
    path = require_dir(root, "MME benchmark folder", LAYOUT)
    return path / RELEASE_FOLDER if (path / RELEASE_FOLDER).is_dir() else path


def _subtask_dirs(root: Path, subtasks: Sequence[str] | None) -> list[tuple[str, Path]]:
    if subtasks is None:
        found = [(s, root / s) for s in SUBTASKS if (root / s).is_dir()]
        if not found:
            raise LAYOUT.missing(f"no MME subtask folder ({', '.join(SUBTASKS)}) in {root}")
        return found
    subtasks = [subtasks] if isinstance(subtasks, str) else list(subtasks)
    unknown = [s for s in subtasks if s not in SUBTASKS]
    if unknown:
        raise ValueError(f"unknown MME subtask(s) {unknown}; choose from {SUBTASKS}")
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
        if len(parts) != 2 or parts[1].strip().lower() not in ("yes", "no"):
            raise LAYOUT.malformed(f"{text_file} line {number} is {line!r}, not 'question<TAB>Yes|No'")
        text = MME_SUFFIX.sub("", parts[0].strip())
        questions.append(Question(f"{subtask}/{text_file.stem}/{number}", image_key, "yesno", text,
                                  answer=parts[1].strip().lower(), split=subtask))
    return questions


def load_mme(root: PathLike, subtasks: Sequence[str] | None = None, limit: int | None = None) -> Dataset:
    """MME from the released folder.

    ``root``: ``MME_Benchmark_release_version`` or its parent.  ``subtasks``: the subtasks to
    load (each must exist); ``None`` loads every known subtask folder present.  ``limit`` keeps
    the first ``limit`` images (with all their questions) of each subtask, by file name.
    """
    limit = check_limit(limit)
    base = _root(root)
    questions: list[Question] = []
    for subtask, folder in _subtask_dirs(base, subtasks):
        text_dir, image_dir = _pairs(folder)
        text_files = sorted(text_dir.glob("*.txt"))[:limit]
        if not text_files:
            raise LAYOUT.missing(f"no question files (*.txt) in {text_dir}")
        for text_file in text_files:
            image_key = _image_for(text_file, image_dir).relative_to(base).as_posix()
            questions += _read_questions(text_file, subtask, image_key)
    return Dataset("mme", questions, FolderImages(base, LAYOUT))


def score_mme(rows, text_column: str | None = None) -> dict[str, MmeScore]:
    """Per-subtask MME scores of result rows.

    ``rows``: a DataFrame (or list of dicts) with columns ``image``, ``split`` (subtask) and
    ``label``, plus ``correct`` (first-token scoring, :func:`studylib.sweep.score_dataset`)
    or, with ``text_column``, generated answers parsed by MME's rule
    (:func:`studylib.data.parsing.mme_answer`).
    """
    import pandas as pd

    frame = pd.DataFrame(rows)
    needed = ["image", "split", "label", text_column or "correct"]
    missing = [c for c in needed if c not in frame.columns]
    if missing:
        raise ValueError(f"score_mme: result rows lack column(s) {missing}; expected {needed}")
    if text_column is None:
        correct = frame["correct"].astype(bool).to_numpy()
    else:
        correct = (frame[text_column].map(mme_answer) == frame["label"].str.lower()).to_numpy()
    return mme_scores(correct, frame["image"].to_numpy(), frame["split"].to_numpy())


def mme_table(scores: dict[str, MmeScore]):
    """One row per subtask (official order): group, acc, acc+, score (= 100 acc + 100 acc+), counts.

    Perception / cognition totals: :func:`studylib.metrics.mme_total`, which refuses partial sets.
    """
    import pandas as pd

    order = [s for s in SUBTASKS if s in scores] + sorted(set(scores) - set(SUBTASKS))
    return pd.DataFrame([{
        "subtask": s, "group": "cognition" if s in COGNITION_SUBTASKS else "perception",
        "acc": scores[s].acc, "acc_plus": scores[s].acc_plus, "score": scores[s].score,
        "n_questions": scores[s].n_questions, "n_images": scores[s].n_images,
    } for s in order])


register_dataset("mme")(load_mme)
