"""The convolution whose spectral norm the package bounds.

Convention (the one of ``jax.lax.conv_general_dilated`` and of deep-learning
"convolutions"): stride-1 cross-correlation of an NHWC input ``x: [b, n, n, c_in]`` with
a kernel ``K: [c_out, c_in, k, k]`` (OIHW), output ``[b, n, n, c_out]``::

    y[b, p, q, o] = sum_{i, u, v} K[o, i, u, v] x[b, p + u - lo, q + v - lo, i]

with ``lo = (k - 1) // 2`` before and ``hi = k - 1 - lo`` after ("SAME", as XLA pads: for
even ``k`` the extra row/column of padding is at the end). Outside ``[0, n)`` the input
is zero (``padding="zero"``) or wraps around (``padding="circular"``).

The circular operator's singular values do not depend on ``lo`` or on flipping the
kernel (a shift multiplies its Fourier symbol by a phase, a flip conjugates it). The
zero-padding operator's do (for even ``k`` the asymmetric padding matters); the bounds
here that hold "for every input size" hold for every placement, since they bound the
bi-infinite operator that all of them are sections of.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp

PADDINGS = ("circular", "zero")


def same_padding(k: int) -> tuple[int, int]:
    """``(lo, hi)`` padding of a size-``k`` kernel for a same-size output: XLA's "SAME"."""
    lo = (k - 1) // 2
    return lo, k - 1 - lo


@functools.partial(jax.jit, static_argnames=("padding",))
def conv2d(x: jax.Array, kernel: jax.Array, padding: str = "zero") -> jax.Array:
    """Stride-1 "same" cross-correlation with zero or circular padding.

    Args:
      x: ``[b, n, n, c_in]`` (or any ``[b, h, w, c_in]``).
      kernel: ``[c_out, c_in, k, k]``.
      padding: ``"zero"`` or ``"circular"``.

    Returns:
      ``[b, n, n, c_out]``.
    """
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    k_h, k_w = kernel.shape[-2:]
    pads = [same_padding(k_h), same_padding(k_w)]
    if padding == "circular":
        x = jnp.pad(x, [(0, 0), *pads, (0, 0)], mode="wrap")
        pads = [(0, 0), (0, 0)]
    return jax.lax.conv_general_dilated(
        x,
        kernel.astype(x.dtype),
        window_strides=(1, 1),
        padding=pads,
        dimension_numbers=("NHWC", "OIHW", "NHWC"),
        precision=jax.lax.Precision.HIGHEST,
    )
