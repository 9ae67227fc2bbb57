"""Check a result store: every cell ok, stale, damaged, partial or orphaned; optionally prune.

    python -m studylib.sweep.verify results/toy            # print the table (exit 1 if damaged)
    python -m studylib.sweep.verify results/toy --prune    # list, then remove what no current key reaches

Statuses (one row per key found in the directory):

* ``ok``: the finished file reads back with its checksums, is this cell's (its metadata and
  manifest name this key), and the key recomputed from the manifest's recorded inputs (model
  source, dataset, options, limit, config, dtype) with today's code, weights, data, prompts and
  images is the cell's key;
* ``stale key``: it reads back fine but its key is no longer current (``detail`` names the
  fields that changed); no sweep with these recorded inputs would read it again;
* ``unchecked``: its inputs cannot be recomputed here (data or checkpoint missing, a model
  that only existed in memory whose other inputs are current); kept by ``--prune``;
* ``damaged``: unreadable, not matching its checksums, or the file of another cell;
* ``partial``: part files of an unfinished cell (a later run resumes them); kept;
* ``bad parts``: an unfinished cell with parts that are damaged, belong to another cell (their
  metadata names its key) or hold question ids that are not the dataset's (recomputed from the
  dataset inputs the parts record); a run quarantines them and recomputes their questions;
* ``orphaned``: a manifest without its finished file, lock files of a key with nothing
  else, temporary files of killed writes;
* ``not a store file``: only files named like a key that the store did not write (a manifest
  must be a JSON object naming this key, a lock file empty or naming its holder).

The ``action`` column says what ``--prune`` does.  ``--prune`` first lists every file it will
remove or quarantine, then deletes ``stale key`` and ``orphaned`` files (with their parts and
locks), moves ``damaged`` files and bad parts into ``quarantine/``, skips any cell whose lock
is held by a writer, and never touches a file the store did not write (recognised by its
metadata: see :func:`store_files`).
"""

from __future__ import annotations

import argparse
import json
import shutil
import sys
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd

from studylib.sweep.digests import canonical
from studylib.sweep.grid import StudyParameterError
from studylib.sweep.identity import config_fields, image_digests, key_fields, model_identity
from studylib.sweep.locks import FileLock
from studylib.sweep.store import (QUARANTINE, TEMPORARY, DamagedFileError, is_stale_temporary, load_manifest,
                                  ownership_problem, quarantine, read_checked_parquet)
from studylib.sweep.validate import load_checked_dataset, select_questions

KEY_LENGTH = 24
COLUMNS = ["key", "status", "config", "dataset", "n_rows", "detail", "action"]


def _key_of(name: str) -> str | None:
    """The key a file name belongs to (the name up to its first dot, or after a leading dot)."""
    key = name.lstrip(".").split(".")[0]
    return key if len(key) == KEY_LENGTH and all(c in "0123456789abcdef" for c in key) else None


@dataclass
class KeyFiles:
    """The files named after one key, sorted into what the store wrote and what it did not."""

    key: str
    parquet: Path | None = None
    manifest: Path | None = None
    parts: Path | None = None
    locks: list[Path] = field(default_factory=list)
    temporaries: list[Path] = field(default_factory=list)
    others: list[Path] = field(default_factory=list)

    @property
    def removable(self) -> list[Path]:
        """Everything the store wrote for this key (what ``--prune`` may delete)."""
        own = [self.parquet, self.manifest, self.parts]
        return [p for p in own if p is not None] + self.locks + self.temporaries


def _is_manifest(path: Path, key: str) -> bool:
    manifest = load_manifest(path)
    return manifest is not None and manifest.get("key") == key and isinstance(manifest.get("fields"), dict)


def _is_lock(path: Path) -> bool:
    try:
        text = path.read_text()
        return not text.strip() or "pid" in json.loads(text)
    except (OSError, ValueError, TypeError):
        return False


