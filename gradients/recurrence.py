"""Reverse-time first-order linear recurrences, the accumulation step of both methods.

    c_t = b_t + a_t * c_{t+1}   (t = T-1, ..., 0; c_T = 0; elementwise)

With ``a = 1`` this is a reverse cumulative sum (Highway-BP on identity residuals);
with a general ``a`` it is a linear recurrence computed by ``lax.associative_scan``
in ``O(log T)`` parallel depth and ``O(T)`` work per channel (Highway-BP on a linear
residual path ``h_i = r_i * h_{i-1} + g_i``, and the diagonal state feedback of DSF).
"""

from __future__ import annotations

import jax
import jax.numpy as jnp


def _compose(earlier, later):
    """Compose two affine maps ``c -> a c + b`` in scan order (``earlier`` applied first)."""
    a1, b1 = earlier
    a2, b2 = later
    return a2 * a1, a2 * b1 + b2


def reverse_linear_recurrence(b, a=None):
    """``c_t = b_t + a_t * c_{t+1}`` along the leading axis, with ``c_T = 0``.

    Args:
      b: pytree of arrays ``[T, ...]``.
      a: ``None`` (``a_t = 1``: the reverse cumulative sum of ``b``) or a pytree
        with ``b``'s structure whose leaves broadcast against ``b``'s leaves
        (e.g. ``[T, ...]`` per step, or ``[d]`` constant over time). ``a_t``
        multiplies ``c_{t+1}``, so ``a_{T-1}`` (times ``c_T = 0``) has no effect.

    Returns:
      ``c``, the same shapes as ``b``.
    """
    if a is None:
        return jax.tree.map(lambda x: jnp.flip(jnp.cumsum(jnp.flip(x, 0), axis=0), 0), b)

    def leaf(a_leaf, b_leaf):
        a_leaf = jnp.broadcast_to(a_leaf, b_leaf.shape).astype(b_leaf.dtype)
        return jax.lax.associative_scan(_compose, (a_leaf, b_leaf), reverse=True, axis=0)[1]

    return jax.tree.map(leaf, a, b)
