"""Shared input checks for the metrics.

Every check either returns a clean ``float64`` / ``int64`` / ``bool`` numpy array or raises a
single :class:`MetricInputError` (a ``ValueError``) whose message names the argument, the
problem, and the fix.  Checks run in a fixed order (type/shape, emptiness, finiteness, range),
so one bad input produces exactly one error.
"""

from __future__ import annotations

import numbers
from typing import Literal

import numpy as np

ROW_SUM_ATOL = 1e-6
Edges = Literal["right", "left"]
EDGE_CONVENTIONS: tuple[str, ...] = ("right", "left")


class MetricInputError(ValueError):
    """Raised when a metric receives input it cannot score."""


def _as_array(values, name: str) -> np.ndarray:
    try:
        array = np.asarray(values)
    except Exception as error:  # ragged lists and other unconvertible input
        raise MetricInputError(f"{name}: cannot be converted to a numpy array ({error}).") from None
    if array.dtype == object:
        raise MetricInputError(f"{name}: got an object array; pass a rectangular numeric array.")
    return array


def _require_ndim(array: np.ndarray, name: str, ndim: int, shape_hint: str) -> None:
    if array.ndim != ndim:
        raise MetricInputError(f"{name}: expected a {ndim}-D array {shape_hint}, got shape {array.shape}.")


def _require_nonempty(array: np.ndarray, name: str) -> None:
    if array.size == 0:
        raise MetricInputError(f"{name}: is empty; a metric needs at least one sample.")


def _as_numeric(array: np.ndarray, name: str) -> np.ndarray:
    if array.dtype.kind not in "biuf":
        raise MetricInputError(f"{name}: expected numbers, got dtype {array.dtype}.")
    return array.astype(np.float64, copy=False)


def _require_finite(array: np.ndarray, name: str) -> None:
    bad = ~np.isfinite(array)
    if bad.any():
        position = tuple(int(i) for i in np.argwhere(bad)[0])
        raise MetricInputError(
            f"{name}: contains {int(bad.sum())} NaN/inf value(s) (first at index {position}); "
            "drop or repair those samples before scoring."
        )


def _require_unit_interval(array: np.ndarray, name: str) -> None:
    outside = (array < 0.0) | (array > 1.0)
    if outside.any():
        position = tuple(int(i) for i in np.argwhere(outside)[0])
        raise MetricInputError(
            f"{name}: {int(outside.sum())} value(s) outside [0, 1] (first {array[position]!r} at index "
            f"{position}); pass probabilities, not logits or percentages."
        )


def _as_finite_array(values, name: str, ndim: int, shape: str) -> np.ndarray:
    """Non-empty, finite ``float64`` array with ``ndim`` dimensions (``shape`` names them)."""
    array = _as_array(values, name)
    _require_nonempty(array, name)
    _require_ndim(array, name, ndim, shape)
    array = _as_numeric(array, name)
    _require_finite(array, name)
    return array


def as_float_vector(values, name: str) -> np.ndarray:
    """1-D, non-empty, finite ``float64`` array."""
    return _as_finite_array(values, name, 1, "of shape (N,)")


def as_confidences(values, name: str = "confidence") -> np.ndarray:
    """1-D, non-empty, finite ``float64`` array with every value in [0, 1]."""
    array = as_float_vector(values, name)
    _require_unit_interval(array, name)
    return array


def _as_class_matrix(values, name: str) -> np.ndarray:
    """(N, C) finite numeric array with N >= 1 and C >= 2 (the shared checks of probs and logits)."""
    array = _as_finite_array(values, name, 2, "of shape (N, C)")
    if array.shape[1] < 2:
        raise MetricInputError(f"{name}: needs at least 2 classes (columns), got shape {array.shape}.")
    return array


def as_probabilities(values, name: str = "probs") -> np.ndarray:
    """(N, C) ``float64`` array, C >= 2, entries in [0, 1], rows summing to 1 within ``ROW_SUM_ATOL``."""
    array = _as_class_matrix(values, name)
    _require_unit_interval(array, name)
    deviation = np.abs(array.sum(axis=1) - 1.0)
    if (deviation > ROW_SUM_ATOL).any():
        row = int(np.argmax(deviation))
        raise MetricInputError(
            f"{name}: row {row} sums to {array[row].sum()!r}, not 1 (tolerance {ROW_SUM_ATOL}); "
            "renormalise each row over the candidate answers (probs / probs.sum(1, keepdims=True))."
        )
    return array


def as_logits(values, name: str = "logits") -> np.ndarray:
    """(N, C) finite ``float64`` array with C >= 2."""
    return _as_class_matrix(values, name)


