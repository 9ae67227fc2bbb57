"""Parameter checks that run before any work: one clear error for every bad parameter.

:func:`validate_parameters` is an experiment's first call; :func:`check_run_parameters` the
build's (every run setting, by name, before any notebook starts); :func:`load_checked_dataset`,
:func:`select_questions`, :func:`verbalizer_problems` and :func:`store_root` are shared with
:func:`studylib.sweep.plan_sweep`, so a dataset is loaded once for validation and sweep (the
last two loads are kept in memory).
"""

from __future__ import annotations

import inspect
import json
import os
import tempfile
from collections.abc import Mapping, Sequence
from functools import lru_cache
from pathlib import Path

import numpy as np
from transformers import AutoTokenizer

import studylib.data as data_registry
from studylib.data.records import Dataset, Question
from studylib.models import prompts
from studylib.models.adapter import LlavaAdapter, single_token_id
from studylib.pruners import PrunerConfigError, list_pruners, parse_spec
from studylib.sweep.grid import (StudyParameterError, as_list, check_budget, check_positive, check_seed,
                                 config_grid)
from studylib.models.loading import (TINY_RANDOM_NAMES, ModelSettingError, check_device, check_dtype, load_model,
                                     resolve_checkpoint)
from studylib.sweep.identity import canonical, canonical_options, model_num_layers, model_num_tokens
from studylib.sweep.scoring import CAPTION_TASK, SCORED_TASKS

_UNKNOWN_N = 10**9  # budget bound when the model is unknown (its own error is reported instead)

#: the papers' model: LLaVA-1.5 sees N = 576 visual tokens; its headline moderate budget is K = 128
PAPER_N_TOKENS = 576
PAPER_MODERATE_K = 128
#: ``reported_budgets`` default: the paper's K keeping the same share of the visual tokens (K x 576 / N)
AUTO = "auto"
#: shown where the paper has no budget for ours (``reported_budgets=None``)
NO_PAPER_K = "—"
#: parameters derived from ``budgets`` when not given (:func:`derived_budget_parameters`)
DERIVED_FROM_BUDGETS = ("moderate_k", "aggressive_k", "reported_budgets")


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


@lru_cache(maxsize=8)
def _named_tokenizer(name: str):
    if name in TINY_RANDOM_NAMES:
        return load_model(name)[1].tokenizer
    return AutoTokenizer.from_pretrained(resolve_checkpoint(name), local_files_only=True)


def verbalizer_problems(model: str | LlavaAdapter, questions: Sequence[Question]) -> list[str]:
    """The answer words of ``questions`` (``yes``/``no`` variants, option letters up to ``E``)
    that are not one known token of the model's tokenizer: first-token scoring needs each to be
    one (:func:`~studylib.models.adapter.single_token_id`).  A model that cannot be resolved is
    reported by the model checks instead; only its tokenizer is loaded, never its weights."""
    words: dict[str, list[str]] = {}
    for q in questions:
        if q.task in SCORED_TASKS:
            for variants in prompts.verbalizer(q).values():
                for word in variants:
                    words.setdefault(word, []).append(q.qid)
    if not words:
        return []
    try:
        tokenizer = model.tokenizer if isinstance(model, LlavaAdapter) else _named_tokenizer(str(model))
    except Exception:  # noqa: BLE001 - an unresolvable or damaged model has its own error
        return []
    problems = []
    for word, qids in words.items():
        try:
            single_token_id(tokenizer, word)
        except ValueError:
            pieces = tokenizer.convert_ids_to_tokens(tokenizer(word, add_special_tokens=False).input_ids)
            problems.append(f"verbalizer word {word!r} is not one token of the model's tokenizer ({model}; it encodes "
                            f"to {pieces}) but {len(qids)} question(s) need it, e.g. {qids[:3]}; use a model whose "
                            f"tokenizer has it, or drop those questions (e.g. questions with more options)")
    return problems


