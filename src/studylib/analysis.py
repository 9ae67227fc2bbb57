"""Tables of the study from result rows (:func:`studylib.sweep.run_sweep`): calibration per
config with cluster-bootstrap CIs, cross-validated temperature scaling, paired differences,
reliability and risk-coverage curves, CHAIR.

Conventions (``../shared/reference/evaluation.md`` §5, functions of :mod:`studylib.metrics`):

* top-label confidence ``c_i`` = the row's ``confidence`` (max of ``probs``), correctness the
  row's ``correct``;
* **ECE / MCE**: 15 equal-width bins, right-closed ``(lo, hi]`` (the library default);
* **Brier**: the *multiclass* score ``(1/N) sum_i sum_k (p_ik - 1[y_i = k])^2`` over the
  row's answer choices, range [0, 2]; for yes/no it is twice the binary (P(yes)) Brier;
* **NLL**: ``-(1/N) sum_i log p_{i,y_i}`` computed from the stored class ``logits``
  (log-softmax over the same answer set as ``probs``, so no clipping is needed);
* **AURC / E-AURC**: rectangle rule, ties averaged over orders, E-AURC against the exact
  discrete oracle; selective accuracy at 80 % coverage keeps the ceil(0.8 N) most confident;
* **CIs**: percentile bootstrap, B = ``n_bootstrap`` (1,000), 95 %, seeded; by default whole
  images are resampled (``cluster="image"``) because questions about one image are
  correlated (POPE asks up to six).  All metrics of a group use the same resamples.

Rows of several question types may be mixed in one group (yes/no with 2 choices, multiple
choice with 4): probabilities are zero-padded, which changes neither Brier nor NLL.
"""

from __future__ import annotations

import warnings
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.special import log_softmax, logsumexp

from studylib.metrics import (
    BootstrapInterval,
    ReliabilityBins,
    RiskCoverage,
    chair_from_counts,
    excess_aurc,
    expected_calibration_error,
    fit_temperature,
    fold_assignment,
    maximum_calibration_error,
    reliability_bins,
    resample_indices,
    risk_coverage_curve,
    selective_accuracy,
)
from studylib.metrics import aurc as _aurc
from studylib.pruners import parse_spec

SCORED_TASKS = ("yesno", "mc")
CI_METRICS = ("accuracy", "ece", "brier", "nll", "aurc")
CHAIR_CI_METRICS = ("chair_s", "chair_i", "recall")
CARRIED = ("model", "dataset", "method", "pruner", "k", "seed", "task", "split")
SELECTIVE_COVERAGE = 0.8
LEVEL = 0.95


# --------------------------------------------------------------------------------------- views


def _scored(rows: pd.DataFrame) -> pd.DataFrame:
    if "task" in rows:
        rows = rows[rows["task"].isin(SCORED_TASKS)]
    if rows.empty:
        raise ValueError("no yes/no or multiple-choice rows to summarise (caption rows go to chair_summary)")
    return rows


def _captions(rows: pd.DataFrame) -> pd.DataFrame:
    if "task" in rows:
        rows = rows[rows["task"] == "caption"]
    if "n_hallucinated" in rows:
        rows = rows[rows["n_hallucinated"].notna()]
    if rows.empty:
        raise ValueError("no caption rows with ground-truth objects to summarise")
    return rows


