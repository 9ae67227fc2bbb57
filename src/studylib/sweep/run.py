"""Run a grid of pruning configurations over a dataset and keep every result row on disk.

    >>> from studylib.sweep import config_grid, run_sweep, validate_parameters
    >>> validate_parameters("toy", "toy-pope", {"n_images": 100}, ["scope(alpha=0)", "full"], [16, 64])
    >>> configs = config_grid(["scope(alpha=0)", "random", "full"], [16, 64], seeds=[0, 1], n_tokens=144)
    >>> rows = run_sweep("toy", "toy-pope", configs, dataset_options={"n_images": 100})

One row per (question, config): the columns of :mod:`studylib.sweep.scoring` plus ``model,
dataset, config, method`` (registry name) and ``seed`` (nullable Int64) in front.  Each config
is one cell of the result store (:mod:`studylib.sweep.store`), keyed by
``{"store": STORE_VERSION, "model": <identity>, "dtype": ..., "dataset": name, "options": options,
"limit": limit, "questions": <digest>, "config": str(config)}`` (+ ``"max_new_tokens"`` when the
dataset has caption questions; :mod:`studylib.sweep.identity`).  A finished cell is read, never
recomputed, and the model is not even loaded when every cell is finished; an unfinished one
resumes from its part files.  Batches are formed from the remaining questions in dataset
order, so a resumed run scores exactly the batches an uninterrupted run would have.
``batch_size`` and the device are not part of the key (they change no number beyond float
rounding); the dtype is.
"""

from __future__ import annotations

import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path

import pandas as pd
import torch
from tqdm.auto import tqdm

from studylib.data.records import Dataset, Question
from studylib.models.adapter import LlavaAdapter
from studylib.pruners import PrunerConfigError
from studylib.sweep.grid import Config, StudyParameterError, as_list, check_positive
from studylib.sweep.identity import display_name, model_identity, model_num_tokens, questions_digest
from studylib.sweep.scoring import CAPTION_TASK, Encoder, batches, score_batch
from studylib.sweep.store import STORE_VERSION, Cell
from studylib.sweep.validate import load_checked_dataset, select_questions


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
    max_new_tokens = check_positive(max_new_tokens, "max_new_tokens")
    try:
        configs = list(dict.fromkeys(Config.parse(c) for c in as_list(configs, "configs")))
    except PrunerConfigError as error:
        raise StudyParameterError(f"configs: {error}") from None
    if not configs:
        raise StudyParameterError("configs is empty; build them with config_grid(pruners, budgets, ...)")
    data = load_checked_dataset(dataset, options)
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
    batch_size = check_positive(batch_size, "batch_size")
    device = _resolve_device(device)
    dtype = _resolve_dtype(model, dtype, device)
    plan = plan_sweep(model, dataset, configs, dataset_options=dataset_options, results_dir=results_dir,
                      limit=limit, max_new_tokens=max_new_tokens, dtype=dtype)
    options = dict(dataset_options or {})
    Path(results_dir).mkdir(parents=True, exist_ok=True)
    display = model_name or display_name(model)
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
        encoder = Encoder(adapter, plan.dataset, list(dict.fromkeys(q.image_key for q in questions)))
        bar = tqdm(total=sum(len(r) for *_, r in todo), desc=dataset, unit="q", disable=not progress)
        try:
            for config, cell, info, remaining in todo:
                pruner = config.build()
                bar.set_description(f"{dataset} {config}")
                for batch in batches(remaining, batch_size):
                    start = time.perf_counter()
                    rows = score_batch(adapter, encoder, batch, pruner, config.k, max_new_tokens, plan.dataset)
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


__all__ = ["SweepPlan", "plan_sweep", "run_sweep"]
