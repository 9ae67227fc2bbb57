"""Datasets of the study, toy and real, behind one entry point.

    >>> from studylib.data import load_dataset
    >>> load_dataset("toy-pope", split="adversarial", n_images=100)

Every loader returns a :class:`~studylib.data.records.Dataset` of
:class:`~studylib.data.records.Question` records; real-benchmark loaders read the public
formats from local paths and register themselves with :func:`register_dataset`
(:mod:`studylib.data.registry`); datasets from outside the package register the same way
from a plug-in (:mod:`studylib.plugins`).
"""

from __future__ import annotations

from studylib.data.records import LETTERS, Dataset, Question, check_unique_records
from studylib.data.registry import dataset_loader, list_datasets, register_dataset
from studylib.data._files import DataFormatError, DataNotFoundError, ImageNotFoundError

# the benchmark loaders register themselves on import (the toy world registers from studylib.toy.world,
# loaded by the registry like any plug-in)
from studylib.data import coco, mme, pope, scienceqa  # noqa: E402,F401


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


__all__ = ["LETTERS", "DataFormatError", "DataNotFoundError", "Dataset", "ImageNotFoundError", "Question",
           "check_question_texts", "dataset_loader", "list_datasets", "load_dataset", "register_dataset"]
