"""One module per experiment of the book: ``run(**params) -> Result`` holds all its logic.

A notebook is the paper's claim in prose, its ``parameters`` cell, one call
``result = experiments.<name>.run(**params)``, and the result's tables, figures and claims with
prose between them.  Claims are declared in ``data/claims/<name>.yaml``.
"""

from studylib.experiments import (alpha_sweep, baselines, erank_hallucination, explore, gallery, gap_power, per_split,
                                  scienceqa, temperature_scaling, u_curve)
from studylib.experiments.result import Result

#: the experiments in the book's order (``scripts/build_book.py`` executes them in this order)
ORDER = ("u_curve", "alpha_sweep", "baselines", "scienceqa", "per_split", "temperature_scaling", "gap_power",
         "erank_hallucination", "gallery", "explore")

__all__ = ["ORDER", "Result", "alpha_sweep", "baselines", "erank_hallucination", "explore", "gallery", "gap_power",
           "per_split", "scienceqa", "temperature_scaling", "u_curve"]
