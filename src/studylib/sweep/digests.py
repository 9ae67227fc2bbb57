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

**Code** (:func:`code_digest`): sha256 of the source files whose code computes a stored
number (:data:`CODE_PACKAGES` and the metrics modules the scoring path calls), so editing
them gives new cells without bumping a version by hand.

**Tables** (:func:`table_checksum`): sha256 of a canonical form of an Arrow table's content
(column names and types, null masks, values of non-null slots, list lengths), independent
of chunking, buffer layout and schema metadata, so a table reads back with the checksum it
was written with exactly when its content is unchanged.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
from pathlib import Path
from typing import Any

import numpy as np
import pyarrow as pa
import pyarrow.compute as pc
import torch

import studylib
from studylib.metrics import attention_entropy, chair, chair_vocabulary, effective_rank

BLOCK = 8 * 2**20
CACHE_ENV = "STUDYLIB_DIGEST_CACHE"

#: Source whose edits change stored numbers: the scoring path, the visual-token records, the
#: model adapter / loading / prompts, the pruners (paths relative to the studylib package).
CODE_PACKAGES = ("sweep/scoring.py", "tokens.py", "models", "pruners")


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


def code_files() -> list[Path]:
    """The source files :func:`code_digest` covers, sorted (module docstring)."""
    root = Path(studylib.__file__).parent
    files = set()
    for entry in CODE_PACKAGES:
        path = root / entry
        files.update(path.rglob("*.py") if path.is_dir() else [path])
    files.update(Path(inspect.getsourcefile(fn)) for fn in (attention_entropy, chair, chair_vocabulary,
                                                               effective_rank))
    return sorted(f.resolve() for f in files)


def code_digest() -> str:
    """sha256 over the (package-relative path, source bytes with ``\\r\\n`` as ``\\n``) of
    :func:`code_files`: any edit to them, comments included, gives new cells."""
    root = Path(studylib.__file__).parent.resolve()
    digest = hashlib.sha256()
    for path in code_files():
        digest.update(f"{path.relative_to(root).as_posix()}\0".encode())
        digest.update(path.read_bytes().replace(b"\r\n", b"\n"))
        digest.update(b"\0")
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


__all__ = ["CACHE_ENV", "CODE_PACKAGES", "cache_path", "canonical", "cached_value", "code_digest", "code_files", "file_digest",
           "files_digests", "sha256_stream", "state_digest", "table_checksum"]
