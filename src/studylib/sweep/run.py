"""Run a grid of pruning configurations over a dataset and keep every result row on disk.

    >>> from studylib.sweep import config_grid, run_sweep, validate_parameters
    >>> validate_parameters("toy", "toy-pope", {"n_images": 100}, ["scope(alpha=0)", "full"], [16, 64])
    >>> configs = config_grid(["scope(alpha=0)", "random", "full"], [16, 64], seeds=[0, 1], n_tokens=144)
    >>> rows = run_sweep("toy", "toy-pope", configs, dataset_options={"n_images": 100})

One row per (question, config): the columns of :mod:`studylib.sweep.scoring` plus ``model,
dataset, config, method`` (registry name) and ``seed`` (nullable Int64) in front.  Each config
is one cell of the result store (:mod:`studylib.sweep.store`), keyed by ``{"store":
STORE_VERSION, "code": <digest of the scoring code>, "dataset_code": <of the loader>,
"libraries": <torch and transformers versions>, "model": <identity>, "dtype": ..., "dataset":
name, "options": <options with the loader's defaults>, "limit": limit (None when it keeps every
image), "questions", "prompts", "images": <digests>, "config": str(config), "pruner_code": <of
the config's pruner>}`` (+ ``"max_new_tokens"`` and ``"objects"`` when the dataset has caption
questions; :func:`studylib.sweep.identity.key_fields` and ``config_fields`` build them and say
what each covers).  A finished cell is read (and verified),
never recomputed, and the model is not even loaded when every cell is finished; an unfinished
one resumes from its part files: the rows scored since the last part are written as a part every
:data:`PART_SECONDS` of scoring (and at the end of a slice), so a killed run loses at most that
much work and a fast cell is not slowed by a file per batch.  ``batch_size`` and the device are
not part of the key (they change no number beyond float rounding); the dtype is.

The work is a list of :class:`Slice` s: batches ``start..stop-1`` of one cell on the cell's
batch grid (:func:`~studylib.sweep.scoring.image_batches`: the questions of one image together,
images in order of first appearance, at most ``batch_size`` questions per batch; a batch scores
only its questions not yet stored).  One process takes every cell whole; :mod:`studylib.sweep.shard` gives each of
several processes its own slices.  A whole cell is computed under its exclusive lock and
consolidated at once; a cell another process is computing is skipped with a message naming
the holder and waited for at the end, at most ``lock_timeout`` seconds
(:mod:`studylib.sweep.locks`).  A finished cell is read without any lock or write, so a
read-only store renders; a run that fails removes its lock (and the results folder it created,
if still empty), keeping only the parts of the batches it finished.
"""

from __future__ import annotations

import contextlib
import errno
import sys
import time
from collections.abc import Iterable
from dataclasses import dataclass, field
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm
from transformers.utils import logging as hf_logging

from studylib.data.records import Dataset, Question
from studylib.models.adapter import LlavaAdapter
from studylib.models.loading import ModelSettingError, check_device, check_dtype
from studylib.pruners import PrunerConfigError
from studylib.sweep.grid import Config, StudyParameterError, as_list, check_positive
from studylib.sweep.identity import (config_fields, display_name, image_digests, key_fields, model_identity,
                                     model_num_layers, model_num_tokens)
from studylib.sweep.scoring import CAPTION_TASK, Encoder, image_batches, score_batch
from studylib.sweep.locks import holder_text
from studylib.sweep.locks import lock_timeout as checked_lock_timeout
from studylib.sweep.store import Cell, ReadOnlyStoreError, clean_stale_temporaries, find_stored
from studylib.sweep.validate import (layer_problems, load_checked_dataset, select_questions, store_root,
                                     verbalizer_problems)


CACHE_INPUTS = "_studylib_cache_inputs"
PART_SECONDS = 30.0  #: scoring time between two part files of a cell being computed
PROGRESS_LOG_SECONDS = 30.0  #: least time between two progress lines when stderr is not a terminal


def _resolve_device(device) -> str:
    """``device`` checked (:func:`~studylib.models.loading.check_device`); ``None``: CUDA when
    available, else the CPU."""
    if device is None:
        return "cuda" if torch.cuda.is_available() else "cpu"
    try:
        return str(check_device(device))
    except ModelSettingError as error:
        raise StudyParameterError(str(error)) from None


