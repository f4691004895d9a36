"""The entry points: ``spectral_norm_bound`` and ``exact_spectral_norm``, with argument checks.

Both take either a dense matrix ``w: [m, n]`` (``y = w x``; ``padding=None``) or a
convolution kernel ``w: [c_out, c_in, k, k]`` with ``padding="circular"`` or ``"zero"``
(conventions in ``convolution.py``). Shapes, dtypes and the static arguments are
checked here, so both work under ``jax.jit`` with ``method``, ``padding``, ``n`` and
``iters`` static.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lipschitz.baselines import araujo2021_bound, singla2021_bound
from lipschitz.conv_bounds import circular_gram_bound, spatial_gram_bound
from lipschitz.exact import circular_exact, dense_exact, zero_padding_exact
from lipschitz.gram import default_iters, gram_iteration

METHODS = ("gram", "spatial_gram", "singla2021", "araujo2021")
PADDINGS = (None, "circular", "zero")
GRAM_METHODS = ("gram", "spatial_gram")

DEFAULT_SPATIAL_ITERS = 5
"""Default ``T`` of the spatial Gram iteration. Its work grows like ``4^T`` (the iterate
has support ``2^T (k - 1) + 1``) and it converges slowly: on random 64-channel kernels
it is about 4% above the norm at ``T = 5`` and 12% at ``T = 4``."""

MAX_EXPLICIT_SIZE = 4096
"""Largest side ``n^2 max(c_in, c_out)`` of an explicit zero-padding matrix that
``exact_spectral_norm`` will build and decompose."""


def _check_padding(padding) -> None:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")


def _check_weight(w, padding) -> jax.Array:
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.floating):
        raise ValueError(f"w must be a real floating-point array, got dtype {w.dtype}")
    if padding is None:
        if w.ndim != 2:
            raise ValueError(
                f"w must be a dense matrix [m, n] when padding is None, got shape {w.shape}; "
                "pass padding='circular' or 'zero' for a convolution kernel"
            )
        if 0 in w.shape:
            raise ValueError(f"w must be non-empty, got shape {w.shape}")
        return w
    if w.ndim != 4:
        raise ValueError(
            f"w must be a convolution kernel [c_out, c_in, k, k] when padding is "
            f"{padding!r}, got shape {w.shape}"
        )
    if w.shape[2] != w.shape[3]:
        raise ValueError(f"the kernel must be square [c_out, c_in, k, k], got shape {w.shape}")
    if 0 in w.shape:
        raise ValueError(f"w must be non-empty, got shape {w.shape}")
    return w


def _check_n(n, w, padding, required: bool) -> None:
    if n is None:
        if required:
            raise ValueError(
                f"n (the input height and width) is required for padding={padding!r}; the "
                "norm depends on it, and the kernel size is not a safe default"
            )
        return
    if padding is None:
        raise ValueError(f"n applies only to convolutions (padding 'circular' or 'zero'), got {n}")
    if not isinstance(n, int) or isinstance(n, bool):
        raise ValueError(f"n must be an int, got {n!r}")
    k = w.shape[-1]
    if n < k:
        raise ValueError(f"n must be >= the kernel size {k}, got {n}")


def spectral_norm_bound(
    w,
    method: str = "gram",
    padding: str | None = None,
    n: int | None = None,
    iters: int | None = None,
) -> jax.Array:
    """An upper bound on the spectral norm of a dense layer or a convolution.

    Args:
      w: ``[m, n]`` (``padding=None``) or ``[c_out, c_in, k, k]``.
      method:
        ``"gram"``: Gram iteration: on ``w`` itself (dense), batched over the ``rfft2``
        frequencies at input size ``n`` (circular), or in the spatial domain (zero
        padding, valid for every input size).
        ``"spatial_gram"``: the spatial Gram iteration for either padding.
        ``"singla2021"``, ``"araujo2021"``: published cheap bounds (``baselines.py``).
      padding: ``None``, ``"circular"`` or ``"zero"``.
      n: input height and width; required for circular ``"gram"``, checked against the
        kernel size and otherwise unused by the bounds that hold for every ``n``.
      iters: Gram steps ``T >= 1``; default ``default_iters(w.dtype)`` (6 in float32,
        10 in float64) for dense and circular, ``DEFAULT_SPATIAL_ITERS`` for spatial.

    Returns:
      a scalar ``>= ||w||_2`` (of the operator), differentiable in ``w``.

    Raises:
      ValueError: unknown method or padding, wrong rank, non-square kernel, missing or
        too small ``n``, ``iters < 1``, or ``iters`` with a method that has none.
    """
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_padding(padding)
    w = _check_weight(w, padding)
    if iters is not None:
        if method not in GRAM_METHODS:
            raise ValueError(f"iters applies only to methods {GRAM_METHODS}, got method {method!r}")
        if not isinstance(iters, int) or isinstance(iters, bool) or iters < 1:
            raise ValueError(f"iters must be an int >= 1, got {iters!r}")
    if padding is None:
        if method != "gram":
            raise ValueError(
                f"method {method!r} bounds convolutions; a dense matrix (padding None) takes "
                "method 'gram'"
            )
        _check_n(n, w, padding, required=False)
        return gram_iteration(w, iters)
    circular_gram = padding == "circular" and method == "gram"
    _check_n(n, w, padding, required=circular_gram)
    if circular_gram:
        return circular_gram_bound(w, n, default_iters(w.dtype) if iters is None else iters)
    if method in GRAM_METHODS:
        return spatial_gram_bound(w, DEFAULT_SPATIAL_ITERS if iters is None else iters)
    if method == "singla2021":
        return singla2021_bound(w)
    return araujo2021_bound(w)


def exact_spectral_norm(w, padding: str | None = None, n: int | None = None) -> jax.Array:
    """The exact spectral norm (up to floating point), for tests and benchmarks.

    Args:
      w: ``[m, n]`` (``padding=None``) or ``[c_out, c_in, k, k]``.
      padding: ``None`` (SVD), ``"circular"`` (FFT + batched SVD over the frequencies) or
        ``"zero"`` (SVD of the explicit matrix; ``n^2 max(c_in, c_out) <=
        MAX_EXPLICIT_SIZE``).
      n: input height and width, required for convolutions.

    Returns:
      a scalar.
    """
    _check_padding(padding)
    w = _check_weight(w, padding)
    if padding is None:
        _check_n(n, w, padding, required=False)
        return dense_exact(w)
    _check_n(n, w, padding, required=True)
    if padding == "circular":
        return circular_exact(w, n)
    side = n * n * max(w.shape[0], w.shape[1])
    if side > MAX_EXPLICIT_SIZE:
        raise ValueError(
            f"the explicit zero-padding matrix would have side n^2 max(c_in, c_out) = {side} > "
            f"{MAX_EXPLICIT_SIZE}; use a smaller n, or lipschitz.exact.conv_power_iteration "
            "for an estimate"
        )
    return zero_padding_exact(w, n)
