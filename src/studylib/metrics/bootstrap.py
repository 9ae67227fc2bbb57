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
    ``confidence_level``, and the B resampled values in ``distribution``; ``n_samples`` is the
    number of samples the estimate rests on, where the caller records it (0: unknown), and
    ``unit`` what they are (``"questions"``, or ``"captions"`` for the caption metrics)."""

    estimate: float
    low: float
    high: float
    confidence_level: float
    distribution: np.ndarray
    n_samples: int = 0
    unit: str = "questions"

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


def _group_layout(n_samples: int, groups) -> np.ndarray | None:
    """Each sample's group number 0 … G−1 (numbered in sorted order of the ids), or ``None``
    without groups."""
    if groups is None:
        return None
    groups = np.asarray(groups)
    if groups.ndim != 1 or len(groups) != n_samples:
        raise MetricInputError(f"groups: need one group id per sample ({n_samples}), got shape {groups.shape}.")
    return np.unique(groups, return_inverse=True)[1].reshape(-1)


def _draws(n_units: int, n_resamples: int, seed: int) -> Iterator[np.ndarray]:
    """The units (samples or groups) each resample draws: ``n_units`` of them with replacement."""
    n_resamples = check_positive_int(n_resamples, "n_resamples")
    rng = np.random.default_rng(seed)
    for _ in range(n_resamples):
        yield rng.integers(0, n_units, size=n_units)


def resample_indices(
    n_samples: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, groups=None
) -> Iterator[np.ndarray]:
    """Yield ``n_resamples`` index arrays, each N indices drawn with replacement.

    With ``groups``, draw G of the G groups with replacement and yield the indices of all
    members of the drawn groups (so resample sizes vary with group sizes).
    """
    group_of = _group_layout(n_samples, groups)
    if group_of is None:
        yield from _draws(n_samples, n_resamples, seed)
        return
    members_in_order = np.argsort(group_of, kind="stable")
    sizes = np.bincount(group_of)
    starts = np.r_[0, np.cumsum(sizes)[:-1]]
    for drawn in _draws(len(sizes), n_resamples, seed):
        drawn_sizes = sizes[drawn]
        offsets = np.repeat(starts[drawn] - np.r_[0, np.cumsum(drawn_sizes)[:-1]], drawn_sizes)
        yield members_in_order[offsets + np.arange(drawn_sizes.sum())]


def resample_counts(
    n_samples: int, n_resamples: int = DEFAULT_RESAMPLES, seed: int = 0, groups=None, chunk: int | None = None
) -> Iterator[np.ndarray]:
    """The resamples of :func:`resample_indices` (same ``seed``, same draws) as multiplicities:
    blocks of rows, row r giving how often each of the N samples enters resample r (an
    ``int64`` array R × N, R ≤ ``chunk``; default: as many as fit in about 2 million entries).

    Every metric that depends on the resampled multiset only (means, binned ECE, AURC under
    the tie policy of :mod:`studylib.metrics.selective`) is a weighted sum of per-sample terms
    under these counts, so whole blocks of resamples are evaluated with array algebra.
    """
    group_of = _group_layout(n_samples, groups)
    n_units = n_samples if group_of is None else int(group_of.max()) + 1
    chunk = chunk or max(1, min(256, 2_000_000 // n_samples))
    block: list[np.ndarray] = []
    for drawn in _draws(n_units, n_resamples, seed):
        block.append(drawn)
        if len(block) == chunk:
            yield _unit_counts(block, n_units, group_of)
            block = []
    if block:
        yield _unit_counts(block, n_units, group_of)


def _unit_counts(block: list[np.ndarray], n_units: int, group_of: np.ndarray | None) -> np.ndarray:
    """Per resample of the block, how often each unit was drawn; per sample with groups (a
    sample enters as often as its group was drawn)."""
    drawn = np.stack(block)
    offsets = np.arange(len(block))[:, None] * n_units
    counts = np.bincount((drawn + offsets).ravel(), minlength=len(block) * n_units).reshape(len(block), n_units)
    return counts if group_of is None else counts[:, group_of]


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
