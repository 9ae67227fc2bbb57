"""The result store: one **cell** per (model, data, prompts, code, config); damage is never served.

In ``results_dir``::

    <key>.parquet     all rows of the finished cell (written once, atomically)
    <key>.json        manifest: the keyed fields, row count, checksums, wall time, library versions
    <key>.parts/      while computing: part-<batch>.parquet, one per batch of questions
    <key>.lock        the cell's writer lock (:mod:`studylib.sweep.locks`); removed when its writer
                      lets go (consolidated or failed)
    .<file>.<pid>.<hex>.<host>.tmp   a write in progress; one whose writer died is removed when
                      a sweep opens the store (:func:`clean_stale_temporaries`)
    quarantine/       damaged files moved aside (never read again; delete them at will)

``key`` = first 24 hex digits of the sha256 of the canonical JSON of the cell's fields
(:func:`studylib.sweep.plan_sweep` lists them; :mod:`studylib.sweep.identity` says what each
covers).  :data:`STORE_VERSION` is the version of this file layout only: the code that
computes the numbers is in the key as a digest of its source.

**Checksums and ownership.**  Every parquet the store writes (parts and finished cells)
carries, in its key-value metadata ``studylib``, its row count,
:func:`~studylib.sweep.digests.table_checksum` of its content, the key of its cell (``cell``)
and the digest of the cell's question ids in dataset order (``question_ids``,
:func:`question_ids_digest`); a part also records its cell's dataset inputs and config
(``inputs``), from which ``verify`` recomputes those ids.  The manifest records the key,
the question-id digest and the sha256 of the finished file's bytes.  Reading verifies all of
them: a read error, a wrong row count or checksum, file bytes that differ from the manifest (a
flipped byte anywhere, even one the parquet reader would not notice), a file of another cell
(a part copied into the wrong folder) or rows of question ids that are not the dataset's make
the store move the file into ``quarantine/``, warn with the file named
(:class:`StoreIntegrityWarning`), and recompute what it held: a bad part loses only its
questions, a bad cell is computed again.  Nothing a file holds can block a cell for good.

**Reading needs no write access.**  A finished cell (its file, its manifest, no parts) is read
without a lock (:meth:`Cell.peek`): the files are written once, atomically.  Only a writer
takes the lock, quarantines or repairs, so a read-only store renders.

**Resumption.**  The questions of a cell are cut into batches of at most ``batch_size`` (the
batch grid of :mod:`studylib.sweep.run`: the questions of one image together); the rows of the
batches scored since the last part are written as the part ``part-<j>.parquet``, ``j`` its first
batch (temporary file + ``os.replace``: complete or absent).  A rerun reads the
parts, skips their question ids and computes the missing ones batch by batch on the same grid,
so a run killed at any moment loses at most the batches in flight and never duplicates a row.
When every question is done the parts are consolidated into ``<key>.parquet`` (atomic, rows in
dataset order, duplicates dropped), the manifest is written and the parts are removed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import re
import shutil
import socket
import uuid
import warnings
from collections.abc import Sequence
from datetime import datetime, timezone
from pathlib import Path

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
import transformers

import studylib
from studylib.sweep.digests import canonical, sha256_stream, table_checksum
from studylib.sweep.locks import FileLock
from studylib.sweep.scoring import LIST_COLUMNS

STORE_VERSION = 2
QUARANTINE = "quarantine"
META = b"studylib"


class StoreIntegrityWarning(UserWarning):
    """A stored file was unreadable or did not match its checksum; it was quarantined."""


class DamagedFileError(ValueError):
    """A stored parquet cannot be read or does not match its recorded checksum."""


class ReadOnlyStoreError(PermissionError):
    """A cell must be computed or repaired in a store this process cannot write."""


def question_ids_digest(question_ids: Sequence[str]) -> str:
    """sha256 of a cell's question ids in dataset order (recorded in every file of the cell)."""
    return hashlib.sha256(canonical(list(question_ids)).encode()).hexdigest()


