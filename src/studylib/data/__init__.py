"""Datasets of the study, toy and real, behind one entry point.

    >>> from studylib.data import load_dataset
    >>> load_dataset("toy-pope", split="adversarial", n_images=100)

Every loader returns a :class:`~studylib.data.records.Dataset` of
:class:`~studylib.data.records.Question` records; real-benchmark loaders read the public
formats from local paths and register themselves here with :func:`register_dataset`.
"""

from __future__ import annotations

from typing import Callable

from studylib.data.records import LETTERS, Dataset, Question

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


def load_dataset(name: str, **options) -> Dataset:
    """Load dataset ``name`` with its options (paths, split, sizes)."""
    try:
        loader = _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list_datasets()}") from None
    return loader(**options)


@register_dataset("toy-pope")
def _toy_pope(split: str = "all", n_images: int = 500, seed: int = 0) -> Dataset:
    """Toy POPE-style questions: one split (random / popular / adversarial) or "all"."""
    from studylib.data.toy_world import eval_world

    world = eval_world(n_images)
    return world.pope_all(seed) if split == "all" else world.pope(split, seed)


@register_dataset("toy-scienceqa")
def _toy_scienceqa(n_images: int = 500, seed: int = 0) -> Dataset:
    """Toy four-option questions, one per image."""
    from studylib.data.toy_world import eval_world

    return eval_world(n_images).scienceqa(seed)


@register_dataset("toy-captions")
def _toy_captions(n_images: int = 500) -> Dataset:
    """Toy caption requests with per-image object sets (CHAIR)."""
    from studylib.data.toy_world import eval_world

    return eval_world(n_images).captions()


__all__ = ["LETTERS", "Dataset", "Question", "list_datasets", "load_dataset", "register_dataset"]

# Real-benchmark loaders register themselves on import (names: pope, pope-lmms, scienceqa,
# scienceqa-lmms, coco-captions, mme, mme-lmms).
from studylib.data import coco, mme, pope, scienceqa  # noqa: E402
from studylib.data._files import DataFormatError, DataNotFoundError, ImageNotFoundError  # noqa: E402

__all__ += ["DataFormatError", "DataNotFoundError", "ImageNotFoundError"]