def _resolve_dtype(model, dtype, device: str) -> torch.dtype:
    """The adapter's dtype; for a model to load: ``dtype`` (checked against ``device``), else
    float16 on CUDA, float32 on CPU."""
    if isinstance(model, LlavaAdapter):
        return model.model.dtype
    if dtype is None:
        return torch.float16 if device.startswith("cuda") else torch.float32
    try:
        return check_dtype(dtype, device)
    except ModelSettingError as error:
        raise StudyParameterError(str(error)) from None


@contextlib.contextmanager
def _no_hub_progress_bars():
    """transformers' and huggingface_hub's progress bars (loading weights, downloads) off inside."""
    was = hf_logging.is_progress_bar_enabled()
    hf_logging.disable_progress_bar()
    try:
        yield
    finally:
        if was:
            hf_logging.enable_progress_bar()


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
    image_digests: dict[str, str] = field(default_factory=dict)
    _grids: dict[int, list[list[Question]]] = field(default_factory=dict, repr=False)

    @property
    def complete(self) -> bool:
        """True when every cell is finished (a run would only read)."""
        return all(cell.complete for cell in self.cells)

    def batches(self, batch_size: int) -> list[list[Question]]:
        """The batch grid of one cell (every cell has the same questions; module docstring)."""
        if batch_size not in self._grids:
            self._grids[batch_size] = image_batches(self.questions, batch_size)
        return self._grids[batch_size]

    def n_batches(self, batch_size: int) -> int:
        return len(self.batches(batch_size))


@dataclass(frozen=True)
class Slice:
    """Batches ``start..stop-1`` of cell number ``cell``; ``whole`` when that is all of them."""

    cell: int
    start: int
    stop: int
    whole: bool


def whole_cells(plan: SweepPlan, batch_size: int) -> list[Slice]:
    return [Slice(i, 0, plan.n_batches(batch_size), True) for i in range(len(plan.cells))]


def say(message: str) -> None:
    print(f"[studylib.sweep] {message}", file=sys.stderr, flush=True)


def _checked_configs(configs) -> list[Config]:
    try:
        configs = list(dict.fromkeys(Config.parse(c) for c in as_list(configs, "configs")))
    except PrunerConfigError as error:
        raise StudyParameterError(f"configs: {error}") from None
    if not configs:
        raise StudyParameterError("configs is empty; build them with config_grid(pruners, budgets, ...)")
    return configs


def plan_sweep(model: str | LlavaAdapter, dataset: str, configs: Iterable[Config | str], *,
               dataset_options: dict | None = None, results_dir: str | Path = "results", limit: int | None = None,
               max_new_tokens: int = 64, dtype: str | torch.dtype | None = None) -> SweepPlan:
    """Validate a sweep and locate its store cells without loading the model or computing;
    ``plan_sweep(...).complete`` says whether :func:`run_sweep` would only read."""
    dtype = _resolve_dtype(model, dtype, _resolve_device(None))
    max_new_tokens = check_positive(max_new_tokens, "max_new_tokens")
    configs = _checked_configs(configs)
    data = load_checked_dataset(dataset, dict(dataset_options or {}))
    questions = select_questions(data, limit)
    n_tokens = model_num_tokens(model)
    for config in configs:
        if config.k > n_tokens:
            raise StudyParameterError(f"config {config}: budget {config.k} exceeds the model's N = {n_tokens} tokens; "
                                      f"use budgets between 1 and {n_tokens}")
        if config.method == "full" and config.k != n_tokens:
            raise StudyParameterError(f"config {config}: 'full' keeps all tokens; use k = N = {n_tokens}")
    layers = layer_problems([c.pruner for c in configs], model_num_layers(model))
    if layers:
        raise StudyParameterError(layers[0])
    has_captions = any(q.task == CAPTION_TASK for q in questions)
    identity, unknown = model_identity(model), {}
    if "hub_id" in identity:
        unknown["model"] = f"{model} is not in the local Hugging Face cache (huggingface-cli download {model})"
    try:
        images = image_digests(data, list(dict.fromkeys(q.image_key for q in questions)))
    except StudyParameterError as error:
        images, unknown["images"] = {}, str(error)
    base = key_fields(identity, _dtype_name(dtype), dataset, dict(dataset_options or {}), limit, data,
                      questions, max_new_tokens, images)
    root = store_root(results_dir)
    qids = [q.qid for q in questions]
    cells = [Cell(root, {**base, **config_fields(c)}, qids) for c in configs]
    if unknown:  # weights or images absent here: serve stored cells whose other inputs match
        found = [find_stored(root, cell.fields, unknown, display_name(model), qids) for cell in cells]
        if None in found:
            raise StudyParameterError(
                f"cannot key config {configs[found.index(None)]}: {'; '.join(unknown.values())}; no stored cell "
                f"matches its other inputs, so it must be computed here: provide the weights and images first")
        say(f"{' and '.join(unknown)} not available here: reading the stored cells whose other inputs match")
        cells = found
    words = [] if all(cell.complete for cell in cells) else verbalizer_problems(model, questions)
    if words:
        raise StudyParameterError(words[0])
    return SweepPlan(data, questions, configs, cells, n_tokens, has_captions, images)


