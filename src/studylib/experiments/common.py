"""What every experiment shares: parameter checks, the model's run settings, sweeps, claims.

An experiment's ``run(**params)`` builds a :class:`Setup` from the parameters every notebook
has (model, device, dtype, results_dir, batch_size, limit, n_bootstrap, bootstrap_seed,
profile), runs its sweeps through it and evaluates its declared claims with it.
"""

from __future__ import annotations

import inspect
import math
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping

import pandas as pd
import torch

from studylib.claim_specs import evaluate_claims
from studylib.claims import Claim
from studylib.experiments.result import Result
from studylib.models.adapter import LlavaAdapter
from studylib.pages import is_toy, run_label
from studylib.sweep import Config, StudyParameterError, config_grid, model_num_tokens, run_sweep, validate_parameters
from studylib.sweep.validate import AUTO, check_run_parameters, derived_budget_parameters


#: run settings every experiment accepts besides its own parameters, with their defaults
#: (``results_dir`` None: ``results/<last part of the model name>``)
RUN_SETTINGS: dict[str, Any] = {
    "model": "llava-hf/llava-1.5-7b-hf",  # the papers' model; "toy" is the CPU toy model
    "device": "cuda",
    "dtype": "bfloat16",
    "limit": None,  # keep the questions of the first `limit` images only (CI); None keeps all
    "batch_size": 32,  # questions per forward pass
    "results_dir": None,  # result store: finished configurations are read, not recomputed
    "n_bootstrap": 1000,  # bootstrap resamples for every CI (the papers: 1,000)
    "bootstrap_seed": 0,
    "profile": "default",  # name of the parameter profile (set by scripts/build_book.py)
}


def parameters_for(run: Callable[..., Any], namespace: Mapping[str, Any]) -> dict[str, Any]:
    """The arguments of an experiment's ``run`` found in ``namespace`` (a notebook's globals after
    its ``parameters`` cell and papermill's injected cell): its named parameters and any run settings."""
    names = [p.name for p in inspect.signature(run).parameters.values() if p.kind is p.KEYWORD_ONLY]
    return {name: namespace[name] for name in [*names, *RUN_SETTINGS] if name in namespace}


def require(condition: bool, message: str) -> None:
    """Raise the study's parameter error with ``message`` unless ``condition``."""
    if not condition:
        raise StudyParameterError(message)


def check_choice(name: str, value: Any, allowed: Iterable[Any]) -> None:
    """Raise the study's parameter error unless ``value`` is one of ``allowed`` (e.g. the
    budget a table is about must be in ``budgets``)."""
    allowed = list(allowed)
    if value not in allowed:
        raise StudyParameterError(f"{name} = {value!r} is not one of {allowed}; pick one of them")


def budget_parameters(setup: "Setup", budgets, reported_budgets=AUTO, moderate_k=None,
                      aggressive_k=None) -> tuple[dict, int | None, int | None]:
    """(our budget -> the paper's, ``moderate_k``, ``aggressive_k``): given or derived from the
    budgets and the model's N, checked (:func:`studylib.sweep.validate.derived_budget_parameters`)."""
    derived = derived_budget_parameters(budgets, setup.n_tokens, moderate_k=moderate_k, aggressive_k=aggressive_k,
                                        reported_budgets=reported_budgets)
    return derived["k_map"], derived["moderate_k"], derived["aggressive_k"]


def metric_at(summary: pd.DataFrame, config: str, metric: str) -> float:
    """``metric`` of ``config`` in a per-configuration summary; NaN when the grid lacks it (so a
    headline value of a changed grid is glued as NaN instead of failing)."""
    hit = summary.loc[summary["config"] == config, metric]
    return hit.iloc[0] if len(hit) else math.nan


