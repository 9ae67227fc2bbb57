"""The registered pruners described for readers: a text listing and a table (name, family, stage,
method, parameters, source) for the methods page."""

from __future__ import annotations

import pandas as pd

from studylib.pruners.registry import FAMILIES, list_pruners, pruner_info


def describe_pruners(stage: str | None = None) -> str:
    """Human-readable table of every registered pruner with its parameters and defaults."""
    return "\n".join(pruner_info(n).describe() for n in list_pruners(stage))


def pruner_table(stage: str | None = None):
    """Every registered pruner as a table (pandas DataFrame, sorted by family then name): name, family,
    stage, what it does, its parameters with defaults and ranges, and its source (official code or paper)."""
    order = {family: i for i, family in enumerate(FAMILIES)}
    infos = sorted((pruner_info(n) for n in list_pruners(stage)), key=lambda i: (order[i.family], i.name))
    return pd.DataFrame([{"name": i.name, "family": i.family, "stage": i.stage, "method": i.summary,
                          "parameters": "; ".join(p.describe() for p in i.params) or "none", "source": i.source}
                         for i in infos], columns=["name", "family", "stage", "method", "parameters", "source"])


__all__ = ["describe_pruners", "pruner_table"]
