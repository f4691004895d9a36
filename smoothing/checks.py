"""Argument checks of the public functions (each runs once per call, at the boundary).

The public functions of ``smoothing`` validate their arguments here and then call inner
functions that trust them: one ``certify`` call checks ``sigma`` once and ``alpha`` once.
Modules call these as ``checks.check_sigma(...)`` (module attribute lookups).
"""

from __future__ import annotations

import math

import numpy as np

MIN_ALPHA = 1e-60
"""Smallest failure probability accepted. Below some level scipy's beta quantile (the
Clopper–Pearson bounds) stops resolving: measured with scipy 1.17 on every count of
``n <= 40`` and on counts sampled up to ``n = 2^31 - 1``, it returns NaN from
``alpha = 10^-107.3`` down (first: the upper bound of 2 successes out of 5), and the
lower bound stops matching its level (``beta.cdf(bound) / alpha`` off by more than 0.1%,
too high: not conservative) from ``10^-67`` down at ``n >= 10^8`` (``10^-89`` at
``n <= 1000``). ``1e-60`` keeps every bound computed within 0.1% of its level with a
margin of ``10^7`` for the Bonferroni splits (``alpha / 2``, ``alpha / #buckets``); a
bound that still comes out NaN abstains."""


def _is_number(value) -> bool:
    return isinstance(value, int | float | np.integer | np.floating) and not isinstance(value, bool)


def check_sigma(sigma) -> float:
    """``sigma`` as a positive finite float (the noise level, on the model's input scale)."""
    if not (_is_number(sigma) and 0 < sigma < math.inf):
        raise ValueError(f"sigma must be a positive finite number (input scale), got {sigma!r}")
    return float(sigma)


def check_alpha(alpha) -> float:
    """``alpha`` as a float in ``[MIN_ALPHA, 1)``: the failure probability of a certificate
    or interval, at a level scipy's beta quantile resolves (``MIN_ALPHA``)."""
    if not (_is_number(alpha) and 0 < alpha < 1):
        raise ValueError(f"alpha must be a number in (0, 1), got {alpha!r}")
    if alpha < MIN_ALPHA:
        raise ValueError(
            f"alpha must be >= MIN_ALPHA = {MIN_ALPHA:g} (smaller levels are beyond what "
            f"scipy's beta quantile resolves), got {alpha!r}"
        )
    return float(alpha)


def check_probability(value, name: str) -> float:
    """``value`` as a float in the open interval ``(0, 1)``."""
    if not (_is_number(value) and 0 < value < 1):
        raise ValueError(f"{name} must be a number in (0, 1), got {value!r}")
    return float(value)


def check_count(value, name: str, minimum: int = 1) -> int:
    """``value`` as an int ``>= minimum``."""
    if not (isinstance(value, int | np.integer) and not isinstance(value, bool)):
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    if value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)