class SliceRunner:
    """Computes :class:`Slice` s of a plan into the store: takes the locks, reads what is
    stored, scores the missing batches (loading the model the first time one is needed) and
    consolidates whole cells.  :meth:`run` returns each cell's status."""

    def __init__(self, plan: SweepPlan, model, *, batch_size: int, max_new_tokens: int, device: str,
                 dtype: torch.dtype, progress: bool, info: dict, lock_timeout: float | None = None):
        self.plan, self.model = plan, model
        self.batch_size, self.max_new_tokens = batch_size, max_new_tokens
        self.device, self.dtype, self.info = device, dtype, info
        self.lock_timeout = lock_timeout
        self.order = [q.qid for q in plan.questions]
        self._adapter = model if isinstance(model, LlavaAdapter) else None
        self._encoder: Encoder | None = None
        self._grid = plan.batches(batch_size)
        # one bar per sweep over every question of every cell (stored ones count as done at once); on a
        # terminal it redraws in place, in a log (no terminal) it writes a line every PROGRESS_LOG_SECONDS
        self._bar = tqdm(total=0, desc=plan.dataset.name, unit="q", disable=not progress, dynamic_ncols=True,
                         mininterval=0.1 if sys.stderr.isatty() else PROGRESS_LOG_SECONDS)

    def _size(self, piece: Slice) -> int:
        return sum(len(batch) for batch in self._grid[piece.start:piece.stop])

    def cell_info(self, index: int) -> dict:
        return {**self.info, "config": str(self.plan.configs[index])}

    def encoder(self) -> tuple[LlavaAdapter, Encoder]:
        if self._adapter is None:
            with _no_hub_progress_bars():  # the sweep's own bar is the only one
                self._adapter = LlavaAdapter.load(self.model, device=self.device, dtype=self.dtype)
        if self._encoder is None:
            self._check_adapter_cache()
            images = list(dict.fromkeys(q.image_key for q in self.plan.questions))
            self._encoder = Encoder(self._adapter, self.plan.dataset, images)
        return self._adapter, self._encoder

    def _check_adapter_cache(self) -> None:
        """An adapter passed in keeps encoded images by key across sweeps: clear that cache when
        its weights or the content behind a key changed since it was filled (recorded in the
        adapter's ``_studylib_cache_inputs``)."""
        weights = self.plan.cells[0].fields["model"]
        seen = getattr(self._adapter, CACHE_INPUTS, None)
        if seen is None or seen["model"] != weights or any(seen["images"].get(k, d) != d
                                                           for k, d in self.plan.image_digests.items()):
            self._adapter.clear_cache()
            seen = {"model": weights, "images": {}}
        seen["images"].update(self.plan.image_digests)
        setattr(self._adapter, CACHE_INPUTS, seen)

    def run(self, slices: list[Slice], wait: bool = True) -> dict[int, str]:
        """Compute ``slices``; busy ones are retried at the end, blocking when ``wait``."""
        status: dict[int, str] = {}
        self._bar.reset(total=sum(map(self._size, slices)))
        root = self.plan.cells[0].root
        existed = root.exists()
        try:
            deferred = []
            for piece in slices:
                result = self._run_slice(piece, block=False)
                if result is None:
                    cell = self.plan.cells[piece.cell]
                    say(f"cell {cell.key} ({self.plan.configs[piece.cell]}) is locked by another process "
                        f"({holder_text(cell.lock.path)}); skipping it for now" + (", will wait for it" if wait else ""))
                    deferred.append(piece)
                else:
                    status[piece.cell] = result
            for piece in deferred:
                status[piece.cell] = self._run_slice(piece, block=True) if wait else "skipped"
        finally:
            self._bar.close()
            if not existed and root.is_dir() and not any(root.iterdir()):
                root.rmdir()  # a failed first run leaves no empty results folder behind
        return status

    def _run_slice(self, piece: Slice, block: bool) -> str | None:
        cell = self.plan.cells[piece.cell]
        if cell.peek() is not None:  # finished: read without lock or write
            return "cached"
        try:
            return self._write_slice(piece, block)
        except OSError as error:
            in_store = error.filename is not None and Path(error.filename).is_relative_to(cell.root)
            if error.errno not in (errno.EACCES, errno.EPERM, errno.EROFS) or not in_store:
                raise
            raise ReadOnlyStoreError(
                f"the result store {cell.root} is not writable ({error.strerror}: {error.filename}), but cell "
                f"{cell.key} ({self.plan.configs[piece.cell]}) must be computed or repaired there; make the folder "
                f"writable, or pass another results_dir (finished cells are read without write access)") from None

    def _write_slice(self, piece: Slice, block: bool) -> str | None:
        cell = self.plan.cells[piece.cell]
        if not cell.lock.acquire(shared=not piece.whole, block=block, timeout=self.lock_timeout):
            return None
        lock = None if piece.whole else cell.slice_lock(piece.start, piece.stop, self.batch_size)
        try:
            if lock is not None and not lock.acquire(block=block, timeout=self.lock_timeout):
                return None
            if (piece.whole and cell.load() is not None) or (not piece.whole and cell.complete):
                if piece.whole:
                    cell.repair(self.cell_info(piece.cell))
                self._bar.update(self._size(piece))
                return "cached"
            stored, _ = cell.read_parts(clean=piece.whole)
            done = set() if stored is None else set(stored["qid"])
            self._compute(piece, done)
            if piece.whole:
                cell.finalize(self.order, self.cell_info(piece.cell))
            return "resumed" if done else "computed"
        finally:
            if lock is not None:
                lock.release(unlink=True)
            if piece.whole and cell.parts_dir.is_dir() and not any(cell.parts_dir.iterdir()):
                cell.parts_dir.rmdir()
            cell.lock.release(unlink=piece.whole)  # an exclusive holder may remove it, done or failed

    def _compute(self, piece: Slice, done: set[str]) -> None:
        cell, config = self.plan.cells[piece.cell], self.plan.configs[piece.cell]
        todo = [(j, [q for q in self._grid[j] if q.qid not in done]) for j in range(piece.start, piece.stop)]
        todo = [(j, batch) for j, batch in todo if batch]
        self._bar.update(self._size(piece) - sum(len(batch) for _, batch in todo))  # stored in parts already
        if not todo:
            return
        adapter, encoder = self.encoder()
        pruner = config.build()
        self._bar.set_description(f"{self.plan.dataset.name} {config}", refresh=False)
        pending, first, seconds = [], None, 0.0
        for j, batch in todo:
            start = time.perf_counter()
            pending.append(score_batch(adapter, encoder, batch, pruner, config.k, self.max_new_tokens,
                                       self.plan.dataset))
            first = j if first is None else first
            seconds += time.perf_counter() - start
            self._bar.update(len(batch))
            if seconds >= PART_SECONDS or j == todo[-1][0]:
                cell.write_part(pd.concat(pending, ignore_index=True), seconds, batch=first)
                pending, first, seconds = [], None, 0.0


