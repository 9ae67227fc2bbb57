"""Content hashes the store keys cells by: files (cached), tensors, source code, tables.

**Files** are hashed in full (sha256 of every byte, however large).  The digest is cached
on disk, in a JSON file (``$STUDYLIB_DIGEST_CACHE``, default
``$XDG_CACHE_HOME/studylib/file-digests.json``, i.e. ``~/.cache/studylib/...``), keyed by the
file's real path and validated by its ``(size, mtime_ns, ctime_ns, inode)``: any write to the
file changes its ctime (which no program can set back), so a replaced or edited file is
hashed again, while an unchanged 13 GB checkpoint is hashed once per machine.  The cache is
advisory: a missing, unreadable or unwritable cache only costs hashing again, and concurrent
writers merge their entries (the last atomic replace wins, a lost entry is re-hashed).

**Tensors** (:func:`state_digest`): sha256 over the sorted ``state_dict`` entries (name, shape,
dtype, raw bytes), the identity of weights held in memory.

**Code** (:func:`code_digest`): sha256 of the code that computes a stored number, found from
the objects that run (the scoring module, a pruner's function, a dataset's loader): their
modules and every module of this package, or of the object's own top-level package (a
plug-in's), that they import, at module level or inside a function, transitively.  Each is
digested from its syntax tree with docstrings removed (comments are not in it) as
:func:`ast.unparse` writes it, so a docstring, comment or formatting change keeps every stored
cell and any change to the code gives new ones, without bumping a version by hand.  Code of
other distributions (torch, transformers, ...) is covered by their versions in the key.

**Tables** (:func:`table_checksum`): sha256 of a canonical form of an Arrow table's content
(column names and types, null masks, values of non-null slots, list lengths), independent
of chunking, buffer layout and schema metadata, so a table reads back with the checksum it
was written with exactly when its content is unchanged.
"""

from __future__ import annotations

import ast
import functools
import hashlib
import importlib
import inspect
import json
import os
import sys
from pathlib import Path
from types import ModuleType
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

from studylib.plugins import SOURCE_ATTRIBUTE

BLOCK = 8 * 2**20
CACHE_ENV = "STUDYLIB_DIGEST_CACHE"



def canonical(value: Any) -> str:
    """Canonical JSON (sorted keys, no spaces): the text that store keys hash."""
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def cache_path() -> Path:
    """Where file digests are cached (module docstring)."""
    if os.environ.get(CACHE_ENV):
        return Path(os.environ[CACHE_ENV])
    base = Path(os.environ.get("XDG_CACHE_HOME") or Path.home() / ".cache")
    return base / "studylib" / "file-digests.json"


class _DigestCache:
    """The on-disk digest cache, loaded once per process and per cache path."""

    def __init__(self) -> None:
        self.path: Path | None = None
        self.entries: dict[str, dict] = {}
        self.dirty: dict[str, dict] = {}

    def _load(self) -> None:
        path = cache_path()
        if path != self.path:
            self.path, self.entries, self.dirty = path, self._read(path), {}

    @staticmethod
    def _read(path: Path) -> dict:
        try:
            entries = json.loads(path.read_text())
            return entries if isinstance(entries, dict) else {}
        except (OSError, ValueError):
            return {}

    def get(self, name: str, stamp: dict) -> str | None:
        self._load()
        entry = self.entries.get(name)
        return entry["sha256"] if isinstance(entry, dict) and entry.get("stamp") == stamp else None

    def put(self, name: str, stamp: dict, digest: str) -> None:
        self._load()
        self.entries[name] = self.dirty[name] = {"stamp": stamp, "sha256": digest}

    def save(self) -> None:
        """Merge this process's new entries into the file (atomic replace); errors are ignored."""
        if not self.dirty or self.path is None:
            return
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
            merged = {**self._read(self.path), **self.dirty}
            tmp = self.path.with_name(f".{self.path.name}.{os.getpid()}.tmp")
            tmp.write_text(json.dumps(merged, sort_keys=True))
            os.replace(tmp, self.path)
            self.dirty = {}
        except OSError:
            pass


