"""Per-configuration tables of result rows: calibration with cluster-bootstrap CIs, paired
differences between configurations, reliability and risk-coverage curves, CHAIR."""

from __future__ import annotations

import numpy as np
import pandas as pd

from studylib.analysis.temperature import temperature_delta
from studylib.analysis.views import (CARRIED, CHAIR_CI_METRICS, CHAIR_METRICS, CI_METRICS, LEVEL, METRICS, _by, _captions,
                                     _carried, _ChairView, _cluster_ids, _bootstrap, _groups, _percentiles, _scored,
                                     _select, _View, resampled_metrics, sample_unit)
from studylib.metrics import BootstrapInterval, ReliabilityBins, RiskCoverage, reliability_bins, risk_coverage_curve
from studylib.pruners import parse_spec

def calibration_summary(rows: pd.DataFrame, by=("config",), n_bootstrap: int = 1000, seed: int = 0, ci=CI_METRICS,
                        cluster: str | None = "image") -> pd.DataFrame:
    """One row per group: ``n``, ``n_clusters``, ``accuracy``, ``ece``, ``mce``, ``brier``
    (multiclass), ``nll``, ``aurc``, ``e_aurc``, ``mean_confidence``, ``overconfidence``
    (mean confidence − accuracy), ``sel_acc_80`` (selective accuracy at 80 % coverage),
    ``yes_ratio`` (share of "yes" predictions among yes/no rows; NaN without them), and
    ``f1`` (POPE's F1, yes/no groups only), and ``<m>_low``/``<m>_high`` 95 % percentile-bootstrap
    bounds for each metric of ``ci`` (default :data:`CI_METRICS`; ``cluster`` column resampled as clusters, ``None`` = questions; ``n_bootstrap=0``
    skips the CIs).  Columns constant within a group (model, dataset, method, pruner, k, seed,
    task, split) are carried along; groups keep their order of first appearance."""
    by = _by(by)
    records = []
    for key, group in _groups(_scored(rows), by):
        view = _View(group)
        record = dict(zip(by, key)) | _carried(group, by)
        groups = _cluster_ids(group, cluster)
        record["n"] = len(group)
        record["n_clusters"] = len(np.unique(groups)) if groups is not None else len(group)
        for name, fn in METRICS.items():
            record[name] = fn(view)
        record |= _bootstrap(view, ci, len(group), n_bootstrap, seed, groups)
        records.append(record)
    frame = pd.DataFrame(records)
    order = (by + [c for c in CARRIED if c in frame and c not in by] + ["n", "n_clusters"]
             + [c for m in METRICS for c in ((m, f"{m}_low", f"{m}_high") if m in ci else (m,))])
    return frame[[c for c in order if c in frame]]


def _aligned(rows: pd.DataFrame, config_a, config_b, captions: bool) -> tuple[pd.DataFrame, pd.DataFrame]:
    a, b = _select(rows, config_a), _select(rows, config_b)
    a, b = (_captions(a), _captions(b)) if captions else (_scored(a), _scored(b))
    keys = [c for c in ("dataset", "qid") if c in rows]
    index_a = pd.MultiIndex.from_frame(a[keys])
    index_b = pd.MultiIndex.from_frame(b[keys])
    if index_a.has_duplicates or index_b.has_duplicates:
        raise ValueError("a config has duplicate question ids; pass the rows of one sweep")
    if set(index_a) != set(index_b):
        common = len(set(index_a) & set(index_b))
        raise ValueError(f"configs {str(config_a)!r} and {str(config_b)!r} cover different questions "
                         f"({len(a)} and {len(b)} rows, {common} in common); a paired comparison needs the same ones")
    b = b.set_axis(index_b).loc[index_a].reset_index(drop=True)
    return a.reset_index(drop=True), b


def paired_delta(rows: pd.DataFrame, config_a: str, config_b: str, metric: str = "ece", n_bootstrap: int = 1000,
                 seed: int = 0, cluster: str | None = "image") -> BootstrapInterval:
    """metric(config_b) − metric(config_a) on the same questions, with a paired percentile
    bootstrap CI (the same resampled images for both configs).  ``metric``: any of
    ``accuracy, ece, mce, brier, nll, aurc, e_aurc, mean_confidence, overconfidence,
    sel_acc_80, yes_ratio`` (scored rows), ``t_star_dev`` = |T* − 1| (:func:`studylib.analysis.temperature.temperature_delta`)
    or ``chair_s, chair_i, recall, mean_length`` (caption rows).  Same resamples and percentile rule as
    :func:`studylib.metrics.paired_bootstrap_ci`, except that resamples on which the metric is
    undefined (NaN, e.g. CHAIR_i of captions without a single mention) are left out of the
    interval (they stay in ``distribution``)."""
    captions = metric in CHAIR_METRICS
    if not captions and metric not in METRICS and metric != "t_star_dev":
        raise ValueError(f"unknown metric {metric!r}; choose one of "
                         f"{sorted(METRICS) + sorted(CHAIR_METRICS) + ['t_star_dev']}")
    a, b = _aligned(rows, config_a, config_b, captions)
    n = len(a)
    if metric == "t_star_dev":
        return temperature_delta(_View(a), _View(b), n_bootstrap, seed, _cluster_ids(a, cluster))
    make, fn = (_ChairView, CHAIR_METRICS[metric]) if captions else (_View, METRICS[metric])
    view_a, view_b = make(a), make(b)
    groups = _cluster_ids(a, cluster)
    estimate = fn(view_b) - fn(view_a)
    draws_b, draws_a = resampled_metrics([view_b, view_a], [metric], n, n_bootstrap, seed, groups)
    distribution = draws_b[metric] - draws_a[metric]
    low, high = _percentiles(distribution)
    return BootstrapInterval(float(estimate), low, high, LEVEL, distribution, n, sample_unit(metric))


