"""Per-question views of result rows, the metrics computed on them, and the shared helpers
(groups, carried columns, cluster ids, bootstrap percentiles) of :mod:`studylib.analysis`."""

from __future__ import annotations

import hashlib
import math
from collections.abc import Callable, Sequence

import numpy as np
import pandas as pd
from scipy.special import logsumexp

from studylib.analysis.resampled import CaptionResamples, ScoredResamples
from studylib.metrics import (ReliabilityBins, binned_calibration_error, chair_from_counts, debiased_ece,
                              reliability_bins, resample_counts, selective_metrics, smooth_ece)

SCORED_TASKS = ("yesno", "mc")
CI_METRICS = ("accuracy", "f1", "ece", "mce", "brier", "nll", "aurc", "e_aurc", "sel_acc_80")
#: the other estimators of the calibration error (debiased and smooth ECE); their CIs are asked for
#: explicitly (``ci=CI_METRICS + ESTIMATOR_METRICS``): smooth ECE costs about a second per configuration
ESTIMATOR_METRICS = ("ece_debiased", "smece")
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
    """Per-question arrays of a set of scored rows: what :data:`METRICS` read (their resamples are
    evaluated from the same arrays by :mod:`studylib.analysis.resampled`)."""

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
        self.says_yes = np.char.lower(self.prediction.astype(str)) == "yes"
        self.is_yes = np.char.lower(frame["label"].to_numpy().astype(str)) == "yes"
        onehot = np.zeros_like(self.probs)
        onehot[np.arange(n), self.label] = 1.0
        self.brier = np.sum((self.probs - onehot) ** 2, axis=1)
        self.nll = logsumexp(self.logits, axis=1) - self.logits[np.arange(n), self.label]

        self._selective: dict[str, float] | None = None
        self._bins: ReliabilityBins | None = None

    def bins(self) -> ReliabilityBins:
        """The 15 equal-width reliability bins of the view (computed once; ECE and MCE share them)."""
        if self._bins is None:
            self._bins = reliability_bins(self.confidence, self.correct)
        return self._bins

    def selective(self) -> dict[str, float]:
        """AURC, E-AURC and selective accuracy at 80 % coverage, from one ranking (computed once)."""
        if self._selective is None:
            self._selective = selective_metrics(self.confidence, self.correct, SELECTIVE_COVERAGE)
        return self._selective


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


def _pope_f1(v: _View) -> float:
    """POPE's F1 with "yes" as the positive class, 2TP / (2TP + FP + FN) (NaN unless every row is a
    yes/no question): the headline POPE number of LLaVA-1.5 and of the pruning papers that copy it."""
    if not v.yesno.all():
        return math.nan
    tp = np.sum(v.says_yes & v.is_yes)
    wrong = np.sum(v.says_yes != v.is_yes)
    return float(2 * tp / (2 * tp + wrong)) if tp + wrong else math.nan