def store_root(results_dir) -> Path:
    """``results_dir`` as the store's folder, ``~`` expanded; :class:`StudyParameterError` when it
    is not a path, is a file, or cannot be created (:func:`results_dir_problems`)."""
    problems = results_dir_problems(results_dir)
    if problems:
        raise StudyParameterError(problems[0])
    return Path(results_dir).expanduser()


def results_dir_problems(results_dir) -> list[str]:
    """A result store folder must be a path that is a folder, or can be made one: its nearest
    existing parent accepts a new folder (tried with a temporary folder, removed at once).  An
    existing folder is accepted even when it is read-only: its finished cells are read."""
    fix = "choose a folder you can write, e.g. results_dir='results/toy'"
    if not isinstance(results_dir, (str, os.PathLike)) or not str(results_dir).strip():
        return [f"results_dir must be a folder path, got {results_dir!r}; {fix}"]
    path = Path(results_dir).expanduser()
    if path.exists():
        return [] if path.is_dir() else [f"results_dir={str(results_dir)!r} is a file, not a folder; {fix}"]
    parent = next(p for p in path.absolute().parents if p.exists())
    try:
        os.rmdir(tempfile.mkdtemp(prefix=".studylib-probe-", dir=parent))
    except OSError as error:
        return [f"results_dir={str(results_dir)!r} cannot be created: {parent} does not accept a new folder "
                f"({error.strerror}); {fix}"]
    return []


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


def derived_budget_parameters(budgets, n_tokens: int, *, moderate_k=None, aggressive_k=None,
                              reported_budgets=AUTO) -> dict:
    """The parameters that follow ``budgets``, given or derived, checked: ``moderate_k`` (default:
    the pruned budget whose share K/N is closest to the paper's 128/576), ``aggressive_k``
    (default: the smallest pruned budget), and ``k_map``, our budget -> the paper's, from
    ``reported_budgets``: a list (the paper's K at the same positions), ``"auto"`` (K x 576 / N,
    the same share of the tokens: the toy's 144/48/32/16/8 -> 576/192/128/64/32) or ``None``
    (no paper budget: :data:`NO_PAPER_K` in the tables).  ONE :class:`StudyParameterError` lists
    every problem."""
    budgets = [int(k) for k in as_list(budgets, "budgets")]
    pruned = sorted(k for k in budgets if k < n_tokens) or sorted(budgets)
    problems, out = [], {}
    if moderate_k is None and pruned:
        moderate_k = min(pruned, key=lambda k: (abs(k / n_tokens - PAPER_MODERATE_K / PAPER_N_TOKENS), -k))
    if aggressive_k is None and pruned:
        aggressive_k = pruned[0]
    for name, value in (("moderate_k", moderate_k), ("aggressive_k", aggressive_k)):
        if value not in budgets:
            problems.append(f"{name} = {value!r} is not one of budgets {budgets}; pick one of them, or leave {name} "
                            f"unset (null) to derive it from the budgets")
        out[name] = value
    if isinstance(reported_budgets, str) and reported_budgets == AUTO:
        out["k_map"] = {k: round(k * PAPER_N_TOKENS / n_tokens) for k in budgets}
    elif reported_budgets is None:
        out["k_map"] = {k: NO_PAPER_K for k in budgets}
    else:
        reported = as_list(reported_budgets, "reported_budgets")
        if len(reported) != len(budgets) or not all(isinstance(r, int) and not isinstance(r, bool) for r in reported):
            problems.append(f"reported_budgets = {reported_budgets!r}: give the paper's budget (an integer) for each "
                            f"of budgets = {budgets}, in the same order, or \"auto\" (K x {PAPER_N_TOKENS} / N) or null")
        else:
            out["k_map"] = {k: int(r) for k, r in zip(budgets, reported)}
    if problems:
        raise StudyParameterError("; ".join(problems))
    return out


def _budget_problems(params: Mapping, n_tokens: int) -> list[str]:
    """:func:`derived_budget_parameters` of a notebook's parameters (those it declares)."""
    if "budgets" not in params or n_tokens == _UNKNOWN_N:
        return []
    given = {name: params[name] for name in DERIVED_FROM_BUDGETS if name in params}
    try:
        derived_budget_parameters(params["budgets"], n_tokens, **given)
    except StudyParameterError as error:
        return [str(error)]
    except (TypeError, ValueError):
        return []  # malformed budgets: reported by the grid check
    return []


