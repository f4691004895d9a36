"""Certified L2 robustness of a Lipschitz classifier from its logit margin.

If the logits ``f`` are ``L``-Lipschitz in L2, each difference ``f_y - f_j`` is
``sqrt(2) L``-Lipschitz (its gradient is ``(e_y - e_j)^T J`` with ``||e_y - e_j|| = sqrt 2``).
A prediction ``y`` with margin ``m = f_y - max_{j != y} f_j > 0`` therefore cannot change
under any perturbation of norm ``< m / (sqrt(2) L)``, the certified radius.
"""

from __future__ import annotations

import math

import jax
import jax.numpy as jnp


def logit_margins(logits: jax.Array, labels: jax.Array) -> jax.Array:
    """``f_y - max_{j != y} f_j``: ``logits [b, k]``, ``labels [b]`` int -> ``[b]``."""
    true = jnp.take_along_axis(logits, labels[:, None], axis=-1)[:, 0]
    others = jnp.where(jax.nn.one_hot(labels, logits.shape[-1], dtype=bool), -jnp.inf, logits)
    return true - jnp.max(others, axis=-1)


def _check_lipschitz(lipschitz: float) -> None:
    if not (lipschitz > 0 and math.isfinite(lipschitz)):
        raise ValueError(f"lipschitz must be a positive finite number, got {lipschitz!r}")


def certified_radii(logits: jax.Array, labels: jax.Array, lipschitz: float = 1.0) -> jax.Array:
    """``margin / (sqrt(2) L)`` where the prediction is correct, else 0 (no certificate,
    also for a NaN margin): ``[b]``."""
    _check_lipschitz(lipschitz)
    margins = logit_margins(logits, labels)
    return jnp.where(margins > 0, margins / (math.sqrt(2.0) * lipschitz), 0.0)


def certified_accuracy(
    logits: jax.Array, labels: jax.Array, radii: jax.Array, lipschitz: float = 1.0
) -> jax.Array:
    """Fraction of examples correctly classified with certified radius ``> r`` for each ``r``
    in ``radii: [r]`` -> ``[r]``; at ``r = 0`` it is the clean accuracy (margin ``> 0``).
    An example with NaN logits is never certified."""
    _check_lipschitz(lipschitz)
    margins = logit_margins(logits, labels)
    radius = margins / (math.sqrt(2.0) * lipschitz)
    certified = (margins[None, :] > 0) & (radius[None, :] > jnp.asarray(radii)[:, None])
    return jnp.mean(certified, axis=-1)