CACHE = _DigestCache()


def _stamp(path: Path) -> dict:
    stat = path.stat()
    return {"size": stat.st_size, "mtime_ns": stat.st_mtime_ns, "ctime_ns": stat.st_ctime_ns, "ino": stat.st_ino}


def sha256_stream(handle) -> str:
    """sha256 of everything ``handle`` yields, read in blocks of :data:`BLOCK` bytes."""
    digest = hashlib.sha256()
    buffer = memoryview(bytearray(BLOCK))
    while True:
        n = handle.readinto(buffer)
        if not n:
            return digest.hexdigest()
        digest.update(buffer[:n])


def file_digest(path: str | os.PathLike, save: bool = True) -> str:
    """sha256 of the whole file, served from the digest cache while the file is unchanged."""
    path = Path(path).resolve()
    stamp = _stamp(path)
    cached = CACHE.get(str(path), stamp)
    if cached is not None:
        return cached
    with open(path, "rb") as handle:
        digest = sha256_stream(handle)
    if _stamp(path) == stamp:  # not written while we read it
        CACHE.put(str(path), stamp, digest)
        if save:
            CACHE.save()
    return digest


def files_digests(paths) -> list[str]:
    """:func:`file_digest` of many files, saving the cache once at the end."""
    digests = [file_digest(p, save=False) for p in paths]
    CACHE.save()
    return digests


def cached_value(name: str, stamp: dict, compute) -> str:
    """A derived digest (e.g. of weights as loaded from a checkpoint) cached under ``name``
    while ``stamp`` is unchanged; ``compute()`` otherwise."""
    cached = CACHE.get(name, stamp)
    if cached is None:
        cached = compute()
        CACHE.put(name, stamp, cached)
        CACHE.save()
    return cached


def state_digest(module: torch.nn.Module) -> str:
    """sha256 of a module's ``state_dict`` (names, shapes, dtypes, raw bytes)."""
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        tensor = tensor.detach().to("cpu").contiguous()
        digest.update(f"{name}:{tuple(tensor.shape)}:{tensor.dtype};".encode())
        digest.update(tensor.view(-1).view(torch.uint8).numpy().tobytes())
    return digest.hexdigest()


def _docstring_free(tree: ast.Module) -> ast.Module:
    """``tree`` without the docstrings of its module, classes and functions."""
    for node in ast.walk(tree):
        if isinstance(node, (ast.Module, ast.ClassDef, ast.FunctionDef, ast.AsyncFunctionDef)) and node.body:
            first = node.body[0]
            if isinstance(first, ast.Expr) and isinstance(first.value, ast.Constant) and isinstance(first.value.value, str):
                node.body = node.body[1:] or [ast.Pass()]
    return tree


def module_source(module: ModuleType) -> str:
    """The source ``module`` ran from: the text a plug-in file was executed from
    (:func:`studylib.plugins.load_plugin` keeps it), else its file as it is now."""
    kept = getattr(module, SOURCE_ATTRIBUTE, None)
    return kept if kept is not None else Path(inspect.getsourcefile(module)).read_text(encoding="utf-8")


@functools.lru_cache(maxsize=512)
def _parsed(source: str) -> tuple[str, tuple[tuple[int, str, tuple[str, ...]], ...]]:
    """(code without comments and docstrings as :func:`ast.unparse` writes it, every import
    statement as (level, module, names)) of a module's source."""
    tree = _docstring_free(ast.parse(source))
    imports = []
    for node in ast.walk(tree):  # module level and inside functions: a lazy import is code that runs too
        if isinstance(node, ast.Import):
            imports += [(0, alias.name, ()) for alias in node.names]
        elif isinstance(node, ast.ImportFrom):
            imports.append((node.level, node.module or "", tuple(alias.name for alias in node.names)))
    return ast.unparse(tree), tuple(imports)


def _import(name: str) -> ModuleType | None:
    try:
        return sys.modules.get(name) or importlib.import_module(name)
    except ImportError:
        return None