def as_labels(values, n_classes: int, name: str = "labels") -> np.ndarray:
    """1-D ``int64`` class indices in ``[0, n_classes)``; integral floats are accepted."""
    array = _as_array(values, name)
    _require_nonempty(array, name)
    _require_ndim(array, name, 1, "of shape (N,)")
    numeric = _as_numeric(array, name)
    _require_finite(numeric, name)
    fractional = numeric != np.round(numeric)
    if fractional.any():
        raise MetricInputError(f"{name}: class labels must be whole numbers, got {numeric[fractional][0]!r}.")
    labels = numeric.astype(np.int64)
    if labels.min() < 0 or labels.max() >= n_classes:
        raise MetricInputError(
            f"{name}: labels must lie in [0, {n_classes - 1}] for {n_classes} classes, "
            f"got range [{labels.min()}, {labels.max()}]."
        )
    return labels


def as_binary(values, name: str) -> np.ndarray:
    """1-D, non-empty ``bool`` array from booleans or numbers that are exactly 0 or 1."""
    array = _as_array(values, name)
    _require_nonempty(array, name)
    _require_ndim(array, name, 1, "of shape (N,)")
    if array.dtype == bool:
        return array
    numeric = _as_numeric(array, name)
    _require_finite(numeric, name)
    not_binary = ~np.isin(numeric, (0.0, 1.0))
    if not_binary.any():
        raise MetricInputError(f"{name}: expected booleans or 0/1 values, got {numeric[not_binary][0]!r}.")
    return numeric.astype(bool)


def as_counts(values, name: str) -> np.ndarray:
    """A 1-D vector of non-negative integer counts (floats that are whole numbers accepted)."""
    array = as_float_vector(values, name)
    if (array < 0).any() or (array != np.round(array)).any():
        bad = array[(array < 0) | (array != np.round(array))][0]
        raise MetricInputError(f"{name} must hold non-negative integer counts, found {bad!r}; pass per-caption counts.")
    return array.astype(np.int64)


#: default of a ``groups`` argument that callers must state (see :func:`check_groups_stated`)
GROUPS_REQUIRED = object()


def check_groups_stated(groups, function: str):
    """``groups`` unless left at :data:`GROUPS_REQUIRED`: the resampling unit must be chosen by
    the caller, since questions about one image are correlated."""
    if groups is GROUPS_REQUIRED:
        raise MetricInputError(
            f"{function}: groups is required; pass groups=image_ids to resample whole images (POPE-style data: "
            "several questions per image) or groups=None to treat every question as independent.")
    return groups


def check_same_length(**arrays: np.ndarray) -> int:
    """Common first dimension of the named arrays."""
    lengths = {name: len(array) for name, array in arrays.items()}
    if len(set(lengths.values())) > 1:
        described = ", ".join(f"{name}={length}" for name, length in lengths.items())
        raise MetricInputError(f"mismatched lengths ({described}); pass one entry per sample in each array.")
    return next(iter(lengths.values()))


def check_positive_int(value, name: str, minimum: int = 1) -> int:
    """An integer (not bool) that is at least ``minimum``."""
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise MetricInputError(f"{name}: must be an integer >= {minimum}, got {value!r}.")
    return int(value)


def check_n_bins(n_bins) -> int:
    """Number of calibration bins: an integer >= 1."""
    return check_positive_int(n_bins, "n_bins")


def check_edges(edges) -> str:
    """Bin-edge convention: ``"right"`` or ``"left"``."""
    if edges not in EDGE_CONVENTIONS:
        raise MetricInputError(f"edges: must be one of {EDGE_CONVENTIONS}, got {edges!r}.")
    return edges


def check_choice(value, name: str, allowed: tuple[str, ...]) -> str:
    """``value`` is one of ``allowed``."""
    if value not in allowed:
        raise MetricInputError(f"{name}: must be one of {allowed}, got {value!r}.")
    return value


def check_open_unit(value, name: str, include_one: bool = True) -> float:
    """A finite number in (0, 1] (or (0, 1) when ``include_one`` is false)."""
    interval = "(0, 1]" if include_one else "(0, 1)"
    if isinstance(value, bool) or not isinstance(value, numbers.Real) or not np.isfinite(value):
        raise MetricInputError(f"{name}: must be a number in {interval}, got {value!r}.")
    if value <= 0.0 or value > 1.0 or (value == 1.0 and not include_one):
        raise MetricInputError(f"{name}: must be a number in {interval}, got {value!r}.")
    return float(value)
