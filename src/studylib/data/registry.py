"""The registry of datasets by name: loaders register here, plug-ins included.

The benchmark loaders of this package (``pope``, ``pope-lmms``, ``scienceqa``,
``scienceqa-lmms``, ``coco-captions``, ``mme``, ``mme-lmms``) register on import of
:mod:`studylib.data`; the toy world (``toy-pope``, ``toy-scienceqa``, ``toy-captions``) and
outside datasets register from their own modules, loaded as plug-ins (:mod:`studylib.plugins`)
the first time a name is looked up.
"""

from __future__ import annotations

from typing import Callable

from studylib.data.records import Dataset
from studylib.plugins import load_plugins

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
    """Registered dataset names (plug-ins loaded first), sorted."""
    load_plugins()
    return sorted(_LOADERS)


def dataset_loader(name: str) -> Callable[..., Dataset]:
    """The registered loader function of ``name`` (its signature lists the options)."""
    load_plugins()
    try:
        return _LOADERS[name]
    except KeyError:
        raise ValueError(f"unknown dataset {name!r}; choose one of {list_datasets()} (a dataset of your own: "
                         f"register it in a plug-in, see studylib.plugins)") from None


__all__ = ["dataset_loader", "list_datasets", "register_dataset"]
