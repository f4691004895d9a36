"""Baselines for conditional quantization, each giving ``n`` weighted points per input.

- the conditional mean: ``ConditionalQuantizer`` with ``n = 1`` (its loss is then the
  mean squared error);
- ``MixtureDensityNetwork``: ``n`` isotropic normal components on the same ``Body``,
  trained by likelihood; its quantization is the component means with the mixture
  weights;
- ``kmeans_quantizer`` on the targets of the nearest training inputs
  (``nearest_targets``), or on draws of the true conditional (an oracle: the best an
  ``n``-point quantizer can do, up to k-means' local optima).
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from sklearn.cluster import KMeans
from threadpoolctl import threadpool_limits

from quantization.conditional import Body


class MixtureDensityNetwork(nn.Module):
    """A mixture of ``n`` isotropic normals whose parameters depend on ``x``.

    Attributes:
      num_points: ``n``, the number of components.
      dim_y: dimension of ``Y``.
      hidden: widths of the body's layers.
    """

    num_points: int
    dim_y: int
    hidden: Sequence[int] = (64, 64)

    @nn.compact
    def __call__(self, x: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array]:
        """``x: [batch, dim_x]`` -> ``(means [batch, n, dim_y], log_scales [batch, n],
        logits [batch, n])``."""
        h = Body(self.hidden)(x)
        means = nn.Dense(self.num_points * self.dim_y, name="points")(h)
        log_scales = nn.Dense(self.num_points, name="log_scales")(h)
        logits = nn.Dense(self.num_points, name="weights")(h)
        return means.reshape(*x.shape[:-1], self.num_points, self.dim_y), log_scales, logits

    @nn.nowrap
    def predict(self, params, x: jax.Array) -> tuple[jax.Array, jax.Array]:
        """``(means [batch, n, dim_y], weights [batch, n])``: the components' means with
        the mixture weights."""
        means, _, logits = self.apply(params, x)
        return means, jax.nn.softmax(logits, axis=-1)


def mixture_nll(
    means: jax.Array, log_scales: jax.Array, logits: jax.Array, y: jax.Array
) -> jax.Array:
    """Mean negative log-likelihood of ``y: [batch, d]`` under the mixtures
    (``means [batch, n, d]``, ``log_scales [batch, n]``, ``logits [batch, n]``)."""
    d = y.shape[-1]
    d2 = jnp.sum((means - y[:, None, :]) ** 2, axis=-1)
    log_normal = -0.5 * d2 * jnp.exp(-2 * log_scales) - d * log_scales
    log_normal = log_normal - 0.5 * d * math.log(2 * math.pi)
    log_p = jax.nn.logsumexp(jax.nn.log_softmax(logits, axis=-1) + log_normal, axis=-1)
    return -jnp.mean(log_p)


def make_mdn_loss_fn(model: MixtureDensityNetwork):
    """``loss_fn(params, batch, rng) -> loss`` (the NLL) on ``{"x", "y"}`` batches."""

    def loss_fn(params, batch, rng):
        del rng
        return mixture_nll(*model.apply(params, batch["x"]), batch["y"])

    return loss_fn


def nearest_targets(x_train, y_train, x_query, count: int) -> np.ndarray:
    """The targets of the ``count`` training inputs nearest to each query: ``x_train [N,
    dim_x]``, ``y_train [N, dim_y]``, ``x_query [B, dim_x]`` -> ``[B, count, dim_y]``."""
    x_train, x_query = np.asarray(x_train), np.asarray(x_query)
    if not 1 <= count <= len(x_train):
        raise ValueError(f"count must be in [1, {len(x_train)}] (training size), got {count}")
    d2 = np.sum((x_query[:, None, :] - x_train[None]) ** 2, axis=-1)
    nearest = np.argpartition(d2, count - 1, axis=1)[:, :count]
    return np.asarray(y_train)[nearest]


def kmeans_quantizer(samples, num_points: int, *, seed: int = 0):
    """k-means (Lloyd) of each row of ``samples: [B, m, d]`` into ``num_points`` points:
    ``(points [B, n, d], weights [B, n])``, weights the cluster shares."""
    samples = np.asarray(samples, np.float64)
    if samples.ndim != 3 or samples.shape[1] < num_points:
        raise ValueError(
            f"samples must be [batch, m >= num_points = {num_points}, d], got {samples.shape}"
        )
    points, weights = [], []
    # One thread: on problems this small, thread start-up costs 30x the clustering.
    with threadpool_limits(1):
        for row in samples:
            fit = KMeans(num_points, n_init=3, random_state=seed).fit(row)
            points.append(fit.cluster_centers_)
            weights.append(np.bincount(fit.labels_, minlength=num_points) / len(row))
    return np.stack(points).astype(np.float32), np.stack(weights)
