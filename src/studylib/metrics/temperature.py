r"""Temperature scaling (Guo et al. 2017) on logits, plain and K-fold cross-validated.

Scaled probabilities :math:`p_i(T) = \mathrm{softmax}(z_i / T)` with one scalar T > 0 shared
by all classes, so the argmax (accuracy) is unchanged.  T is fitted by minimising the mean
negative log-likelihood

.. math:: \mathrm{NLL}(T) = \frac1N \sum_i \Big[\ln\sum_k e^{z_{ik}/T} - z_{i,y_i}/T\Big].

NLL is convex in :math:`\beta = 1/T` with derivative
:math:`\frac1N\sum_i (\mathbb{E}_{p_i}[z_i] - z_{i,y_i})` and second derivative
:math:`\frac1N\sum_i \mathrm{Var}_{p_i}[z_i] \ge 0`, so the fit runs Newton's method on β from
β = 1 (or a given start), clipped to ``[1/T_max, 1/T_min]`` and halving any step that does not lower
the NLL: a few milliseconds for 10,000 questions, fast enough to refit T on every bootstrap resample.

The logits are those of the restricted answer set (e.g. "Yes"/"No" or the option letters).
When only restricted probabilities were stored, pass ``np.log(probs)``: softmax of
log-probabilities returns the probabilities, so T acts the same way (with the usual caveat
that clipped fp16 probabilities lose information).

Cross-validated scaling (seed 000 §4.7: 5 folds) for test sets without a calibration split:
samples are shuffled with a seeded generator and split into K folds; for each fold, T is
fitted on the other K−1 folds and applied to the held-out fold, so every sample gets a
probability from a T that never saw it.  Use the same ``seed`` (and ``groups``) for every
configuration compared, so the folds are identical across them.
"""

from __future__ import annotations

import math
import warnings
from dataclasses import dataclass

import numpy as np
from scipy.special import log_softmax, logsumexp

from studylib.metrics.validation import (
    GROUPS_REQUIRED,
    MetricInputError,
    as_labels,
    as_logits,
    check_groups_stated,
    check_positive_int,
    check_same_length,
)

DEFAULT_BOUNDS = (0.01, 100.0)
BETA_TOLERANCE = 1e-10  # relative change of β = 1/T that stops the fit
MAX_NEWTON_STEPS = 100


@dataclass(frozen=True)
class CrossValidatedTemperature:
    """Result of :func:`cross_validated_temperature_scaling`.

    ``temperatures[f]`` is T* fitted without fold f; ``fold[i]`` is the fold of sample i;
    ``probs[i]`` is softmax(z_i / temperatures[fold[i]]), the held-out scaled distribution,
    ready for any metric (ECE, Brier, NLL, AURC …).
    """

    temperatures: np.ndarray
    fold: np.ndarray
    probs: np.ndarray

    @property
    def n_folds(self) -> int:
        return len(self.temperatures)


def _check_temperature(temperature) -> float:
    if not np.isscalar(temperature) or not np.isfinite(temperature) or temperature <= 0:
        raise MetricInputError(f"temperature: must be a finite number > 0, got {temperature!r}.")
    return float(temperature)


def _check_bounds(bounds) -> tuple[float, float]:
    low, high = bounds
    if not (np.isfinite(low) and np.isfinite(high) and 0 < low < high):
        raise MetricInputError(f"bounds: need 0 < T_min < T_max (finite), got {bounds!r}.")
    return float(low), float(high)


def scaled_probabilities(logits, temperature: float = 1.0) -> np.ndarray:
    r"""softmax(z / T) row-wise in float64, computed stably via log-softmax."""
    logits = as_logits(logits)
    return np.exp(log_softmax(logits / _check_temperature(temperature), axis=1))


def _nll(logits: np.ndarray, labels: np.ndarray, temperature: float) -> float:
    margins = (logits - logits[np.arange(len(labels)), labels][:, None]) / temperature
    return float(np.mean(logsumexp(margins, axis=1)))


def nll_from_logits(logits, labels, temperature: float = 1.0) -> float:
    r"""Mean NLL of softmax(z / T): :math:`\frac1N\sum_i[\ln\sum_k e^{z_{ik}/T} - z_{i,y_i}/T]` (no clipping needed)."""
    logits = as_logits(logits)
    labels = as_labels(labels, logits.shape[1])
    check_same_length(logits=logits, labels=labels)
    return _nll(logits, labels, _check_temperature(temperature))


def _row_logsumexp(values: np.ndarray) -> np.ndarray:
    """log Σ_k exp(values_ik) per row, stably (plain NumPy: SciPy's is slow on thin matrices)."""
    top = values.max(axis=1, keepdims=True)
    return (top + np.log(np.exp(values - top).sum(axis=1, keepdims=True)))[:, 0]


def _margins(logits: np.ndarray, labels: np.ndarray) -> np.ndarray:
    """m_ik = z_ik − z_iy (the label's column is 0): NLL(β) = mean_i log Σ_k exp(β m_ik)."""
    return logits - logits[np.arange(len(labels)), labels][:, None]


