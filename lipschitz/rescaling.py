"""Spectral rescaling (SR) and AOL: parameter-free maps from any weight to a 1-Lipschitz one.

SR (Delattre et al. 2024) divides each output row of a layer by its Gram row bound::

    dense:  W  ->  diag(1 / t) W,     t = gram_row_bounds(W, T)            W: [m, n]
    conv:   K  ->  K / t[:, None, None, None],  t = spatial_gram_row_bounds(K, T)

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

from lipschitz.conv_bounds import self_correlation, spatial_gram_row_bounds
from lipschitz.gram import HIGHEST, gram_row_bounds


def _inverse(t: jax.Array) -> jax.Array:
    """``1 / t`` with ``1 / 0 := 1`` (an all-zero row stays zero)."""
    return 1.0 / jnp.where(t > 0, t, 1.0)


@functools.partial(jax.jit, static_argnames=("iters",))
def spectral_rescale_dense(w: jax.Array, iters: int) -> jax.Array:
    """``diag(1 / t) w`` with ``t = gram_row_bounds(w, iters)``; ``w: [m, n]`` -> ``[m, n]``."""
    return w * _inverse(gram_row_bounds(w, iters))[:, None]


@functools.partial(jax.jit, static_argnames=("iters",))
def spectral_rescale_conv(kernel: jax.Array, iters: int) -> jax.Array:
    """``kernel / t`` per output channel with ``t = spatial_gram_row_bounds(kernel, iters)``.

    ``kernel: [c_out, c_in, k, k]`` -> same shape; the convolution with the result has
    norm ``<= 1`` for every input size, with zero or circular padding.
    """
    return kernel * _inverse(spatial_gram_row_bounds(kernel, iters))[:, None, None, None]


@jax.jit
def aol_dense(w: jax.Array) -> jax.Array:
    """AOL: ``w diag(d)`` with ``d_j = (sum_i |(w^T w)_{ji}|) ** -1/2``; ``w: [m, n]``."""
    p = jnp.matmul(w.T, w, precision=HIGHEST)
    return w * _inverse(jnp.sqrt(jnp.sum(jnp.abs(p), axis=1)))[None, :]


@jax.jit
def aol_conv(kernel: jax.Array) -> jax.Array:
    """AOL for a convolution: scale input channel ``j`` by
    ``(sum_{i, s} |P[j, i, s]|) ** -1/2``, ``P`` the kernel of ``A^* A``
    (``P[j, i, s] = sum_{o, u} K[o, j, u + s] K[o, i, u]``); ``[c_out, c_in, k, k]``."""
    p = self_correlation(jnp.swapaxes(kernel, 0, 1))
    d = _inverse(jnp.sqrt(jnp.sum(jnp.abs(p), axis=(1, 2, 3))))
    return kernel * d[None, :, None, None]


def adjoint_kernel(kernel: jax.Array) -> jax.Array:
    """The kernel of the adjoint convolution (up to placement): swap channels, flip space.
    ``[c_out, c_in, k, k]`` -> ``[c_in, c_out, k, k]``."""
    return jnp.flip(jnp.swapaxes(kernel, 0, 1), axis=(-2, -1))