@dataclass
class Setup:
    """The run settings of one experiment and what follows from them (N, TOY label)."""

    name: str
    model: str
    device: str
    dtype: str
    results_dir: str
    batch_size: int
    limit: int | None
    n_bootstrap: int
    bootstrap_seed: int
    profile: str = "default"
    n_tokens: int = field(init=False)

    def __post_init__(self) -> None:
        self.n_tokens = model_num_tokens(self.model)

    @classmethod
    def create(cls, name: str, settings: Mapping[str, Any] | None = None) -> "Setup":
        """The setup of experiment ``name``: ``settings`` are run settings (:data:`RUN_SETTINGS`),
        the defaults filling what is not given; an unknown name is an error naming the valid ones."""
        settings = dict(settings or {})
        unknown = sorted(set(settings) - set(RUN_SETTINGS))
        require(not unknown, f"{name}: unknown parameter(s) {unknown}; besides its own parameters an experiment "
                             f"takes the run settings {sorted(RUN_SETTINGS)}")
        values = {**RUN_SETTINGS, **settings}
        if values["results_dir"] is None:
            values["results_dir"] = f"results/{Path(str(values['model']).rstrip('/')).name}"
        check_run_parameters(values)  # every run setting, before any work
        return cls(name, **values)

    def result(self, **parts: Any) -> Result:
        """An empty :class:`Result` of this experiment and model (``parts``: its fields)."""
        return Result(self.name, self.model, self.label, n_bootstrap=self.n_bootstrap, **parts)

    def load_adapter(self) -> LlavaAdapter:
        """The model, loaded on the run's device in its dtype."""
        return LlavaAdapter.load(self.model, device=self.device, dtype=getattr(torch, self.dtype))

    @property
    def toy(self) -> bool:
        return is_toy(self.model)

    @property
    def label(self) -> str:
        """Column label of this run's numbers (``"this run (TOY)"`` for the toy)."""
        return run_label(self.model)

    @property
    def stats(self) -> dict[str, int]:
        """``n_bootstrap`` and ``seed`` for every bootstrap of the experiment."""
        return {"n_bootstrap": self.n_bootstrap, "seed": self.bootstrap_seed}

    def cfg(self, pruner: str, k: int | None = None) -> str:
        """Canonical config string; ``cfg("full")`` is the unpruned model at K = N."""
        return str(Config(pruner, self.n_tokens if k is None else k))

    def validate(self, dataset: str, dataset_options: Mapping | None, pruners, budgets, seeds=None,
                 limit: int | None | str = "default") -> None:
        """One error listing every bad parameter, before any work."""
        validate_parameters(self.model, dataset, dataset_options, pruners, budgets, seeds,
                            limit=self.limit if limit == "default" else limit)

    def sweep(self, dataset: str, dataset_options: Mapping | None, pruners, budgets, seeds=None, *,
              limit: int | None | str = "default", max_new_tokens: int = 64) -> pd.DataFrame:
        """Rows of ``pruners`` x ``budgets`` (the unpruned model once, at K = N; budgets equal to N
        are the unpruned model) on ``dataset``, through the result store."""
        pruned = [k for k in budgets if k < self.n_tokens]
        configs = config_grid(pruners, pruned, seeds=seeds, n_tokens=self.n_tokens)
        return run_sweep(self.model, dataset, configs, dataset_options=dict(dataset_options or {}),
                         results_dir=self.results_dir, batch_size=self.batch_size,
                         limit=self.limit if limit == "default" else limit, max_new_tokens=max_new_tokens,
                         progress=False, device=self.device, dtype=self.dtype)

    def size_note(self, rows: pd.DataFrame, dataset: str) -> str:
        """What ran, for the line under a page's first cell: ``8,970 questions about 556 images × 5
        configurations``, and for the toy POPE why its count differs from the papers' 8,910."""
        from studylib.data.pope import LLAVA_POPE_QUESTIONS

        note = (f"{rows['qid'].nunique():,} questions about {rows['image'].nunique():,} images × "
                f"{rows['config'].nunique()} configurations")
        if str(dataset).startswith("toy-pope"):
            note += (f" (the toy POPE asks up to three yes/no pairs per image and split about every image with two "
                     f"or more kinds of object, so its count follows the images drawn; the papers score LLaVA-1.5's "
                     f"POPE file of {LLAVA_POPE_QUESTIONS:,} questions)")
        return note

    def claims(self, frames: Mapping[str, pd.DataFrame] | pd.DataFrame, context: Mapping[str, Any],
               values: Mapping[str, float] | None = None) -> list[Claim]:
        """The experiment's declared claims (``data/claims/<name>.yaml``) judged on this run."""
        frames = {"rows": frames} if isinstance(frames, pd.DataFrame) else frames
        return evaluate_claims(self.name, frames, {"n_tokens": self.n_tokens, **context}, values, **self.stats)


__all__ = ["RUN_SETTINGS", "Setup", "budget_parameters", "check_choice", "metric_at", "parameters_for", "require"]