def _versions() -> dict:
    return {"python": platform.python_version(), "studylib": getattr(studylib, "__version__", "0.1.0"),
            "torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "pyarrow": pa.__version__}


#: ``.<file>.<pid>.<8 hex>.<host>.tmp``: a temporary file of :func:`_atomic_write` (the host is
#: optional: files of older versions lack it)
TEMPORARY = re.compile(r"^\.(?P<target>.+)\.(?P<pid>\d+)\.[0-9a-f]{8}(?:\.(?P<host>[A-Za-z0-9_-]+))?\.tmp$")


def _host() -> str:
    return re.sub(r"[^A-Za-z0-9_-]", "_", socket.gethostname()) or "host"


def _pid_alive(pid: int) -> bool:
    try:
        os.kill(pid, 0)
    except ProcessLookupError:
        return False
    except PermissionError:
        return True
    return True


def is_stale_temporary(path: Path) -> bool:
    """A temporary file of :func:`_atomic_write` whose writer was killed: written on this host
    by a process that no longer exists (files of other hosts on a shared disk are left alone)."""
    match = TEMPORARY.match(path.name)
    if match is None or match["host"] not in (None, _host()):
        return False
    return not _pid_alive(int(match["pid"]))


def clean_stale_temporaries(root: str | Path) -> list[Path]:
    """Remove the stale temporary files (:func:`is_stale_temporary`) in ``root`` and its cells'
    part folders, e.g. a manifest write killed just after consolidation; returns them."""
    root = Path(root)
    candidates = [*root.glob(".*.tmp"), *root.glob("*.parts/.*.tmp")] if root.is_dir() else []
    removed = []
    for path in (path for path in candidates if is_stale_temporary(path)):
        try:
            path.unlink(missing_ok=True)
        except OSError:  # a read-only store: its next writer cleans up
            continue
        removed.append(path)
    return removed


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then ``os.replace`` onto ``path``: readers see all or nothing; the
    temporary name (:data:`TEMPORARY`) says which process on which host wrote it."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.{_host()}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def file_sha256(path: Path) -> str:
    with open(path, "rb") as handle:
        return sha256_stream(handle)


def write_checked_parquet(path: Path, frame: pd.DataFrame, metadata: dict | None = None) -> dict:
    """Write ``frame`` atomically with its row count and content checksum in the metadata;
    returns that metadata."""
    table = pa.Table.from_pandas(frame, preserve_index=False)
    meta = {**(metadata or {}), "n_rows": table.num_rows, "checksum": table_checksum(table)}
    table = table.replace_schema_metadata({**(table.schema.metadata or {}), META: json.dumps(meta).encode()})
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))
    return meta


def read_checked_parquet(path: Path, file_sha: str | None = None) -> tuple[pd.DataFrame, dict]:
    """(rows, metadata) of a parquet written by :func:`write_checked_parquet`, verified;
    :class:`DamagedFileError` names what is wrong."""
    if file_sha is not None and file_sha256(path) != file_sha:
        raise DamagedFileError(f"{path}: its bytes differ from the sha256 recorded in the manifest")
    try:
        table = pq.read_table(path)
        meta = json.loads((table.schema.metadata or {}).get(META, b"null"))
        if not isinstance(meta, dict) or "checksum" not in meta or "n_rows" not in meta:
            raise DamagedFileError(f"{path}: no row count and checksum in its metadata")
        if table.num_rows != meta["n_rows"]:
            raise DamagedFileError(f"{path}: {table.num_rows} rows, its metadata says {meta['n_rows']}")
        if table_checksum(table) != meta["checksum"]:
            raise DamagedFileError(f"{path}: content does not match its checksum")
        frame = table.to_pandas()
    except DamagedFileError:
        raise
    except Exception as error:  # noqa: BLE001 - pyarrow raises many types for a damaged file
        raise DamagedFileError(f"{path}: unreadable ({type(error).__name__}: {str(error)[:200]})") from None
    for column in LIST_COLUMNS:
        if column in frame:
            frame[column] = [None if v is None else v.tolist() for v in frame[column]]
    return frame, meta


