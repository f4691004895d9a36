"""Bidirectional long convolution along the sequence, per channel.

For ``u: [B, L, H]`` and kernels ``k_fwd, k_bwd: [H, L]``, ``d: [H]``:

    y[b, t, h] = sum_{s<=t} k_fwd[h, t-s] u[b, s, h]
               + sum_{s>=t} k_bwd[h, s-t] u[b, s, h] + d[h] u[b, t, h]

Both kernels contribute at lag 0. Three implementations that agree:

- :func:`bidirectional_conv`: one real FFT of size ``n >= 2L`` (a 2/3/5-smooth size);
  the two kernels are laid out as one circular kernel of length ``n``, forward lags
  ``0..L-1`` at indices ``0..L-1`` and backward lags ``1..L-1`` at ``n-1..n-L+1``.
  Lags seen by the output are ``-(L-1)..L-1``, which are distinct modulo ``n`` when
  ``n >= 2L - 1``: correct for every ``L``.
- :func:`bidirectional_conv_chunked`: the same convolution in blocks of ``chunk``
  positions (partitioned overlap-add) with FFTs of size about ``2 chunk``, for when one
  FFT of length ``2L`` is not possible (its kernels still span ``L``: see its memory note).
- :func:`bidirectional_conv_direct`: explicit Toeplitz sums in float64 NumPy, ``O(L^2)``.

FFTs and accumulations run in float32 whatever the input dtype; the output has the
input's dtype.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import scipy.fft

from seq_models.s4d import _check_int


def _check_conv_args(u: Any, k_fwd: Any, k_bwd: Any, d: Any) -> tuple[int, int, int]:
    """Shapes of the convolution's arguments; returns ``(B, L, H)``."""
    if np.ndim(u) != 3:
        raise ValueError(f"u must have shape [B, L, H], got {np.shape(u)}")
    if not jnp.issubdtype(jnp.result_type(u), jnp.floating):
        raise ValueError(f"u must be a real floating array, got dtype {jnp.result_type(u)}")
    b, length, h = np.shape(u)
    if length < 1:
        raise ValueError(f"u must have at least one position (L >= 1), got shape {np.shape(u)}")
    for kernel, name in ((k_fwd, "k_fwd"), (k_bwd, "k_bwd")):
        if kernel is not None and tuple(np.shape(kernel)) != (h, length):
            raise ValueError(
                f"{name} must have shape [H, L] = {(h, length)}, got {np.shape(kernel)}"
            )
    if tuple(np.shape(d)) != (h,):
        raise ValueError(f"d must have shape [H] = {(h,)}, got {np.shape(d)}")
    return b, length, h


def fft_size(length: int) -> int:
    """The smallest 2/3/5-smooth integer ``>= 2 length``: the FFT size of a length-``L`` input."""
    return scipy.fft.next_fast_len(2 * _check_int(length, "length"), real=True)


def circular_kernel(k_fwd: jax.Array, k_bwd: jax.Array | None, n: int) -> jax.Array:
    """Both kernels as one circular kernel of length ``n >= 2L - 1``: ``[H, L] -> [H, n]``.

    ``w[j] = k_fwd[j]`` (lag ``+j``), ``w[n - j] = k_bwd[j]`` (lag ``-j``, ``j >= 1``) and
    ``w[0] = k_fwd[0] + k_bwd[0]``, so circular convolution with ``w`` is the bidirectional
    convolution on the first ``L`` outputs.
    """
    h, length = k_fwd.shape
    if n < 2 * length - 1:
        raise ValueError(f"n must be >= 2 L - 1 = {2 * length - 1}, got {n}")
    w = jnp.zeros((h, n), jnp.float32).at[:, :length].set(k_fwd.astype(jnp.float32))
    if k_bwd is not None:
        k_bwd = k_bwd.astype(jnp.float32)
        w = w.at[:, 0].add(k_bwd[:, 0])
        w = w.at[:, n - length + 1 :].set(k_bwd[:, :0:-1])  # lags -(L-1)..-1
    return w


def bidirectional_conv(
    u: jax.Array, k_fwd: jax.Array, k_bwd: jax.Array | None, d: jax.Array
) -> jax.Array:
    """``y = k_fwd * u (causal) + k_bwd * u (anti-causal) + d u`` through one FFT.

    Args:
      u: ``[B, L, H]`` input.
      k_fwd: ``[H, L]`` forward (causal) kernel, lag ``t - s >= 0``.
      k_bwd: ``[H, L]`` backward (anti-causal) kernel, lag ``s - t >= 0``, or ``None``
        for a causal convolution.
      d: ``[H]`` skip connection.

    Returns:
      ``[B, L, H]`` in ``u``'s dtype. One ``rfft``/``irfft`` pair of size
      :func:`fft_size` ``(L) >= 2L`` along the sequence, in float32; memory ``O(B L H)``.
    """
    _, length, _ = _check_conv_args(u, k_fwd, k_bwd, d)
    n = fft_size(length)
    x = jnp.asarray(u).astype(jnp.float32)
    w_hat = jnp.fft.rfft(circular_kernel(jnp.asarray(k_fwd), k_bwd, n), axis=-1)  # [H, n/2+1]
    x_hat = jnp.fft.rfft(x, n=n, axis=1)  # [B, n/2+1, H]
    y = jnp.fft.irfft(x_hat * w_hat.T, n=n, axis=1)[:, :length]
    y = y + jnp.asarray(d, jnp.float32) * x
    return y.astype(jnp.result_type(u))


