"""Random piecewise-constant coefficient fields for the Darcy benchmark.

The coefficient is ``a = psi(g)`` with ``g`` a centred Gaussian random field

    g ~ N(0, (-Laplacian + tau^2 I)^(-alpha))   on (0, 1)^2, Neumann boundary,

and ``psi(g) = high`` where ``g >= 0``, ``low`` where ``g < 0``.

``g`` is sampled by its Karhunen-Loeve expansion in the Neumann eigenfunctions
of the Laplacian, truncated to the ``s x s`` wave numbers that a grid of ``s``
nodes per side resolves:

    g(x) = sum_{k1, k2 = 0}^{s-1} c_k xi_k phi_k1(x1) phi_k2(x2),
    c_k  = tau^(alpha - 1) (pi^2 (k1^2 + k2^2) + tau^2)^(-alpha / 2),
    xi_k ~ N(0, 1) i.i.d.,  c_(0,0) = 0,

with the L2(0, 1)-orthonormal cosines ``phi_0(t) = 1`` and
``phi_k(t) = sqrt(2) cos(pi k t)`` for ``k >= 1``. This is the scaling of the
original MATLAB generator (``idct2(s * c .* xi)`` with MATLAB's orthonormal
``idct2``); here the sum is evaluated on the solver's node grid
``x_i = i / (s - 1)``, ``i = 0, ..., s - 1`` (boundary nodes included), which is
exactly an inverse type-I DCT (``scipy.fft.idctn(..., type=1)``), rather than at
the cell centres ``(i + 1/2) / s`` of the type-II transform.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.fft

__all__ = ["kl_coefficients", "sample_coefficient", "sample_grf"]

SeedLike = int | np.random.SeedSequence


def _check_resolution(resolution: int, name: str = "resolution") -> int:
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, numbers.Integral)
        or resolution < 3
    ):
        raise ValueError(f"{name} must be an integer >= 3, got {resolution!r}")
    return int(resolution)


def _check_positive(value: float, name: str) -> float:
    if isinstance(value, bool) or not isinstance(value, numbers.Real):
        raise ValueError(f"{name} must be a positive real number, got {value!r}")
    if not (np.isfinite(value) and value > 0):
        raise ValueError(f"{name} must be a positive finite number, got {value!r}")
    return float(value)


def _rng(seed: SeedLike) -> np.random.Generator:
    if isinstance(seed, np.random.SeedSequence):
        return np.random.default_rng(seed)
    if isinstance(seed, bool) or not isinstance(seed, numbers.Integral) or seed < 0:
        raise ValueError(f"seed must be a non-negative int or np.random.SeedSequence, got {seed!r}")
    return np.random.default_rng(int(seed))


def kl_coefficients(resolution: int, *, alpha: float = 2.0, tau: float = 3.0) -> np.ndarray:
    """Karhunen-Loeve standard deviations ``c_k`` of the Neumann GRF.

    Args:
      resolution: ``s``, number of grid nodes per side (``s`` wave numbers per axis).
      alpha: smoothness exponent, ``> 0``.
      tau: inverse length scale, ``> 0``.

    Returns:
      ``c: [s, s]`` float64 with ``c[k1, k2] = tau^(alpha-1) (pi^2 |k|^2 + tau^2)^(-alpha/2)``
      and ``c[0, 0] = 0`` (the constant mode is removed).
    """
    s = _check_resolution(resolution)
    alpha = _check_positive(alpha, "alpha")
    tau = _check_positive(tau, "tau")
    k = np.arange(s, dtype=np.float64)
    k2 = k[:, None] ** 2 + k[None, :] ** 2
    c = tau ** (alpha - 1.0) * (np.pi**2 * k2 + tau**2) ** (-alpha / 2.0)
    c[0, 0] = 0.0
    return c


def _cosine_sum(b: np.ndarray) -> np.ndarray:
    """``y[i, j] = sum_{k1, k2} b[k1, k2] cos(pi k1 i / (s-1)) cos(pi k2 j / (s-1))``.

    Uses scipy's unnormalised inverse type-I DCT, whose end-point modes carry
    half the weight of the interior ones; the scaling below undoes that.
    """
    s = b.shape[0]
    w = np.full(s, float(s - 1))
    w[0] = w[-1] = 2.0 * (s - 1)
    return scipy.fft.idctn(b * w[:, None] * w[None, :], type=1)


def sample_grf(
    seed: SeedLike, resolution: int, *, alpha: float = 2.0, tau: float = 3.0
) -> np.ndarray:
    """Samples the Gaussian random field ``g`` on the ``s x s`` node grid.

    The normals ``xi`` are one ``standard_normal((s, s))`` draw of
    ``np.random.default_rng(seed)``; ``xi[k1, k2]`` multiplies mode ``(k1, k2)``.

    Args:
      seed: a non-negative int or a ``np.random.SeedSequence``.
      resolution: ``s >= 3``, nodes per side, grid ``x_i = i / (s - 1)``.
      alpha: smoothness exponent, ``> 0``.
      tau: inverse length scale, ``> 0``.

    Returns:
      ``g: [s, s]`` float64, ``g[i, j] = g(x_i, x_j)``.
    """
    c = kl_coefficients(resolution, alpha=alpha, tau=tau)
    xi = _rng(seed).standard_normal(c.shape)
    norm = np.full(c.shape[0], np.sqrt(2.0))
    norm[0] = 1.0
    return _cosine_sum(c * xi * norm[:, None] * norm[None, :])


def sample_coefficient(
    seed: SeedLike,
    resolution: int,
    *,
    alpha: float = 2.0,
    tau: float = 3.0,
    high: float = 12.0,
    low: float = 3.0,
) -> np.ndarray:
    """Samples the thresholded coefficient ``a = psi(g)`` on the ``s x s`` node grid.

    Args:
      seed: a non-negative int or a ``np.random.SeedSequence``.
      resolution: ``s >= 3``, nodes per side, grid ``x_i = i / (s - 1)``.
      alpha: smoothness exponent of the field, ``> 0``.
      tau: inverse length scale of the field, ``> 0``.
      high: coefficient value where ``g >= 0``, ``> 0``.
      low: coefficient value where ``g < 0``, ``> 0``.

    Returns:
      ``a: [s, s]`` float64 taking only the values ``high`` and ``low``.
    """
    high = _check_positive(high, "high")
    low = _check_positive(low, "low")
    g = sample_grf(seed, resolution, alpha=alpha, tau=tau)
    return np.where(g >= 0.0, high, low)