class _View:
    """Per-question arrays of a set of scored rows, indexable by a resample."""

    def __init__(self, frame: pd.DataFrame):
        n = len(frame)
        choices = list(frame["choices"])
        probs = list(frame["probs"])
        width = max(len(c) for c in choices)
        self.probs = np.zeros((n, width))
        self.logits = np.full((n, width), -np.inf)
        self.label = np.empty(n, dtype=np.int64)
        has_logits = "logits" in frame
        logits = list(frame["logits"]) if has_logits else None
        for i, (options, label) in enumerate(zip(choices, frame["label"])):
            options = list(options)
            if label not in options:
                raise ValueError(f"row {i}: label {label!r} is not one of its choices {options}")
            self.label[i] = options.index(label)
            self.probs[i, : len(options)] = probs[i]
            if has_logits:
                self.logits[i, : len(options)] = logits[i]
        _check_distributions(frame, self.probs, self.logits if has_logits else None, choices)
        if not has_logits:
            with np.errstate(divide="ignore"):
                self.logits = np.log(self.probs)
        self.width = np.array([len(c) for c in choices])
        self.confidence = frame["confidence"].to_numpy(dtype=np.float64)
        self.correct = frame["correct"].to_numpy(dtype=bool)
        self.prediction = frame["prediction"].to_numpy(dtype=object)
        self.yesno = frame["task"].to_numpy() == "yesno" if "task" in frame else self.width == 2
        onehot = np.zeros_like(self.probs)
        onehot[np.arange(n), self.label] = 1.0
        self.brier = np.sum((self.probs - onehot) ** 2, axis=1)
        self.nll = logsumexp(self.logits, axis=1) - self.logits[np.arange(n), self.label]

    def take(self, index: np.ndarray) -> "_View":
        view = object.__new__(type(self))
        for name, value in vars(self).items():
            setattr(view, name, value[index])
        return view


PROB_TOLERANCE = 1e-4


def _check_distributions(frame: pd.DataFrame, probs: np.ndarray, logits: np.ndarray | None, choices) -> None:
    """Rows must carry a probability distribution over their choices (finite, in [0, 1], summing
    to 1) and, where stored, finite class logits: a NaN must never become padding or a number."""
    real = np.zeros(probs.shape, dtype=bool)
    for i, options in enumerate(choices):
        real[i, : len(options)] = True
    problems = ~np.isfinite(probs).all(1) | (probs < 0).any(1) | (probs > 1).any(1)
    problems |= np.abs(probs.sum(1) - 1.0) > PROB_TOLERANCE
    if logits is not None:
        problems |= ~np.where(real, np.isfinite(logits), True).all(1)
    if problems.any():
        i = int(np.argmax(problems))
        qid = frame["qid"].iloc[i] if "qid" in frame else i
        raise ValueError(f"row {qid!r}: probs {probs[i][real[i]].tolist()} / logits "
                         f"{None if logits is None else logits[i][real[i]].tolist()} are not a finite, normalised "
                         f"distribution over its choices; the rows are damaged or not from run_sweep")


def _yes_ratio(v: _View) -> float:
    return float(np.mean(v.prediction[v.yesno] == "yes")) if v.yesno.any() else float("nan")


METRICS: dict[str, Callable[[_View], float]] = {
    "accuracy": lambda v: float(np.mean(v.correct)),
    "ece": lambda v: expected_calibration_error(v.confidence, v.correct),
    "mce": lambda v: maximum_calibration_error(v.confidence, v.correct),
    "brier": lambda v: float(np.mean(v.brier)),
    "nll": lambda v: float(np.mean(v.nll)),
    "aurc": lambda v: _aurc(v.confidence, v.correct),
    "e_aurc": lambda v: excess_aurc(v.confidence, v.correct),
    "mean_confidence": lambda v: float(np.mean(v.confidence)),
    "overconfidence": lambda v: float(np.mean(v.confidence) - np.mean(v.correct)),
    "sel_acc_80": lambda v: selective_accuracy(v.confidence, v.correct, SELECTIVE_COVERAGE),
    "yes_ratio": _yes_ratio,
}


class _ChairView:
    def __init__(self, frame: pd.DataFrame):
        self.mentions = frame["n_mentions"].to_numpy(dtype=np.int64)
        self.hallucinated = frame["n_hallucinated"].to_numpy(dtype=np.int64)
        self.recalled = frame["n_recalled"].to_numpy(dtype=np.int64)
        self.ground_truth = frame["n_gt"].to_numpy(dtype=np.int64)
        self.length = frame["length"].to_numpy(dtype=np.float64)
        self.erank = frame["erank_kept"].to_numpy(dtype=np.float64) if "erank_kept" in frame else np.full(len(frame), np.nan)

    take = _View.take

    def rates(self) -> dict[str, float]:
        return chair_from_counts(self.mentions, self.hallucinated, self.recalled, self.ground_truth)


