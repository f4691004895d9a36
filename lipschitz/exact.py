"""Exact spectral norms and power iteration: the references the bounds are tested against.

- Dense: the largest singular value (``jnp.linalg.svd``).
- Circular convolution at input size ``n``: the largest singular value over the
  ``rfft2`` frequency matrices (batched SVD; Sedghi et al. 2019).
- Zero-padding convolution at input size ``n``: the largest singular value of the
  explicit ``[n n c_out, n n c_in]`` matrix of ``conv2d`` (small ``n`` only).
- Power iteration on any linear map, its adjoint from ``jax.vjp``: a lower estimate
  that converges to the norm (linearly, at the rate of the two top singular values).
"""

from __future__ import annotations

import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp

from lipschitz.conv_bounds import circular_symbols
from lipschitz.convolution import conv2d


@jax.jit
def dense_exact(w: jax.Array) -> jax.Array:
    """``sigma_1(w)`` of ``w: [..., m, n]`` -> ``[...]``."""
    return jnp.linalg.svd(w, compute_uv=False)[..., 0]


@functools.partial(jax.jit, static_argnames=("p",))
def schatten_norm(w: jax.Array, p: float) -> jax.Array:
    """``(sum_i sigma_i ** p) ** (1 / p)`` of ``w: [..., m, n]`` -> ``[...]``, from the SVD
    (scaled by ``sigma_1`` so large ``p`` does not overflow)."""
    s = jnp.linalg.svd(w, compute_uv=False)
    top = s[..., :1]
    return top[..., 0] * jnp.sum((s / top) ** p, axis=-1) ** (1.0 / p)


@functools.partial(jax.jit, static_argnames=("n",))
def circular_exact(kernel: jax.Array, n: int) -> jax.Array:
    """Spectral norm of the circular convolution at input size ``n`` (FFT + batched SVD).

    Args:
      kernel: ``[c_out, c_in, k, k]``, ``k <= n``.
      n: input size.

    Returns:
      scalar.
    """
    return jnp.max(dense_exact(circular_symbols(kernel, n)))


@functools.partial(jax.jit, static_argnames=("n", "padding"))
def conv_matrix(kernel: jax.Array, n: int, padding: str) -> jax.Array:
    """The convolution ``conv2d(., kernel, padding)`` on ``[n, n, c_in]`` as a dense matrix.

    Rows index the output ``(p, q, o)`` and columns the input ``(p, q, i)``, both
    flattened in NHWC order: ``y.ravel() = M @ x.ravel()``.

    Returns:
      ``[n * n * c_out, n * n * c_in]``.
    """
    c_in = kernel.shape[1]
    basis = jnp.eye(n * n * c_in, dtype=kernel.dtype).reshape(-1, n, n, c_in)
    columns = conv2d(basis, kernel, padding)
    return columns.reshape(n * n * c_in, -1).T


@functools.partial(jax.jit, static_argnames=("n",))
def zero_padding_exact(kernel: jax.Array, n: int) -> jax.Array:
    """Spectral norm of the zero-padding convolution at input size ``n``, from the
    explicit matrix (``O((n^2 c)^3)``: small ``n`` and channels only)."""
    return dense_exact(conv_matrix(kernel, n, "zero"))


def power_iteration(
    apply: Callable[[jax.Array], jax.Array],
    x0: jax.Array,
    iters: int,
    *,
    history: bool = False,
) -> tuple[jax.Array, jax.Array, jax.Array | None]:
    """Power iteration on ``A^T A`` for a linear map ``apply = A``; ``A^T`` from ``jax.vjp``.

    ``v <- A^T A v / ||A^T A v||``; the estimate is ``||A v||`` for the current unit
    ``v``, a lower bound on ``||A||_2`` that increases to it.

    Args:
      apply: a linear function of one array.
      x0: a starting vector of ``apply``'s input shape (e.g. Gaussian).
      iters: number of ``A^T A`` products.
      history: also return the estimate after every iteration.

    Returns:
      ``(estimate, v, estimates)``: the final estimate, the final unit input vector, and
      ``[iters]`` estimates (``None`` unless ``history``).
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")

    def unit(x):
        return x / jnp.linalg.norm(x.ravel())

    def step(v, _):
        y, pullback = jax.vjp(apply, v)
        (ata_v,) = pullback(y)
        return unit(ata_v), jnp.linalg.norm(y.ravel())

    v, estimates = jax.lax.scan(step, unit(x0), None, length=iters)
    estimate = jnp.linalg.norm(apply(v).ravel())
    return estimate, v, (jnp.append(estimates[1:], estimate) if history else None)


@functools.partial(jax.jit, static_argnames=("iters",))
def dense_power_iteration(w: jax.Array, iters: int, key: jax.Array) -> jax.Array:
    """Power-iteration estimate of ``sigma_1(w)`` for ``w: [m, n]`` (Gaussian start)."""
    x0 = jax.random.normal(key, (w.shape[1],), w.dtype)
    return power_iteration(lambda x: w @ x, x0, iters)[0]


@functools.partial(jax.jit, static_argnames=("n", "padding", "iters"))
def conv_power_iteration(
    kernel: jax.Array, n: int, padding: str, iters: int, key: jax.Array
) -> jax.Array:
    """Power-iteration estimate of the convolution's norm at input size ``n``."""
    x0 = jax.random.normal(key, (1, n, n, kernel.shape[1]), kernel.dtype)
    return power_iteration(lambda x: conv2d(x, kernel, padding), x0, iters)[0]
