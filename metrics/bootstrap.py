"""Bootstrap of means of per-point values: resampled means and percentile intervals.

``support.bootstrap_intervals`` applies them to the per-point decisions behind precision,
recall, density and coverage (and says why those, with the radii held fixed).
Resample ``b`` of ``n`` rows draws the indices
``jax.random.randint(jax.random.fold_in(key, b), (n,), 0, n)``: reproducible from the key
and independent of how many resamples are drawn at once.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np


@functools.partial(jax.jit, static_argnames="num_resamples")
def resample_means(key: jax.Array, values: jax.Array, num_resamples: int) -> jax.Array:
    """Column means of ``values [n, c]`` over ``num_resamples`` resamples of its rows with
    replacement: ``[num_resamples, c]``, row ``b`` the mean of ``values[indices_b]`` (module
    docstring). One resample at a time: memory ``O(n c)``, time ``O(num_resamples n c)``."""
    n = values.shape[0]

    def one(b):
        indices = jax.random.randint(jax.random.fold_in(key, b), (n,), 0, n)
        return jnp.mean(values[indices], axis=0)

    return jax.lax.map(one, jnp.arange(num_resamples))


def percentile_interval(samples: np.ndarray, confidence: float) -> tuple[float, float]:
    """The ``(1 - confidence) / 2`` and ``(1 + confidence) / 2`` quantiles of ``samples
    [num_resamples]`` (linear interpolation, as ``np.percentile``)."""
    low, high = np.quantile(np.asarray(samples), [(1 - confidence) / 2, (1 + confidence) / 2])
    return float(low), float(high)
