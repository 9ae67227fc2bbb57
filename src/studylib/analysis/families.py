"""Statistics across configurations with one paired image bootstrap: the difference of two families'
mean metric, and a rank correlation of two metrics across configurations (every configuration of a
resample sees the same resampled images)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from studylib.analysis.summaries import _aligned
from studylib.analysis.views import CHAIR_METRICS, LEVEL, METRICS, _ChairView, _cluster_ids, _percentiles, _View
from studylib.metrics import BootstrapInterval, resample_indices

def _metric_views(rows: pd.DataFrame, configs: Sequence[str], metric: str):
    """The metric function and one view per config, every view on the questions of ``configs[0]``
    in the same order (so one resample index draws the same images for all); and the cluster ids."""
    captions = metric in CHAIR_METRICS or metric == "mean_erank_kept"
    if captions:
        make, fn = _ChairView, CHAIR_METRICS.get(metric, lambda v: float(np.mean(v.erank)))
    elif metric in METRICS:
        make, fn = _View, METRICS[metric]
    else:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS) + sorted(CHAIR_METRICS)} "
                         "or mean_erank_kept")
    views = []
    for config in configs:
        base, other = _aligned(rows, configs[0], config, captions)
        views.append(make(other))
    return fn, views, base


def family_mean_delta(rows: pd.DataFrame, family_a: Sequence[str], family_b: Sequence[str], metric: str = "ece",
                      n_bootstrap: int = 1000, seed: int = 0, cluster: str | None = "image") -> BootstrapInterval:
    """``mean_{c in family_a} metric(c) − mean_{c in family_b} metric(c)`` (configurations on the same
    questions) with a paired percentile-bootstrap CI: each resample draws whole images once and
    evaluates every configuration of both families on them (as :func:`paired_delta` for two)."""
    family_a, family_b = [str(c) for c in family_a], [str(c) for c in family_b]
    if not family_a or not family_b:
        raise ValueError(f"both families need at least one configuration, got {family_a} and {family_b}")
    fn, views, base = _metric_views(rows, family_a + family_b, metric)
    n_a = len(family_a)

    def gap(index=None) -> float:
        values = [fn(v if index is None else v.take(index)) for v in views]
        return float(np.mean(values[:n_a]) - np.mean(values[n_a:]))

    distribution = np.array([gap(index) for index in resample_indices(len(base), n_bootstrap, seed,
                                                                      _cluster_ids(base, cluster))], dtype=np.float64)
    low, high = _percentiles(distribution)
    return BootstrapInterval(gap(), low, high, LEVEL, distribution)


def rank_correlation(rows: pd.DataFrame, configs: Sequence[str], x: str = "mean_erank_kept", y: str = "chair_i",
                     n_bootstrap: int = 1000, seed: int = 0, cluster: str | None = "image") -> BootstrapInterval:
    """Spearman rank correlation, across ``configs``, between two per-configuration metrics of the
    same questions (default: mean erank of the kept tokens vs CHAIR_i of the captions), with a
    percentile-bootstrap CI: each resample draws whole images once and recomputes both metrics of
    every configuration on them.  Resamples with a constant metric (undefined rank correlation)
    are left out of the interval."""
    from scipy.stats import spearmanr

    configs = [str(c) for c in configs]
    if len(configs) < 3:
        raise ValueError(f"a rank correlation across configurations needs at least 3 of them, got {configs}")
    fx, views_x, base = _metric_views(rows, configs, x)
    fy, views_y, _ = _metric_views(rows, configs, y)

    def rho(index=None) -> float:
        take = (lambda v: v) if index is None else (lambda v: v.take(index))
        a = [fx(take(v)) for v in views_x]
        b = [fy(take(v)) for v in views_y]
        if np.ptp(a) == 0 or np.ptp(b) == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
            return float("nan")
        return float(spearmanr(a, b).statistic)

    distribution = np.array([rho(index) for index in resample_indices(len(base), n_bootstrap, seed,
                                                                      _cluster_ids(base, cluster))], dtype=np.float64)
    low, high = _percentiles(distribution)
    return BootstrapInterval(rho(), low, high, LEVEL, distribution)


__all__ = ["family_mean_delta", "rank_correlation"]
