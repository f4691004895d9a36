"""Gram-iteration bounds on the spectral norm of a convolution (see ``convolution.py``).

Kernels: the public functions take ``layout=`` (Flax's HWIO by default, ``checks.py``);
the math below and the internal functions (leading underscore) use OIHW,
``K: [c_out, c_in, k, k]``.

Circular padding, input ``n x n``: the 2-D DFT block-diagonalises the operator
(Sedghi et al. 2019). With ``K_hat(w) = sum_{u,v} K[:, :, u, v] exp(-i (w_1 u + w_2 v))``
(a ``c_out x c_in`` matrix per frequency), the singular values of the layer are those of
``K_hat`` at the ``n x n`` frequencies ``w = 2 pi (a, b) / n``, so::

    ||conv_circ(n)||_2 = max_w sigma_1(K_hat(w))  <=  max_w gram_iteration(K_hat(w))

``rfft2`` gives half of the frequencies; the other half are complex conjugates
(``K_hat(-w) = conj K_hat(w)`` for a real kernel) with the same singular values. ``n``
is the input size and is required: the norm grows with ``n`` in general, so a value
computed at ``n = k`` is not a bound for larger inputs.

Zero padding, any input size: the spatial Gram iteration (Delattre et al. 2024)::

    G = K ; r = 0
    repeat T times:
        c = ||G||_F ; G = G / c ; r = 2 (r + log c)
        G[i, j, s] = sum_{l, u} G[i, l, u + s] G[j, l, u]     (full 2-D self-correlation)
    t_i = (sum_{j, s} |G[i, j, s]|) ** (2 ** -T) * exp(r * 2 ** -T)
    bound = max_i t_i

``G_T`` is the kernel of the bi-infinite block-Toeplitz operator ``(A A^*) ** (2 ** (T-1))``
(``A`` the convolution on all of ``Z^2``), whose norm is at most its largest absolute
row sum (Schur test), so ``t_i ** (2 ** T) >= ||A|| ** (2 ** T)`` for the largest
``t_i``. A zero-padded convolution of any input size and placement is a section
``P A Q`` of ``A`` (coordinate restrictions), and a circular one at size ``n`` samples
the symbol of ``A`` at ``n x n`` frequencies, so both have norm ``<= ||A|| <= bound``.
The per-row values ``t`` are the spectral-rescaling factors (``diag(1 / t) A`` is
1-Lipschitz). Relations the tests check on explicit matrices: the zero-padding norm
at size ``n`` is at most the circular norm at ``n + k - 1`` (the zero-padded layer is
a section of the full linear convolution, which is the circular one at ``n + k - 1``
on inputs that do not wrap) and does not decrease with ``n`` (nested sections).

The self-correlation of a support-``s`` kernel has support ``2s - 1``, so ``G_T`` has
support ``S_T = 2^T (k - 1) + 1`` and the work grows like ``4^T``. ``_spatial_gram_iterate``
does the first step in the spatial domain, then evaluates the rest of the recursion
on an ``S_T x S_T`` frequency grid, where self-correlation is ``G_hat <- G_hat G_hat^H``
per frequency and ``S_T`` points recover every coefficient without aliasing;
``_self_correlation`` iterated directly is the reference it is tested against.

Circular speed-ups, both exact: the first Gram step ``K_hat K_hat^H`` is the symbol of
the small self-correlation ``P`` (``_circular_gram_symbols``), and only frequencies that
can still be the maximum are run through the last steps (``_pruned_max``), with a
backward pass through the arg-max frequency.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np

from lipschitz.checks import DEFAULT_LAYOUT, check_iters, check_kernel, check_size, poison
from lipschitz.gram import (
    HIGHEST,
    _frobenius,
    _nonzero,
    _robust_frobenius,
    _safe_log,
    gram_log_bound,
    square_steps,
)


@functools.partial(jax.jit, static_argnames=("n",))
def _circular_symbols(kernel: jax.Array, n: int) -> jax.Array:
    """The Fourier symbol of the circular convolution at input size ``n``.

    Args:
      kernel: ``[c_out, c_in, k, k]`` real, ``k <= n``.
      n: input height and width.

    Returns:
      ``[n, n // 2 + 1, c_out, c_in]`` complex: ``K_hat`` at the ``rfft2`` frequencies.
    """
    symbols = jnp.fft.rfft2(kernel, s=(n, n), axes=(-2, -1))
    return jnp.moveaxis(symbols, (0, 1), (-2, -1))


def _phases(n: int, shifts: np.ndarray, count: int, dtype) -> jax.Array:
    """``exp(-2 pi i f s / n)`` for frequencies ``f < count`` and integer ``shifts``:
    ``[count, len(shifts)]`` (the product ``f s`` is reduced mod ``n`` exactly first)."""
    angle = 2.0 * np.pi * (np.outer(np.arange(count), shifts) % n) / n
    real = jnp.asarray(np.cos(angle), dtype)
    return jax.lax.complex(real, jnp.asarray(-np.sin(angle), dtype))


def _symbol_at(p: jax.Array, shifts: np.ndarray, n: int) -> jax.Array:
    """``sum_s p[..., s1, s2] exp(-2 pi i <f, s> / n)`` at the ``rfft2`` frequencies ``f``,
    for coefficients ``p: [a, b, L, L]`` at integer ``shifts`` (length ``L``) per axis:
    ``[n, n // 2 + 1, a, b]``. Two small matrix products, no FFT or padding."""
    a, b, length, _ = p.shape
    real = jnp.real(jnp.zeros((), p.dtype)).dtype
    cdt = jax.lax.complex(jnp.zeros((), real), jnp.zeros((), real)).dtype
    rows = _phases(n, shifts, n, real)
    cols = _phases(n, shifts, n // 2 + 1, real)
    flat = jnp.transpose(p, (2, 3, 0, 1)).reshape(length, length, a * b).astype(cdt)
    half = jnp.einsum("fv,uvx->ufx", cols, flat, precision=HIGHEST)
    full = jnp.einsum("eu,ufx->efx", rows, half, precision=HIGHEST)
    return full.reshape(n, n // 2 + 1, a, b)


@functools.partial(jax.jit, static_argnames=("n",))
def _circular_gram_symbols(kernel: jax.Array, n: int) -> jax.Array:
    """The first Gram iterate of the circular operator, per frequency: ``K_hat K_hat^H``
    (or ``K_hat^H K_hat``, whichever is smaller) at the ``rfft2`` frequencies.

    Computed without forming ``K_hat``: the Gram operator ``A A^*`` is itself a
    convolution, with the kernel ``P = _self_correlation(K)`` (support ``2k - 1``), so its
    symbol is the trigonometric polynomial ``sum_s P[s] exp(-i <w, s>)`` (Hermitian),
    evaluated here at the ``n x n`` grid (for ``n < 2k - 1`` this is the DFT of ``P``
    wrapped modulo ``n``). This replaces the ``c_out x c_in`` symbols and the first
    batched matrix product by a small spatial correlation.

    Args:
      kernel: ``[c_out, c_in, k, k]``, square, ``k <= n``.
      n: input size.

    Returns:
      ``[n, n // 2 + 1, s, s]`` complex, Hermitian PSD, ``s = min(c_out, c_in)``.
    """
    g = kernel if kernel.shape[0] <= kernel.shape[1] else jnp.swapaxes(kernel, 0, 1)
    k = kernel.shape[-1]
    return _symbol_at(_self_correlation(g), np.arange(2 * k - 1) - (k - 1), n)


def _log_bounds(g: jax.Array, r: jax.Array, iters: int) -> jax.Array:
    """``2^-T (log ||G_T||_F + r)``: the log Gram bound of each iterate."""
    return (_safe_log(_frobenius(g)) + r) * 2.0**-iters


def _circular_log_bounds(kernel: jax.Array, n: int, iters: int) -> jax.Array:
    """Log Gram bounds at every ``rfft2`` frequency, all ``T`` steps batched: ``[F]``."""
    kernel, log_c = _normalise_all(kernel)
    g = _circular_gram_symbols(kernel, n)
    g = g.reshape(-1, *g.shape[-2:])
    g, r = square_steps(g, jnp.full(g.shape[:1], 2.0 * log_c), iters - 1)
    return _log_bounds(g, r, iters)


PRUNE_AFTER = 2
"""The pruned circular bound runs all frequencies to ``T - PRUNE_AFTER`` steps, then only
those whose bound there still exceeds the best final bound found so far."""


def _pruned_max(kernel: jax.Array, n: int, iters: int) -> tuple[jax.Array, jax.Array]:
    """``(max_f log bound_T(f), argmax f)`` without running every frequency to ``T``.

    After ``t0 = T - PRUNE_AFTER`` steps each frequency has a bound ``b_t0(f) >= b_T(f)``
    (Schatten norms decrease with their order). Frequencies are visited in decreasing
    ``b_t0`` order, in chunks, each run to ``T``; once the next ``b_t0`` is at most the
    best ``b_T`` found, no remaining frequency can exceed it, so the result is exactly
    ``max_f b_T(f)``. Random 64-channel kernels refine 0.2-3% of the frequencies.
    """
    t0 = iters - PRUNE_AFTER
    kernel, log_c = _normalise_all(kernel)
    g = _circular_gram_symbols(kernel, n)
    g = g.reshape(-1, *g.shape[-2:])
    count = g.shape[0]
    g, r = square_steps(g, jnp.full((count,), 2.0 * log_c), t0 - 1)
    early = jax.lax.stop_gradient(_log_bounds(g, r, t0))
    chunk = min(count, max(8, -(-count // 64)))
    chunks = -(-count // chunk)
    order = jnp.argsort(-early)
    order = jnp.concatenate([order, jnp.full((chunks * chunk - count,), order[-1])])
    ranked = early[order]

    def more(state):
        i, best, _ = state
        return (i < chunks) & (ranked[jnp.minimum(i, chunks - 1) * chunk] > best)

    def refine(state):
        i, best, arg = state
        idx = jax.lax.dynamic_slice(order, (i * chunk,), (chunk,))
        gi, ri = square_steps(g[idx], r[idx], PRUNE_AFTER)
        bounds = _log_bounds(gi, ri, iters)
        j = jnp.argmax(bounds)
        better = bounds[j] > best
        return i + 1, jnp.where(better, bounds[j], best), jnp.where(better, idx[j], arg)

    start = (jnp.zeros((), jnp.int32), jnp.full((), -jnp.inf, early.dtype), order[0])
    _, best, arg = jax.lax.while_loop(more, refine, start)
    # A NaN frequency fails every comparison above and would be skipped: propagate it.
    return jnp.where(jnp.any(jnp.isnan(early)), jnp.nan, best), arg


def _log_bound_at(kernel: jax.Array, n: int, iters: int, index: jax.Array) -> jax.Array:
    """The log Gram bound of the single frequency ``index`` (row-major over the ``rfft2``
    grid ``[n, n // 2 + 1]``), from ``K_hat`` there; differentiable in ``kernel``."""
    k = kernel.shape[-1]
    a, b = index // (n // 2 + 1), index % (n // 2 + 1)
    taps = jnp.arange(k)
    real = kernel.dtype
    angle_a = 2.0 * jnp.pi * ((a * taps) % n).astype(real) / n
    angle_b = 2.0 * jnp.pi * ((b * taps) % n).astype(real) / n
    phase_a = jax.lax.complex(jnp.cos(angle_a), -jnp.sin(angle_a))
    phase_b = jax.lax.complex(jnp.cos(angle_b), -jnp.sin(angle_b))
    symbol = jnp.einsum("oiuv,u,v->oi", kernel.astype(phase_a.dtype), phase_a, phase_b)
    return gram_log_bound(symbol, iters)


@functools.partial(jax.custom_vjp, nondiff_argnums=(1, 2))
def _pruned_circular_log_bound(kernel: jax.Array, n: int, iters: int) -> jax.Array:
    return _pruned_max(kernel, n, iters)[0]


def _pruned_fwd(kernel, n, iters):
    best, arg = _pruned_max(kernel, n, iters)
    return best, (kernel, arg)


def _pruned_bwd(n, iters, residuals, cotangent):
    # The max over frequencies has the gradient of its arg-max frequency (almost
    # everywhere; a frequency and its mirror -f tie, with equal gradients).
    kernel, arg = residuals
    _, pullback = jax.vjp(lambda w: _log_bound_at(w, n, iters, arg), kernel)
    return pullback(cotangent)


_pruned_circular_log_bound.defvjp(_pruned_fwd, _pruned_bwd)


@functools.partial(jax.jit, static_argnames=("n", "iters", "prune"))
def _circular_gram_bound(kernel: jax.Array, n: int, iters: int, prune: bool) -> jax.Array:
    """``circular_gram_bound`` on an OIHW kernel, no checks."""
    if kernel.shape[-1] == 1:
        bound = jnp.exp(gram_log_bound(kernel[:, :, 0, 0], iters))
    elif prune and iters > PRUNE_AFTER:
        bound = jnp.exp(_pruned_circular_log_bound(kernel, n, iters))
    else:
        bound = jnp.exp(jnp.max(_circular_log_bounds(kernel, n, iters)))
    return poison(bound, kernel)


def circular_gram_bound(
    kernel, n: int, iters: int, *, prune: bool = True, layout: str = DEFAULT_LAYOUT
) -> jax.Array:
    """Upper bound on the spectral norm of the circular convolution at input size ``n``.

    The batched Gram iteration over the ``n (n // 2 + 1)`` frequency matrices, each with
    its own log accumulator; the maximum is taken in log space. The first step is
    ``_circular_gram_symbols`` (the kernel is first divided by its Frobenius norm ``c``,
    so every accumulator starts at ``2 log c``). A ``1 x 1`` kernel has the same matrix
    at every frequency and is bounded as a dense matrix.

    Args:
      kernel: ``[k, k, c_in, c_out]`` (``layout="HWIO"``, Flax) or ``[c_out, c_in, k, k]``
        (``"OIHW"``); square, ``k <= n`` (``checks.py``).
      n: input height and width.
      iters: Gram steps ``T >= 1``.
      prune: skip the last ``PRUNE_AFTER`` steps at frequencies that cannot be the
        maximum (same value; see ``_pruned_max``), with a backward pass through the
        arg-max frequency only. ``False`` runs every frequency to ``T`` and
        differentiates through all of them (the reference).
      layout: ``"HWIO"`` or ``"OIHW"``.

    Returns:
      scalar ``>= ||conv_circ(n)||_2``; NaN if the kernel holds NaN or inf under ``jax.jit``.

    Raises:
      ValueError: bad ``n``, ``iters`` or kernel shape for ``layout``, or a concrete kernel
        with NaN or inf.
    """
    n = check_size(n)
    kernel = check_kernel(kernel, layout, n=n)
    return _circular_gram_bound(kernel, n, check_iters(iters), bool(prune))


@jax.jit
def _self_correlation(g: jax.Array) -> jax.Array:
    """Full 2-D self-correlation contracting the second (input-channel) axis, directly.

    ``out[i, j, s] = sum_{l, u} g[i, l, u + s] g[j, l, u]`` for shifts ``s`` in
    ``[-(k - 1), k - 1]^2``, stored at index ``s + k - 1``: the kernel of ``A A^*``.

    Args:
      g: ``[a, b, k, k]`` real.

    Returns:
      ``[a, a, 2k - 1, 2k - 1]``.
    """
    k_h, k_w = g.shape[-2:]
    return jax.lax.conv_general_dilated(
        g,
        g,
        window_strides=(1, 1),
        padding=[(k_h - 1, k_h - 1), (k_w - 1, k_w - 1)],
        dimension_numbers=("NCHW", "OIHW", "NCHW"),
        precision=HIGHEST,
    )


def spatial_support(k: int, iters: int) -> int:
    """Support ``2^T (k - 1) + 1`` of the spatial Gram iterate after ``T`` steps."""
    return 2**iters * (k - 1) + 1


@functools.partial(jax.jit, static_argnames=("iters", "fourier"))
def _spatial_gram_iterate(
    kernel: jax.Array, iters: int, *, fourier: bool = True
) -> tuple[jax.Array, jax.Array]:
    """The spatial Gram iterate ``G_T`` and its log scale ``r`` (``G_T exp(r)`` is exact).

    Args:
      kernel: ``[c_out, c_in, k, k]`` real.
      iters: ``T >= 1``.
      fourier: evaluate the self-correlations as products on an alias-free Fourier grid
        (fast, default) or directly with ``_self_correlation`` (the reference).

    Returns:
      ``(g, r)``: ``g: [c_out, c_out, S, S]`` with ``S = spatial_support(k, T)``, the shift
      ``s`` in ``[-(S - 1) / 2, (S - 1) / 2]^2`` stored at ``s + (S - 1) / 2``, and ``r``
      a scalar. The two paths differ in their normalising constants (so in ``g`` and
      ``r`` separately), never in ``g * exp(r)``.
    """
    r = jnp.zeros((), kernel.dtype)
    if not fourier:
        g = kernel
        for _ in range(iters):
            g, log_c = _normalise_all(g)
            g = _self_correlation(g)
            r = 2.0 * (r + log_c)
        return g, r
    k = kernel.shape[-1]
    size = spatial_support(k, iters)
    # The first step in the spatial domain (a small self-correlation), then its symbol
    # on the alias-free grid, where each further step is a product per frequency.
    kernel, log_c = _normalise_all(kernel)
    f = _symbol_at(_self_correlation(kernel), np.arange(2 * k - 1) - (k - 1), size)
    r = 2.0 * log_c
    for _ in range(iters - 1):
        # f is Hermitian PSD at every frequency: f f^H = f f, and the summed trace is a
        # cheap positive normaliser (one scalar for all frequencies, as the inverse DFT
        # needs).
        c = jnp.sum(jnp.real(jnp.diagonal(f, axis1=-2, axis2=-1)))
        c = jax.lax.stop_gradient(_nonzero(c))
        f = f / c.astype(f.dtype)
        f = jnp.matmul(f, f, precision=HIGHEST)
        r = 2.0 * (r + jnp.log(c))
    g = jnp.fft.irfft2(jnp.moveaxis(f, (-2, -1), (0, 1)), s=(size, size), axes=(-2, -1))
    # Index q of the DFT grid holds shift q mod S; centre the shifts.
    g = jnp.roll(g, ((size - 1) // 2, (size - 1) // 2), axis=(-2, -1))
    return g.astype(kernel.dtype), r


def _normalise_all(g: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``(g / c, log c)`` with one ``c = ||g||_F`` over all axes (no gradient through it)."""
    flat = g.reshape(1, -1)
    c = _nonzero(jax.lax.stop_gradient(_robust_frobenius(flat)))
    return g / c.astype(g.dtype), jnp.log(c)


@functools.partial(jax.jit, static_argnames=("iters", "fourier"))
def _spatial_gram_row_bounds(kernel: jax.Array, iters: int, fourier: bool) -> jax.Array:
    """``spatial_gram_row_bounds`` on an OIHW kernel, no checks."""
    g, r = _spatial_gram_iterate(kernel, iters, fourier=fourier)
    row_sums = jnp.sum(jnp.abs(g), axis=(1, 2, 3))
    return poison(jnp.exp((_safe_log(row_sums) + r) * 2.0**-iters), kernel)


def spatial_gram_row_bounds(
    kernel, iters: int, *, fourier: bool = True, layout: str = DEFAULT_LAYOUT
) -> jax.Array:
    """Per-output-channel spatial Gram bounds ``t``: ``diag(1 / t) conv`` is 1-Lipschitz.

    ``t_i = (sum_{j, s} |G_T[i, j, s]|) ** (2 ** -T) * exp(r * 2 ** -T)``.

    Args:
      kernel: ``[k, k, c_in, c_out]`` (``layout="HWIO"``) or ``[c_out, c_in, k, k]``
        (``"OIHW"``), square.
      iters: ``T >= 1``.
      fourier: see ``_spatial_gram_iterate``.
      layout: ``"HWIO"`` or ``"OIHW"``.

    Returns:
      ``[c_out]`` positive (zero for an all-zero output channel); NaN everywhere if the
      kernel holds NaN or inf under ``jax.jit``.
    """
    kernel = check_kernel(kernel, layout)
    return _spatial_gram_row_bounds(kernel, check_iters(iters), bool(fourier))


def spatial_gram_bound(
    kernel, iters: int, *, fourier: bool = True, layout: str = DEFAULT_LAYOUT
) -> jax.Array:
    """Upper bound on the spectral norm of the convolution for every input size and
    padding (zero or circular): ``max_i t_i`` of ``spatial_gram_row_bounds`` (same
    arguments); a scalar, NaN if the kernel holds NaN or inf under ``jax.jit``."""
    kernel = check_kernel(kernel, layout)
    return jnp.max(_spatial_gram_row_bounds(kernel, check_iters(iters), bool(fourier)))