def collect(plan: SweepPlan, dataset: str, display: str) -> pd.DataFrame:
    """The rows of every (finished) cell of ``plan``, verified, with the columns ``model,
    dataset, config, method, seed`` in front."""
    frames = []
    for config, cell in zip(plan.configs, plan.cells):
        frame = cell.peek()
        frame = cell.read() if frame is None else frame
        frame.insert(0, "model", display)
        frame.insert(1, "dataset", dataset)
        frame.insert(2, "config", str(config))
        frame.insert(3, "method", config.method)
        frame.insert(4, "seed", pd.array([config.seed] * len(frame), dtype="Int64"))
        frames.append(frame)
    return pd.concat(frames, ignore_index=True) if len(frames) > 1 else frames[0]


def prepare(model, dataset: str, configs, *, dataset_options: dict | None = None, results_dir: str | Path = "results",
            batch_size: int = 64, limit: int | None = None, max_new_tokens: int = 64, progress: bool = True,
            model_name: str | None = None, device: str | None = None, dtype: str | torch.dtype | None = None,
            lock_timeout: float | None = None) -> tuple[SweepPlan, SliceRunner, str]:
    """Plan a sweep and build its :class:`SliceRunner` (shared by :func:`run_sweep` and
    :mod:`studylib.sweep.shard`); returns (plan, runner, display name)."""
    batch_size = check_positive(batch_size, "batch_size")
    try:
        lock_timeout = None if lock_timeout is None else checked_lock_timeout(lock_timeout)
    except ValueError as error:
        raise StudyParameterError(str(error)) from None
    device = _resolve_device(device)
    dtype = _resolve_dtype(model, dtype, device)
    plan = plan_sweep(model, dataset, configs, dataset_options=dataset_options, results_dir=results_dir,
                      limit=limit, max_new_tokens=max_new_tokens, dtype=dtype)
    clean_stale_temporaries(plan.cells[0].root)
    display = model_name or display_name(model)
    info = {"model": display, "model_source": display_name(model), "in_memory": isinstance(model, LlavaAdapter),
            "dataset": dataset, "options": dict(dataset_options or {}), "limit": limit, "batch_size": batch_size, "max_new_tokens": max_new_tokens, "dtype": _dtype_name(dtype)}
    runner = SliceRunner(plan, model, batch_size=batch_size, max_new_tokens=max_new_tokens, device=device,
                         dtype=dtype, progress=progress, info=info, lock_timeout=lock_timeout)
    return plan, runner, display


