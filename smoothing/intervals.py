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

``alpha`` below ``checks.MIN_ALPHA`` is refused: scipy's beta quantile does not resolve
it. The public functions check their arguments; the underscored ones trust them.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from smoothing import checks


def _check_counts(count, n) -> tuple[np.ndarray, np.ndarray]:
    count, n = np.asarray(count), np.asarray(n)
    if not (np.issubdtype(count.dtype, np.integer) and np.issubdtype(n.dtype, np.integer)):
        raise ValueError(f"count and n must be integers, got {count.dtype} and {n.dtype}")
    if np.any(n < 1):
        raise ValueError(f"n must be >= 1, got {n.min()}")
    if np.any(count < 0) or np.any(count > n):
        raise ValueError(f"count must be in [0, n], got {count} with n = {n}")
    return count, n


def _clopper_pearson_lower(count, n, alpha: float) -> np.ndarray:
    """``clopper_pearson_lower`` of checked arguments (NaN where scipy gives none).

    ``special.betaincinv(a, b, q)`` is ``stats.beta.ppf(q, a, b)`` (the same Boost routine,
    the same bits) without the distribution object's per-call overhead (30x)."""
    count, n = np.asarray(count, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        lower = special.betaincinv(count, n - count + 1, alpha)
    return np.where(count == 0, 0.0, lower)[()]  # a scalar for scalar input


def _clopper_pearson_upper(count, n, alpha: float) -> np.ndarray:
    """``clopper_pearson_upper`` of checked arguments (NaN where scipy gives none):
    ``special.betainccinv(a, b, q)`` is ``stats.beta.isf(q, a, b)``."""
    count, n = np.asarray(count, np.float64), np.asarray(n, np.float64)
    with np.errstate(invalid="ignore", divide="ignore"):
        upper = special.betainccinv(count + 1, n - count, alpha)
    return np.where(count == n, 1.0, upper)[()]


def clopper_pearson_lower(count, n, alpha: float) -> np.ndarray:
    """One-sided lower bound at level ``1 - alpha``; ``count``, ``n`` broadcast -> float64
    (a scalar for scalar input). ``alpha >= checks.MIN_ALPHA``."""
    alpha = checks.check_alpha(alpha)
    return _clopper_pearson_lower(*_check_counts(count, n), alpha)


def clopper_pearson_upper(count, n, alpha: float) -> np.ndarray:
    """One-sided upper bound at level ``1 - alpha``; ``count``, ``n`` broadcast -> float64."""
    alpha = checks.check_alpha(alpha)
    return _clopper_pearson_upper(*_check_counts(count, n), alpha)


def clopper_pearson(count, n, alpha: float) -> tuple[np.ndarray, np.ndarray]:
    """Two-sided Clopper–Pearson interval ``(lower, upper)`` at level ``1 - alpha``."""
    alpha = checks.check_alpha(alpha)
    count, n = _check_counts(count, n)
    return _clopper_pearson_lower(count, n, alpha / 2), _clopper_pearson_upper(count, n, alpha / 2)


def _bernstein_halfwidth(std, n: int, delta: float, value_range: float = 1.0) -> np.ndarray:
    """``bernstein_halfwidth`` of checked arguments."""
    log_term = math.log(2.0 / delta)
    std = np.asarray(std, np.float64)
    return std * math.sqrt(2.0 * log_term / n) + 7.0 * value_range * log_term / (3.0 * (n - 1))


def bernstein_halfwidth(std, n: int, delta: float, value_range: float = 1.0) -> np.ndarray:
    """Empirical-Bernstein half-width at level ``1 - delta`` (one side; module docstring).

    Args:
      std: sample standard deviations (``n - 1`` denominator), any shape.
      n: number of samples, ``>= 2``.
      delta: failure probability of the one-sided bound, in ``(0, 1)``.
      value_range: width ``b`` of the interval the variables live in.
    """
    delta = checks.check_probability(delta, "delta")
    if not (isinstance(n, int | np.integer) and n >= 2):
        raise ValueError(f"n must be an integer >= 2 for an empirical-Bernstein bound, got {n!r}")
    if not (value_range > 0 and math.isfinite(value_range)):
        raise ValueError(f"value_range must be > 0 and finite, got {value_range!r}")
    std = np.asarray(std, np.float64)
    if not np.all(std >= 0):
        raise ValueError(f"std must be >= 0 (and not NaN), got {std}")
    return _bernstein_halfwidth(std, int(n), delta, float(value_range))