def quarantine(path: Path, root: Path, reason: str) -> Path | None:
    """Move ``path`` into ``root/quarantine/`` (unique name) and warn; ``None`` if it is gone."""
    target_dir = root / QUARANTINE
    target_dir.mkdir(parents=True, exist_ok=True)
    stamp = datetime.now(timezone.utc).strftime("%Y%m%dT%H%M%S")
    relative = path.relative_to(root).as_posix().replace("/", "__")
    target = target_dir / f"{relative}.{stamp}-{uuid.uuid4().hex[:6]}"
    try:
        os.replace(path, target)
    except FileNotFoundError:
        return None
    warnings.warn(f"result store: {reason}; moved {path} to {target} and recomputing what it held",
                  StoreIntegrityWarning, stacklevel=3)
    return target


def ownership_problem(key: str, meta: dict, row_ids: Sequence[str], question_ids: Sequence[str] | None,
                      questions_sha: str | None = None) -> str | None:
    """Why a verified file with metadata ``meta`` and rows of ``row_ids`` is not a file of cell
    ``key`` whose dataset has ``question_ids`` (``None``: ids not checked): another cell's key,
    another question-id digest, or ids the dataset lacks; ``None`` when it is the cell's."""
    if meta.get("cell") != key:
        return f"it belongs to cell {meta.get('cell') or '(none recorded)'}, not {key}"
    if question_ids is None:
        return None
    if meta.get("question_ids") != (questions_sha or question_ids_digest(question_ids)):
        return "its question-id digest is not the dataset's"
    unknown = sorted(set(row_ids) - set(question_ids))
    if unknown:
        return f"it holds {len(unknown)} question id(s) the dataset lacks, e.g. {unknown[:3]}"
    return None


def load_manifest(path: Path) -> dict | None:
    """A manifest's content; ``None`` when it is absent or not a JSON object."""
    try:
        manifest = json.loads(path.read_text())
    except (OSError, ValueError):
        return None
    return manifest if isinstance(manifest, dict) else None