def reliability(rows: pd.DataFrame, config, n_bins: int = 15) -> ReliabilityBins:
    """Reliability-diagram bins of one config (same 15 bins and edges as its ECE)."""
    frame = _scored(_select(rows, config))
    return reliability_bins(frame["confidence"].to_numpy(float), frame["correct"].to_numpy(bool), n_bins)


def smooth_reliability(rows: pd.DataFrame, config) -> dict:
    """relplot's smoothed reliability diagram of one config (``relplot.prepare_rel_diagram``: the
    kernel-smoothed accuracy ``mu`` over the confidence ``mesh``, the confidence ``density`` and smooth
    ECE ``ce`` at the bandwidth ``sigma`` its smooth ECE picks), without relplot's unseeded bootstrap band."""
    import relplot

    frame = _scored(_select(rows, config))
    return relplot.prepare_rel_diagram(frame["confidence"].to_numpy(float), frame["correct"].to_numpy(float),
                                       plot_confidence_band=False, report_CE_std=False)


def risk_coverage(rows: pd.DataFrame, config) -> RiskCoverage:
    """Risk-coverage curve of one config (ties averaged over their orders)."""
    frame = _scored(_select(rows, config))
    return risk_coverage_curve(frame["confidence"].to_numpy(float), frame["correct"].to_numpy(bool))


def chair_summary(rows: pd.DataFrame, by=("config",), n_bootstrap: int = 1000, seed: int = 0,
                  cluster: str | None = "image") -> pd.DataFrame:
    """CHAIR per group of caption rows: ``n`` captions, ``chair_s`` (share of captions with a
    hallucinated object), ``chair_i`` (hallucinated mentions / mentions, a ratio of sums),
    ``recall`` (recalled / ground-truth objects, ratio of sums), ``mean_length`` (words),
    ``mean_mentions``, ``mean_erank_kept``, ``mean_entropy_kept`` and 95 % percentile-bootstrap
    bounds ``<m>_low``/``<m>_high`` for chair_s, chair_i and recall (captions resampled, as
    image clusters by default).  Fractions, not ×100."""
    by = _by(by)
    records = []
    for key, group in _groups(_captions(rows), by):
        view = _ChairView(group)
        record = dict(zip(by, key)) | _carried(group, by)
        record["n"] = len(group)
        record |= view.rates()
        record["mean_length"] = float(np.mean(view.length))
        record["mean_mentions"] = float(np.mean(view.mentions))
        record["mean_erank_kept"] = float(np.mean(view.erank))
        record["mean_entropy_kept"] = float(group["entropy_kept"].mean()) if "entropy_kept" in group else float("nan")
        record |= _bootstrap(view, CHAIR_CI_METRICS, len(group), n_bootstrap, seed,
                             _cluster_ids(group, cluster))
        records.append(record)
    frame = pd.DataFrame(records)
    order = (by + [c for c in CARRIED if c in frame and c not in by] + ["n"]
             + [c for m in CHAIR_CI_METRICS for c in (m, f"{m}_low", f"{m}_high")]
             + ["mean_length", "mean_mentions", "mean_erank_kept", "mean_entropy_kept"])
    return frame[[c for c in order if c in frame]]


def pruner_params(frame: pd.DataFrame, column: str = "pruner") -> pd.DataFrame:
    """A copy of ``frame`` with one column per pruner parameter (full names, e.g. ``alpha``,
    ``gap_power``, ``seed``) parsed from the canonical spec in ``column``."""
    params = [dict(parse_spec(spec).params) for spec in frame[column]]
    extra = pd.DataFrame(params, index=frame.index)
    extra = extra[[c for c in extra.columns if c not in frame.columns]]
    return pd.concat([frame, extra], axis=1)


__all__ = ["calibration_summary", "chair_summary", "paired_delta", "pruner_params", "reliability", "risk_coverage",
           "smooth_reliability"]
