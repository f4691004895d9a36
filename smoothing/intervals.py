"""Confidence bounds on a mean, in float64 on the host (scipy).

- Clopper–Pearson (exact binomial): ``count`` successes out of ``n``. The one-sided lower
  bound at level ``1 - alpha`` is the ``alpha`` quantile of ``Beta(count, n - count + 1)``
  (0 when ``count = 0``), the upper bound the ``1 - alpha`` quantile of
  ``Beta(count + 1, n - count)`` (1 when ``count = n``). The two-sided interval at level
  ``1 - alpha`` is the pair of one-sided bounds at ``alpha / 2`` each; it equals
  statsmodels' ``proportion_confint(count, n, alpha, method="beta")``.
- Empirical Bernstein (Maurer & Pontil 2009, Theorem 4): for ``n >= 2`` i.i.d. variables
  in an interval of width ``b`` with sample standard deviation ``s`` (``n - 1``
  denominator), the mean exceeds the sample mean minus
  ``s sqrt(2 ln(2 / delta) / n) + 7 b ln(2 / delta) / (3 (n - 1))`` with probability at
  least ``1 - delta`` (one-sided; the same half-width bounds the other side).
"""

from __future__ import annotations

import math

import numpy as np
from scipy import stats


def check_alpha(alpha: float, name: str = "alpha") -> float:
    """``alpha`` as a float in ``(0, 1)``, else a ``ValueError`` naming ``name``."""
    if not (isinstance(alpha, int | float | np.floating) and 0 < alpha < 1):
        raise ValueError(f"{name} must be a number in (0, 1), got {alpha!r}")
    return float(alpha)


def _check_counts(count, n) -> tuple[np.ndarray, np.ndarray]:
    count, n = np.asarray(count), np.asarray(n)
    if not (np.issubdtype(count.dtype, np.integer) and np.issubdtype(n.dtype, np.integer)):
        raise ValueError(f"count and n must be integers, got {count.dtype} and {n.dtype}")
    if np.any(n < 1):
        raise ValueError(f"n must be >= 1, got {n.min()}")
    if np.any(count < 0) or np.any(count > n):
        raise ValueError("count must be in [0, n]")
    return count.astype(np.float64), n.astype(np.float64)


def clopper_pearson_lower(count, n, alpha: float) -> np.ndarray:
    """One-sided lower bound at level ``1 - alpha``; ``count``, ``n`` broadcast -> float64
    (a scalar for scalar input)."""
    alpha = check_alpha(alpha)
    count, n = _check_counts(count, n)
    with np.errstate(invalid="ignore"):
        lower = stats.beta.ppf(alpha, count, n - count + 1)
    return np.where(count == 0, 0.0, lower)[()]  # a scalar for scalar input


def clopper_pearson_upper(count, n, alpha: float) -> np.ndarray:
    """One-sided upper bound at level ``1 - alpha``; ``count``, ``n`` broadcast -> float64."""
    alpha = check_alpha(alpha)
    count, n = _check_counts(count, n)
    with np.errstate(invalid="ignore"):
        upper = stats.beta.isf(alpha, count + 1, n - count)
    return np.where(count == n, 1.0, upper)[()]


def clopper_pearson(count, n, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper–Pearson interval ``(lower, upper)`` at level ``1 - alpha``."""
    alpha = check_alpha(alpha)
    return clopper_pearson_lower(count, n, alpha / 2), clopper_pearson_upper(count, n, alpha / 2)


def bernstein_halfwidth(std, n: int, delta: float, value_range: float = 1.0) -> np.ndarray:
    """Empirical-Bernstein half-width at level ``1 - delta`` (one side; module docstring).

    Args:
      std: sample standard deviations (``n - 1`` denominator), any shape.
      n: number of samples, ``>= 2``.
      delta: failure probability of the one-sided bound, in ``(0, 1)``.
      value_range: width ``b`` of the interval the variables live in.
    """
    delta = check_alpha(delta, "delta")
    if not (isinstance(n, int | np.integer) and n >= 2):
        raise ValueError(f"n must be an integer >= 2 for an empirical-Bernstein bound, got {n!r}")
    if not value_range > 0:
        raise ValueError(f"value_range must be > 0, got {value_range!r}")
    std = np.asarray(std, np.float64)
    if np.any(std < 0):
        raise ValueError("std must be >= 0")
    log_term = math.log(2.0 / delta)
    return std * math.sqrt(2.0 * log_term / n) + 7.0 * value_range * log_term / (3.0 * (n - 1))
