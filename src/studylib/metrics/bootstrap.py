r"""Percentile bootstrap confidence intervals of any metric, plain, paired and clustered.

A metric is any function ``metric(*arrays) -> float`` of per-question arrays that share their
first dimension (e.g. ``expected_calibration_error(confidence, correct)``).  Each resample
draws N question indices with replacement and recomputes the **whole** metric on the
resampled arrays (re-binning for ECE, ratio of sums for CHAIR_i).  The interval is the
percentile interval :math:`[\hat\theta^*_{(\alpha/2)}, \hat\theta^*_{(1-\alpha/2)}]` of the B
resampled values (``np.quantile``, linear interpolation); the point estimate is the metric on
the original data.  Defaults: B = 1,000 resamples, 95 %, ``seed`` 0
(``np.random.default_rng``), so results are reproducible.

Paired bootstrap: two configurations scored on the same questions (e.g. pruned vs. full
model) are resampled with the **same** indices and the interval is that of the difference
metric(A) − metric(B).

Cluster bootstrap: with ``groups`` (one id per question, e.g. the image; POPE asks 6
questions per image), whole groups are drawn with replacement (as many as there are groups)
and all their questions enter the resample, which respects the within-image correlation.
:func:`bootstrap_ci` and :func:`paired_bootstrap_ci` require ``groups`` (keyword): image ids,
or ``None`` for independent questions, so the resampling unit is always a stated choice.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass

import numpy as np

from studylib.metrics.validation import (GROUPS_REQUIRED, MetricInputError, check_groups_stated, check_open_unit,
                                         check_positive_int)

DEFAULT_RESAMPLES = 1000
DEFAULT_LEVEL = 0.95


@dataclass(frozen=True)
class BootstrapInterval:
    """``estimate`` on the original data, percentile interval [``low``, ``high``] at
    ``confidence_level``, and the B resampled values in ``distribution``."""

    estimate: float
    low: float
    high: float
    confidence_level: float
    distribution: np.ndarray

    @property
    def n_resamples(self) -> int:
        return len(self.distribution)


def _as_sample_arrays(arrays: Sequence, name: str) -> tuple[np.ndarray, ...]:
    if len(arrays) == 0:
        raise MetricInputError(f"{name}: pass at least one per-question array to resample.")
    converted = tuple(np.asarray(a) for a in arrays)
    lengths = {len(a) if a.ndim else None for a in converted}
    if None in lengths or len(lengths) != 1:
        shapes = [a.shape for a in converted]
        raise MetricInputError(f"{name}: arrays must share their first dimension, got shapes {shapes}.")
    if 0 in lengths:
        raise MetricInputError(f"{name}: arrays are empty; nothing to resample.")
    return converted


def resample_indices(
    n_samples: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, groups=None
) -> Iterator[np.ndarray]:
    """Yield ``n_resamples`` index arrays, each N indices drawn with replacement.

    With ``groups``, draw G of the G groups with replacement and yield the indices of all
    members of the drawn groups (so resample sizes vary with group sizes).
    """
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    rng = np.random.default_rng(seed)
    if groups is None:
        for _ in range(n_resamples):
            yield rng.integers(0, n_samples, size=n_samples)
        return
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n_samples:
        raise MetricInputError(f"groups: need one group id per sample ({n_samples}), got shape {groups.shape}.")
    _, group_of = np.unique(groups, return_inverse=True)
    members_in_order = np.argsort(group_of, kind="stable")
    sizes = np.bincount(group_of)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    for _ in range(n_resamples):
        drawn = rng.integers(0, len(sizes), size=len(sizes))
        drawn_sizes = sizes[drawn]
        offsets = np.repeat(starts[drawn] - np.r_[0, np.cumsum(drawn_sizes)[:-1]], drawn_sizes)
        yield members_in_order[offsets + np.arange(drawn_sizes.sum())]


def _interval(estimate: float, distribution: np.ndarray, confidence_level: float) -> BootstrapInterval:
    if not np.all(np.isfinite(distribution)):
        raise MetricInputError(
            f"metric returned {int(np.sum(~np.isfinite(distribution)))} non-finite value(s) on resamples; "
            "make the metric defined on every resample (e.g. guard empty denominators)."
        )
    alpha = 1.0 - confidence_level
    low, high = np.quantile(distribution, [alpha / 2, 1 - alpha / 2])
    return BootstrapInterval(float(estimate), float(low), float(high), confidence_level, distribution)


def bootstrap_ci(
    metric: Callable[..., float],
    *arrays,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = DEFAULT_LEVEL,
    seed: int = 0,
    groups=GROUPS_REQUIRED,
) -> BootstrapInterval:
    """Percentile bootstrap CI of ``metric(*arrays)`` (module docstring); ``groups`` is
    required: image ids (cluster bootstrap) or ``None`` (questions independent).

    Example: ``bootstrap_ci(expected_calibration_error, confidence, correct, groups=image_ids)``.
    """
    groups = check_groups_stated(groups, "bootstrap_ci")
    confidence_level = check_open_unit(confidence_level, "confidence_level", include_one=False)
    arrays = _as_sample_arrays(arrays, "arrays")
    distribution = np.array(
        [metric(*(a[index] for a in arrays)) for index in resample_indices(len(arrays[0]), n_resamples, seed, groups)],
        dtype=np.float64,
    )
    return _interval(metric(*arrays), distribution, confidence_level)


def paired_bootstrap_ci(
    metric: Callable[..., float],
    arrays_a: Sequence,
    arrays_b: Sequence,
    *,
    n_resamples: int = DEFAULT_RESAMPLES,
    confidence_level: float = DEFAULT_LEVEL,
    seed: int = 0,
    groups=GROUPS_REQUIRED,
) -> BootstrapInterval:
    """Percentile bootstrap CI of ``metric(*arrays_a) − metric(*arrays_b)`` on the same questions.

    ``arrays_a`` and ``arrays_b`` are tuples of per-question arrays for configurations A and B,
    aligned question by question; each resample applies one index array to both.  ``groups``
    is required, as for :func:`bootstrap_ci`.
    """
    groups = check_groups_stated(groups, "paired_bootstrap_ci")
    confidence_level = check_open_unit(confidence_level, "confidence_level", include_one=False)
    arrays_a = _as_sample_arrays(arrays_a, "arrays_a")
    arrays_b = _as_sample_arrays(arrays_b, "arrays_b")
    if len(arrays_a[0]) != len(arrays_b[0]):
        raise MetricInputError(
            f"paired bootstrap: configurations A and B cover {len(arrays_a[0])} and {len(arrays_b[0])} "
            "questions; align them on the same questions first."
        )

    def difference(index: np.ndarray) -> float:
        return metric(*(a[index] for a in arrays_a)) - metric(*(b[index] for b in arrays_b))

    distribution = np.array(
        [difference(index) for index in resample_indices(len(arrays_a[0]), n_resamples, seed, groups)], dtype=np.float64
    )
    return _interval(difference(np.arange(len(arrays_a[0]))), distribution, confidence_level)
