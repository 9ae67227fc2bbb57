"""Run a grid of pruning configurations over a dataset and keep every result row on disk.

    >>> from studylib.runner import config_grid, run_sweep, validate_parameters
    >>> validate_parameters("toy", "toy-pope", {"n_images": 100}, ["scope(alpha=0)", "full"], [16, 64])
    >>> configs = config_grid(["scope(alpha=0)", "random", "full"], [16, 64], seeds=[0, 1], n_tokens=144)
    >>> rows = run_sweep("toy", "toy-pope", configs, dataset_options={"n_images": 100})

One row per (question, config).  Yes/no and multiple-choice questions give the columns of
:func:`studylib.evaluation._rows` (``qid, image, task, split, label, choices, probs, logits,
prediction, confidence, correct, verbalizer_mass, top_token, pruner, k, kept, erank_kept,
entropy_kept``) plus ``n_kept``; caption questions give ``qid, image, task, split, label``
(the reference caption), ``caption`` (greedy, ``max_new_tokens``), the CHAIR counts of the
caption (``n_mentions, n_hallucinated, hallucinated, n_gt, n_recalled, length, mentioned,
hallucinated_objects``) and the same kept-token columns.  :func:`run_sweep` adds ``model,
dataset, config, method`` (registry name), ``seed`` (nullable Int64).

Result store
------------
One **cell** per (model identity, dataset + options + limit, config), in ``results_dir``::

    <key>.parquet     all rows of the finished cell (written once, atomically)
    <key>.json        manifest: the keyed fields, row count, wall time, library versions
    <key>.parts/      while computing: part-000000.parquet, part-000001.parquet, ...

``key`` = first 24 hex digits of the sha256 of the canonical JSON (sorted keys, no spaces) of
``{"store": STORE_VERSION, "model": <identity>, "dtype": "float32", "dataset": name,
"options": options, "limit": limit, "questions": <digest>, "config": str(config)}`` (+ ``"max_new_tokens"`` when
the dataset has caption questions).  ``questions`` is a sha256 of the (qid, image, task,
text, answer, choices) of the questions in the cell, so edited data files give a new cell.

Model identity: ``"tiny-random"`` -> that name; a local checkpoint directory (``"toy"``
resolves to ``data/toy-model``) -> the sha256 of every file in it but hidden and ``.md``
files (files over 256 MiB:
size + sha256 of their first and last 8 MiB), so the same weights under another path share
cells and retrained weights never reuse stale ones; a hub id -> the id; an adapter instance
-> the identity of the directory it was loaded from, else the sha256 of its parameters.

Resumption: rows are computed batch by batch and each batch is written as one part file
(temporary file + ``os.replace``, so a part is either complete or absent).  A rerun reads the
parts, skips their question ids and goes on from there, so a run killed at any moment loses
at most the batch in flight and never duplicates a row.  Batches are formed from the
remaining questions in dataset order, so a resumed run scores exactly the batches an
uninterrupted run would have (same padding, same numbers).  When every question is done the
parts are consolidated into ``<key>.parquet`` (atomic), the manifest is written, and the
parts are removed.  A finished cell is read, never recomputed, and the model is not even
loaded when every cell is finished.

Images are encoded once per sweep: in fixed groups of :data:`ENCODE_GROUP` images (dataset
order), the first time a batch needs one of them; the adapter's cache serves every later
config.  ``batch_size`` and the device are not part of the key (they change no number beyond
float rounding); the dtype is.
"""

from __future__ import annotations

import hashlib
import inspect
import json
import os
import platform
import shutil
import time
import uuid
from collections import OrderedDict
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from datetime import datetime, timezone
from functools import lru_cache
from pathlib import Path
from typing import Any

import numpy as np
import pandas as pd
import pyarrow as pa
import pyarrow.parquet as pq
import torch
from tqdm.auto import tqdm

import studylib.data as data_registry
from studylib.data.records import Dataset, Question
from studylib.evaluation import NEEDS_QUERY, _rows, batches, kept_token_diagnostics
from studylib.metrics import chair, coco_vocabulary, toy_vocabulary
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter
from studylib.models.loading import TINY_RANDOM_NAME, ModelNotFoundError, resolve_checkpoint, tiny_random_llava
from studylib.pruners import PrunerConfigError, parse_spec