def store_files(root: Path) -> dict[str, KeyFiles]:
    """The files of ``root`` by key.  The store's own are recognised by their content: a
    manifest names its key, a lock file is empty or names its holder, a temporary file has the
    store's name pattern; a finished file or parts folder is the store's by its name (damage
    is quarantined, never deleted).  Anything else named like a key goes to ``others``."""
    found: dict[str, KeyFiles] = {}
    for path in sorted(root.iterdir()):
        key = _key_of(path.name)
        if key is None or path.name == QUARANTINE:
            continue
        files = found.setdefault(key, KeyFiles(key))
        rest = path.name[len(key) + 1:]
        if path.name.startswith(".") and TEMPORARY.match(path.name):
            files.temporaries.append(path)
        elif rest == "parquet" and path.is_file():
            files.parquet = path
        elif rest == "json" and path.is_file() and _is_manifest(path, key):
            files.manifest = path
        elif rest == "parts" and path.is_dir():
            files.parts = path
        elif rest.endswith("lock") and (rest == "lock" or rest.startswith("slice-")) and _is_lock(path):
            files.locks.append(path)
        else:
            files.others.append(path)
    return found


class _Inputs:
    """Recomputes key fields from a manifest, and question ids from dataset inputs, caching
    datasets and model identities."""

    def __init__(self) -> None:
        self.fields: dict[str, dict] = {}
        self.models: dict[str, dict] = {}
        self.qids: dict[str, list[str]] = {}

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

    def question_ids(self, inputs: dict) -> list[str]:
        """The question ids, in order, of the dataset inputs a part records."""
        name = canonical(inputs)
        if name not in self.qids:
            data = load_checked_dataset(inputs["dataset"], dict(inputs["options"]))
            self.qids[name] = [q.qid for q in select_questions(data, inputs.get("limit"))]
        return self.qids[name]


def _check_finished(files: KeyFiles, inputs: _Inputs) -> tuple[str, str, dict]:
    manifest = load_manifest(files.manifest) if files.manifest else None
    try:
        frame, meta = read_checked_parquet(files.parquet, (manifest or {}).get("file_sha256"))
    except DamagedFileError as error:
        return "damaged", str(error), manifest or {}
    if meta.get("cell") != files.key:
        return "damaged", f"{files.parquet.name} is the file of cell {meta.get('cell') or '(none recorded)'}", {}
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


def bad_parts(files: KeyFiles, inputs: _Inputs) -> tuple[dict[Path, str], str, dict]:
    """The parts of an unfinished cell that a run would quarantine, with why (damaged, another
    cell's, question ids that are not the dataset's, recomputed from the dataset inputs its
    parts record), a note when that dataset is not here, and those inputs."""
    bad, read = {}, {}
    for part in sorted(files.parts.glob("part-*.parquet")):
        try:
            read[part] = read_checked_parquet(part)
        except DamagedFileError as error:
            bad[part] = f"damaged ({error})"
    recorded = next((meta["inputs"] for _, meta in read.values()
                     if meta.get("cell") == files.key and isinstance(meta.get("inputs"), dict)), {})
    try:
        qids, note = inputs.question_ids(recorded), ""
    except (StudyParameterError, KeyError, TypeError, OSError, ValueError) as error:
        qids, note = None, f"; question ids unchecked (dataset not available here: {str(error).splitlines()[0][:120]})"
    for part, (frame, meta) in read.items():
        problem = ownership_problem(files.key, meta, frame.get("qid", ()), qids)
        if problem is not None:
            bad[part] = problem
    return dict(sorted(bad.items())), note, recorded


def _status(files: KeyFiles, inputs: _Inputs) -> tuple[str, str, dict, dict[Path, str]]:
    """(status, detail, manifest, parts to quarantine) of one key."""
    if files.parquet is not None:
        return (*_check_finished(files, inputs), {})
    if files.parts is not None:
        bad, note, recorded = bad_parts(files, inputs)
        n_parts = len(list(files.parts.glob("part-*.parquet")))
        cell = {"fields": recorded}
        if bad:
            why = "; ".join(f"{p.name}: {reason}" for p, reason in bad.items())
            return "bad parts", f"{len(bad)} of {n_parts} part file(s) a run would quarantine: {why}{note}", cell, bad
        return "partial", f"{n_parts} part file(s){note}", cell, {}
    if files.manifest or files.locks or files.temporaries:
        return "orphaned", ", ".join(p.name for p in files.removable), {}, {}
    return "not a store file", "", {}, {}