CHAIR_METRICS: dict[str, Callable[[_ChairView], float]] = {
    "chair_s": lambda v: v.rates()["chair_s"],
    "chair_i": lambda v: v.rates()["chair_i"],
    "recall": lambda v: v.rates()["recall"],
    "mean_length": lambda v: float(np.mean(v.length)),
}


# --------------------------------------------------------------------------------------- helpers


def _by(by) -> list[str]:
    if by is None:
        return []
    return [by] if isinstance(by, str) else list(by)


def _groups(frame: pd.DataFrame, by: list[str]):
    missing = [c for c in by if c not in frame]
    if missing:
        raise ValueError(f"group-by column(s) {missing} not in the rows; available: {list(frame.columns)}")
    if not by:
        yield (), frame
        return
    for key, group in frame.groupby(by, sort=False, dropna=False):
        yield (key if isinstance(key, tuple) else (key,)), group


def _carried(group: pd.DataFrame, by: list[str]) -> dict:
    out = {}
    for column in CARRIED:
        if column in group and column not in by:
            values = group[column].drop_duplicates()
            if len(values) == 1:
                out[column] = values.iloc[0]
    return out


def _cluster_ids(group: pd.DataFrame, cluster: str | None):
    if cluster is None:
        return None
    if cluster not in group:
        raise ValueError(f"cluster column {cluster!r} not in the rows; pass cluster=None to resample questions")
    return group[cluster].to_numpy()


def _percentiles(values: np.ndarray) -> tuple[float, float]:
    values = values[np.isfinite(values)]
    if not len(values):
        return float("nan"), float("nan")
    alpha = 1.0 - LEVEL
    low, high = np.quantile(values, [alpha / 2, 1 - alpha / 2])
    return float(low), float(high)


def _bootstrap(view, metrics: dict, names: Sequence[str], n: int, n_bootstrap: int, seed: int, groups) -> dict:
    """Percentile CIs of several metrics from the same resamples."""
    if not n_bootstrap:
        return {f"{m}_{side}": float("nan") for m in names for side in ("low", "high")}
    draws = {m: [] for m in names}
    for index in resample_indices(n, n_bootstrap, seed, groups):
        sample = view.take(index)
        for m in names:
            draws[m].append(metrics[m](sample))
    out = {}
    for m in names:
        out[f"{m}_low"], out[f"{m}_high"] = _percentiles(np.asarray(draws[m], dtype=np.float64))
    return out


def _select(rows: pd.DataFrame, config) -> pd.DataFrame:
    if "config" not in rows:
        raise ValueError("the rows have no 'config' column; pass the rows returned by run_sweep")
    frame = rows[rows["config"] == str(config)]
    if frame.empty:
        raise ValueError(f"no rows for config {str(config)!r}; configs present: {list(dict.fromkeys(rows['config']))}")
    return frame


# --------------------------------------------------------------------------------------- summaries


def calibration_summary(rows: pd.DataFrame, by=("config",), n_bootstrap: int = 1000, seed: int = 0,
                        cluster: str | None = "image") -> pd.DataFrame:
    """One row per group: ``n``, ``n_clusters``, ``accuracy``, ``ece``, ``mce``, ``brier``
    (multiclass), ``nll``, ``aurc``, ``e_aurc``, ``mean_confidence``, ``overconfidence``
    (mean confidence − accuracy), ``sel_acc_80`` (selective accuracy at 80 % coverage),
    ``yes_ratio`` (share of "yes" predictions among yes/no rows; NaN without them), and
    ``<m>_low``/``<m>_high`` 95 % percentile-bootstrap bounds for accuracy, ece, brier, nll
    and aurc (``cluster`` column resampled as clusters, ``None`` = questions; ``n_bootstrap=0``
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
        record |= _bootstrap(view, METRICS, CI_METRICS, len(group), n_bootstrap, seed, groups)
        records.append(record)
    frame = pd.DataFrame(records)
    order = (by + [c for c in CARRIED if c in frame and c not in by] + ["n", "n_clusters"]
             + [c for m in METRICS for c in ((m, f"{m}_low", f"{m}_high") if m in CI_METRICS else (m,))])
    return frame[[c for c in order if c in frame]]


def _padded_logits(view: _View) -> np.ndarray:
    """Finite logits for the temperature fit: padding far below each row's minimum."""
    logits = view.logits.copy()
    finite = np.isfinite(logits)
    if not finite.all():
        row_min = np.where(finite, logits, np.inf).min(axis=1, keepdims=True)
        logits = np.where(finite, logits, row_min - 1e4)
    return logits


