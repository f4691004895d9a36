"""Gram iteration: a deterministic, differentiable upper bound on a matrix's spectral norm.

For ``W`` (``m x n``, real or complex) with singular values ``s_1 >= s_2 >= ...`` let
``G_0 = W`` and ``G_{t+1} = G_t^H G_t`` (or ``G_t G_t^H``: both have the same nonzero
eigenvalues, so we always form the smaller, ``min(m, n)``-square one). Then the
singular values of ``G_t`` are ``s_i ** (2 ** t)`` and, with ``p = 2 ** (T + 1)``::

    ||G_T||_F ** (2 ** -T) = (sum_i s_i ** p) ** (1 / p) = ||W||_{S_p}

the Schatten ``p``-norm of ``W``. It is ``>= s_1`` at every ``T`` and at most
``rank ** (1 / p) * s_1``: the gap closes geometrically in the exponent. In floating
point ``s_1 ** (2 ** T)`` overflows quickly, so each step first divides ``G`` by a
positive scalar ``c`` and keeps the logarithm of what was divided out::

    repeat T times:  G = G / c ;  G = G^H G ;  r = 2 (r + log c)
    bound = exp(2 ** -T * (log ||G||_F + r))

which is exact in exact arithmetic for *any* positive ``c``. The first ``c`` is
``||W||_F``; after the first step ``G`` is Hermitian positive semi-definite, so
``G^H G = G G`` and its trace (the sum of its eigenvalues, read off the diagonal)
is a cheap normaliser that keeps the largest eigenvalue of ``G / c`` in
``[1 / rank, 1]`` (no overflow, and no underflow of what matters). The bound does not
depend on ``c``, so we stop gradients through it: the gradient is the same and cheaper.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

from lipschitz.checks import check_iters, check_matrix, poison

HIGHEST = jax.lax.Precision.HIGHEST

DEFAULT_ITERS = {"float32": 6, "float64": 10}
"""Default Gram iterations by dtype. Six steps (a Schatten-128 norm) put the circular
bound of random 64-channel 3x3 and 5x5 kernels within 2e-5 of the exact norm (float32
resolves about 1e-7); float64 gets ten (Schatten-2048), at rounding level in our tests."""


def default_iters(dtype) -> int:
    """``DEFAULT_ITERS`` for a real or complex ``dtype`` (float32 / complex64 use the float32
    value, float64 / complex128 the float64 one)."""
    return DEFAULT_ITERS["float64" if jnp.finfo(dtype).bits == 64 else "float32"]


def _nonzero(x: jax.Array) -> jax.Array:
    """``x`` with exact zeros replaced by 1, the safe divisor or log argument of the guards
    below. Only exact zeros: NaN and inf go through (a ``x > 0`` test would turn NaN into
    1, and a NaN weight into a bound of 0)."""
    return jnp.where(x == 0, jnp.ones_like(x), x)


def _frobenius(g: jax.Array) -> jax.Array:
    """``||g||_F`` over the last two axes: ``[..., a, b] -> [...]`` (real), for well-scaled
    ``g`` (a normalised Gram iterate); 0 with a zero, not NaN, gradient for a zero matrix;
    NaN for a NaN matrix."""
    s = jnp.sum(jnp.real(g * jnp.conj(g)), axis=(-2, -1))
    return jnp.where(s == 0, 0.0, jnp.sqrt(_nonzero(s)))


def _robust_frobenius(g: jax.Array) -> jax.Array:
    """``_frobenius`` of any ``g``, as ``a ||g / a||_F`` with ``a = max |g|`` so that
    squaring neither overflows nor underflows."""
    a = _nonzero(jax.lax.stop_gradient(jnp.max(jnp.abs(g), axis=(-2, -1))))
    return a * _frobenius(g / a[..., None, None].astype(g.dtype))


def _safe_log(x: jax.Array) -> jax.Array:
    """``log x`` with ``log 0 = -inf`` and a zero (not NaN) gradient at 0; NaN stays NaN."""
    return jnp.where(x == 0, -jnp.inf, jnp.log(_nonzero(x)))


def _normalise(g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(g / c, log c)`` with ``c = ||g||_F`` per matrix (1 for a zero matrix); no gradient
    flows through ``c`` (the bound does not depend on it)."""
    c = _nonzero(jax.lax.stop_gradient(_robust_frobenius(g)))
    return g / c[..., None, None].astype(g.dtype), jnp.log(c)


def _gram(g: jax.Array, side: str) -> jax.Array:
    """``g^H g`` (``side="columns"``, ``n x n``) or ``g g^H`` (``side="rows"``, ``m x m``)."""
    if side == "rows":
        return jnp.einsum("...ij,...kj->...ik", g, jnp.conj(g), precision=HIGHEST)
    return jnp.einsum("...ji,...jk->...ik", jnp.conj(g), g, precision=HIGHEST)


