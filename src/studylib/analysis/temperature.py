"""Temperature scaling of result rows: cross-validated per-configuration summaries on fixed image
folds, the held-out scaled rows (calibration after scaling with the paired image bootstrap), and
the paired bootstrap of |T* − 1|."""

from __future__ import annotations

import warnings

import numpy as np
import pandas as pd
from scipy.special import log_softmax

from studylib.analysis.views import (LEVEL, METRICS, _by, _carried, _groups, _percentiles, _scored, _View)
from studylib.metrics import BootstrapInterval, expected_calibration_error, fit_temperature, fold_assignment, resample_indices


def _padded_logits(view: _View) -> np.ndarray:
    """Finite logits for the temperature fit: padding far below each row's minimum."""
    logits = view.logits.copy()
    finite = np.isfinite(logits)
    if not finite.all():
        row_min = np.where(finite, logits, np.inf).min(axis=1, keepdims=True)
        logits = np.where(finite, logits, row_min - 1e4)
    return logits


def _scaled_groups(scored: pd.DataFrame, by: list[str], n_folds: int, seed: int, cluster: str):
    """Per group of ``by``: ``(key, group, held-out scaled logits, (temperatures, at_bound))``.
    Folds are assigned to whole images (``cluster``) once for the whole table, from the sorted
    image ids with ``fold_assignment(n_images, n_folds, seed)``, so every group sees identical
    folds; for fold f, T is fitted on the group's other folds and applied to fold f."""
    images = np.asarray(sorted(scored[cluster].astype(str).unique()))
    fold_of_image = dict(zip(images, fold_assignment(len(images), n_folds, seed)))
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
        yield key, group, scaled, (temperatures, at_bound)


def temperature_summary(rows: pd.DataFrame, by=("config",), n_folds: int = 5, seed: int = 0,
                        cluster: str = "image") -> pd.DataFrame:
    """K-fold cross-validated temperature scaling on the stored class ``logits``, per group
    (folds: :func:`_scaled_groups`).  Columns: ``n``, ``t_mean``, ``t_std``, ``t_folds`` (list,
    one T per fold), ``t_at_bound`` (a fit stopped at the search bounds), ``accuracy`` and
    ``ece``/``nll``/``brier`` ``_before`` (T = 1) and ``_after`` (held-out scaled).
    """
    by = _by(by)
    records = []
    for key, group, scaled, (temperatures, at_bound) in _scaled_groups(_scored(rows), by, n_folds, seed, cluster):
        view = _View(group)
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


def temperature_delta(a: _View, b: _View, n_bootstrap: int, seed: int, groups) -> BootstrapInterval:
    """|T*(b) − 1| − |T*(a) − 1|, T* fitted on all questions of each configuration, with a paired
    bootstrap CI: T* is refitted on every resample (Newton from the full-sample T*)."""
    def deviation(view: _View, logits: np.ndarray, index: np.ndarray, start: float) -> float:
        with warnings.catch_warnings():
            warnings.simplefilter("ignore", RuntimeWarning)  # a resample at the bound stays at the bound
            return abs(fit_temperature(logits[index], view.label[index], start=start) - 1.0)

    logits_a, logits_b = _padded_logits(a), _padded_logits(b)
    t_a, t_b = fit_temperature(logits_a, a.label), fit_temperature(logits_b, b.label)
    estimate = abs(t_b - 1.0) - abs(t_a - 1.0)
    distribution = np.array([deviation(b, logits_b, index, t_b) - deviation(a, logits_a, index, t_a)
                             for index in resample_indices(len(a.label), n_bootstrap, seed, groups)])
    low, high = _percentiles(distribution)
    return BootstrapInterval(float(estimate), low, high, LEVEL, distribution, len(a.label))


def held_out_scaled(rows: pd.DataFrame, n_folds: int = 5, seed: int = 0, cluster: str = "image") -> pd.DataFrame:
    """The scored rows with each question's probabilities replaced by its held-out
    temperature-scaled ones (the folds of :func:`temperature_summary`: fitted on the other folds
    of its configuration), so calibration after scaling gets the same paired image bootstrap as
    before: ``paired_delta(held_out_scaled(rows), a, b)`` compares two configurations after
    scaling on fixed folds.  Accuracy is unchanged (T > 0 keeps the argmax)."""
    scored = _scored(rows)
    frames = []
    for _, group, scaled, _ in _scaled_groups(scored, ["config"], n_folds, seed, cluster):
        probs = np.exp(log_softmax(scaled, axis=1))
        widths = [len(c) for c in group["choices"]]
        frames.append(group.assign(probs=[p[:w] for p, w in zip(probs, widths)],
                                   logits=[z[:w] for z, w in zip(scaled, widths)],
                                   confidence=probs.max(axis=1)))
    return pd.concat(frames).loc[scored.index]


__all__ = ["held_out_scaled", "temperature_delta", "temperature_summary"]
