"""A bound-based Lipschitz regulariser: ``sum_l relu(bound(w_l) - 1)``."""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp

from lipschitz.bounds import spectral_norm_bound


def lipschitz_penalty(
    weights: Sequence[jax.Array],
    *,
    padding: str = "zero",
    n: int | None = None,
    method: str = "gram",
    iters: int | None = None,
    target: float = 1.0,
) -> jax.Array:
    """``sum_l relu(bound(w_l) - target)``: zero once every layer is ``target``-Lipschitz.

    Args:
      weights: dense matrices ``[m, n]`` and/or kernels ``[c_out, c_in, k, k]``; rank-2
        weights are bounded as dense layers, rank-4 ones as convolutions with
        ``padding`` (and ``n``, needed for circular Gram).
      padding, n, method, iters: passed to ``spectral_norm_bound`` for the kernels
        (dense matrices always use ``method="gram"`` with ``iters``).
      target: the per-layer Lipschitz constant aimed at.

    Returns:
      a scalar, differentiable in the weights (add ``lambda * penalty`` to a loss).
    """
    total = jnp.zeros(())
    for w in weights:
        if jnp.ndim(w) == 2:
            bound = spectral_norm_bound(w, "gram", None, None, iters)
        else:
            bound = spectral_norm_bound(w, method, padding, n, iters)
        total = total + jax.nn.relu(bound - target)
    return total
