"""The result store: one **cell** per (model identity, dataset + options + limit, config).

In ``results_dir``::

    <key>.parquet     all rows of the finished cell (written once, atomically)
    <key>.json        manifest: the keyed fields, row count, wall time, library versions
    <key>.parts/      while computing: part-000000.parquet, part-000001.parquet, ...

``key`` = first 24 hex digits of the sha256 of the canonical JSON (sorted keys, no spaces) of
the cell's fields (:func:`studylib.sweep.plan_sweep` lists them: store version, model identity,
dtype, dataset, options, limit, questions digest, config, and ``max_new_tokens`` for captions).

Resumption: rows are computed batch by batch and each batch is written as one part file
(temporary file + ``os.replace``, so a part is either complete or absent).  A rerun reads the
parts, skips their question ids and goes on from there, so a run killed at any moment loses
at most the batch in flight and never duplicates a row.  When every question is done the
parts are consolidated into ``<key>.parquet`` (atomic), the manifest is written, and the
parts are removed.  A finished cell is read, never recomputed.
"""

from __future__ import annotations

import hashlib
import json
import os
import platform
import shutil
import uuid
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
from studylib.sweep.identity import canonical
from studylib.sweep.scoring import LIST_COLUMNS

STORE_VERSION = 1


def _versions() -> dict:
    return {"python": platform.python_version(), "studylib": getattr(studylib, "__version__", "0.1.0"),
            "torch": torch.__version__, "transformers": transformers.__version__, "numpy": np.__version__,
            "pandas": pd.__version__, "pyarrow": pa.__version__}


def _atomic_write(path: Path, write) -> None:
    """``write(tmp_path)`` then ``os.replace`` onto ``path``: readers see all or nothing."""
    tmp = path.with_name(f".{path.name}.{os.getpid()}.{uuid.uuid4().hex[:8]}.tmp")
    try:
        write(tmp)
        with open(tmp, "rb") as handle:
            os.fsync(handle.fileno())
        os.replace(tmp, path)
    finally:
        if tmp.exists():
            tmp.unlink()


def _write_parquet(path: Path, frame: pd.DataFrame, metadata: dict | None = None) -> None:
    table = pa.Table.from_pandas(frame, preserve_index=False)
    if metadata:
        table = table.replace_schema_metadata({**(table.schema.metadata or {}),
                                               b"studylib": json.dumps(metadata).encode()})
    _atomic_write(path, lambda tmp: pq.write_table(table, tmp))


def _read_parquet(path: Path) -> pd.DataFrame:
    frame = pq.read_table(path).to_pandas()
    for column in LIST_COLUMNS:
        if column in frame:
            frame[column] = [None if v is None else v.tolist() for v in frame[column]]
    return frame


class Cell:
    """The files of one store cell (module docstring)."""

    def __init__(self, root: Path, fields: dict):
        self.root = root
        self.fields = fields
        self.key = hashlib.sha256(canonical(fields).encode()).hexdigest()[:24]
        self.parquet = root / f"{self.key}.parquet"
        self.manifest = root / f"{self.key}.json"
        self.parts_dir = root / f"{self.key}.parts"

    @property
    def complete(self) -> bool:
        return self.parquet.is_file()

    def read(self) -> pd.DataFrame:
        return _read_parquet(self.parquet)

    def _parts(self) -> list[Path]:
        for stale in self.root.glob(f".{self.key}.*.tmp"):  # a consolidation killed mid-write
            stale.unlink(missing_ok=True)
        if not self.parts_dir.is_dir():
            return []
        for stale in self.parts_dir.glob(".*.tmp"):  # a killed write; never visible as a part
            stale.unlink(missing_ok=True)
        return sorted(self.parts_dir.glob("part-*.parquet"))

    def read_parts(self) -> tuple[pd.DataFrame | None, float]:
        """Rows already stored by earlier (killed) runs and the compute time they took."""
        frames, seconds = [], 0.0
        for part in self._parts():
            frames.append(_read_parquet(part))
            meta = pq.read_schema(part).metadata or {}
            seconds += json.loads(meta.get(b"studylib", b"{}")).get("seconds", 0.0)
        if not frames:
            return None, 0.0
        return pd.concat(frames, ignore_index=True), seconds

    def write_part(self, rows: pd.DataFrame, seconds: float) -> None:
        self.parts_dir.mkdir(parents=True, exist_ok=True)
        parts = self._parts()
        number = int(parts[-1].stem.split("-")[1]) + 1 if parts else 0
        _write_parquet(self.parts_dir / f"part-{number:06d}.parquet", rows, {"seconds": seconds})

    def finalize(self, order: Sequence[str], info: dict) -> pd.DataFrame:
        """Consolidate the parts into ``<key>.parquet`` (rows in ``order``) and write the manifest."""
        rows, seconds = self.read_parts()
        if rows is None:
            raise RuntimeError(f"store cell {self.key}: no rows to consolidate")
        rows = rows.drop_duplicates("qid", keep="first")
        position = {qid: i for i, qid in enumerate(order)}
        if set(rows["qid"]) != set(position):
            raise RuntimeError(f"store cell {self.key}: stored question ids do not match the dataset's "
                               f"({len(rows)} stored, {len(position)} expected)")
        rows = rows.iloc[np.argsort([position[q] for q in rows["qid"]], kind="stable")].reset_index(drop=True)
        _write_parquet(self.parquet, rows)
        self.write_manifest(len(rows), seconds, info)
        shutil.rmtree(self.parts_dir, ignore_errors=True)
        return self.read()

    def write_manifest(self, n_rows: int, seconds: float | None, info: dict) -> None:
        manifest = {"key": self.key, "fields": self.fields, **info, "n_rows": n_rows,
                    "wall_time_s": None if seconds is None else round(seconds, 3),
                    "finished": datetime.now(timezone.utc).isoformat(timespec="seconds"),
                    "versions": _versions()}
        _atomic_write(self.manifest, lambda tmp: tmp.write_text(json.dumps(manifest, indent=2, default=str)))

    def repair(self, info: dict) -> None:
        """A run killed between consolidation and cleanup: finish the bookkeeping."""
        if not self.manifest.is_file():
            self.write_manifest(pq.read_metadata(self.parquet).num_rows, None, info)
        if self.parts_dir.exists():
            shutil.rmtree(self.parts_dir, ignore_errors=True)


def list_cells(results_dir: str | Path = "results") -> pd.DataFrame:
    """One row per finished cell in ``results_dir`` (from the manifests): key, model, dataset,
    options, limit, config, n_rows, wall_time_s, finished."""
    records = []
    for path in sorted(Path(results_dir).glob("*.json")):
        manifest = json.loads(path.read_text())
        records.append({"key": manifest.get("key"), "model": manifest.get("model"),
                        "dataset": manifest.get("dataset"), "options": manifest.get("options"),
                        "limit": manifest.get("limit"), "config": manifest.get("config"),
                        "n_rows": manifest.get("n_rows"), "wall_time_s": manifest.get("wall_time_s"),
                        "finished": manifest.get("finished")})
    return pd.DataFrame(records, columns=["key", "model", "dataset", "options", "limit", "config", "n_rows",
                                          "wall_time_s", "finished"])


__all__ = ["Cell", "STORE_VERSION", "list_cells"]