METRICS: dict[str, Callable[[_View], float]] = {
    "accuracy": lambda v: float(np.mean(v.correct)),
    "f1": _pope_f1,
    "ece": lambda v: binned_calibration_error(v.bins()),
    "ece_debiased": lambda v: debiased_ece(v.confidence, v.correct),
    "smece": lambda v: smooth_ece(v.confidence, v.correct),
    "mce": lambda v: binned_calibration_error(v.bins(), "max"),
    "brier": lambda v: float(np.mean(v.brier)),
    "nll": lambda v: float(np.mean(v.nll)),
    "aurc": lambda v: v.selective()["aurc"],
    "e_aurc": lambda v: v.selective()["e_aurc"],
    "mean_confidence": lambda v: float(np.mean(v.confidence)),
    "overconfidence": lambda v: float(np.mean(v.confidence) - np.mean(v.correct)),
    "sel_acc_80": lambda v: v.selective()["selective_accuracy"],
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

    def rates(self) -> dict[str, float]:
        return chair_from_counts(self.mentions, self.hallucinated, self.recalled, self.ground_truth)


CHAIR_METRICS: dict[str, Callable[[_ChairView], float]] = {
    "chair_s": lambda v: v.rates()["chair_s"],
    "chair_i": lambda v: v.rates()["chair_i"],
    "recall": lambda v: v.rates()["recall"],
    "mean_length": lambda v: float(np.mean(v.length)),
}


def sample_unit(metric: str) -> str:
    """What one sample of ``metric`` is: ``"captions"`` for the caption metrics (CHAIR, recall, length,
    the kept tokens' erank of a caption run), else ``"questions"``."""
    return "captions" if metric in CHAIR_METRICS or metric == "mean_erank_kept" else "questions"


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


def _bootstrap(view, names: Sequence[str], n: int, n_bootstrap: int, seed: int, groups) -> dict:
    """Percentile CIs of several metrics from the same resamples."""
    if not n_bootstrap:
        return {f"{m}_{side}": float("nan") for m in names for side in ("low", "high")}
    draws = resampled_metrics([view], names, n, n_bootstrap, seed, groups)[0]
    out = {}
    for m in names:
        out[f"{m}_low"], out[f"{m}_high"] = _percentiles(draws[m])
    return out


def resampled_metrics(views: Sequence, names: Sequence[str], n: int, n_bootstrap: int, seed: int,
                      groups) -> list[dict[str, np.ndarray]]:
    """Per view, ``{metric: its value on each of the n_bootstrap resamples}``; the views are scored
    or caption views of the same n questions in the same order, so each resample
    (:func:`studylib.metrics.resample_counts`, drawn once for all of them) holds the same
    questions in every view (evaluated by :mod:`studylib.analysis.resampled`).

    Smooth ECE, the one costly metric, is remembered per (questions' confidences and correctness,
    clusters, resamples, seed): a configuration's summary and every paired comparison it enters
    draw the same resamples, so it is evaluated once per configuration (:data:`_SMOOTH_DRAWS`)."""
    names = list(names)
    keys = [_smooth_key(v, n_bootstrap, seed, groups) if "smece" in names and isinstance(v, _View) else None
            for v in views]
    asked = [[m for m in names if not (m == "smece" and key in _SMOOTH_DRAWS)] for key in keys]
    evaluators = [(CaptionResamples(v) if isinstance(v, _ChairView)
                   else ScoredResamples(v, SELECTIVE_COVERAGE)).metrics for v in views]
    blocks = [[evaluate(counts, wanted) for evaluate, wanted in zip(evaluators, asked)]
              for counts in resample_counts(n, n_bootstrap, seed, groups)]
    out = [{m: np.concatenate([block[i][m] for block in blocks]) for m in wanted} for i, wanted in enumerate(asked)]
    for draws, key in zip(out, keys):
        if key is None:
            continue
        if "smece" in draws:
            _SMOOTH_DRAWS[key] = draws["smece"]
            while len(_SMOOTH_DRAWS) > _SMOOTH_DRAWS_KEPT:
                _SMOOTH_DRAWS.pop(next(iter(_SMOOTH_DRAWS)))
        draws["smece"] = _SMOOTH_DRAWS[key]
    return [{m: draws[m] for m in names} for draws in out]


#: smooth-ECE resamples already evaluated, by :func:`_smooth_key` (oldest dropped first)
_SMOOTH_DRAWS: dict[str, np.ndarray] = {}
_SMOOTH_DRAWS_KEPT = 4096


def _smooth_key(view: "_View", n_bootstrap: int, seed: int, groups) -> str:
    """Everything smooth ECE's resamples depend on: the questions' confidences and correctness in
    order, their clusters, the number of resamples and the seed."""
    digest = hashlib.sha256()
    digest.update(np.ascontiguousarray(view.confidence, dtype=np.float64).tobytes())
    digest.update(np.ascontiguousarray(view.correct, dtype=bool).tobytes())
    if groups is not None:
        digest.update(pd.factorize(np.asarray(groups))[0].astype(np.int64).tobytes())
    digest.update(f"{n_bootstrap}/{seed}/{groups is None}".encode())
    return digest.hexdigest()


def _select(rows: pd.DataFrame, config) -> pd.DataFrame:
    if "config" not in rows:
        raise ValueError("the rows have no 'config' column; pass the rows returned by run_sweep")
    frame = rows[rows["config"] == str(config)]
    if frame.empty:
        raise ValueError(f"no rows for config {str(config)!r}; configs present: {list(dict.fromkeys(rows['config']))}")
    return frame
