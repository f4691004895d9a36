"""Competitive Learning Vector Quantization (CLVQ): the stochastic-gradient form of
optimal quantization, one sample at a time.

For a law ``mu`` on ``R^d`` the ``N``-point quantizer ``x = (x_1, ..., x_N)`` minimises
the distortion ``D(x) = E[min_i |xi - x_i|^2]``, ``xi ~ mu``. CLVQ descends it with one
sample per step: the nearest point (the winner) moves towards the sample,

    i* = argmin_i |xi_t - x_i|,   x_{i*} <- x_{i*} - gamma_t (x_{i*} - xi_t),

with ``gamma_t = a / (a + b (t + 1))``, ``a = 4 N``, ``b = pi^2 / N^2`` (the schedule of
the quantization literature for ``d = 1``), and the weight of ``x_i`` (the mass of its
Voronoi cell) is its share of the wins.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp
import numpy as np

from quantization import checks


def step_sizes(num_points: int, steps: jax.Array) -> jax.Array:
    """``gamma_t = a / (a + b (t + 1))`` at ``steps: [T]`` (int) -> ``[T]``."""
    a = 4.0 * num_points
    b = math.pi**2 / num_points**2
    return a / (a + b * (steps + 1.0))


@functools.partial(jax.jit, static_argnames="unroll")
def clvq_scan(points: jax.Array, samples: jax.Array, unroll: int = 8):
    """Stream ``samples: [M, d]`` in order through CLVQ from ``points: [N, d]``.

    Returns ``(points [N, d], wins [N] int32)``: the final points and how often each
    one won. A pure function (the reference ``clvq`` validates and initialises).
    """
    num_points = points.shape[0]
    gammas = step_sizes(num_points, jnp.arange(samples.shape[0], dtype=samples.dtype))

    def step(carry, inputs):
        points, wins = carry
        xi, gamma = inputs
        winner = jnp.argmin(jnp.sum((points - xi) ** 2, axis=-1))
        points = points.at[winner].add(gamma * (xi - points[winner]))
        return (points, wins.at[winner].add(1)), None

    wins = jnp.zeros(num_points, jnp.int32)
    (points, wins), _ = jax.lax.scan(step, (points, wins), (samples, gammas), unroll=unroll)
    return points, wins


def clvq(samples, num_points: int, *, seed: int = 0) -> tuple[np.ndarray, np.ndarray]:
    """The ``num_points``-point quantizer of the law of ``samples`` by CLVQ.

    Args:
      samples: ``[M, d]`` draws of the law, streamed once, in order.
      num_points: ``N``, with ``1 <= N <= M``.
      seed: which ``N`` distinct samples start the points.

    Returns:
      ``(points [N, d], weights [N])`` as float32 numpy arrays: the points and their
      win shares (non-negative, summing to 1).

    Raises:
      ValueError: ``samples`` not a finite ``[M, d]`` array, or ``num_points`` not an
        integer in ``[1, M]``.
    """
    samples = checks.point_set("samples", samples).astype(np.float32)
    num_points = checks.count("num_points", num_points)
    if num_points > len(samples):
        raise ValueError(f"num_points must be <= the {len(samples)} samples, got {num_points}")
    start = jax.random.choice(jax.random.key(seed), len(samples), (num_points,), replace=False)
    points, wins = clvq_scan(jnp.asarray(samples[np.asarray(start)]), jnp.asarray(samples))
    wins = np.asarray(wins, np.float64)
    return np.asarray(points), (wins / wins.sum()).astype(np.float32)
