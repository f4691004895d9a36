"""The convolution whose spectral norm the package bounds.

Convention (the one of ``jax.lax.conv_general_dilated`` and of deep-learning
"convolutions"): stride-1 cross-correlation of an NHWC input ``x: [b, n, n, c_in]`` with
a kernel ``K``, output ``[b, n, n, c_out]``. In the math below (and inside the package)
``K: [c_out, c_in, k, k]`` (OIHW); the public functions take Flax's ``[k, k, c_in,
c_out]`` (HWIO) by default and OIHW with ``layout="OIHW"`` (``checks.py``)::

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

from lipschitz.checks import DEFAULT_LAYOUT, check_layout, to_oihw

PADDINGS = ("circular", "zero")


def same_padding(k: int) -> tuple[int, int]:
    """``(lo, hi)`` padding of a size-``k`` kernel for a same-size output: XLA's "SAME"."""
    lo = (k - 1) // 2
    return lo, k - 1 - lo


@functools.partial(jax.jit, static_argnames=("padding",))
def _conv2d(x: jax.Array, kernel: jax.Array, padding: str) -> jax.Array:
    """``conv2d`` with an OIHW kernel, no checks."""
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


def check_padding(padding) -> str:
    if padding not in PADDINGS:
        raise ValueError(f"padding must be one of {PADDINGS}, got {padding!r}")
    return padding


def conv2d(
    x: jax.Array, kernel: jax.Array, padding: str = "zero", *, layout: str = DEFAULT_LAYOUT
) -> jax.Array:
    """Stride-1 "same" cross-correlation with zero or circular padding.

    Args:
      x: ``[b, h, w, c_in]``.
      kernel: ``[kh, kw, c_in, c_out]`` (``layout="HWIO"``, Flax) or
        ``[c_out, c_in, kh, kw]`` (``"OIHW"``); ``kh != kw`` is allowed.
      padding: ``"zero"`` or ``"circular"``.
      layout: ``"HWIO"`` or ``"OIHW"``.

    Returns:
      ``[b, h, w, c_out]``.
    """
    check_padding(padding)
    check_layout(layout)
    x = jnp.asarray(x)
    if jnp.ndim(kernel) != 4 or x.ndim != 4:
        raise ValueError(
            f"x must be [b, h, w, c_in] and kernel rank 4 in layout {layout!r}, got shapes "
            f"{x.shape} and {jnp.shape(kernel)}"
        )
    oihw = to_oihw(jnp.asarray(kernel), layout)
    if oihw.shape[1] != x.shape[-1]:
        raise ValueError(
            f"kernel must have c_in = {x.shape[-1]} input channels (x's last axis) in layout "
            f"{layout!r}, got {oihw.shape[1]} from shape {jnp.shape(kernel)}"
        )
    return _conv2d(x, oihw, padding)