class Cell:
    """The files of one store cell (module docstring); ``question_ids``: the dataset's question
    ids in order (every file of the cell is checked against them; ``None``: not checked)."""

    def __init__(self, root: Path, fields: dict, question_ids: Sequence[str] | None = None):
        self.root = Path(root)
        self.fields = fields
        self.key = hashlib.sha256(canonical(fields).encode()).hexdigest()[:24]
        self.question_ids = None if question_ids is None else tuple(question_ids)
        self.questions_sha = None if question_ids is None else question_ids_digest(question_ids)
        self.parquet = self.root / f"{self.key}.parquet"
        self.manifest = self.root / f"{self.key}.json"
        self.parts_dir = self.root / f"{self.key}.parts"
        self.lock = FileLock(self.root / f"{self.key}.lock")

    @property
    def owner(self) -> dict:
        """The metadata that says a file belongs to this cell."""
        return {"cell": self.key, "question_ids": self.questions_sha}

    def foreign(self, meta: dict, row_ids: Sequence[str] = ()) -> str | None:
        """Why a verified file of this cell's folder is not its own (:func:`ownership_problem`)."""
        return ownership_problem(self.key, meta, row_ids, self.question_ids, self.questions_sha)

    @property
    def complete(self) -> bool:
        return self.parquet.is_file()

    def slice_lock(self, start: int, stop: int, batch_size: int) -> FileLock:
        """The lock of batches ``start..stop-1`` (batch size ``batch_size``) of a sharded run."""
        return FileLock(self.root / f"{self.key}.slice-{start}-{stop}-b{batch_size}.lock")

    def read_manifest(self) -> dict | None:
        """The manifest, ``None`` when absent; an unreadable one is quarantined (then ``None``)."""
        manifest = load_manifest(self.manifest)
        if manifest is None and self.manifest.exists():
            quarantine(self.manifest, self.root, f"manifest {self.manifest.name} is not valid JSON")
        return manifest

    def _finished_rows(self, manifest: dict) -> pd.DataFrame:
        """The finished file's rows, verified against ``manifest`` and this cell;
        :class:`DamagedFileError` says what is wrong."""
        if manifest and manifest.get("key") != self.key:
            raise DamagedFileError(f"{self.manifest}: it is the manifest of cell {manifest.get('key')}, not {self.key}")
        frame, meta = read_checked_parquet(self.parquet, manifest.get("file_sha256"))
        problem = self.foreign(meta, frame["qid"] if "qid" in frame else ())
        if problem is not None:
            raise DamagedFileError(f"{self.parquet}: {problem}")
        return frame

    def peek(self) -> pd.DataFrame | None:
        """The finished cell's rows when it needs no writer (finished file and manifest, both
        this cell's and intact, no parts left); ``None`` otherwise.  Writes nothing and takes
        no lock, so a read-only store is read."""
        manifest = load_manifest(self.manifest)
        if not self.complete or manifest is None or self.parts_dir.exists():
            return None
        try:
            return self._finished_rows(manifest)
        except DamagedFileError:
            return None

    def load(self) -> pd.DataFrame | None:
        """The finished cell's rows, verified; ``None`` when absent or damaged (then quarantined:
        a writer's call)."""
        if not self.complete:
            return None
        manifest = self.read_manifest() or {}
        try:
            return self._finished_rows(manifest)
        except DamagedFileError as error:
            quarantine(self.parquet, self.root, f"finished cell {self.key} is damaged or not its own ({error})")
            if self.manifest.exists():
                quarantine(self.manifest, self.root, f"manifest of the damaged cell {self.key}")
            return None

    def read(self) -> pd.DataFrame:
        """The finished cell's rows; :class:`DamagedFileError` when absent or damaged."""
        frame = self.load()
        if frame is None:
            raise DamagedFileError(f"store cell {self.key} has no valid finished file in {self.root}")
        return frame

    def _parts(self, clean: bool = False) -> list[Path]:
        """The part files; ``clean`` (only under the exclusive lock: no other writer is alive)
        also removes temporary files that killed writes left behind."""
        if clean:
            for stale in [*self.root.glob(f".{self.key}.*.tmp"), *self.parts_dir.glob(".*.tmp")]:
                stale.unlink(missing_ok=True)
        return sorted(self.parts_dir.glob("part-*.parquet")) if self.parts_dir.is_dir() else []

    def read_parts(self, clean: bool = False) -> tuple[pd.DataFrame | None, float]:
        """Rows already stored by earlier (killed) runs or other shards, verified part by part
        (a damaged part, or one of another cell or with question ids that are not the
        dataset's, is quarantined and its questions count as not done), and the compute time
        they took.  ``clean``: see :meth:`_parts`."""
        frames, seconds = [], 0.0
        for part in self._parts(clean):
            try:
                frame, meta = read_checked_parquet(part)
            except DamagedFileError as error:
                quarantine(part, self.root, f"part of cell {self.key} is damaged ({error})")
                continue
            problem = self.foreign(meta, frame["qid"] if "qid" in frame else ())
            if problem is not None:
                quarantine(part, self.root, f"part {part.name} in the folder of cell {self.key} is not its own: "
                                            f"{problem}")
                continue
            frames.append(frame)
            seconds += float(meta.get("seconds", 0.0))
        if not frames:
            return None, 0.0
        return pd.concat(frames, ignore_index=True), seconds

    def write_part(self, rows: pd.DataFrame, seconds: float, batch: int | None = None) -> Path:
        """Store one batch's rows as ``part-<batch>.parquet`` (next free number by default);
        never replaces an existing part (a clash gets a unique suffix)."""
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        if batch is None:
            parts = self._parts()
            batch = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0
        path = self.parts_dir / f"part-{batch:06d}.parquet"
        if path.exists():
            path = self.parts_dir / f"part-{batch:06d}-{uuid.uuid4().hex[:8]}.parquet"
        inputs = {name: self.fields.get(name) for name in ("dataset", "options", "limit", "config")}
        write_checked_parquet(path, rows, {**self.owner, "inputs": inputs, "seconds": seconds, "batch": batch})
        return path

    def finalize(self, order: Sequence[str], info: dict) -> pd.DataFrame:
        """Consolidate the parts into ``<key>.parquet`` (rows in ``order``), write the manifest,
        remove the parts and slice locks.  The caller holds the cell lock exclusively."""
        rows, seconds = self.read_parts(clean=True)
        if rows is None:
            raise RuntimeError(f"store cell {self.key}: no rows to consolidate; rerun to compute them")
        rows = rows.drop_duplicates("qid", keep="first")
        position = {qid: i for i, qid in enumerate(order)}
        missing = set(position) - set(rows["qid"])
        if missing or not set(rows["qid"]) <= set(position):
            raise RuntimeError(f"store cell {self.key}: {len(missing)} question(s) of the dataset have no stored row "
                               f"(parts were removed while consolidating); rerun to compute them")
        rows = rows.iloc[np.argsort([position[q] for q in rows["qid"]], kind="stable")].reset_index(drop=True)
        meta = write_checked_parquet(self.parquet, rows, self.owner)
        self.write_manifest(len(rows), seconds, info, meta["checksum"])
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        for lock in self.root.glob(f"{self.key}.slice-*.lock"):
            lock.unlink(missing_ok=True)
        return rows

    def write_manifest(self, n_rows: int, seconds: float | None, info: dict, checksum: str) -> None:
        manifest = {"key": self.key, "fields": self.fields, **info, "n_rows": n_rows, "checksum": checksum,
                    "question_ids": self.questions_sha, "file_sha256": file_sha256(self.parquet),
                    "wall_time_s": None if seconds is None else round(seconds, 3),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "versions": _versions()}
        _atomic_write(self.manifest, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, default=str)))

    def repair(self, info: dict) -> None:
        """A run killed between consolidation and cleanup: finish the bookkeeping (the finished
        file has been verified by :meth:`load`)."""
        if not self.manifest.is_file():
            meta = json.loads(pq.read_schema(self.parquet).metadata[META])
            self.write_manifest(meta["n_rows"], None, info, meta["checksum"])
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir, ignore_errors=True)


