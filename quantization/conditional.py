"""Conditional CLVQ: ``n`` input-conditioned weighted points for the law of ``Y | X``.

A network with ``n`` point heads ``f_1(X), ..., f_n(X)`` and a weight head ``p(X)``
(softmax) is trained on the distortion ``D_n(f) = E[min_i |Y - f_i(X)|^2]`` plus the
cross-entropy of ``p(X)`` against the winner ``i* = argmin_i |Y - f_i(X)|``. The gradient
of the distortion reaches only the winner, the conditional form of the CLVQ step, and
``p_i(X)`` estimates the mass of the winner's cell, so ``sum_i p_i(X) delta_{f_i(X)}``
is an ``n``-point quantization of ``L(Y | X)``.

Dead heads (heads that never win) are the method's known failure; ``head_wins`` counts
wins over a data set to find them, and ``wta_loss(..., reseed=True)`` re-seeds them.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax


class Body(nn.Module):
    """The shared feature extractor: ``x: [batch, dim_x] -> [batch, hidden[-1]]``, GELU
    MLP."""

    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        for width in self.hidden:
            x = nn.gelu(nn.Dense(width)(x))
        return x


class ConditionalQuantizer(nn.Module):
    """``n`` point heads and a weight head on one ``Body``.

    Attributes:
      num_points: ``n``, the number of heads.
      dim_y: dimension of ``Y``.
      hidden: widths of the body's layers.
    """

    num_points: int
    dim_y: int
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``x: [batch, dim_x]`` -> ``(points [batch, n, dim_y], logits [batch, n])``."""
        h = Body(self.hidden)(x)
        points = nn.Dense(self.num_points * self.dim_y, name="points")(h)
        logits = nn.Dense(self.num_points, name="weights")(h)
        return points.reshape(*x.shape[:-1], self.num_points, self.dim_y), logits

    @nn.nowrap
    def predict(self, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """The quantized conditional law at ``x: [batch, dim_x]``: ``(points [batch, n,
        dim_y], weights [batch, n])``, each row of ``weights`` summing to 1. Pure in
        ``(params, x)``, so ``jax.jit(model.predict)`` works."""
        points, logits = self.apply(params, x)
        return points, jax.nn.softmax(logits, axis=-1)


def squared_distances(points: jax.Array, y: jax.Array) -> jax.Array:
    """``|y_b - points_bi|^2``: ``points [batch, n, d]``, ``y [batch, d]`` -> ``[batch, n]``."""
    return jnp.sum((points - y[:, None, :]) ** 2, axis=-1)


def wta_loss(
    points: jax.Array, logits: jax.Array, y: jax.Array, *, reseed: bool = False
) -> tuple[jax.Array, dict[str, jax.Array]]:
    """The winner-take-all distortion plus the weight head's cross-entropy.

    Args:
      points: ``[batch, n, d]`` the heads' points; ``logits: [batch, n]`` the weight
        head; ``y: [batch, d]`` the targets.
      reseed: add, for every head that wins no example of the batch, the squared
        distance to the example the current points serve worst (largest distortion):
        the gradient form of moving an empty k-means cell onto the farthest point. It
        pulls heads that have drifted away from the data back to where they reduce
        the distortion most; without it a dead head never receives a gradient.

    Returns:
      ``(loss, metrics)``: ``loss = mean_b min_i |y_b - f_i|^2 + mean_b CE(logits_b,
      i*_b)`` (plus the re-seeding term), metrics ``distortion``, ``weight_ce`` and
      ``idle_heads`` (heads without a win in this batch).
    """
    d2 = squared_distances(points, y)
    winner = jnp.argmin(d2, axis=-1)
    # Only the winner's distance enters the loss, so only its head gets a gradient.
    distortion = jnp.take_along_axis(d2, winner[:, None], axis=-1)[:, 0]
    weight_ce = optax.softmax_cross_entropy_with_integer_labels(logits, winner)
    wins = jnp.sum(jax.nn.one_hot(winner, d2.shape[-1], dtype=jnp.int32), axis=0)
    idle = wins == 0
    loss = jnp.mean(distortion) + jnp.mean(weight_ce)
    if reseed:
        worst = jnp.argmax(jax.lax.stop_gradient(distortion))
        loss = loss + jnp.sum(jnp.where(idle, d2[worst], 0.0)) / d2.shape[0]
    metrics = {
        "distortion": jnp.mean(distortion),
        "weight_ce": jnp.mean(weight_ce),
        "idle_heads": jnp.sum(idle).astype(jnp.float32),
    }
    return loss, metrics


def make_loss_fn(model: ConditionalQuantizer, *, reseed: bool = False):
    """``loss_fn(params, batch, rng) -> (loss, metrics)`` on ``{"x", "y"}`` batches for
    ``training.make_train_step``; re-seeding only during training (``rng`` given), so
    the evaluation loss is the distortion plus the cross-entropy."""

    def loss_fn(params, batch, rng):
        points, logits = model.apply(params, batch["x"])
        loss, metrics = wta_loss(points, logits, batch["y"], reseed=reseed and rng is not None)
        if rng is None:
            del metrics["idle_heads"]  # meaningless on the single examples of evaluation
        return loss, metrics

    return loss_fn


def head_wins(model: ConditionalQuantizer, params, x, y, *, batch_size: int = 1024) -> np.ndarray:
    """How many of the examples ``(x [N, dim_x], y [N, dim_y])`` each head wins: ``[n]``
    int64. Heads with no win are dead on this data."""
    x, y = np.asarray(x), np.asarray(y)
    if x.ndim != 2 or y.ndim != 2 or len(x) != len(y):
        raise ValueError(
            f"x and y must be [N, dim_x] and [N, dim_y] with the same N, got {x.shape} and "
            f"{y.shape}"
        )

    @jax.jit
    def winners(params, x, y):
        points, _ = model.apply(params, x)
        return jnp.argmin(squared_distances(points, y), axis=-1)

    counts = np.zeros(model.num_points, np.int64)
    for start in range(0, len(x), batch_size):
        winner = winners(params, x[start : start + batch_size], y[start : start + batch_size])
        counts += np.bincount(np.asarray(winner), minlength=model.num_points)
    return counts