def _imported(module: ModuleType) -> list[ModuleType]:
    """The modules ``module``'s import statements reach; a name imported from a package resolves
    to the module that defines it (``from studylib.pruners import Pruner`` -> the registry
    module, not every pruner the package imports)."""
    out = []
    for level, base, names in _parsed(module_source(module))[1]:
        if level:
            anchor = (module.__package__ or "").split(".")
            base = ".".join(anchor[: len(anchor) - level + 1] + ([base] if base else []))
        if not names:
            out.append(_import(base))
            continue
        parent = _import(base)
        for name in names:
            value = getattr(parent, name, None) if parent is not None else None
            if value is None or name == "*":
                out.append(_import(f"{base}.{name}") if name != "*" else parent)
            elif isinstance(value, ModuleType):
                out.append(value)
            else:
                defining = getattr(value, "__module__", None)
                out.append(sys.modules.get(defining) if isinstance(defining, str) else parent)
    return [m for m in out if m is not None]


def _package_of(module: ModuleType) -> str:
    return module.__name__.split(".")[0]


def code_modules(*objects) -> list[ModuleType]:
    """The modules whose code ``objects`` (modules, functions, classes) run: their own modules
    and, transitively, every module of this package or of their own top-level package that
    those import (module docstring), sorted by name."""
    roots = [obj if isinstance(obj, ModuleType) else sys.modules[obj.__module__] for obj in objects]
    local = {"studylib", *map(_package_of, roots)}
    seen: dict[str, ModuleType] = {}
    todo = list(roots)
    while todo:
        module = todo.pop()
        if module.__name__ in seen or _package_of(module) not in local or getattr(module, "__file__", None) is None:
            continue
        seen[module.__name__] = module
        todo += _imported(module)
    return [seen[name] for name in sorted(seen)]


def code_digest(*objects) -> str:
    """sha256 over (name, code without comments and docstrings) of :func:`code_modules` of
    ``objects``: any change to what runs gives new cells, a comment, docstring or formatting
    change does not."""
    digest = hashlib.sha256()
    for module in code_modules(*objects):
        digest.update(f"{module.__name__}\0{_parsed(module_source(module))[0]}\0".encode())
    return digest.hexdigest()


def _type_name(kind: pa.DataType) -> str:
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        return f"list<{_type_name(kind.value_type)}>"
    if pa.types.is_large_string(kind):
        return "string"
    return str(kind)


def _hash_array(digest, array: pa.Array) -> None:
    if isinstance(array, pa.ChunkedArray):
        array = pa.concat_arrays(array.chunks) if array.num_chunks else pa.array([], array.type)
    digest.update(len(array).to_bytes(8, "little"))
    digest.update(np.packbits(array.is_null().to_numpy(zero_copy_only=False)).tobytes())
    kind = array.type
    values = pc.drop_null(array)
    if pa.types.is_list(kind) or pa.types.is_large_list(kind):
        digest.update(pc.list_value_length(values).to_numpy().astype("<i8").tobytes())
        _hash_array(digest, values.flatten())
    elif pa.types.is_integer(kind) or pa.types.is_floating(kind) or pa.types.is_boolean(kind):
        numbers = values.to_numpy(zero_copy_only=False)
        digest.update(numbers.astype(numbers.dtype.newbyteorder("<")).tobytes())
    elif pa.types.is_string(kind) or pa.types.is_large_string(kind):
        for data in values.cast(pa.large_binary()).to_pylist():  # raw bytes: no UTF-8 decoding
            digest.update(len(data).to_bytes(8, "little") + data)
    else:
        digest.update(canonical(values.to_pylist()).encode())


def table_checksum(table: pa.Table) -> str:
    """Canonical content checksum of ``table`` (module docstring)."""
    digest = hashlib.sha256(f"rows={table.num_rows};".encode())
    for field, column in zip(table.schema, table.columns):
        digest.update(f"{field.name}:{_type_name(field.type)};".encode())
        _hash_array(digest, column)
    return digest.hexdigest()


__all__ = ["CACHE_ENV", "cache_path", "canonical", "cached_value", "code_digest", "code_modules", "file_digest",
           "files_digests", "module_source", "sha256_stream", "state_digest", "table_checksum"]