def _dataset_pairs(params: Mapping, where: str = "") -> list[tuple[str, object, object]]:
    """(where, dataset, options) of every dataset a notebook's parameters name: ``dataset`` with
    ``dataset_options``, ``<x>_dataset`` with ``<x>_options``, and the same inside mappings
    (``tasks: {POPE: {dataset: ..., dataset_options: ...}}``)."""
    pairs = []
    for key, value in params.items():
        if key == "dataset":
            pairs.append((f"{where}dataset", value, params.get("dataset_options") or {}))
        elif isinstance(key, str) and key.endswith("_dataset"):
            pairs.append((f"{where}{key}", value, params.get(f"{key.removesuffix('_dataset')}_options") or {}))
        elif isinstance(value, Mapping):
            pairs += _dataset_pairs(value, f"{where}{key}.")
    return pairs


def data_problems(params: Mapping) -> list[str]:
    """Unknown datasets and loader options, and data paths that do not exist, of every dataset a
    notebook's parameters name; no data is read (the experiment loads and checks the rest)."""
    problems = []
    for where, name, options in _dataset_pairs(params):
        if not isinstance(name, str) or name not in data_registry.list_datasets():
            problems.append(f"{where}: unknown dataset {name!r}; choose one of {data_registry.list_datasets()}")
            continue
        if not isinstance(options, Mapping):
            problems.append(f"{where} options must be a mapping of loader options, got {options!r}")
            continue
        signature = inspect.signature(data_registry.dataset_loader(name))
        try:
            signature.bind(**options)
        except TypeError as error:
            problems.append(f"{where} options for {name!r}: {error}; accepted options: {', '.join(signature.parameters)}")
            continue
        for option, value in options.items():
            if "PathLike" in str(signature.parameters[option].annotation) and isinstance(value, (str, Path)) \
                    and not Path(value).expanduser().exists():
                problems.append(f"{where} {name!r}: {option} = {str(value)!r} does not exist (relative paths start at "
                                f"the repository root); download the data (book page 'Reproducing on a GPU') or fix "
                                f"the path")
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


def _pruner_specs(params: Mapping) -> list:
    """A notebook's ``pruners`` and ``pruner``; ``pruners = "all"`` (every_pruner) stands for every
    registered pruner."""
    pruners = params.get("pruners")
    listed = list_pruners() if isinstance(pruners, str) and pruners == "all" else as_list(pruners, "pruners")
    return listed + as_list(params.get("pruner"), "pruner")


def _model_problems(params: Mapping) -> tuple[list[str], int]:
    """Problems of ``model`` and the in-LLM pruner layers, and N (a large bound when unknown)."""
    if "model" not in params:
        return [], _UNKNOWN_N
    try:
        n_tokens = model_num_tokens(params["model"])
        return layer_problems(_pruner_specs(params), model_num_layers(params["model"])), n_tokens
    except StudyParameterError as error:
        return [str(error)], _UNKNOWN_N


#: positive counts a notebook may take, by name, and whether ``None`` (no limit) is allowed
COUNTS = {"batch_size": False, "limit": True, "caption_limit": True, "max_new_tokens": False}


def _counts_problems(params: Mapping) -> list[str]:
    problems = []
    for name, allow_none in COUNTS.items():
        if name in params:
            try:
                check_positive(params[name], name, allow_none=allow_none)
            except StudyParameterError as error:
                problems.append(str(error))
    n_bootstrap = params.get("n_bootstrap", 0)
    if isinstance(n_bootstrap, bool) or not isinstance(n_bootstrap, int) or n_bootstrap < 0:
        problems.append(f"n_bootstrap must be a non-negative integer (0 skips the CIs), got {n_bootstrap!r}")
    if "bootstrap_seed" in params:
        try:
            check_seed(params["bootstrap_seed"], "bootstrap_seed")
        except StudyParameterError as error:
            problems.append(str(error))
    return problems + folds_problems(params)


