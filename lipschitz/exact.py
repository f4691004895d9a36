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

from lipschitz.checks import (
    DEFAULT_LAYOUT,
    as_key,
    check_iters,
    check_kernel,
    check_matrix,
    check_size,
    poison,
)
from lipschitz.conv_bounds import _circular_symbols
from lipschitz.convolution import _conv2d, check_padding
from lipschitz.gram import _nonzero


@jax.jit
def _dense_exact(w: jax.Array) -> jax.Array:
    return poison(jnp.linalg.svd(w, compute_uv=False)[..., 0], w)


def dense_exact(w) -> jax.Array:
    """``sigma_1(w)`` of ``w: [..., m, n]`` -> ``[...]`` (SVD); NaN if ``w`` holds NaN or inf
    under ``jax.jit``, a ``ValueError`` for a concrete one."""
    return _dense_exact(check_matrix(w, "w"))


@functools.partial(jax.jit, static_argnames=("p",))
def schatten_norm(w: jax.Array, p: float) -> jax.Array:
    """``(sum_i sigma_i ** p) ** (1 / p)`` of ``w: [..., m, n]`` -> ``[...]``, from the SVD
    (scaled by ``sigma_1`` so large ``p`` does not overflow)."""
    s = jnp.linalg.svd(w, compute_uv=False)
    top = s[..., :1]
    return top[..., 0] * jnp.sum((s / top) ** p, axis=-1) ** (1.0 / p)


@functools.partial(jax.jit, static_argnames=("n",))
def _circular_exact(kernel: jax.Array, n: int) -> jax.Array:
    return jnp.max(_dense_exact(_circular_symbols(kernel, n)))


def circular_exact(kernel, n: int, *, layout: str = DEFAULT_LAYOUT) -> jax.Array:
    """Spectral norm of the circular convolution at input size ``n`` (FFT + batched SVD).

    Args:
      kernel: ``[k, k, c_in, c_out]`` (``layout="HWIO"``) or ``[c_out, c_in, k, k]``
        (``"OIHW"``), square, ``k <= n``.
      n: input height and width.

    Returns:
      scalar; NaN if the kernel holds NaN or inf under ``jax.jit``.
    """
    n = check_size(n)
    return _circular_exact(check_kernel(kernel, layout, n=n), n)


@functools.partial(jax.jit, static_argnames=("n", "padding"))
def _conv_matrix(kernel: jax.Array, n: int, padding: str) -> jax.Array:
    c_in = kernel.shape[1]
    basis = jnp.eye(n * n * c_in, dtype=kernel.dtype).reshape(-1, n, n, c_in)
    columns = _conv2d(basis, kernel, padding)
    return columns.reshape(n * n * c_in, -1).T


def conv_matrix(kernel, n: int, padding: str, *, layout: str = DEFAULT_LAYOUT) -> jax.Array:
    """The convolution ``conv2d(., kernel, padding)`` on ``[n, n, c_in]`` as a dense matrix.

    Rows index the output ``(p, q, o)`` and columns the input ``(p, q, i)``, both
    flattened in NHWC order: ``y.ravel() = M @ x.ravel()``.

    Args:
      kernel: ``[kh, kw, c_in, c_out]`` (``layout="HWIO"``) or ``[c_out, c_in, kh, kw]``
        (``"OIHW"``), ``kh, kw <= n``.
      n: input height and width.
      padding: ``"zero"`` or ``"circular"``.

    Returns:
      ``[n * n * c_out, n * n * c_in]``.
    """
    n = check_size(n)
    kernel = check_kernel(kernel, layout, n=n, square=False)
    return _conv_matrix(kernel, n, check_padding(padding))


def zero_padding_exact(kernel, n: int, *, layout: str = DEFAULT_LAYOUT) -> jax.Array:
    """Spectral norm of the zero-padding convolution at input size ``n``, from the
    explicit matrix (``O((n^2 c)^3)``: small ``n`` and channels only).

    The matrix and its SVD are compiled as two programs: in one, XLA's CPU backend
    crashes (segmentation fault) on some float64 cases, e.g. a ``1x1x5x5`` kernel at
    ``n = 16``. Call it outside ``jax.jit`` (inside, the two parts compile together).

    Args:
      kernel: ``[k, k, c_in, c_out]`` (``layout="HWIO"``) or ``[c_out, c_in, k, k]``
        (``"OIHW"``), ``k <= n``.
      n: input height and width.

    Returns:
      scalar; NaN if the kernel holds NaN or inf under ``jax.jit``.
    """
    n = check_size(n)
    kernel = check_kernel(kernel, layout, n=n, square=False)
    return _dense_exact(_conv_matrix(kernel, n, "zero"))


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
        # A zero vector (the map sends v to 0) stays zero, so a zero map estimates 0.
        return x / _nonzero(jnp.linalg.norm(x.ravel()))

    def step(v, _):
        y, pullback = jax.vjp(apply, v)
        (ata_v,) = pullback(y)
        return unit(ata_v), jnp.linalg.norm(y.ravel())

    v, estimates = jax.lax.scan(step, unit(x0), None, length=iters)
    estimate = jnp.linalg.norm(apply(v).ravel())
    return estimate, v, (jnp.append(estimates[1:], estimate) if history else None)


@functools.partial(jax.jit, static_argnames=("iters",))
def _dense_power_iteration(key: jax.Array, w: jax.Array, iters: int) -> jax.Array:
    x0 = jax.random.normal(key, (w.shape[1],), w.dtype)
    return poison(power_iteration(lambda x: w @ x, x0, iters)[0], w)


def dense_power_iteration(key: jax.Array | int, w, iters: int) -> jax.Array:
    """Power-iteration estimate of ``sigma_1(w)`` for ``w: [m, n]`` from a Gaussian start
    drawn with ``key`` (``jax.random.key``, a legacy ``PRNGKey`` or an int seed)."""
    w = check_matrix(w, "w")
    if w.ndim != 2:
        raise ValueError(f"w must be a matrix [m, n], got shape {w.shape}")
    return _dense_power_iteration(as_key(key), w, check_iters(iters))


@functools.partial(jax.jit, static_argnames=("n", "padding", "iters"))
def _conv_power_iteration(
    key: jax.Array, kernel: jax.Array, n: int, padding: str, iters: int
) -> jax.Array:
    x0 = jax.random.normal(key, (1, n, n, kernel.shape[1]), kernel.dtype)
    return poison(power_iteration(lambda x: _conv2d(x, kernel, padding), x0, iters)[0], kernel)


def conv_power_iteration(
    key: jax.Array | int,
    kernel,
    n: int,
    padding: str,
    iters: int,
    *,
    layout: str = DEFAULT_LAYOUT,
) -> jax.Array:
    """Power-iteration estimate of the convolution's norm at input size ``n``, from a
    Gaussian start drawn with ``key`` (``jax.random.key``, a legacy ``PRNGKey`` or an int
    seed); ``kernel`` in ``layout`` (HWIO by default)."""
    n = check_size(n)
    kernel = check_kernel(kernel, layout, n=n, square=False)
    iters = check_iters(iters)
    return _conv_power_iteration(as_key(key), kernel, n, check_padding(padding), iters)