def _beta_derivatives(margins: np.ndarray, beta: float) -> tuple[np.ndarray, np.ndarray]:
    """Per-question first and second derivatives of the NLL in β: E_p[m_i] and Var_p[m_i]."""
    scaled = beta * margins
    probs = np.exp(scaled - _row_logsumexp(scaled)[:, None])
    mean = np.sum(probs * margins, axis=1)
    return mean, np.sum(probs * margins ** 2, axis=1) - mean ** 2


def _fit(logits: np.ndarray, labels: np.ndarray, bounds: tuple[float, float], start: float = 1.0) -> float:
    """T* by safeguarded Newton on β = 1/T from T = ``start`` (module docstring); warns when T*
    lands on a bound."""
    margins = _margins(logits, labels)
    low, high = 1.0 / bounds[1], 1.0 / bounds[0]

    def nll(beta: float) -> float:
        return float(np.mean(_row_logsumexp(beta * margins)))

    beta = min(max(1.0 / start, low), high)
    value = nll(beta)
    for _ in range(MAX_NEWTON_STEPS):
        first, second = _beta_derivatives(margins, beta)
        gradient, curvature = float(np.mean(first)), float(np.mean(second))
        step = gradient / curvature if curvature > 0 else math.copysign(beta, gradient)
        candidate = min(max(beta - step, low), high)
        trial = nll(candidate)
        while trial > value and abs(candidate - beta) > BETA_TOLERANCE * beta:
            candidate = 0.5 * (beta + candidate)
            trial = nll(candidate)
        moved = abs(candidate - beta)
        beta, value = candidate, min(trial, value)
        if moved <= BETA_TOLERANCE * beta:
            break
    if min(beta - low, high - beta) <= 1e-9 * beta:
        warnings.warn(
            f"temperature fit stopped at the bound T = {1.0 / beta:.4g} of {bounds}; "
            "the data may be perfectly separable or the bounds too tight.",
            RuntimeWarning,
            stacklevel=3,
        )
    return float(1.0 / beta)


def fit_temperature(logits, labels, bounds: tuple[float, float] = DEFAULT_BOUNDS, start: float = 1.0) -> float:
    r"""T* = argmin_T NLL(T) over ``bounds`` = (T_min, T_max), default (0.01, 100).

    ``logits`` (N, C), ``labels`` integers in [0, C).  T* > 1 softens over-confident
    predictions, T* < 1 sharpens.  Warns (RuntimeWarning) when T* lands on a bound.
    """
    logits = as_logits(logits)
    labels = as_labels(labels, logits.shape[1])
    check_same_length(logits=logits, labels=labels)
    return _fit(logits, labels, _check_bounds(bounds), _check_temperature(start))


def fold_assignment(n_samples: int, n_folds: int, seed: int = 0, groups=None) -> np.ndarray:
    """Fold id (0 … K−1) of each sample from a seeded shuffle.

    Without ``groups``, the permuted samples are split into K near-equal folds
    (``np.array_split``).  With ``groups`` (one id per sample, e.g. the image), whole groups
    are shuffled and split, so all questions about one image share a fold.
    """
    n_folds = check_positive_int(n_folds, "n_folds", minimum=2)
    rng = np.random.default_rng(seed)
    if groups is None:
        units, unit_of_sample = n_samples, np.arange(n_samples)
    else:
        groups = np.asarray(groups)
        if groups.ndim != 1 or len(groups) != n_samples:
            raise MetricInputError(f"groups: need one group id per sample ({n_samples}), got shape {groups.shape}.")
        _, unit_of_sample = np.unique(groups, return_inverse=True)
        units = int(unit_of_sample.max()) + 1
    if n_folds > units:
        raise MetricInputError(f"n_folds: {n_folds} folds need at least {n_folds} samples/groups, got {units}.")
    fold_of_unit = np.empty(units, dtype=np.int64)
    for fold, members in enumerate(np.array_split(rng.permutation(units), n_folds)):
        fold_of_unit[members] = fold
    return fold_of_unit[unit_of_sample]


def cross_validated_temperature_scaling(
    logits, labels, *, groups=GROUPS_REQUIRED, n_folds: int = 5, seed: int = 0,
    bounds: tuple[float, float] = DEFAULT_BOUNDS
) -> CrossValidatedTemperature:
    """K-fold cross-validated temperature scaling (module docstring); default K = 5 as in seed 000 §4.7.

    ``groups`` is required: image ids (all questions about an image share a fold) or ``None``
    (questions assigned to folds independently).  Returns per-fold T* and the held-out scaled
    probabilities of every sample.
    """
    groups = check_groups_stated(groups, "cross_validated_temperature_scaling")
    logits = as_logits(logits)
    labels = as_labels(labels, logits.shape[1])
    check_same_length(logits=logits, labels=labels)
    bounds = _check_bounds(bounds)
    fold = fold_assignment(len(labels), n_folds, seed, groups)
    temperatures = np.empty(n_folds)
    probs = np.empty_like(logits)
    for f in range(n_folds):
        held_out = fold == f
        temperatures[f] = _fit(logits[~held_out], labels[~held_out], bounds)
        probs[held_out] = np.exp(log_softmax(logits[held_out] / temperatures[f], axis=1))
    return CrossValidatedTemperature(temperatures=temperatures, fold=fold, probs=probs)
