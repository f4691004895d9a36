"""Spectral rescaling (SR) and AOL: parameter-free maps from any weight to a 1-Lipschitz one.

SR (Delattre et al. 2024) divides each output row of a layer by its Gram row bound::

    dense:  W  ->  diag(1 / t) W,     t = gram_row_bounds(W, T)            W: [m, n]
    conv:   K  ->  K / t[:, None, None, None],  t = spatial_gram_row_bounds(K, T)   K: OIHW

so the result has spectral norm ``<= 1`` (the conv one for every input size and both
paddings). Write ``P = (W W^T) ** (2 ** (T-1))`` and ``D = diag(t)``, so
``D ** (2 ** T)`` holds the absolute row sums of ``P``. The Schur test gives
``||D^-m P D^-m|| <= 1`` with ``m = 2 ** (T-1)``, and the Cordes inequality
``||A^s B^s|| <= ||A B||^s`` (``0 <= s <= 1``, ``A, B`` PSD) brings this down to
``||D^-1 W W^T D^-1|| <= 1``.

``T = 1`` is AOL (Prach & Lampert 2022), which states the rescaling on the *input*
side (``W diag(d)``, ``d_j = (sum_i |W^T W|_{ji}|) ** -1/2``). SR at ``T = 1`` is AOL of
the transposed map (the adjoint), transposed back: ``aol_dense`` and ``aol_conv`` are
the paper's input-side formulas, kept as the reference SR is tested against.
Larger ``T`` is tighter: ``max_i t_i -> sigma_1`` and the layer tends to ``W / sigma_1``.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lipschitz.checks import (
    DEFAULT_LAYOUT,
    check_iters,
    check_kernel,
    check_matrix,
    from_oihw,
    poison,
)
from lipschitz.conv_bounds import _self_correlation, _spatial_gram_row_bounds
from lipschitz.gram import HIGHEST, _gram_row_bounds, _nonzero


def _inverse(t: jax.Array) -> jax.Array:
    """``1 / t`` with ``1 / 0 := 1`` (an all-zero row stays zero); NaN stays NaN."""
    return 1.0 / _nonzero(t)


@functools.partial(jax.jit, static_argnames=("iters",))
def _spectral_rescale_dense(w: jax.Array, iters: int) -> jax.Array:
    return poison(w * _inverse(_gram_row_bounds(w, iters))[:, None], w)


def spectral_rescale_dense(w, iters: int) -> jax.Array:
    """``diag(1 / t) w`` with ``t = gram_row_bounds(w, iters)``; ``w: [m, n]`` -> ``[m, n]``.

    NaN everywhere if ``w`` holds NaN or inf under ``jax.jit``; a ``ValueError`` for a
    concrete one.
    """
    w = check_matrix(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must be a matrix [m, n], got shape {w.shape}")
    return _spectral_rescale_dense(w, check_iters(iters))


@functools.partial(jax.jit, static_argnames=("iters",))
def _spectral_rescale_conv(kernel: jax.Array, iters: int) -> jax.Array:
    t = _spatial_gram_row_bounds(kernel, iters, True)
    return poison(kernel * _inverse(t)[:, None, None, None], kernel)


def spectral_rescale_conv(kernel, iters: int, *, layout: str = DEFAULT_LAYOUT) -> jax.Array:
    """``kernel / t`` per output channel with ``t = spatial_gram_row_bounds(kernel, iters)``.

    Args:
      kernel: ``[k, k, c_in, c_out]`` (``layout="HWIO"``) or ``[c_out, c_in, k, k]``
        (``"OIHW"``), square.
      iters: ``T >= 1``.
      layout: ``"HWIO"`` or ``"OIHW"``.

    Returns:
      the rescaled kernel, same shape and layout: the convolution with it has norm
      ``<= 1`` for every input size, with zero or circular padding. NaN everywhere if the
      kernel holds NaN or inf under ``jax.jit``.
    """
    oihw = check_kernel(kernel, layout)
    return from_oihw(_spectral_rescale_conv(oihw, check_iters(iters)), layout)


@jax.jit
def _aol_dense(w: jax.Array) -> jax.Array:
    p = jnp.matmul(w.T, w, precision=HIGHEST)
    return poison(w * _inverse(jnp.sqrt(jnp.sum(jnp.abs(p), axis=1)))[None, :], w)


def aol_dense(w) -> jax.Array:
    """AOL: ``w diag(d)`` with ``d_j = (sum_i |(w^T w)_{ji}|) ** -1/2``; ``w: [m, n]``."""
    w = check_matrix(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must be a matrix [m, n], got shape {w.shape}")
    return _aol_dense(w)


@jax.jit
def _aol_conv(kernel: jax.Array) -> jax.Array:
    p = _self_correlation(jnp.swapaxes(kernel, 0, 1))
    d = _inverse(jnp.sqrt(jnp.sum(jnp.abs(p), axis=(1, 2, 3))))
    return poison(kernel * d[None, :, None, None], kernel)


def aol_conv(kernel, *, layout: str = DEFAULT_LAYOUT) -> jax.Array:
    """AOL for a convolution: scale input channel ``j`` by
    ``(sum_{i, s} |P[j, i, s]|) ** -1/2``, ``P`` the kernel of ``A^* A``
    (``P[j, i, s] = sum_{o, u} K[o, j, u + s] K[o, i, u]``); the kernel in ``layout``
    (HWIO ``[k, k, c_in, c_out]`` by default, or OIHW) -> the same shape."""
    oihw = check_kernel(kernel, layout, square=False)
    return from_oihw(_aol_conv(oihw), layout)


def _adjoint_kernel(kernel: jax.Array) -> jax.Array:
    """The kernel of the adjoint convolution (up to placement): swap channels, flip space.
    ``[c_out, c_in, k, k]`` -> ``[c_in, c_out, k, k]`` (OIHW)."""
    return jnp.flip(jnp.swapaxes(kernel, 0, 1), axis=(-2, -1))
