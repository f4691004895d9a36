"""Certified L2 radii of a smoothed classifier from bounds on its class scores (float64, host).

Write ``g_c(x) = E f_c(x + noise)``, ``noise ~ N(0, sigma^2 I)``, for a base score ``f`` with
values in the probability simplex (hard votes or a soft map of the logits). ``sigma`` is
on the model's input scale: it is the standard deviation of the noise added to the very
array the model receives, and the radii are L2 norms in the same units.

- Gaussian radius. ``x -> Phi^-1(g_c(x))`` is ``1 / sigma``-Lipschitz for any ``f`` with
  values in ``[0, 1]`` (Salman et al. 2019), so with ``g_A >= pA_lower`` and
  ``max_{c != A} g_c <= pB_upper``, class ``A`` stays on top within
  ``sigma / 2 (Phi^-1(pA_lower) - Phi^-1(pB_upper))``. Cohen et al.'s
  ``sigma Phi^-1(pA_lower)`` is the case ``pB_upper = 1 - pA_lower``.
- Lipschitz radius. If ``x -> f(x)`` is ``L``-Lipschitz (L2 to L2) with entries in
  ``[0, r]``, every difference ``h = f_A - f_c`` is ``sqrt(2) L``-Lipschitz with values in
  ``[-r, r]``. Along any line through ``x``, conditioning on the orthogonal noise leaves a
  one-dimensional smoothing of an ``ell``-Lipschitz function of range width ``w``; its
  slope is largest for a ramp of width ``w / ell`` centred on the point, where it is
  ``ell erf(w / (2 sqrt(2) ell sigma))``. With ``ell = sqrt(2) L`` and ``w = 2 r`` the
  smoothed ``g_A - g_c`` is ``sqrt(2) L erf(r / (2 L sigma))``-Lipschitz, at most
  ``sqrt(2) L~`` with the smoothed constant ``L~ = L erf(r / (sqrt(2) L sigma))`` of the
  specification (which tends to Salman et al.'s ``r sqrt(2 / pi) / sigma`` as
  ``L -> inf`` and to ``L`` as ``sigma -> 0``). A margin ``g_A - g_c >= m`` for every
  ``c != A`` therefore survives any perturbation of norm below ``m / (sqrt(2) L~)``.
"""

from __future__ import annotations

import math

import numpy as np
from scipy import special

from smoothing import checks


def _gaussian_radius(p_a_lower, p_b_upper, sigma: float) -> np.ndarray:
    """``gaussian_radius`` of checked arguments."""
    p_a, p_b = np.asarray(p_a_lower, np.float64), np.asarray(p_b_upper, np.float64)
    with np.errstate(invalid="ignore"):
        # special.ndtri is stats.norm.ppf without the distribution object's overhead.
        radius = 0.5 * sigma * (special.ndtri(p_a) - special.ndtri(p_b))
    # NaN (a NaN bound, or both bounds 0 or both 1) is no certificate: -inf, never > 0.
    return np.where(np.isnan(radius), -np.inf, radius)


def gaussian_radius(p_a_lower, p_b_upper, sigma: float) -> np.ndarray:
    """``sigma / 2 (Phi^-1(p_a_lower) - Phi^-1(p_b_upper))``; arrays broadcast. Not positive
    means no certificate (``-inf`` when a bound is 0, 1 or NaN)."""
    sigma = checks.check_sigma(sigma)
    for name, p in (("p_a_lower", p_a_lower), ("p_b_upper", p_b_upper)):
        p = np.asarray(p, np.float64)
        if np.any((p < 0) | (p > 1)):
            raise ValueError(f"{name} must be probabilities in [0, 1] (or NaN), got {p}")
    return _gaussian_radius(p_a_lower, p_b_upper, sigma)


def _smoothed_lipschitz(lipschitz: float, value_range: float, sigma: float) -> float:
    """``smoothed_lipschitz`` of checked arguments."""
    if math.isinf(lipschitz):
        return value_range * math.sqrt(2.0 / math.pi) / sigma
    return lipschitz * float(special.erf(value_range / (math.sqrt(2.0) * lipschitz * sigma)))


def smoothed_lipschitz(lipschitz: float, value_range: float, sigma: float) -> float:
    """``L~ = L erf(r / (sqrt(2) L sigma))``, the Lipschitz constant of the smoothed score
    (module docstring); ``L = inf`` (hard votes) gives the limit ``r sqrt(2 / pi) / sigma``."""
    sigma = checks.check_sigma(sigma)
    if not lipschitz > 0:
        raise ValueError(f"lipschitz must be > 0 (or inf), got {lipschitz!r}")
    if not (value_range > 0 and math.isfinite(value_range)):
        raise ValueError(f"value_range must be a positive finite number, got {value_range!r}")
    return _smoothed_lipschitz(float(lipschitz), float(value_range), sigma)


def _margin_radius(margin, smoothed: float) -> np.ndarray:
    """``margin_radius`` of checked arguments."""
    return np.asarray(margin, np.float64) / (math.sqrt(2.0) * smoothed)


def margin_radius(margin, smoothed: float) -> np.ndarray:
    """``margin / (sqrt(2) L~)`` for a lower bound ``margin`` on ``g_A - g_c``, every ``c``
    (a NaN margin gives a NaN radius: no certificate)."""
    if not (smoothed > 0 and math.isfinite(smoothed)):
        raise ValueError(
            f"smoothed Lipschitz constant must be positive and finite, got {smoothed!r}"
        )
    return _margin_radius(margin, float(smoothed))
