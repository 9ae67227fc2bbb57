"""Plug-ins: pruners and datasets from outside the package, found the Python way.

A plug-in is a module that registers pruners (:func:`studylib.pruners.register`) or datasets
(:func:`studylib.data.register_dataset`) when it is imported.  It reaches every registry lookup
(``get_pruner``, ``list_pruners``, ``load_dataset``, ...) in three ways:

* **entry points** of an installed distribution, in the groups :data:`GROUPS`::

      [project.entry-points."studylib.pruners"]
      l2norm = "mypruners.l2norm"

* **files** named in the environment variable :data:`ENV` (paths separated by ``os.pathsep``):
  ``scripts/build_book.py --plugin path.py`` (or a profile's ``plugins: [...]``) sets it, so
  the build's parameter check and every papermill kernel load the same files;
* :func:`load_plugin` called in a session.

Plug-ins are imported once per process, the first time a registry is asked for a name, so a
pruner named in a spec string works in any process that can see the plug-in.  The toy world's
datasets are registered the same way (:data:`BUILTIN`): the data package does not import the
toy package.  A plug-in's code is part of the store key of every cell that uses it
(:func:`studylib.sweep.digests.code_digest`), so editing its logic recomputes those cells and
editing its docstrings or comments does not.
"""

from __future__ import annotations

import importlib
import importlib.util
import os
import sys
from importlib.metadata import entry_points
from pathlib import Path
from types import ModuleType

#: the entry-point groups plug-ins are declared in
GROUPS = ("studylib.pruners", "studylib.datasets")
#: plug-in files to load in every process (``os.pathsep``-separated paths)
ENV = "STUDYLIB_PLUGINS"
#: modules of this package that register themselves like plug-ins (no registry imports them)
BUILTIN = ("studylib.toy.world",)
#: the prefix of the module name a plug-in file is imported under (``studylib_plugin_<stem>``)
FILE_PREFIX = "studylib_plugin_"
#: the attribute in which a plug-in module loaded from a file keeps the source it ran (the store key digests it)
SOURCE_ATTRIBUTE = "__studylib_source__"

_state = {"loaded": False, "env": ""}
_files: dict[str, Path] = {}  # module name -> plug-in file


class PluginError(ImportError):
    """A plug-in cannot be found or fails to import; the message names it and the fix."""


def plugin_paths() -> list[Path]:
    """The plug-in files of :data:`ENV`, resolved, in order."""
    return [Path(p).expanduser().resolve() for p in os.environ.get(ENV, "").split(os.pathsep) if p.strip()]


def load_plugin(path: str | os.PathLike) -> ModuleType:
    """Import the plug-in file ``path`` as module ``studylib_plugin_<stem>`` (once per process)."""
    path = Path(path).expanduser().resolve()
    if path.suffix != ".py" or not path.is_file():
        raise PluginError(f"plug-in {path}: no such Python file; pass the path of a .py file that registers pruners "
                          f"or datasets (see the README's section on plug-ins)")
    name = FILE_PREFIX + "".join(c if c.isalnum() else "_" for c in path.stem)
    if name in _files:
        if _files[name] != path:
            raise PluginError(f"plug-ins {_files[name]} and {path} have the same file name; rename one of them")
        return sys.modules[name]
    module = importlib.util.module_from_spec(importlib.util.spec_from_file_location(name, path))
    sys.modules[name] = module
    _files[name] = path
    try:
        source = path.read_text(encoding="utf-8")
        setattr(module, SOURCE_ATTRIBUTE, source)  # what ran, even if the file is edited later in this process
        exec(compile(source, str(path), "exec"), module.__dict__)  # noqa: S102 - importing the user's plug-in
    except Exception as error:  # noqa: BLE001 - any error of the user's file is reported with its name
        del sys.modules[name], _files[name]
        raise PluginError(f"plug-in {path} failed to import: {type(error).__name__}: {error}") from error
    return module


def _load_entry_point(point) -> None:
    try:
        point.load()
    except Exception as error:  # noqa: BLE001
        raise PluginError(f"plug-in entry point {point.name} = {point.value} (group {point.group}) failed to "
                          f"import: {type(error).__name__}: {error}; fix or uninstall the distribution that "
                          f"declares it") from error


def load_plugins() -> None:
    """Import the built-in self-registering modules, every entry point of :data:`GROUPS` and every
    file of :data:`ENV`, once per process (later calls return at once; a file added to
    :data:`ENV` later is loaded by the next call)."""
    if not _state["loaded"]:
        _state["loaded"] = True  # set first: a plug-in that looks a name up while importing must not recurse
        try:
            for module in BUILTIN:
                importlib.import_module(module)
            for group in GROUPS:
                for point in sorted(entry_points(group=group), key=lambda p: (p.name, p.value)):
                    _load_entry_point(point)
        except BaseException:
            _state["loaded"] = False  # the next lookup reports the same error instead of missing names
            raise
    if os.environ.get(ENV, "") != _state["env"]:  # cheap when nothing changed: lookups call this often
        for path in plugin_paths():
            if path not in _files.values():
                load_plugin(path)
        _state["env"] = os.environ.get(ENV, "")


def plugin_files() -> dict[str, Path]:
    """Module name -> file of every plug-in file loaded in this process."""
    return dict(_files)


__all__ = ["BUILTIN", "ENV", "GROUPS", "PluginError", "SOURCE_ATTRIBUTE", "load_plugin", "load_plugins", "plugin_files", "plugin_paths"]
