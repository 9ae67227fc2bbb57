"""The grammar of a sweep: configurations ``pruner_spec@K`` and the grids built from them.

    >>> Config("scope(alpha=0)", 64)
    Config(pruner='scope(alpha=0,p=1)', k=64)
    >>> [str(c) for c in config_grid(["full", "random"], [16], seeds=[0, 1], n_tokens=144)]
    ['full@144', 'random(seed=0)@16', 'random(seed=1)@16']
"""

from __future__ import annotations

from dataclasses import dataclass

import numpy as np

from studylib.pruners import Pruner, PrunerConfigError, parse_spec


class StudyParameterError(ValueError):
    """A notebook parameter is invalid; the message names it and says how to fix it."""


def check_positive(value, name: str, allow_none: bool = False) -> int | None:
    """``value`` as an int >= 1 (or ``None`` when allowed); else :class:`StudyParameterError`."""
    if value is None and allow_none:
        return None
    if isinstance(value, (bool, np.bool_)) or not isinstance(value, (int, np.integer)) or value < 1:
        raise StudyParameterError(f"{name} must be a positive integer{' or None' if allow_none else ''}, got {value!r}")
    return int(value)


def as_list(value, name: str) -> list:
    """A parameter that may be one item or a list of items, as a list."""
    if value is None:
        return []
    if isinstance(value, (str, int, np.integer)):
        return [value]
    try:
        return list(value)
    except TypeError:
        raise StudyParameterError(f"{name} must be a list, got {value!r}") from None


def check_budget(k, n_tokens: int | None) -> int:
    """A token budget: an integer in ``[1, n_tokens]``."""
    if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
        raise StudyParameterError(f"budgets: {k!r} is not an integer; give token budgets as integers, e.g. [64, 128]")
    if k < 1:
        raise StudyParameterError(f"budgets: {k} is below 1; every budget must keep at least one visual token")
    if n_tokens is not None and k > n_tokens:
        raise StudyParameterError(f"budgets: {k} exceeds the model's N = {n_tokens} visual tokens; "
                                  f"use budgets between 1 and {n_tokens}")
    return int(k)


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
        pruner = parse_spec(spec)
        if "seed" in pruner.params:
            check_seed(pruner.params["seed"], f"config {spec}: seed")
        object.__setattr__(self, "pruner", str(pruner))
        k = self.k
        if isinstance(k, (bool, np.bool_)) or not isinstance(k, (int, np.integer)):
            raise StudyParameterError(f"config {spec}@{k!r}: the budget k must be an integer, got {k!r}")
        if k < 1:
            raise StudyParameterError(f"config {spec}@{k}: the budget k must be >= 1")
        object.__setattr__(self, "k", int(k))

    @classmethod
    def parse(cls, text: "str | Config") -> "Config":
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

    def build(self) -> Pruner:
        """The configured :class:`~studylib.pruners.Pruner`."""
        return parse_spec(self.pruner)

    @property
    def method(self) -> str:
        """Registry name of the pruner (``"scope"``, ``"random"``, ...)."""
        return self.build().name

    @property
    def seed(self) -> int | None:
        return self.build().params.get("seed")


def config_name(pruner: str, k: int) -> str:
    """Canonical config string: ``config_name("scope(alpha=0)", 32) == "scope(alpha=0,p=1)@32"``."""
    return str(Config(pruner, k))


#: the largest seed: the store keeps seeds in a 64-bit integer column
MAX_SEED = 2**63 - 1


def check_seed(seed, name: str = "seeds") -> int:
    """A seed: an integer in ``[0, MAX_SEED]``; else :class:`StudyParameterError` naming ``name``."""
    if isinstance(seed, (bool, np.bool_)) or not isinstance(seed, (int, np.integer)) or not 0 <= seed <= MAX_SEED:
        raise StudyParameterError(f"{name}: {seed!r} is not an integer in [0, 2**63 - 1]; give seeds like "
                                  f"{'[0, 1, 2]' if name == 'seeds' else '0'}")
    return int(seed)


def _check_seeds(seeds) -> list | None:
    if seeds is None:
        return None
    return [check_seed(s) for s in as_list(seeds, "seeds")]


def config_grid(pruners: list[str], budgets: list[int], seeds: list[int] | None = None,
                n_tokens: int | None = None) -> list[Config]:
    """All (pruner, budget[, seed]) configs, validated up front.

    ``"full"`` is emitted once, at ``K = n_tokens`` (which it then requires); pruners with a
    ``seed`` parameter are expanded over ``seeds`` (when given); duplicates are dropped, order
    is pruner-major as given.  Unknown pruners / bad parameters raise the registry's
    :class:`~studylib.pruners.PrunerConfigError`; bad budgets or an empty grid a
    :class:`StudyParameterError` (both ``ValueError``).
    """
    pruners = as_list(pruners, "pruners")
    budgets = [check_budget(k, n_tokens) for k in as_list(budgets, "budgets")]
    seed_list = _check_seeds(seeds)
    if not pruners:
        raise StudyParameterError("pruners is empty: the grid has no configs; give at least one pruner, "
                                  "e.g. pruners=['scope(alpha=0)', 'full']")
    configs: list[Config] = []
    for pruner in (parse_spec(str(p)) for p in pruners):
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
        configs += [Config(str(variant), k) for k in budgets for variant in variants]
    configs = list(dict.fromkeys(configs))
    if not configs:
        raise StudyParameterError("the grid is empty; give at least one pruner and one budget")
    return configs


__all__ = ["Config", "MAX_SEED", "PrunerConfigError", "StudyParameterError", "as_list", "check_budget", "check_positive",
           "check_seed", "config_grid", "config_name"]
