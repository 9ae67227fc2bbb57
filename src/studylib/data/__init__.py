"""Datasets of the study, toy and real, behind one entry point.

    >>> from studylib.data import load_dataset
    >>> load_dataset("toy-pope", split="adversarial", n_images=100)

Every loader returns a :class:`~studylib.data.records.Dataset` of
:class:`~studylib.data.records.Question` records; real-benchmark loaders read the public
formats from local paths and register themselves here with :func:`register_dataset`.
"""

from __future__ import annotations

from typing import Callable

from studylib.data.records import LETTERS, Dataset, Question, check_unique_records

_LOADERS: dict[str, Callable[..., Dataset]] = {}


def register_dataset(name: str):
    """Decorator: make ``fn(**options) -> Dataset`` available as ``load_dataset(name, ...)``."""
    def decorate(fn: Callable[..., Dataset]) -> Callable[..., Dataset]:
        if name in _LOADERS:
            raise ValueError(f"dataset {name!r} is registered twice")
        _LOADERS[name] = fn
        return fn
    return decorate


def list_datasets() -> list[str]:
    return sorted(_LOADERS)


def dataset_loader(name: str) -> Callable[..., Dataset]:
    """The registered loader function of ``name`` (its signature lists the options)."""
    try:
        return _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list_datasets()}") from None


def load_dataset(name: str, **options) -> Dataset:
    """Load dataset ``name`` with its options (paths, split, sizes); a question without text, a
    repeated question id or an option given twice raises :class:`DataFormatError` naming the ids
    (:func:`~studylib.data.records.check_unique_records`)."""
    dataset = dataset_loader(name)(**options)
    check_question_texts(dataset, options)
    check_unique_records(dataset, options)
    return dataset


def check_question_texts(dataset: Dataset, options: dict) -> None:
    """Every question needs its text (the prompt would otherwise ask nothing)."""
    empty = [q.qid for q in dataset.questions if not isinstance(q.text, str) or not q.text.strip()]
    if empty:
        raise DataFormatError(f"dataset {dataset.name!r} (options {options}): question {empty[0]!r} has empty text"
                              f"{f' ({len(empty)} such questions)' if len(empty) > 1 else ''}; fix or drop that "
                              f"record in the data file")


__all__ = ["LETTERS", "Dataset", "Question", "check_question_texts", "dataset_loader", "list_datasets", "load_dataset", "register_dataset"]

# Loaders register themselves on import: the real benchmarks (pope, pope-lmms, scienceqa,
# scienceqa-lmms, coco-captions, mme, mme-lmms) and the toy world (toy-pope, toy-scienceqa, toy-captions).
from studylib.data import coco, mme, pope, scienceqa  # noqa: E402
from studylib.toy import world as _toy_world  # noqa: E402,F401
from studylib.data._files import DataFormatError, DataNotFoundError, ImageNotFoundError  # noqa: E402

__all__ += ["DataFormatError", "DataNotFoundError", "ImageNotFoundError"]