def bidirectional_conv_chunked(
    u: jax.Array, k_fwd: jax.Array, k_bwd: jax.Array | None, d: jax.Array, *, chunk: int
) -> jax.Array:
    """:func:`bidirectional_conv` in blocks of ``chunk`` positions (overlap-add).

    The sequence is cut into ``J = ceil(L / chunk)`` blocks of ``c = chunk`` positions.
    Output block ``i`` is the sum over input blocks ``j`` of input block ``j`` convolved
    with the slice of the (two-sided) kernel at lags ``(i - j) c - (c - 1) .. (i - j) c +
    (c - 1)``: a circular convolution of size ``n = fft_size(c) >= 2c - 1``, whose outputs
    ``c-1 .. 2c-2`` are exact. The products are accumulated in the frequency domain and
    each output block takes one inverse FFT. The loop runs over output blocks
    (``lax.map``) and input blocks (``lax.scan``).

    Memory: the FFT buffers are ``O(B c H)`` per step instead of the one-FFT form's
    ``O(B L H)`` spectra, but the kernels (``[H, L]`` each, and their lag-indexed copy)
    still span the whole length, so the total is not smaller than the one-FFT form's (XLA's
    figure for a base-width layer at 600K tokens is larger). To bound memory, split the
    channels instead (``channel_groups`` of :func:`seq_models.ssm_block.ssm_apply`, and
    :mod:`seq_models.long_encoding`). Work: ``J^2`` input and kernel FFTs of size
    ``~2c`` (``J / 3`` to ``2 J / 3`` times the one-FFT form's FFT work).

    Args:
      u, k_fwd, k_bwd, d: as :func:`bidirectional_conv`.
      chunk: block length ``c``; ``chunk >= L`` gives one block.

    Returns:
      ``[B, L, H]`` in ``u``'s dtype.
    """
    b, length, h = _check_conv_args(u, k_fwd, k_bwd, d)
    c = min(_check_int(chunk, "chunk"), length)
    num_blocks = -(-length // c)
    padded = num_blocks * c
    n = fft_size(c)
    x = jnp.asarray(u).astype(jnp.float32)
    x_blocks = jnp.pad(x, ((0, 0), (0, padded - length), (0, 0))).reshape(b, num_blocks, c, h)
    # Two-sided kernel by lag: g[:, pad + lag] for lag in -(L-1)..L-1, zero outside, with
    # `pad` zeros either side so every lag window below is in range.
    lags = jnp.zeros((h, 2 * length - 1), jnp.float32)
    lags = lags.at[:, length - 1 :].set(jnp.asarray(k_fwd, jnp.float32))
    if k_bwd is not None:
        lags = lags.at[:, :length].add(jnp.asarray(k_bwd, jnp.float32)[:, ::-1])
    pad = padded + c
    g = jnp.pad(lags, ((0, 0), (pad, pad)))
    zero_lag = pad + length - 1  # index of lag 0 in g

    def output_block(i: jax.Array) -> jax.Array:  # [B, c, H]
        def add_input_block(acc: jax.Array, j: jax.Array) -> tuple[jax.Array, None]:
            # Output t' = 0..c-1 of block i, input m = 0..c-1 of block j: lag
            # (i - j) c + t' - m; window h[p] = lag (i - j) c - (c - 1) + p, p < 2c - 1,
            # and y_i[t'] = (h (*) x_j)[t' + c - 1].
            start = zero_lag + (i - j) * c - (c - 1)
            window = jax.lax.dynamic_slice_in_dim(g, start, 2 * c - 1, axis=1)
            w_hat = jnp.fft.rfft(window, n=n, axis=-1)  # [H, n/2+1]
            x_hat = jnp.fft.rfft(x_blocks[:, j], n=n, axis=1)  # [B, n/2+1, H]
            return acc + x_hat * w_hat.T, None

        acc = jnp.zeros((b, n // 2 + 1, h), jnp.complex64)
        acc, _ = jax.lax.scan(add_input_block, acc, jnp.arange(num_blocks))
        return jnp.fft.irfft(acc, n=n, axis=1)[:, c - 1 : 2 * c - 1]

    y = jax.lax.map(output_block, jnp.arange(num_blocks))  # [J, B, c, H]
    y = jnp.moveaxis(y, 0, 1).reshape(b, padded, h)[:, :length]
    y = y + jnp.asarray(d, jnp.float32) * x
    return y.astype(jnp.result_type(u))


def bidirectional_conv_direct(u: Any, k_fwd: Any, k_bwd: Any | None, d: Any) -> np.ndarray:
    """The bidirectional convolution as explicit Toeplitz sums, float64 NumPy, ``O(H L^2)``.

    ``T[h, t, s] = k_fwd[h, t-s] [t >= s] + k_bwd[h, s-t] [s >= t]``,
    ``y[b, t, h] = sum_s T[h, t, s] u[b, s, h] + d[h] u[b, t, h]``. Returns ``[B, L, H]``.
    """
    _, length, _ = _check_conv_args(u, k_fwd, k_bwd, d)
    u = np.asarray(u, np.float64)
    k_fwd = np.asarray(k_fwd, np.float64)
    lag = np.arange(length)[:, None] - np.arange(length)[None, :]  # t - s
    toeplitz = np.where(lag >= 0, k_fwd[:, np.clip(lag, 0, None)], 0.0)
    if k_bwd is not None:
        k_bwd = np.asarray(k_bwd, np.float64)
        toeplitz = toeplitz + np.where(lag <= 0, k_bwd[:, np.clip(-lag, 0, None)], 0.0)
    return np.einsum("hts,bsh->bth", toeplitz, u) + np.asarray(d, np.float64) * u
