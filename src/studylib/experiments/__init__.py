"""One module per experiment of the book: ``run(**params) -> Result`` holds all its logic.

A notebook is the paper's claim in prose, its ``parameters`` cell, one call
``result = experiments.run("<name>", globals())``, and the result's tables, figures and claims with
prose between them.  Claims are declared in ``data/claims/<name>.yaml``.
"""

from importlib import import_module
from typing import Any, Mapping

from studylib.experiments import (alpha_sweep, baselines, erank_hallucination, every_pruner, explore, gallery, gap_power,
                                  per_split, scienceqa, temperature_scaling, u_curve)
from studylib.experiments.common import RUN_SETTINGS, parameters_for
from studylib.experiments.result import Result
from studylib.sweep import StudyParameterError

#: the experiments in the book's order (``scripts/build_book.py`` executes them in this order)
ORDER = ("u_curve", "alpha_sweep", "baselines", "scienceqa", "per_split", "temperature_scaling", "gap_power",
         "erank_hallucination", "every_pruner", "gallery", "explore")


def run(name: str, namespace: Mapping[str, Any]) -> Any:
    """Run experiment ``name`` (one of :data:`ORDER`) with the parameters and run settings found in
    ``namespace`` and glue its headline values and verdicts for the book: a notebook calls
    ``result = experiments.run("u_curve", globals())`` after its parameters cell."""
    if name not in ORDER:
        raise StudyParameterError(f"unknown experiment {name!r}; choose from {list(ORDER)}")
    module = import_module(f"studylib.experiments.{name}")
    result = module.run(**parameters_for(module.run, namespace))
    if isinstance(result, Result):
        result.glue()
    return result


__all__ = ["ORDER", "RUN_SETTINGS", "Result", "alpha_sweep", "baselines", "erank_hallucination", "every_pruner",
           "explore", "gallery",
           "gap_power", "parameters_for", "per_split", "run", "scienceqa", "temperature_scaling", "u_curve"]
