"""A bound-based Lipschitz regulariser: ``sum_l relu(bound(w_l) - 1)``."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from lipschitz.bounds import _bound, _check_bound_arguments
from lipschitz.checks import DEFAULT_LAYOUT


def lipschitz_penalty(
    weights: Sequence[jax.Array],
    *,
    padding: str = "zero",
    n: int | None = None,
    method: str = "gram",
    iters: int | None = None,
    target: float = 1.0,
    layout: str = DEFAULT_LAYOUT,
) -> jax.Array:
    """``sum_l relu(bound(w_l) - target)``: zero once every layer is ``target``-Lipschitz.

    Args:
      weights: dense matrices ``[m, n]`` and/or kernels (``[k, k, c_in, c_out]`` in the
        default HWIO ``layout``, ``[c_out, c_in, k, k]`` with ``layout="OIHW"``); rank-2
        weights are bounded as dense layers, rank-4 ones as convolutions with
        ``padding`` (and ``n``, needed for circular Gram).
      padding, n, method, iters, layout: passed to ``spectral_norm_bound`` for the
        kernels (dense matrices always use ``method="gram"`` with ``iters``).
      target: the per-layer Lipschitz constant aimed at.

    Returns:
      a scalar, differentiable in the weights (add ``lambda * penalty`` to a loss); NaN
      if a weight holds NaN or inf under ``jax.jit``.

    Raises:
      ValueError: the arguments ``spectral_norm_bound`` refuses, naming ``weights[i]``
        (e.g. a concrete weight with NaN or inf).
    """
    total = jnp.zeros(())
    for i, w in enumerate(weights):
        args = ("gram", None, None, iters) if jnp.ndim(w) == 2 else (method, padding, n, iters)
        w, size, steps = _check_bound_arguments(w, *args, layout, f"weights[{i}]")
        bound = _bound(w, args[0], args[1], size, steps)
        # relu(NaN) is NaN (jnp.maximum propagates it): a NaN bound is never a zero penalty.
        total = total + jax.nn.relu(bound - target)
    return total