def temperature_summary(rows: pd.DataFrame, by=("config",), n_folds: int = 5, seed: int = 0,
                        cluster: str = "image") -> pd.DataFrame:
    """K-fold cross-validated temperature scaling on the stored class ``logits``, per group.

    Folds are assigned to whole images (``cluster``) once for the whole table, from the sorted
    image ids with ``fold_assignment(n_images, n_folds, seed)``, so every config and split sees
    identical folds.  For fold f, T is fitted (NLL, bounded search) on the group's other folds
    and applied to fold f.  Columns: ``n``, ``t_mean``, ``t_std``, ``t_folds`` (list, one T per
    fold), ``t_at_bound`` (a fit stopped at the search bounds), ``accuracy`` and
    ``ece``/``nll``/``brier`` ``_before`` (T = 1) and ``_after`` (held-out scaled).
    """
    by = _by(by)
    scored = _scored(rows)
    images = np.asarray(sorted(scored[cluster].astype(str).unique()))
    fold_of_image = dict(zip(images, fold_assignment(len(images), n_folds, seed)))
    records = []
    for key, group in _groups(scored, by):
        view = _View(group)
        logits = _padded_logits(view)
        fold = np.array([fold_of_image[str(i)] for i in group[cluster]])
        temperatures = np.full(n_folds, np.nan)
        scaled = np.empty_like(logits)
        at_bound = False
        for f in range(n_folds):
            held, train = fold == f, fold != f
            if not train.any():
                raise ValueError(f"group {key}: every row is in fold {f}; need more images than one fold")
            with warnings.catch_warnings(record=True) as caught:
                warnings.simplefilter("always")
                temperatures[f] = fit_temperature(logits[train], view.label[train])
            at_bound |= any(issubclass(w.category, RuntimeWarning) for w in caught)
            if held.any():
                scaled[held] = logits[held] / temperatures[f]
        log_probs = log_softmax(scaled, axis=1)
        probs = np.exp(log_probs)
        n = len(group)
        prediction = probs.argmax(axis=1)
        onehot = np.zeros_like(probs)
        onehot[np.arange(n), view.label] = 1.0
        record = dict(zip(by, key)) | _carried(group, by)
        record |= {
            "n": n, "t_mean": float(np.mean(temperatures)), "t_std": float(np.std(temperatures)),
            "t_folds": temperatures.tolist(), "t_at_bound": bool(at_bound),
            "accuracy": float(np.mean(view.correct)),
            "ece_before": METRICS["ece"](view),
            "ece_after": expected_calibration_error(probs.max(axis=1), prediction == view.label),
            "nll_before": METRICS["nll"](view),
            "nll_after": float(-np.mean(log_probs[np.arange(n), view.label])),
            "brier_before": METRICS["brier"](view),
            "brier_after": float(np.mean(np.sum((probs - onehot) ** 2, axis=1))),
        }
        records.append(record)
    return pd.DataFrame(records)


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
    sel_acc_80, yes_ratio`` (scored rows) or ``chair_s, chair_i, recall, mean_length``
    (caption rows).  Same resamples and percentile rule as
    :func:`studylib.metrics.paired_bootstrap_ci`, except that resamples on which the metric is
    undefined (NaN, e.g. CHAIR_i of captions without a single mention) are left out of the
    interval (they stay in ``distribution``)."""
    captions = metric in CHAIR_METRICS
    if not captions and metric not in METRICS:
        raise ValueError(f"unknown metric {metric!r}; choose one of {sorted(METRICS) + sorted(CHAIR_METRICS)}")
    a, b = _aligned(rows, config_a, config_b, captions)
    n = len(a)
    make, fn = (_ChairView, CHAIR_METRICS[metric]) if captions else (_View, METRICS[metric])
    both = make(pd.concat([b, a], ignore_index=True))  # rows 0..n-1: b, n..2n-1: a
    groups = _cluster_ids(a, cluster)
    estimate = fn(both.take(np.arange(n))) - fn(both.take(np.arange(n, 2 * n)))
    distribution = np.array([fn(both.take(index)) - fn(both.take(index + n))
                             for index in resample_indices(n, n_bootstrap, seed, groups)], dtype=np.float64)
    low, high = _percentiles(distribution)
    return BootstrapInterval(float(estimate), low, high, LEVEL, distribution)


def reliability(rows: pd.DataFrame, config, n_bins: int = 15) -> ReliabilityBins:
    """Reliability-diagram bins of one config (same 15 bins and edges as its ECE)."""
    frame = _scored(_select(rows, config))
    return reliability_bins(frame["confidence"].to_numpy(float), frame["correct"].to_numpy(bool), n_bins)


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
        record |= _bootstrap(view, CHAIR_METRICS, CHAIR_CI_METRICS, len(group), n_bootstrap, seed,
                             _cluster_ids(group, cluster))
        records.append(record)
    frame = pd.DataFrame(records)
    order = (by + [c for c in CARRIED if c in frame and c not in by] + ["n"]
             + [c for m in CHAIR_CI_METRICS for c in (m, f"{m}_low", f"{m}_high")]
             + ["mean_length", "mean_mentions", "mean_erank_kept", "mean_entropy_kept"])
    return frame[[c for c in order if c in frame]]


def _pope_f1(v: _View) -> float:
    """POPE F1 of the yes/no rows ("yes" is the positive class): the label is "yes" where the
    prediction is "yes" and correct or "no" and wrong."""
    yes = v.prediction[v.yesno] == "yes"
    correct = v.correct[v.yesno]
    tp, fp, fn = np.sum(yes & correct), np.sum(yes & ~correct), np.sum(~yes & ~correct)
    return float(2 * tp / (2 * tp + fp + fn)) if (2 * tp + fp + fn) else float("nan")


def pope_f1_summary(rows: pd.DataFrame, by=("config",), n_bootstrap: int = 1000, seed: int = 0,
                    cluster: str | None = "image") -> pd.DataFrame:
    """POPE F1 (:func:`studylib.metrics.pope_metrics`' definition, yes = positive) per group of yes/no
    rows with its 95 % percentile-bootstrap interval ``f1_low``/``f1_high`` (images resampled, the
    same resamples as :func:`calibration_summary` with the same seed)."""
    by = _by(by)
    records = []
    for key, group in _groups(_scored(rows), by):
        view = _View(group)
        record = dict(zip(by, key)) | {"f1": _pope_f1(view)}
        record |= _bootstrap(view, {"f1": _pope_f1}, ["f1"], len(group), n_bootstrap, seed, _cluster_ids(group, cluster))
        records.append(record)
    return pd.DataFrame(records)


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


def pruner_params(frame: pd.DataFrame, column: str = "pruner") -> pd.DataFrame:
    """A copy of ``frame`` with one column per pruner parameter (full names, e.g. ``alpha``,
    ``gap_power``, ``seed``) parsed from the canonical spec in ``column``."""
    params = [dict(parse_spec(spec).params) for spec in frame[column]]
    extra = pd.DataFrame(params, index=frame.index)
    extra = extra[[c for c in extra.columns if c not in frame.columns]]
    return pd.concat([frame, extra], axis=1)


__all__ = ["METRICS", "calibration_summary", "chair_summary", "family_mean_delta", "paired_delta", "pope_f1_summary",
           "pruner_params", "rank_correlation", "reliability", "risk_coverage", "temperature_summary"]
