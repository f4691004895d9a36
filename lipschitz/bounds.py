"""The entry points: ``spectral_norm_bound`` and ``exact_spectral_norm``, with argument checks.

Both take either a dense matrix ``w: [m, n]`` (``y = w x``; ``padding=None``) or a
convolution kernel with ``padding="circular"`` or ``"zero"`` (conventions in
``convolution.py``), by default in Flax's layout ``[k, k, c_in, c_out]`` (HWIO), or
``[c_out, c_in, k, k]`` with ``layout="OIHW"`` (the shape rules in ``checks.py``).
Shapes, dtypes and the static arguments are checked here, so both work under
``jax.jit`` with ``method``, ``padding``, ``n``, ``iters`` and ``layout`` static.

Non-finite weights never give a finite bound: a concrete ``w`` with NaN or inf raises a
``ValueError``; under ``jax.jit`` the bound is NaN.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from lipschitz.baselines import _araujo2021_bound, _singla2021_bound, araujo_grid_size
from lipschitz.checks import (
    DEFAULT_LAYOUT,
    check_iters,
    check_kernel,
    check_layout,
    check_matrix,
    check_size,
)
from lipschitz.conv_bounds import _circular_gram_bound, _spatial_gram_row_bounds
from lipschitz.exact import _circular_exact, _conv_matrix, _dense_exact
from lipschitz.gram import _gram_iteration, default_iters

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


def _check_weight(w, padding, n, layout: str, name: str) -> jax.Array:
    """``w`` checked for ``padding``: the dense matrix, or the kernel in OIHW."""
    check_layout(layout)
    if padding is None:
        w = check_matrix(w, name)
        if w.ndim != 2 or not jnp.issubdtype(w.dtype, jax.numpy.floating):
            raise ValueError(
                f"{name} must be a real dense matrix [m, n] when padding is None, got shape "
                f"{w.shape} and dtype {w.dtype}; pass padding='circular' or 'zero' for a "
                "convolution kernel"
            )
        if n is not None:
            raise ValueError(
                f"n applies only to convolutions (padding 'circular' or 'zero'), got {n}"
            )
        return w
    return check_kernel(w, layout, name=name, n=n)


def _check_n(n, padding, required: bool) -> int | None:
    if n is None:
        if required:
            raise ValueError(
                f"n (the input height and width) is required for padding={padding!r}; the "
                "norm depends on it, and the kernel size is not a safe default"
            )
        return None
    return check_size(n)


def _check_bound_arguments(w, method, padding, n, iters, layout, name):
    """Everything ``spectral_norm_bound`` checks; ``(w, n, iters)`` with ``w`` in OIHW for a
    kernel and ``iters`` resolved to its default."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    _check_padding(padding)
    if iters is not None:
        if method not in GRAM_METHODS:
            raise ValueError(f"iters applies only to methods {GRAM_METHODS}, got method {method!r}")
        iters = check_iters(iters)
    if padding is None and method != "gram":
        raise ValueError(
            f"method {method!r} bounds convolutions; a dense matrix (padding None) takes "
            "method 'gram'"
        )
    circular_gram = padding == "circular" and method == "gram"
    n = None if padding is None and n is None else _check_n(n, padding, circular_gram)
    w = _check_weight(w, padding, n, layout, name)
    if iters is None:
        spatial = padding is not None and not circular_gram and method in GRAM_METHODS
        iters = DEFAULT_SPATIAL_ITERS if spatial else default_iters(w.dtype)
    return w, n, iters


def _bound(w: jax.Array, method: str, padding: str | None, n: int | None, iters: int):
    """The bound of checked arguments (``w`` dense or an OIHW kernel)."""
    if padding is None:
        return _gram_iteration(w, iters)
    if padding == "circular" and method == "gram":
        return _circular_gram_bound(w, n, iters, True)
    if method in GRAM_METHODS:
        return jnp.max(_spatial_gram_row_bounds(w, iters, True))
    if method == "singla2021":
        return _singla2021_bound(w)
    return _araujo2021_bound(w, araujo_grid_size(max(w.shape[-2:])))


def spectral_norm_bound(
    w,
    method: str = "gram",
    padding: str | None = None,
    n: int | None = None,
    iters: int | None = None,
    *,
    layout: str = DEFAULT_LAYOUT,
) -> jax.Array:
    """An upper bound on the spectral norm of a dense layer or a convolution.

    Args:
      w: ``[m, n]`` (``padding=None``) or a kernel ``[k, k, c_in, c_out]`` (HWIO, Flax's
        ``nn.Conv`` layout) or ``[c_out, c_in, k, k]`` (``layout="OIHW"``), square.
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
      layout: the kernel's layout, ``"HWIO"`` (default) or ``"OIHW"``; ignored for a
        dense matrix.

    Returns:
      a scalar ``>= ||w||_2`` (of the operator), differentiable in ``w``; NaN if ``w``
      holds NaN or inf under ``jax.jit``.

    Raises:
      ValueError: unknown method, padding or layout, wrong rank, non-square kernel or a
        kernel larger than ``n`` in ``layout``, missing ``n``, ``iters < 1``, ``iters``
        with a method that has none, or a concrete ``w`` with NaN or inf.
    """
    w, n, iters = _check_bound_arguments(w, method, padding, n, iters, layout, "w")
    return _bound(w, method, padding, n, iters)


def exact_spectral_norm(
    w, padding: str | None = None, n: int | None = None, *, layout: str = DEFAULT_LAYOUT
) -> jax.Array:
    """The exact spectral norm (up to floating point), for tests and benchmarks.

    Args:
      w: ``[m, n]`` (``padding=None``) or a kernel in ``layout`` (as ``spectral_norm_bound``).
      padding: ``None`` (SVD), ``"circular"`` (FFT + batched SVD over the frequencies) or
        ``"zero"`` (SVD of the explicit matrix; ``n^2 max(c_in, c_out) <=
        MAX_EXPLICIT_SIZE``; call it outside ``jax.jit``, see ``exact.zero_padding_exact``).
      n: input height and width, required for convolutions.
      layout: ``"HWIO"`` (default) or ``"OIHW"``.

    Returns:
      a scalar; NaN if ``w`` holds NaN or inf under ``jax.jit``.
    """
    _check_padding(padding)
    n = _check_n(n, padding, required=padding is not None)
    w = _check_weight(w, padding, n, layout, "w")
    if padding is None:
        return _dense_exact(w)
    if padding == "circular":
        return _circular_exact(w, n)
    side = n * n * max(w.shape[0], w.shape[1])
    if side > MAX_EXPLICIT_SIZE:
        raise ValueError(
            f"the explicit zero-padding matrix would have side n^2 max(c_in, c_out) = {side} > "
            f"{MAX_EXPLICIT_SIZE}; use a smaller n, or lipschitz.exact.conv_power_iteration "
            "for an estimate"
        )
    # Two programs, not one: see exact.zero_padding_exact.
    return _dense_exact(_conv_matrix(w, n, "zero"))
