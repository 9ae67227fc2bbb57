"""Parameter checks that run before any work: one clear error for every bad parameter.

:func:`validate_parameters` is an experiment's first call; :func:`load_checked_dataset` and
:func:`select_questions` are shared with :func:`studylib.sweep.plan_sweep`, so a dataset is
loaded once for validation and sweep (the last two loads are kept in memory).
"""

from __future__ import annotations

import inspect
import json
from collections.abc import Mapping
from functools import lru_cache
from pathlib import Path

import studylib.data as data_registry
from studylib.data.records import Dataset, Question
from studylib.models.adapter import LlavaAdapter
from studylib.pruners import PrunerConfigError, parse_spec
from studylib.sweep.grid import StudyParameterError, as_list, check_budget, check_positive, config_grid
from studylib.models.loading import ModelSettingError, check_device, check_dtype
from studylib.sweep.identity import canonical, canonical_options, model_num_layers, model_num_tokens
from studylib.sweep.scoring import CAPTION_TASK, SCORED_TASKS

_UNKNOWN_N = 10**9  # budget bound when the model is unknown (its own error is reported instead)


@lru_cache(maxsize=2)
def _load(name: str, options_json: str, stamps: str) -> Dataset:
    return data_registry.load_dataset(name, **json.loads(options_json))


def _source_stamps(options: dict) -> str:
    """(path, size, mtime) of the data files an option points at (the file itself, or the
    ``.json``/``.jsonl``/``.parquet`` files up to two levels under a folder): the in-memory
    copy of a dataset is reloaded when one of them changes."""
    stamps = []
    for value in options.values():
        if not isinstance(value, (str, Path)) or not str(value) or not Path(value).expanduser().exists():
            continue
        path = Path(value).expanduser()
        files = [path] if path.is_file() else [f for pattern in ("*.json*", "*/*.json*", "*.parquet", "*/*.parquet")
                                                 for f in sorted(path.glob(pattern))]
        stamps += [(str(f), f.stat().st_size, f.stat().st_mtime_ns) for f in files if f.is_file()]
    return json.dumps(stamps)


def load_checked_dataset(name: str, options: dict) -> Dataset:
    """``load_dataset`` with bad names/options/paths turned into :class:`StudyParameterError`."""
    if not isinstance(name, str) or not name:
        raise StudyParameterError(f"dataset: expected a dataset name, got {name!r}; "
                                  f"choose one of {data_registry.list_datasets()}")
    if not isinstance(options, dict):
        raise StudyParameterError(f"dataset_options must be a dict of loader options, got {options!r}")
    if name not in data_registry.list_datasets():
        raise StudyParameterError(f"dataset: unknown dataset {name!r}; choose one of {data_registry.list_datasets()}")
    try:
        filled = canonical_options(name, options)
    except TypeError as error:
        accepted = ", ".join(inspect.signature(data_registry.dataset_loader(name)).parameters)
        raise StudyParameterError(f"dataset_options for {name!r}: {error}; accepted options: {accepted}") from None
    try:
        return _load(name, canonical(filled), _source_stamps(options))
    except FileNotFoundError as error:
        raise StudyParameterError(f"dataset_options for {name!r}: data not found: {error}") from None
    except (ValueError, KeyError) as error:
        raise StudyParameterError(f"dataset_options for {name!r}: {error}") from None


def select_questions(dataset: Dataset, limit: int | None) -> list[Question]:
    """The questions of the first ``limit`` distinct images (all of them with ``None``),
    in dataset order, so all questions about an image stay together."""
    limit = check_positive(limit, "limit", allow_none=True)
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


def _grid_problems(pruners, budgets, seeds, bound: int) -> list[str]:
    problems = []
    for pruner in as_list(pruners, "pruners"):
        try:
            parse_spec(str(pruner))
        except PrunerConfigError as error:
            problems.append(f"pruners: {error}")
    for k in as_list(budgets, "budgets"):
        try:
            check_budget(k, bound)
        except StudyParameterError as error:
            problems.append(str(error))
    if not problems:
        try:
            config_grid(pruners, budgets, seeds, bound)
        except PrunerConfigError as error:
            problems.append(f"pruners: {error}")
        except StudyParameterError as error:
            problems.append(str(error))
    return problems