STORE_VERSION = 1
ENCODE_GROUP = 16
SCORED_TASKS = ("yesno", "mc")
CAPTION_TASK = "caption"
LARGE_FILE = 256 * 2**20
EDGE_BYTES = 8 * 2**20

SCORED_COLUMNS = ["qid", "image", "task", "split", "label", "choices", "probs", "logits", "prediction",
                  "confidence", "correct", "verbalizer_mass", "top_token", "pruner", "k", "kept", "n_kept",
                  "erank_kept", "entropy_kept"]
CAPTION_COLUMNS = ["qid", "image", "task", "split", "label", "caption", "n_mentions", "n_hallucinated",
                   "hallucinated", "n_gt", "n_recalled", "length", "mentioned", "hallucinated_objects",
                   "pruner", "k", "kept", "n_kept", "erank_kept", "entropy_kept"]
LIST_COLUMNS = ("choices", "probs", "logits", "kept", "mentioned", "hallucinated_objects")
ADDED_COLUMNS = ["model", "dataset", "config", "method", "seed"]


class StudyParameterError(ValueError):
    """A notebook parameter is invalid; the message names it and says how to fix it."""


# --------------------------------------------------------------------------------------- configs


@dataclass(frozen=True)
class Config:
    """One cell of a grid: a pruner (canonical spec string) at token budget ``k``.

    ``Config("scope(alpha=0)", 64)`` canonicalises the spec, so it equals
    ``Config.parse("scope(alpha=0,p=1)@64")``; ``str(config)`` is ``"scope(alpha=0,p=1)@64"``.
    """

    pruner: str
    k: int

    def __post_init__(self) -> None:
        spec = self.pruner if isinstance(self.pruner, str) else str(self.pruner)
        object.__setattr__(self, "pruner", str(parse_spec(spec)))
        k = self.k
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise StudyParameterError(f"config {spec}@{k!r}: the budget k must be an integer, got {k!r}")
        if k < 1:
            raise StudyParameterError(f"config {spec}@{k}: the budget k must be >= 1")
        object.__setattr__(self, "k", int(k))

    @classmethod
    def parse(cls, text: str) -> "Config":
        """``"scope(alpha=0)@64"`` -> ``Config("scope(alpha=0,p=1)", 64)``."""
        if isinstance(text, Config):
            return text
        if not isinstance(text, str) or "@" not in text:
            raise StudyParameterError(f"malformed config {text!r}; expected 'pruner_spec@K', e.g. 'scope(alpha=0)@64'")
        spec, _, budget = text.rpartition("@")
        try:
            k = int(budget.strip())
        except ValueError:
            raise StudyParameterError(f"malformed config {text!r}: the budget after '@' must be an integer") from None
        return cls(spec.strip(), k)

    def __str__(self) -> str:
        return f"{self.pruner}@{self.k}"

    def build(self):
        """The configured :class:`~studylib.pruners.Pruner`."""
        return parse_spec(self.pruner)

    @property
    def method(self) -> str:
        """Registry name of the pruner (``"scope"``, ``"random"``, ...)."""
        return self.build().name

    @property
    def seed(self) -> int | None:
        return self.build().params.get("seed")