def run_sweep(model: str | LlavaAdapter, dataset: str, configs: Iterable[Config | str], *,
              dataset_options: dict | None = None, results_dir: str | Path = "results", batch_size: int = 64,
              limit: int | None = None, max_new_tokens: int = 64, progress: bool = True,
              model_name: str | None = None, device: str | None = None, dtype: str | torch.dtype | None = None,
              lock_timeout: float | None = None) -> pd.DataFrame:
    """Run every config over the dataset through the model; return all rows (module docstring).

    ``model``: a name/path for :meth:`LlavaAdapter.load` (loaded only if some cell must be
    computed) or a loaded adapter.  ``configs``: :class:`Config` objects or ``"spec@K"``
    strings.  ``limit``: keep the questions of the first ``limit`` distinct images.
    ``model_name``: the ``model`` column's value (default: the name passed, or the adapter's
    checkpoint path).  ``device``/``dtype`` apply when a name is loaded (default: CUDA in
    float16 when available, else CPU in float32); the dtype is part of the store key.  The
    result's ``attrs["cells"]`` lists each config's store key and whether it was
    ``"cached"``, ``"computed"`` or ``"resumed"``.  ``lock_timeout``: the longest wait, in
    seconds, for a cell another process is computing (default: ``STUDYLIB_LOCK_TIMEOUT`` or
    :data:`~studylib.sweep.locks.DEFAULT_TIMEOUT_S`); then :class:`~studylib.sweep.locks.LockTimeoutError`.
    """
    plan, runner, display = prepare(model, dataset, configs, dataset_options=dataset_options,
                                    results_dir=results_dir, batch_size=batch_size, limit=limit,
                                    max_new_tokens=max_new_tokens, progress=progress, model_name=model_name,
                                    device=device, dtype=dtype, lock_timeout=lock_timeout)
    status = runner.run(whole_cells(plan, runner.batch_size))
    result = collect(plan, dataset, display)
    result.attrs["cells"] = [{"config": str(c), "key": cell.key, "status": status[i]}
                             for i, (c, cell) in enumerate(zip(plan.configs, plan.cells))]
    return result


__all__ = ["Slice", "SliceRunner", "SweepPlan", "collect", "plan_sweep", "prepare", "run_sweep", "say",
           "whole_cells"]
