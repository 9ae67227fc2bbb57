"""Statistics across configurations with one paired image bootstrap: the difference of two families'
mean metric, and a rank correlation of two metrics across configurations (every configuration of a
resample sees the same resampled images)."""

from __future__ import annotations

from collections.abc import Sequence

import numpy as np
import pandas as pd

from studylib.analysis.summaries import _aligned
from studylib.analysis.views import (CHAIR_METRICS, LEVEL, METRICS, _ChairView, _cluster_ids, _percentiles, _View,
                                     resampled_metrics, sample_unit)
from studylib.metrics import BootstrapInterval

def _metric_views(rows: pd.DataFrame, configs: Sequence[str], metric: str):
    """The metric function and one view per config, every view on the questions of ``configs[0]``
    in the same order (so one resample index draws the same images for all); and the cluster ids."""
    captions = sample_unit(metric) == "captions"
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

    def gap(values: np.ndarray) -> np.ndarray:  # configurations along the last axis
        return np.mean(values[..., :n_a], axis=-1) - np.mean(values[..., n_a:], axis=-1)

    estimate = gap(np.array([fn(v) for v in views]))
    distribution = gap(_resampled(views, metric, base, n_bootstrap, seed, cluster))
    low, high = _percentiles(distribution)
    return BootstrapInterval(float(estimate), low, high, LEVEL, distribution, len(base), sample_unit(metric))


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

    def rho(a: np.ndarray, b: np.ndarray) -> float:
        if np.ptp(a) == 0 or np.ptp(b) == 0 or not (np.isfinite(a).all() and np.isfinite(b).all()):
            return float("nan")
        return float(spearmanr(a, b).statistic)

    estimate = rho(np.array([fx(v) for v in views_x]), np.array([fy(v) for v in views_y]))
    draws_x = _resampled(views_x, x, base, n_bootstrap, seed, cluster)
    draws_y = _resampled(views_y, y, base, n_bootstrap, seed, cluster)
    distribution = np.array([rho(a, b) for a, b in zip(draws_x, draws_y)], dtype=np.float64)
    low, high = _percentiles(distribution)
    return BootstrapInterval(estimate, low, high, LEVEL, distribution, len(base), sample_unit(x))


def config_draws(rows: pd.DataFrame, configs: Sequence[str], metric: str = "ece", n_bootstrap: int = 1000,
                 seed: int = 0, cluster: str | None = "image") -> tuple[np.ndarray, np.ndarray]:
    """``metric`` of each configuration (``(C,)``) and on the same image resamples (``(n_bootstrap, C)``):
    every configuration of a resample sees the same resampled images, so any contrast of the columns
    (two configurations, two means of several) has its paired bootstrap distribution."""
    configs = [str(c) for c in configs]
    fn, views, base = _metric_views(rows, configs, metric)
    return np.array([fn(v) for v in views]), _resampled(views, metric, base, n_bootstrap, seed, cluster)


def _resampled(views, metric: str, base: pd.DataFrame, n_bootstrap: int, seed: int, cluster) -> np.ndarray:
    """The metric of every configuration on the same resamples: n_bootstrap × configurations."""
    groups = _cluster_ids(base, cluster)
    return np.column_stack([draws[metric] for draws in resampled_metrics(views, [metric], len(base), n_bootstrap,
                                                                         seed, groups)])


__all__ = ["config_draws", "family_mean_delta", "rank_correlation"]