def layer_problems(pruners, n_layers: int) -> list[str]:
    """In-LLM pruners (FastV, DART) whose ``layer`` is not a decoder layer of the model: they
    prune before layer ``L`` from layer ``L - 1``'s attention, so ``1 <= L <= n_layers - 1``.  The
    staged ones (PyramidDrop, SparseVLM) scale their layers to the model and need two layers."""
    problems = []
    for spec in as_list(pruners, "pruners"):
        try:
            pruner = parse_spec(str(spec))
        except PrunerConfigError:
            continue  # reported by the grid check
        if pruner.stage == "llm" and pruner.layer is None and n_layers < 2:  # staged: pdrop, sparsevlm
            problems.append(f"pruners: {pruner} drops tokens after the first decoder layer, but the model's language "
                            f"model has {n_layers} layer")
        elif pruner.stage == "llm" and pruner.layer is not None and not 1 <= pruner.layer < n_layers:
            problems.append(f"pruners: {pruner} prunes before decoder layer {pruner.layer}, but the model's language "
                            f"model has {n_layers} layers; use layer between 1 and {n_layers - 1}")
    return problems


def settings_problems(device, dtype) -> list[str]:
    """``device`` / ``dtype`` problems (:func:`~studylib.models.loading.check_device`,
    :func:`~studylib.models.loading.check_dtype`); ``None`` skips a check."""
    try:
        resolved = check_device(device) if device is not None else None
        if dtype is not None:
            check_dtype(dtype, resolved if resolved is not None else "cpu")
    except ModelSettingError as error:
        return [str(error)]
    return []


def _model_problems(params: Mapping) -> tuple[list[str], int]:
    """Problems of ``model`` and the in-LLM pruner layers, and N (a large bound when unknown)."""
    if "model" not in params:
        return [], _UNKNOWN_N
    try:
        n_tokens = model_num_tokens(params["model"])
        pruners = as_list(params.get("pruners"), "pruners") + as_list(params.get("pruner"), "pruner")
        return layer_problems(pruners, model_num_layers(params["model"])), n_tokens
    except StudyParameterError as error:
        return [str(error)], _UNKNOWN_N


def _counts_problems(params: Mapping) -> list[str]:
    problems = []
    for name, allow_none in (("batch_size", False), ("limit", True)):
        if name in params:
            try:
                check_positive(params[name], name, allow_none=allow_none)
            except StudyParameterError as error:
                problems.append(str(error))
    n_bootstrap = params.get("n_bootstrap", 0)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        problems.append(f"n_bootstrap must be a non-negative integer (0 skips the CIs), got {n_bootstrap!r}")
    return problems


def check_run_parameters(params: Mapping) -> None:
    """The checks that need no dataset, on a notebook's parameters by their shared names
    (``model``, ``device``, ``dtype``, ``pruner``/``pruners``, ``budgets``, ``seeds``,
    ``batch_size``, ``limit``, ``n_bootstrap``; absent names are skipped): ONE
    :class:`StudyParameterError` listing every problem, so a build stops before any notebook
    runs (the experiment's own :func:`validate_parameters` still checks the rest)."""
    problems, n_tokens = _model_problems(params)
    problems += settings_problems(params.get("device"), params.get("dtype"))
    pruners = as_list(params.get("pruners"), "pruners") + as_list(params.get("pruner"), "pruner")
    problems += _grid_problems(pruners or ["full"], params.get("budgets") or [1], params.get("seeds"), n_tokens)
    problems += _counts_problems(params)
    if len(problems) == 1:
        raise StudyParameterError(problems[0])
    if problems:
        raise StudyParameterError(f"{len(problems)} problems with the parameters: " + "; ".join(problems))


def validate_parameters(model: str | LlavaAdapter, dataset: str, dataset_options: dict | None, pruners, budgets,
                        seeds=None, *, limit: int | None = None, device=None, dtype=None) -> None:
    """Raise ONE :class:`StudyParameterError` listing every bad parameter (unknown model path,
    unknown dataset, bad dataset option or missing data path, unknown pruner or pruner
    parameter, an in-LLM pruner's layer outside the model, budget outside [1, N], empty grid,
    bad seeds or limit, and, when given, a bad ``device`` or ``dtype``) with its fix; return
    ``None`` when the sweep can run.  N and the layer count are read from the model's config,
    no weights are loaded."""
    problems = settings_problems(device, dtype)
    n_tokens = None
    try:
        n_tokens = model_num_tokens(model)
        problems += layer_problems(pruners, model_num_layers(model))
    except StudyParameterError as error:
        problems.append(str(error))
    try:
        select_questions(load_checked_dataset(dataset, dict(dataset_options or {})), limit)
    except StudyParameterError as error:
        problems.append(str(error))
    problems += _grid_problems(pruners, budgets, seeds, n_tokens if n_tokens is not None else _UNKNOWN_N)
    if len(problems) == 1:
        raise StudyParameterError(problems[0])
    if problems:
        raise StudyParameterError(f"{len(problems)} problems with the parameters:\n"
                                  + "\n".join(f"- {p}" for p in problems))


__all__ = ["check_run_parameters", "layer_problems", "load_checked_dataset", "select_questions", "settings_problems", "validate_parameters"]