def _plan(files: KeyFiles, status: str, bad: dict[Path, str]) -> tuple[list[Path], list[Path]]:
    """(files --prune removes, files it quarantines) for one key."""
    if status in ("stale key", "orphaned"):
        removable = files.removable
        if status == "orphaned":  # temporaries of live writers or other hosts stay
            removable = [p for p in removable if p not in files.temporaries or is_stale_temporary(p)]
        return removable, []
    if status == "damaged":
        return [p for p in files.locks + files.temporaries if p.suffix == ".lock" or is_stale_temporary(p)], \
            [p for p in (files.parquet, files.manifest) if p is not None]
    if status == "bad parts":
        return [], list(bad)
    return [], []


def _action(remove: list[Path], move: list[Path], others: list[Path]) -> str:
    words = ([f"remove {', '.join(p.name for p in remove)}"] if remove else []) + \
            ([f"quarantine {', '.join(p.name for p in move)}"] if move else [])
    kept = f"keep {', '.join(p.name for p in others)} (not written by the store)" if others else ""
    return "; ".join(words + ([kept] if kept else [])) or "keep"


def verify(results_dir: str | Path, prune: bool = False, report=print) -> pd.DataFrame:
    """The status table of every key in ``results_dir`` (module docstring); ``prune`` acts on
    it after ``report``-ing every file it removes or quarantines."""
    root = Path(results_dir).expanduser()
    if not root.is_dir():
        raise StudyParameterError(f"no result store at {root}; pass a results directory such as results/toy")
    inputs, records, plans = _Inputs(), [], []
    for key, files in store_files(root).items():
        status, detail, manifest, bad = _status(files, inputs)
        remove, move = _plan(files, status, bad)
        fields = manifest.get("fields", {}) if isinstance(manifest, dict) else {}
        records.append({"key": key, "status": status, "config": fields.get("config"), "dataset": fields.get("dataset"),
                        "n_rows": manifest.get("n_rows"), "detail": detail,
                        "action": _action(remove, move, files.others)})
        if remove or move:
            plans.append((files, remove, move))
    if prune and plans:
        listed = [f"  remove {p}" for _, remove, _ in plans for p in remove]
        listed += [f"  quarantine {p}" for _, _, move in plans for p in move]
        report("--prune acts on these files of the store (nothing else is touched):\n" + "\n".join(listed))
        for files, remove, move in plans:
            if not _prune(root, files.key, remove, move):
                records[[r["key"] for r in records].index(files.key)]["action"] = "locked by a writer: kept"
    return pd.DataFrame(records, columns=COLUMNS)


def _prune(root: Path, key: str, remove: list[Path], move: list[Path]) -> bool:
    """Remove and quarantine the files of one key under its lock; ``False`` if a writer holds it."""
    lock = FileLock(root / f"{key}.lock")
    if not lock.acquire(block=False):
        return False
    try:
        for path in move:
            quarantine(path, root, f"verify --prune: {path.name} is damaged or not its cell's")
        for path in remove:
            if path.is_dir():
                shutil.rmtree(path, ignore_errors=True)
            elif path != lock.path:
                path.unlink(missing_ok=True)
    finally:
        lock.release(unlink=True)
    return True


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(prog="python -m studylib.sweep.verify", description=__doc__.splitlines()[0])
    parser.add_argument("results_dir", help="a result store, e.g. results/toy")
    parser.add_argument("--prune", action="store_true",
                        help="list, then remove stale and orphaned store files and quarantine damaged ones and bad parts")
    args = parser.parse_args(argv)
    try:
        table = verify(args.results_dir, prune=args.prune)
    except StudyParameterError as error:
        print(f"error: {error}", file=sys.stderr)
        return 2
    with pd.option_context("display.max_colwidth", 90, "display.width", 200):
        print(table.to_string(index=False) if len(table) else f"{args.results_dir}: empty store")
    print("\n" + ", ".join(f"{n} {s}" for s, n in table["status"].value_counts().items()))
    return 1 if table["status"].isin(["damaged", "bad parts"]).any() and not args.prune else 0


if __name__ == "__main__":
    sys.exit(main())


__all__ = ["KeyFiles", "bad_parts", "main", "store_files", "verify"]
