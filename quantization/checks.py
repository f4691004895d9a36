"""Argument checks at the public boundary of the package (host-side, on concrete arrays)."""

from __future__ import annotations

import numpy as np

WEIGHT_TOLERANCE = 1e-5  # float32 softmax weights sum to 1 within a few 1e-7


def point_set(name: str, value, *, dim: int | None = None) -> np.ndarray:
    """``value`` as a finite float64 array ``[count, dim]`` with at least one row.

    Raises:
      ValueError: another rank, no rows, a mismatched ``dim`` or a non-finite entry.
    """
    array = np.asarray(value, np.float64)
    if array.ndim != 2 or array.shape[0] == 0:
        raise ValueError(f"{name} must be an array [count >= 1, dim], got shape {array.shape}")
    if dim is not None and array.shape[1] != dim:
        raise ValueError(f"{name} must have dim {dim} (the other set's), got {array.shape[1]}")
    if not np.all(np.isfinite(array)):
        raise ValueError(f"{name} must be finite, got {np.sum(~np.isfinite(array))} NaN/inf")
    return array


def probability_vector(name: str, value, size: int) -> np.ndarray:
    """``value`` as float64 weights ``[size]``, non-negative, summing to 1 within
    ``WEIGHT_TOLERANCE``, renormalised to sum to 1 exactly.

    Raises:
      ValueError: another shape, a negative or non-finite weight, or another sum.
    """
    weights = np.asarray(value, np.float64)
    if weights.shape != (size,):
        raise ValueError(f"{name} must have shape ({size},) (one per point), got {weights.shape}")
    if not np.all(np.isfinite(weights)) or np.any(weights < 0):
        raise ValueError(f"{name} must be finite and >= 0, got min {weights.min()}")
    total = weights.sum()
    if abs(total - 1.0) > WEIGHT_TOLERANCE:
        raise ValueError(f"{name} must sum to 1 (within {WEIGHT_TOLERANCE:g}), got {total!r}")
    return weights / total


def count(name: str, value, minimum: int = 1) -> int:
    """``value`` as an ``int >= minimum``."""
    if isinstance(value, bool) or not isinstance(value, int | np.integer) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
