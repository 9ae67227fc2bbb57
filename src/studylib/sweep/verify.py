"""Check a result store: every cell ok, stale, damaged, partial or orphaned; optionally prune.

    python -m studylib.sweep.verify results/toy            # print the table (exit 1 if damaged)
    python -m studylib.sweep.verify results/toy --prune    # remove what no current key reaches

Statuses (one row per key found in the directory):

* ``ok``: the finished file reads back with its checksums, and the key recomputed from the
  manifest's recorded inputs (model source, dataset, options, limit, config, dtype) with
  today's code, weights, data, prompts and images is the cell's key;
* ``stale key``: it reads back fine but its key is no longer current (``detail`` names the
  fields that changed); no sweep with these recorded inputs would read it again;
* ``unchecked``: its inputs cannot be recomputed here (data or checkpoint missing, a model
  that only existed in memory whose other inputs are current); kept by ``--prune``;
* ``damaged``: unreadable, or not matching its checksums;
* ``partial``: part files of an unfinished cell (a later run resumes them); kept;
* ``orphaned``: a manifest without its finished file, lock files of a key with nothing
  else, temporary files of killed writes.

``--prune`` deletes ``stale key`` and ``orphaned`` files (and their parts and locks), moves
``damaged`` ones into ``quarantine/``, and skips any cell whose lock is held by a writer.
"""

from __future__ import annotations

import argparse
import shutil
import sys
from pathlib import Path

import pandas as pd

from studylib.sweep.digests import canonical
from studylib.sweep.grid import StudyParameterError
from studylib.sweep.identity import config_fields, image_digests, key_fields, model_identity
from studylib.sweep.locks import FileLock
from studylib.sweep.store import QUARANTINE, DamagedFileError, load_manifest, quarantine, read_checked_parquet
from studylib.sweep.validate import load_checked_dataset, select_questions

KEY_LENGTH = 24
COLUMNS = ["key", "status", "config", "dataset", "n_rows", "detail"]


def _keys(root: Path) -> dict[str, list[Path]]:
    """Files of the store by key (the name up to its first dot, or after a leading dot)."""
    found: dict[str, list[Path]] = {}
    for path in sorted(root.iterdir()):
        if path.name == QUARANTINE:
            continue
        key = path.name.lstrip(".").split(".")[0]
        if len(key) == KEY_LENGTH and all(c in "0123456789abcdef" for c in key):
            found.setdefault(key, []).append(path)
    return found


class _Inputs:
    """Recomputes key fields from a manifest, caching datasets and model identities."""

    def __init__(self) -> None:
        self.fields: dict[str, dict] = {}
        self.models: dict[str, dict] = {}

    def _model(self, manifest: dict) -> dict:
        recorded = manifest["fields"]["model"]
        source = manifest.get("model_source")
        if manifest.get("in_memory") and "parameters_sha256" in recorded:
            return recorded  # weights that only existed in memory: not re-checkable
        if not source:
            raise StudyParameterError("the manifest records no model source")
        if source not in self.models:
            self.models[source] = model_identity(source)
        return self.models[source]

    def current(self, manifest: dict) -> dict:
        fields = manifest["fields"]
        options = manifest.get("options", fields["options"])
        name = repr((fields["dataset"], options, manifest.get("limit"), fields.get("max_new_tokens")))
        if name not in self.fields:
            data = load_checked_dataset(fields["dataset"], dict(options))
            questions = select_questions(data, manifest.get("limit"))
            images = image_digests(data, list(dict.fromkeys(q.image_key for q in questions)))
            self.fields[name] = key_fields({}, "", fields["dataset"], dict(options), manifest.get("limit"), data,
                                           questions, fields.get("max_new_tokens", 64), images)
        return {**self.fields[name], "model": self._model(manifest), "dtype": fields["dtype"],
                **config_fields(fields["config"])}


def _check_finished(cell_files: dict, inputs: _Inputs) -> tuple[str, str, dict]:
    parquet, manifest_path = cell_files.get("parquet"), cell_files.get("json")
    manifest = load_manifest(manifest_path) if manifest_path else None
    try:
        frame, _ = read_checked_parquet(parquet, (manifest or {}).get("file_sha256"))
    except DamagedFileError as error:
        return "damaged", str(error), manifest or {}
    if manifest is None:
        return "unchecked", "no manifest (the next run writes it)", {"n_rows": len(frame)}
    try:
        current = inputs.current(manifest)
    except (StudyParameterError, KeyError, OSError, ValueError) as error:
        return "unchecked", f"inputs not available here: {str(error).splitlines()[0][:160]}", manifest
    recorded = manifest["fields"]
    changed = sorted(k for k in set(current) | set(recorded) if canonical(current.get(k)) != canonical(recorded.get(k)))
    if changed:
        return "stale key", "changed: " + ", ".join(changed), manifest
    return "ok", "", manifest


def verify(results_dir: str | Path, prune: bool = False) -> pd.DataFrame:
    """The status table of every key in ``results_dir`` (module docstring); ``prune`` acts on it."""
    root = Path(results_dir)
    if not root.is_dir():
        raise StudyParameterError(f"no result store at {root}; pass a results directory such as results/toy")
    inputs, records = _Inputs(), []
    for key, paths in _keys(root).items():
        kinds = {p.name[len(key) + 1:] if not p.name.startswith(".") else "tmp": p for p in paths}
        if "parquet" in kinds:
            status, detail, manifest = _check_finished(kinds, inputs)
        elif "parts" in kinds:
            status, detail, manifest = "partial", f"{len(list(kinds['parts'].glob('part-*.parquet')))} part file(s)", {}
        else:
            status, detail, manifest = "orphaned", ", ".join(sorted(p.name for p in paths)), {}
        fields = manifest.get("fields", {}) if isinstance(manifest, dict) else {}
        records.append({"key": key, "status": status, "config": fields.get("config"),
                        "dataset": fields.get("dataset"), "n_rows": manifest.get("n_rows"), "detail": detail})
        if prune:
            records[-1]["detail"] += _prune(root, key, status, paths)
    return pd.DataFrame(records, columns=COLUMNS)


def _prune(root: Path, key: str, status: str, paths: list[Path]) -> str:
    if status not in ("stale key", "orphaned", "damaged"):
        return ""
    lock = FileLock(root / f"{key}.lock")
    if not lock.acquire(block=False):
        return " (locked by a writer: kept)"
    try:
        for path in paths:
            if path.suffix == ".lock" or not path.exists():
                continue
            if status == "damaged" and path.suffix == ".parquet":
                quarantine(path, root, f"verify --prune: {path.name} is damaged")
            elif path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            else:
                path.unlink(missing_ok=True)
        for lock in root.glob(f"{key}.slice-*.lock"):
            lock.unlink(missing_ok=True)
    finally:
        lock.release(unlink=True)
    return " [pruned]"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studylib.sweep.verify", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", help="a result store, e.g. results/toy")
    parser.add_argument("--prune", action="store_true", help="remove stale and orphaned files, quarantine damaged ones")
    args = parser.parse_args(argv)
    try:
        table = verify(args.results_dir, prune=args.prune)
    except StudyParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with pd.option_context("display.max_colwidth", 90, "display.width", 200):
        print(table.to_string(index=False) if len(table) else f"{args.results_dir}: empty store")
    print("\n" + ", ".join(f"{n} {s}" for s, n in table["status"].value_counts().items()))
    return 1 if (table["status"] == "damaged").any() and not args.prune else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["main", "verify"]