def gram_power(w: jax.Array, iters: int, side: str = "smaller") -> tuple[jax.Array, jax.Array]:
    """``T`` normalised Gram steps: ``(G, r)`` with ``G exp(r) = (w^H w) ** (2 ** (T-1))``
    (or ``(w w^H) ** ...``), Hermitian positive semi-definite.

    Args:
      w: ``[..., m, n]`` real or complex.
      iters: ``T >= 1``.
      side: ``"rows"`` (``m x m``), ``"columns"`` (``n x n``) or ``"smaller"``.

    Returns:
      ``G: [..., s, s]`` and ``r: [...]`` (real), one accumulator per matrix.
    """
    if iters < 1:
        raise ValueError(f"iters must be >= 1, got {iters}")
    if side == "smaller":
        side = "rows" if w.shape[-2] < w.shape[-1] else "columns"
    g, log_c = _normalise(w)
    return square_steps(_gram(g, side), 2.0 * log_c, iters - 1)


def square_steps(g: jax.Array, r: jax.Array, steps: int) -> tuple[jax.Array, jax.Array]:
    """Continue the Gram iteration from a Hermitian PSD ``g`` (an iterate ``t >= 1``) and
    its log scale ``r``: ``steps`` times ``g <- (g / c)(g / c)``, ``r <- 2 (r + log c)``.

    ``c`` is the trace of ``g`` (the sum of its eigenvalues), computed from the diagonal:
    it keeps ``g / c`` in the unit ball with its top eigenvalue ``>= 1 / size``.

    Args:
      g: ``[..., s, s]`` Hermitian PSD (e.g. ``w^H w``).
      r: ``[...]`` real.
      steps: ``>= 0``.
    """
    for _ in range(steps):
        c = jnp.sum(jnp.real(jnp.diagonal(g, axis1=-2, axis2=-1)), axis=-1)
        c = _nonzero(jax.lax.stop_gradient(c))
        g = g / c[..., None, None].astype(g.dtype)
        g = jnp.matmul(g, g, precision=HIGHEST)
        r = 2.0 * (r + jnp.log(c))
    return g, r


@functools.partial(jax.jit, static_argnames=("iters",))
def gram_log_bound(w: jax.Array, iters: int) -> jax.Array:
    """``log`` of the Gram-iteration bound on the spectral norm of each matrix of ``w``.

    Args:
      w: ``[..., m, n]`` real or complex; leading axes are a batch (e.g. frequencies),
        each matrix gets its own log accumulator.
      iters: number of Gram steps ``T >= 1`` (the result is the Schatten ``2^(T+1)``-norm).

    Returns:
      ``[...]`` real: ``log ||w_b||_{S_p} >= log sigma_1(w_b)``; ``-inf`` for a zero matrix.
    """
    g, r = gram_power(w, iters)
    return (_safe_log(_frobenius(g)) + r) * 2.0**-iters


@functools.partial(jax.jit, static_argnames=("iters",))
def _gram_iteration(w: jax.Array, iters: int) -> jax.Array:
    return poison(jnp.exp(gram_log_bound(w, iters)), w)


def gram_iteration(w, iters: int | None = None) -> jax.Array:
    """Gram-iteration upper bound on the spectral norm of each matrix of ``w``.

    Args:
      w: ``[..., m, n]`` real or complex.
      iters: Gram steps ``T >= 1``; default ``default_iters(w.dtype)``.

    Returns:
      ``[...]``: ``||w_b||_{S_{2^(T+1)}}``, with ``sigma_1 <= bound <= rank^(2^-(T+1)) sigma_1``;
      NaN (every entry) if ``w`` holds NaN or inf under ``jax.jit``.

    Raises:
      ValueError: ``iters < 1``, a non-matrix ``w``, or a concrete ``w`` with NaN or inf.
    """
    w = check_matrix(w, "w")
    iters = default_iters(w.dtype) if iters is None else check_iters(iters)
    return _gram_iteration(w, iters)


@functools.partial(jax.jit, static_argnames=("iters",))
def _gram_row_bounds(w: jax.Array, iters: int) -> jax.Array:
    m, r = gram_power(w, iters, side="rows")
    row_sums = jnp.sum(jnp.abs(m), axis=-1)
    return poison(jnp.exp((_safe_log(row_sums) + r[..., None]) * 2.0**-iters), w)


def gram_row_bounds(w, iters: int) -> jax.Array:
    """Per-row Gram bounds ``t`` of a real matrix: ``||diag(1 / t) w||_2 <= 1``.

    ``M <- (M / ||M||_F)(M / ||M||_F)^T`` is iterated ``T`` times from ``M = w`` (always the
    row side, ``m x m``), so ``M_T`` is ``(w w^T) ** (2 ** (T-1))`` up to the accumulated
    scale ``exp(r)``, and::

        t_i = (sum_j |M_T[i, j]|) ** (2 ** -T) * exp(r * 2 ** -T)

    ``T = 1`` gives the row sums of ``|w w^T|`` (AOL's rescaling, on the output side);
    larger ``T`` is tighter and ``max_i t_i -> sigma_1`` as ``T`` grows. ``max_i t_i`` is
    itself a bound on ``sigma_1`` (a PSD matrix's norm is at most its largest absolute
    row sum).

    Args:
      w: ``[..., m, n]`` real.
      iters: ``T >= 1``.

    Returns:
      ``[..., m]`` positive (zero for an all-zero row); NaN everywhere if ``w`` holds NaN
      or inf under ``jax.jit``.

    Raises:
      ValueError: ``iters < 1``, a non-matrix ``w``, or a concrete ``w`` with NaN or inf.
    """
    return _gram_row_bounds(check_matrix(w, "w"), check_iters(iters))