def _as_list(value, name: str) -> list:
    if value is None:
        return []
    if isinstance(value, (str, int, np.integer)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise StudyParameterError(f"{name} must be a list, got {value!r}") from None


def _check_budget(k, n_tokens: int | None) -> int:
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise StudyParameterError(f"budgets: {k!r} is not an integer; give token budgets as integers, e.g. [64, 128]")
    if k < 1:
        raise StudyParameterError(f"budgets: {k} is below 1; every budget must keep at least one visual token")
    if n_tokens is not None and k > n_tokens:
        raise StudyParameterError(f"budgets: {k} exceeds the model's N = {n_tokens} visual tokens; "
                                  f"use budgets between 1 and {n_tokens}")
    return int(k)


def config_grid(pruners: list[str], budgets: list[int], seeds: list[int] | None = None,
                n_tokens: int | None = None) -> list[Config]:
    """All (pruner, budget[, seed]) configs, validated up front.

    ``"full"`` is emitted once, at ``K = n_tokens`` (which it then requires); pruners with a
    ``seed`` parameter are expanded over ``seeds`` (when given); duplicates are dropped, order
    is pruner-major as given.  Unknown pruners / bad parameters raise the registry's
    :class:`~studylib.pruners.PrunerConfigError`; bad budgets or an empty grid a
    :class:`StudyParameterError` (both ``ValueError``).
    """
    pruners = _as_list(pruners, "pruners")
    budgets = [_check_budget(k, n_tokens) for k in _as_list(budgets, "budgets")]
    seed_list = None if seeds is None else _as_list(seeds, "seeds")
    if seed_list is not None:
        for s in seed_list:
            if isinstance(s, (bool, np.bool_)) or not isinstance(s, (int, np.integer)) or s < 0:
                raise StudyParameterError(f"seeds: {s!r} is not a non-negative integer; give seeds like [0, 1, 2]")
    if not pruners:
        raise StudyParameterError("pruners is empty: the grid has no configs; give at least one pruner, "
                                  "e.g. pruners=['scope(alpha=0)', 'full']")
    built = [parse_spec(p) if isinstance(p, str) else parse_spec(str(p)) for p in pruners]
    configs: list[Config] = []
    for pruner in built:
        if pruner.name == "full":
            if n_tokens is None:
                raise StudyParameterError("pruner 'full' keeps all N tokens: pass n_tokens=N to config_grid "
                                          "(validate_parameters and run_sweep read N from the model)")
            configs.append(Config(str(pruner), n_tokens))
            continue
        if not budgets:
            raise StudyParameterError(f"budgets is empty but pruner {pruner} needs at least one token budget; "
                                      f"give budgets, e.g. [64, 128]")
        variants = [pruner]
        if "seed" in pruner.params and seed_list:
            variants = [pruner.replace(seed=int(s)) for s in seed_list]
        for k in budgets:
            for variant in variants:
                configs.append(Config(str(variant), k))
    configs = list(dict.fromkeys(configs))
    if not configs:
        raise StudyParameterError("the grid is empty; give at least one pruner and one budget")
    return configs


# --------------------------------------------------------------------------------------- models


def _tiny_random_tokens() -> int:
    defaults = inspect.signature(tiny_random_llava).parameters
    return (defaults["image_size"].default // defaults["patch_size"].default) ** 2


def _tokens_from_config(config) -> int:
    vision = config.vision_config
    return (vision.image_size // vision.patch_size) ** 2


def model_num_tokens(model: str | os.PathLike | LlavaAdapter) -> int:
    """N, the number of visual tokens of ``model``, read from its config (no weights loaded).

    Raises :class:`StudyParameterError` when the model cannot be found."""
    if isinstance(model, LlavaAdapter):
        return model.num_patches
    name = str(model)
    if name == TINY_RANDOM_NAME:
        return _tiny_random_tokens()
    try:
        source = resolve_checkpoint(name)
    except ModelNotFoundError as error:
        raise StudyParameterError(f"model: {error}") from None
    try:
        from transformers import AutoConfig

        return _tokens_from_config(AutoConfig.from_pretrained(source))
    except (OSError, ValueError, AttributeError) as error:
        raise StudyParameterError(
            f"model: cannot read the config of {name!r} ({str(error).splitlines()[0]}); pass 'toy', "
            f"'tiny-random', a local LLaVA checkpoint directory, or a hub id available offline "
            f"(huggingface-cli download {name} --local-dir models/{name.split('/')[-1]})") from None


@lru_cache(maxsize=256)
def _file_digest(path: str, size: int, mtime_ns: int) -> str:
    digest = hashlib.sha256()
    with open(path, "rb") as handle:
        if size <= LARGE_FILE:
            for block in iter(lambda: handle.read(2**20), b""):
                digest.update(block)
        else:
            digest.update(f"size={size};".encode())
            digest.update(handle.read(EDGE_BYTES))
            handle.seek(size - EDGE_BYTES)
            digest.update(handle.read(EDGE_BYTES))
    return digest.hexdigest()


def _directory_identity(path: Path) -> dict:
    files = {}
    for child in sorted(path.iterdir()):
        if child.is_file() and not child.name.startswith(".") and child.suffix != ".md":
            stat = child.stat()
            files[child.name] = _file_digest(str(child), stat.st_size, stat.st_mtime_ns)
    return {"checkpoint_files": files}


def _parameter_identity(module: torch.nn.Module) -> dict:
    digest = hashlib.sha256()
    for name, tensor in sorted(module.state_dict().items()):
        digest.update(name.encode())
        digest.update(str(tuple(tensor.shape)).encode() + str(tensor.dtype).encode())
        digest.update(tensor.detach().to("cpu").contiguous().view(-1).view(torch.uint8).numpy().tobytes())
    return {"parameters_sha256": digest.hexdigest()}


def model_identity(model: str | os.PathLike | LlavaAdapter) -> dict:
    """What the store keys a model by (module docstring)."""
    if isinstance(model, LlavaAdapter):
        source = getattr(model.model.config, "_name_or_path", "") or ""
        if source and (Path(source) / "config.json").is_file():
            return _directory_identity(Path(source))
        return _parameter_identity(model.model)
    name = str(model)
    if name == TINY_RANDOM_NAME:
        return {"builtin": TINY_RANDOM_NAME}
    try:
        source = resolve_checkpoint(name)
    except ModelNotFoundError as error:
        raise StudyParameterError(f"model: {error}") from None
    if Path(source).is_dir():
        return _directory_identity(Path(source))
    return {"hub_id": source}


def _display_name(model) -> str:
    if isinstance(model, LlavaAdapter):
        return getattr(model.model.config, "_name_or_path", "") or "adapter"
    return str(model)


# --------------------------------------------------------------------------------------- datasets

_DATASETS: "OrderedDict[str, Dataset]" = OrderedDict()


def _canonical(value: Any) -> str:
    return json.dumps(value, sort_keys=True, separators=(",", ":"), ensure_ascii=True, default=str)


def _load_dataset(name: str, options: dict) -> Dataset:
    """``load_dataset`` with bad names/options/paths turned into :class:`StudyParameterError`;
    the last two datasets are kept in memory so that validation and the sweep load once."""
    if not isinstance(name, str) or not name:
        raise StudyParameterError(f"dataset: expected a dataset name, got {name!r}; "
                                  f"choose one of {data_registry.list_datasets()}")
    if not isinstance(options, dict):
        raise StudyParameterError(f"dataset_options must be a dict of loader options, got {options!r}")
    loader = data_registry._LOADERS.get(name) if isinstance(name, str) else None
    key = f"{name}|{id(loader)}|{_canonical(options)}"
    if key in _DATASETS:
        _DATASETS.move_to_end(key)
        return _DATASETS[key]
    if name not in data_registry.list_datasets():
        raise StudyParameterError(f"dataset: unknown dataset {name!r}; choose one of {data_registry.list_datasets()}")
    try:
        inspect.signature(loader).bind(**options)
    except TypeError as error:
        accepted = ", ".join(p for p in inspect.signature(loader).parameters)
        raise StudyParameterError(f"dataset_options for {name!r}: {error}; accepted options: {accepted}") from None
    try:
        dataset = data_registry.load_dataset(name, **options)
    except FileNotFoundError as error:
        raise StudyParameterError(f"dataset_options for {name!r}: data not found: {error}") from None
    except (ValueError, KeyError) as error:
        raise StudyParameterError(f"dataset_options for {name!r}: {error}") from None
    _DATASETS[key] = dataset
    while len(_DATASETS) > 2:
        _DATASETS.popitem(last=False)
    return dataset


def _check_positive(value, name: str, allow_none: bool = False):
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise StudyParameterError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def select_questions(dataset: Dataset, limit: int | None) -> list[Question]:
    """The questions of the first ``limit`` distinct images (all of them with ``None``),
    in dataset order, so all questions about an image stay together."""
    limit = _check_positive(limit, "limit", allow_none=True)
    questions = dataset.questions
    if limit is not None:
        keep = set(dataset.image_keys()[:limit])
        questions = [q for q in questions if q.image_key in keep]
    unsupported = sorted({q.task for q in questions} - {*SCORED_TASKS, CAPTION_TASK})
    if unsupported:
        raise StudyParameterError(f"dataset {dataset.name!r} has questions of unsupported task(s) {unsupported}")
    if not questions:
        raise StudyParameterError(f"dataset {dataset.name!r} has no questions (limit={limit})")
    qids = [q.qid for q in questions]
    if len(set(qids)) != len(qids):
        raise StudyParameterError(f"dataset {dataset.name!r} has duplicate question ids; the store keys rows by qid")
    return questions


def questions_digest(questions: Sequence[Question]) -> str:
    digest = hashlib.sha256()
    for q in questions:
        digest.update(_canonical([q.qid, q.image_key, q.task, q.text, q.answer, list(q.choices), q.hint,
                                  q.split]).encode())
    return digest.hexdigest()


# --------------------------------------------------------------------------------------- validation


def validate_parameters(model: str | LlavaAdapter, dataset: str, dataset_options: dict | None, pruners, budgets,
                        seeds=None, *, limit: int | None = None) -> None:
    """The notebooks' first-cell check: raises ONE :class:`StudyParameterError` listing every
    bad parameter (unknown model path, unknown dataset, bad dataset option or missing data
    path, unknown pruner or pruner parameter, budget outside [1, N], empty grid, bad seeds or
    limit) with its fix; returns ``None`` when the sweep can run.  N is read from the model's
    config, no weights are loaded."""
    problems: list[str] = []
    n_tokens = None
    try:
        n_tokens = model_num_tokens(model)
    except StudyParameterError as error:
        problems.append(str(error))
    try:
        dataset_obj = _load_dataset(dataset, dict(dataset_options or {}))
        select_questions(dataset_obj, limit)
    except StudyParameterError as error:
        problems.append(str(error))
    bound = n_tokens if n_tokens is not None else _UNKNOWN_N
    grid_problems = []
    for pruner in _as_list(pruners, "pruners"):
        try:
            parse_spec(pruner if isinstance(pruner, str) else str(pruner))
        except PrunerConfigError as error:
            grid_problems.append(f"pruners: {error}")
    for k in _as_list(budgets, "budgets"):
        try:
            _check_budget(k, bound)
        except StudyParameterError as error:
            grid_problems.append(str(error))
    if not grid_problems:
        try:
            config_grid(pruners, budgets, seeds, bound)
        except PrunerConfigError as error:
            grid_problems.append(f"pruners: {error}")
        except StudyParameterError as error:
            grid_problems.append(str(error))
    problems += grid_problems
    if problems:
        if len(problems) == 1:
            raise StudyParameterError(problems[0])
        raise StudyParameterError(f"{len(problems)} problems with the parameters:\n"
                                  + "\n".join(f"- {p}" for p in problems))


_UNKNOWN_N = 10**9  # budget bound when the model is unknown (its own error is reported instead)


# --------------------------------------------------------------------------------------- store


def _versions() -> dict:
    import transformers

    import studylib

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
        self.key = hashlib.sha256(_canonical(fields).encode()).hexdigest()[:24]
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


# --------------------------------------------------------------------------------------- computing


class _LazyImages(Sequence):
    """Images of ``keys``, loaded only when the adapter needs to encode one."""

    def __init__(self, load, keys: Sequence[str]):
        self._load, self._keys = load, list(keys)

    def __len__(self) -> int:
        return len(self._keys)

    def __getitem__(self, index):
        return self._load(self._keys[index])


class _Encoder:
    """Encodes images in fixed groups of ENCODE_GROUP (dataset order) the first time a batch
    needs one, so the vision tower always sees the same batches whatever was already done."""

    def __init__(self, adapter: LlavaAdapter, dataset: Dataset, image_order: Sequence[str]):
        self.adapter, self.dataset = adapter, dataset
        self.group_of = {key: i // ENCODE_GROUP for i, key in enumerate(image_order)}
        self.groups = [list(image_order[i:i + ENCODE_GROUP]) for i in range(0, len(image_order), ENCODE_GROUP)]
        self.done: set[int] = set()

    def tokens(self, keys: Sequence[str]):
        for group in sorted({self.group_of[k] for k in keys} - self.done):
            members = self.groups[group]
            self.adapter.encode(_LazyImages(self.dataset.load_image, members), members, batch_size=len(members))
            self.done.add(group)
        return self.adapter.encode(_LazyImages(self.dataset.load_image, keys), list(keys))


def _needs_query(pruner) -> bool:
    return bool(getattr(pruner.info, "needs_query", False)) or pruner.name in NEEDS_QUERY


def _score_rows(adapter, tokens, batch: list[Question], pruner, k: int) -> list[dict]:
    texts = [prompts.build_prompt(q) for q in batch]
    query = adapter.query_context([q.text for q in batch], texts, tokens) if _needs_query(pruner) else None
    scores = adapter.score_pruned(texts, tokens, pruner, k, [prompts.verbalizer(q) for q in batch], query)
    erank, entropy = kept_token_diagnostics(tokens, scores.kept)
    rows = _rows(batch, scores, erank, entropy, str(pruner), k)
    for row in rows:
        row["n_kept"] = len(row["kept"])
    return rows


def _caption_rows(adapter, tokens, batch: list[Question], pruner, k: int, max_new_tokens: int,
                  dataset: Dataset, vocabulary) -> list[dict]:
    texts = [prompts.build_prompt(q) for q in batch]
    query = adapter.query_context([q.text for q in batch], texts, tokens) if _needs_query(pruner) else None
    keep, in_llm, in_llm_k = adapter._route(pruner, tokens, k, query)
    captions = adapter.generate(texts, tokens, keep, max_new_tokens, in_llm=in_llm, in_llm_k=in_llm_k)
    if in_llm is None:
        _, kept = adapter._visual_sequence(tokens, keep)
    else:  # the tokens the LLM keeps at the prefill (in-LLM pruners re-select at every step)
        _, kept = adapter._last_logits(texts, tokens, keep, in_llm, in_llm_k)
    kept = kept.cpu()
    erank, entropy = kept_token_diagnostics(tokens, kept)
    rows = []
    for i, (q, caption) in enumerate(zip(batch, captions)):
        truth = dataset.objects.get(q.image_key)
        detail = chair([caption], [truth if truth is not None else frozenset()], vocabulary).captions[0]
        known = truth is not None
        rows.append({
            "qid": q.qid, "image": q.image_key, "task": q.task, "split": q.split, "label": q.answer,
            "caption": caption, "n_mentions": len(detail.mentions),
            "n_hallucinated": len(detail.hallucinated) if known else None,
            "hallucinated": detail.is_hallucinated if known else None,
            "n_gt": len(detail.ground_truth) if known else None,
            "n_recalled": len(detail.recalled) if known else None,
            "length": detail.length, "mentioned": [m.category for m in detail.mentions],
            "hallucinated_objects": [m.category for m in detail.hallucinated] if known else None,
            "pruner": str(pruner), "k": k, "kept": kept[i].tolist(), "n_kept": int(kept.shape[1]),
            "erank_kept": float(erank[i]), "entropy_kept": float(entropy[i]),
        })
    return rows


def _batch_rows(adapter, encoder: _Encoder, batch: list[Question], pruner, k: int, max_new_tokens: int,
                dataset: Dataset, vocabulary) -> pd.DataFrame:
    """Rows of one batch, in batch order.  Adaptive-count pruners (``exact_k=False``) keep a
    different number of tokens per image, so they run image by image."""
    by_qid: dict[str, dict] = {}
    for task_group in (SCORED_TASKS, (CAPTION_TASK,)):
        questions = [q for q in batch if q.task in task_group]
        if not questions:
            continue
        if pruner.exact_k:
            subgroups = [questions]
        else:
            per_image: dict[str, list[Question]] = {}
            for q in questions:
                per_image.setdefault(q.image_key, []).append(q)
            subgroups = list(per_image.values())
        for group in subgroups:
            tokens = encoder.tokens([q.image_key for q in group])
            if task_group == SCORED_TASKS:
                rows = _score_rows(adapter, tokens, group, pruner, k)
            else:
                rows = _caption_rows(adapter, tokens, group, pruner, k, max_new_tokens, dataset, vocabulary)
            by_qid.update((row["qid"], row) for row in rows)
    ordered = [by_qid[q.qid] for q in batch]
    columns = SCORED_COLUMNS if batch[0].task in SCORED_TASKS else CAPTION_COLUMNS
    frame = pd.DataFrame(ordered)
    extra = [c for c in frame.columns if c not in columns]
    return frame[[c for c in columns if c in frame.columns] + extra]


def _resolve_device(device) -> str:
    return str(device) if device is not None else ("cuda" if torch.cuda.is_available() else "cpu")


def _resolve_dtype(model, dtype, device: str) -> torch.dtype:
    """The adapter's dtype; for a model to load: ``dtype``, else float16 on CUDA, float32 on CPU."""
    if isinstance(model, LlavaAdapter):
        return model.model.dtype
    if dtype is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    resolved = getattr(torch, dtype, None) if isinstance(dtype, str) else dtype
    if not isinstance(resolved, torch.dtype):
        raise StudyParameterError(f"dtype: unknown torch dtype {dtype!r}; use 'float32', 'float16' or 'bfloat16'")
    return resolved


def _dtype_name(dtype: torch.dtype) -> str:
    return str(dtype).removeprefix("torch.")


@dataclass
class SweepPlan:
    """Everything :func:`run_sweep` derives before computing: the loaded dataset, the selected
    questions, the validated configs and one store :class:`Cell` per config."""

    dataset: Dataset
    questions: list[Question]
    configs: list[Config]
    cells: list[Cell]
    n_tokens: int
    has_captions: bool

    @property
    def complete(self) -> bool:
        """True when every cell is finished (a run would only read)."""
        return all(cell.complete for cell in self.cells)


def plan_sweep(model: str | LlavaAdapter, dataset: str, configs: Iterable[Config | str], *,
               dataset_options: dict | None = None, results_dir: str | Path = "results", limit: int | None = None,
               max_new_tokens: int = 64, dtype: str | torch.dtype | None = None) -> SweepPlan:
    """Validate a sweep and locate its store cells without loading the model or computing;
    ``plan_sweep(...).complete`` says whether :func:`run_sweep` would only read."""
    dtype = _resolve_dtype(model, dtype, _resolve_device(None))
    options = dict(dataset_options or {})
    max_new_tokens = _check_positive(max_new_tokens, "max_new_tokens")
    try:
        configs = list(dict.fromkeys(Config.parse(c) for c in _as_list(configs, "configs")))
    except PrunerConfigError as error:
        raise StudyParameterError(f"configs: {error}") from None
    if not configs:
        raise StudyParameterError("configs is empty; build them with config_grid(pruners, budgets, ...)")
    data = _load_dataset(dataset, options)
    questions = select_questions(data, limit)
    n_tokens = model_num_tokens(model)
    for config in configs:
        if config.k > n_tokens:
            raise StudyParameterError(f"config {config}: budget {config.k} exceeds the model's N = {n_tokens} tokens; "
                                      f"use budgets between 1 and {n_tokens}")
        if config.method == "full" and config.k != n_tokens:
            raise StudyParameterError(f"config {config}: 'full' keeps all tokens; use k = N = {n_tokens}")
    has_captions = any(q.task == CAPTION_TASK for q in questions)
    base = {"store": STORE_VERSION, "model": model_identity(model), "dtype": _dtype_name(dtype), "dataset": dataset,
            "options": options, "limit": limit, "questions": questions_digest(questions)}
    if has_captions:
        base["max_new_tokens"] = max_new_tokens
    root = Path(results_dir)
    cells = [Cell(root, {**base, "config": str(c)}) for c in configs]
    return SweepPlan(data, questions, configs, cells, n_tokens, has_captions)


def run_sweep(model: str | LlavaAdapter, dataset: str, configs: Iterable[Config | str], *,
              dataset_options: dict | None = None, results_dir: str | Path = "results", batch_size: int = 64,
              limit: int | None = None, max_new_tokens: int = 64, progress: bool = True,
              model_name: str | None = None, device: str | None = None,
              dtype: str | torch.dtype | None = None) -> pd.DataFrame:
    """Run every config over the dataset through the model; return all rows (module docstring).

    ``model``: a name/path for :meth:`LlavaAdapter.load` (loaded only if some cell must be
    computed) or a loaded adapter.  ``configs``: :class:`Config` objects or ``"spec@K"``
    strings.  ``limit``: keep the questions of the first ``limit`` distinct images.
    ``model_name``: the ``model`` column's value (default: the name passed, or the adapter's
    checkpoint path).  ``device``/``dtype`` apply when a name is loaded (default: CUDA in
    float16 when available, else CPU in float32); the dtype is part of the store key.  The
    result's ``attrs["cells"]`` lists each config's store key and whether it was
    ``"cached"``, ``"computed"`` or ``"resumed"``.
    """
    batch_size = _check_positive(batch_size, "batch_size")
    device = _resolve_device(device)
    dtype = _resolve_dtype(model, dtype, device)
    plan = plan_sweep(model, dataset, configs, dataset_options=dataset_options, results_dir=results_dir,
                      limit=limit, max_new_tokens=max_new_tokens, dtype=dtype)
    options = dict(dataset_options or {})
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    display = model_name or _display_name(model)
    questions = plan.questions
    order = [q.qid for q in questions]

    todo, status = [], {}
    for config, cell in zip(plan.configs, plan.cells):
        info = {"model": display, "dataset": dataset, "options": options, "limit": limit, "config": str(config),
                "batch_size": batch_size}
        if cell.complete:
            cell.repair(info)
            status[str(config)] = "cached"
            continue
        stored, _ = cell.read_parts()
        done = set() if stored is None else set(stored["qid"])
        remaining = [q for q in questions if q.qid not in done]
        status[str(config)] = "resumed" if done else "computed"
        todo.append((config, cell, info, remaining))

    if todo:
        adapter = model if isinstance(model, LlavaAdapter) else LlavaAdapter.load(model, device=device, dtype=dtype)
        encoder = _Encoder(adapter, plan.dataset, list(dict.fromkeys(q.image_key for q in questions)))
        vocabulary = None
        if plan.has_captions:
            vocabulary = toy_vocabulary() if dataset.startswith("toy") else coco_vocabulary()
        bar = tqdm(total=sum(len(r) for *_, r in todo), desc=dataset, unit="q", disable=not progress)
        try:
            for config, cell, info, remaining in todo:
                pruner = config.build()
                bar.set_description(f"{dataset} {config}")
                for batch in batches(remaining, batch_size):
                    start = time.perf_counter()
                    rows = _batch_rows(adapter, encoder, batch, pruner, config.k, max_new_tokens, plan.dataset,
                                       vocabulary)
                    cell.write_part(rows, time.perf_counter() - start)
                    bar.update(len(batch))
                cell.finalize(order, info)
        finally:
            bar.close()

    frames = []
    for config, cell in zip(plan.configs, plan.cells):
        frame = cell.read()
        frame.insert(0, "model", display)
        frame.insert(1, "dataset", dataset)
        frame.insert(2, "config", str(config))
        frame.insert(3, "method", config.method)
        frame.insert(4, "seed", pd.array([config.seed] * len(frame), dtype="Int64"))
        frames.append(frame)
    result = pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]
    result.attrs["cells"] = [{"config": str(c), "key": cell.key, "status": status[str(c)]}
                             for c, cell in zip(plan.configs, plan.cells)]
    return result


__all__ = ["CAPTION_COLUMNS", "Cell", "Config", "ENCODE_GROUP", "SCORED_COLUMNS", "STORE_VERSION",
           "StudyParameterError", "SweepPlan", "config_grid", "list_cells", "model_identity", "model_num_tokens",
           "plan_sweep", "run_sweep", "select_questions", "validate_parameters"]