def find_stored(root: Path, fields: dict, unknown: Sequence[str], model_source: str,
                question_ids: Sequence[str] | None = None) -> Cell | None:
    """The finished cell in ``root`` whose recorded fields equal ``fields`` on every field but
    ``unknown`` (inputs that cannot be hashed on this machine) and whose manifest names the
    same model source; ``None`` unless exactly one matches."""
    wanted = {k: canonical(v) for k, v in fields.items() if k not in unknown}
    matches = []
    for path in sorted(root.glob("*.json")):
        manifest = load_manifest(path)
        recorded = (manifest or {}).get("fields")
        if (isinstance(recorded, dict) and manifest.get("model_source") == model_source
                and {k: canonical(v) for k, v in recorded.items() if k not in unknown} == wanted):
            matches.append(Cell(root, recorded, question_ids))
    return matches[0] if len(matches) == 1 and matches[0].complete else None


def list_cells(results_dir: str | Path = "results") -> pd.DataFrame:
    """One row per finished cell in ``results_dir`` (from the manifests): key, model, dataset,
    options, limit, config, n_rows, wall_time_s, finished."""
    columns = ["key", "model", "dataset", "options", "limit", "config", "n_rows", "wall_time_s", "finished"]
    manifests = [load_manifest(path) for path in sorted(Path(results_dir).glob("*.json"))]
    records = [{column: manifest.get(column) for column in columns} for manifest in manifests if manifest]
    return pd.DataFrame(records, columns=columns)


__all__ = ["Cell", "DamagedFileError", "ReadOnlyStoreError", "STORE_VERSION", "StoreIntegrityWarning", "TEMPORARY",
           "clean_stale_temporaries", "find_stored", "is_stale_temporary", "list_cells", "load_manifest",
           "ownership_problem", "question_ids_digest", "quarantine", "read_checked_parquet", "write_checked_parquet"]