def folds_problems(params: Mapping) -> list[str]:
    """Cross-validated temperature scaling: ``n_folds`` >= 2 folds of images, each non-empty."""
    if "n_folds" not in params:
        return []
    n_folds, limit = params["n_folds"], params.get("limit")
    if isinstance(n_folds, (bool, np.bool_)) or not isinstance(n_folds, (int, np.integer)) or n_folds < 2:
        return [f"n_folds must be an integer >= 2 (folds of images for cross-validated temperature scaling), "
                f"got {n_folds!r}"]
    if isinstance(limit, (int, np.integer)) and not isinstance(limit, bool) and 1 <= limit < n_folds:
        return [f"limit={limit} images is below n_folds={n_folds}: every fold of temperature scaling needs at least "
                f"one image; raise limit to >= {n_folds} (or null for all images) or lower n_folds"]
    return []


def check_run_parameters(params: Mapping) -> None:
    """The checks that read no data, on a notebook's parameters by their shared names
    (``model``, ``device``, ``dtype``, ``pruner``/``pruners`` (plug-ins loaded), ``budgets``,
    ``seeds``, the parameters derived from the budgets (:data:`DERIVED_FROM_BUDGETS`),
    ``batch_size``, ``limit``, ``caption_limit``, ``max_new_tokens``, ``n_bootstrap``,
    ``bootstrap_seed``, ``results_dir``, ``n_folds``, datasets, their options and that their data
    paths exist; absent names are skipped): ONE :class:`StudyParameterError` listing every
    problem, so a build stops before any notebook runs (the experiment's own
    :func:`validate_parameters` still checks the rest)."""
    problems, n_tokens = _model_problems(params)
    problems += settings_problems(params.get("device"), params.get("dtype"))
    problems += results_dir_problems(params["results_dir"]) if params.get("results_dir") is not None else []
    problems += _grid_problems(_pruner_specs(params) or ["full"], params.get("budgets") or [1], params.get("seeds"),
                               n_tokens)
    problems += _budget_problems(params, n_tokens)
    problems += _counts_problems(params)
    problems += data_problems(params)
    if len(problems) == 1:
        raise StudyParameterError(problems[0])
    if problems:
        raise StudyParameterError(f"{len(problems)} problems with the parameters: " + "; ".join(problems))


def validate_parameters(model: str | LlavaAdapter, dataset: str, dataset_options: dict | None, pruners, budgets,
                        seeds=None, *, limit: int | None = None, device=None, dtype=None) -> None:
    """Raise ONE :class:`StudyParameterError` listing every bad parameter (unknown model path,
    unknown dataset, bad dataset option or missing data path, unknown pruner or pruner
    parameter, an in-LLM pruner's layer outside the model, budget outside [1, N], empty grid,
    bad seeds or limit, an answer word the model's tokenizer does not have as one token, and,
    when given, a bad ``device`` or ``dtype``) with its fix; return
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
        questions = select_questions(load_checked_dataset(dataset, dict(dataset_options or {})), limit)
        problems += verbalizer_problems(model, questions)
    except StudyParameterError as error:
        problems.append(str(error))
    problems += _grid_problems(pruners, budgets, seeds, n_tokens if n_tokens is not None else _UNKNOWN_N)
    if len(problems) == 1:
        raise StudyParameterError(problems[0])
    if problems:
        raise StudyParameterError(f"{len(problems)} problems with the parameters:\n"
                                  + "\n".join(f"- {p}" for p in problems))


__all__ = ["AUTO", "DERIVED_FROM_BUDGETS", "NO_PAPER_K", "PAPER_MODERATE_K", "PAPER_N_TOKENS", "check_run_parameters",
           "data_problems", "derived_budget_parameters", "folds_problems", "layer_problems", "load_checked_dataset",
           "results_dir_problems", "select_questions", "settings_problems", "store_root", "validate_parameters",
           "verbalizer_problems"]
