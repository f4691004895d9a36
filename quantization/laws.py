"""Synthetic conditional laws with known answers: ``X ~ U[-1, 1]`` and ``Y | X`` given.

Each law samples its true conditional ``L(Y | X = x)`` for any ``x``, so a predicted
quantization can be judged in W2 against fresh draws of the truth at every test input.

- ``mixture``: ``Y | X`` a mixture of three normals (sd 0.15) whose means
  ``(-2 + x, 1.5 x^2, 2 - x)`` and weights ``softmax(2x, 0, -2x)`` move with ``x``;
- ``ring``: ``Y`` in ``R^2`` uniform in angle on a circle of radius ``1 + 0.5 x``
  (radial noise sd 0.05);
- ``heteroscedastic``: ``Y | X ~ N(sin(pi x), (0.1 + 0.4 |x|)^2)``, unimodal.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import jax
import jax.numpy as jnp
import numpy as np
from jax.scipy.special import ndtri

MIXTURE_SD = 0.15
UNIFORMS = 2  # uniform variates behind one draw of Y | X
RING_SD = 0.05


def _mixture(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Component means and weights at ``x: [batch]``: ``([batch, 3], [batch, 3])``."""
    means = jnp.stack([-2 + x, 1.5 * x**2, 2 - x], axis=-1)
    weights = jax.nn.softmax(jnp.stack([2 * x, jnp.zeros_like(x), -2 * x], axis=-1), axis=-1)
    return means, weights


def _normal(u: jax.Array) -> jax.Array:
    """Standard normal quantiles of uniforms (clipped off 0 and 1: at most 4.75 sd)."""
    return ndtri(jnp.clip(u, 1e-6, 1 - 1e-6))


def _mixture_conditional(x, u):
    means, weights = _mixture(x)
    edges = jnp.cumsum(weights, axis=-1)[:, None, :-1]  # [batch, 1, 2]
    component = jnp.sum(u[..., :1] >= edges, axis=-1)  # [batch, count]
    centre = jnp.take_along_axis(means, component, axis=-1)
    return (centre + MIXTURE_SD * _normal(u[..., 1]))[..., None]


def _ring_radius(x):
    return 1 + 0.5 * x


def _ring_conditional(x, u):
    angle = 2 * jnp.pi * u[..., 0]
    radius = _ring_radius(x)[:, None] + RING_SD * _normal(u[..., 1])
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def _hetero_sd(x):
    return 0.1 + 0.4 * jnp.abs(x)


def _hetero_conditional(x, u):
    noise = _normal(u[..., 0])
    return (jnp.sin(jnp.pi * x)[:, None] + _hetero_sd(x)[:, None] * noise)[..., None]


@functools.partial(jax.jit, static_argnums=(0, 3, 4))
def _draw(conditional_fn, key, x, count, stratified):
    """``count`` draws per input from the uniform variates behind them (two per draw);
    stratified: a Latin hypercube (each variate hits each of ``count`` strata once)."""
    k_strata, k_offset = jax.random.split(key)
    shape = (len(x), count, UNIFORMS)
    u = jax.random.uniform(k_offset, shape)
    if stratified:
        strata = jnp.argsort(jax.random.uniform(k_strata, shape), axis=1)
        u = (strata + u) / count
    return conditional_fn(x, u)


@dataclasses.dataclass(frozen=True)
class ConditionalLaw:
    """A joint law of ``(X, Y)``, ``X ~ U[-1, 1]``, through its true conditional.

    Attributes:
      name: the law's name in ``LAWS``.
      dim_y: dimension of ``Y``.
      conditional_fn: ``(x [batch], u [batch, count, 2]) -> y [batch, count, dim_y]``,
        draws from uniform variates ``u`` in ``[0, 1)``.
      reference_fn: ``x [batch] -> {label: [batch]}``, curves of the truth to draw.
      coordinate: what ``reference_fn`` draws of a point ``y [..., dim_y]``: ``y``
        itself in 1-D, the radius for the ring.
    """

    name: str
    dim_y: int
    conditional_fn: Callable[[jax.Array, jax.Array, int], jax.Array]
    reference_fn: Callable[[jax.Array], dict[str, jax.Array]]
    coordinate: Callable[[np.ndarray], np.ndarray]
    coordinate_name: str = "y"

    def conditional(self, key: jax.Array, x, count: int, *, stratified: bool = False) -> np.ndarray:
        """``count`` draws of ``Y | X = x`` for each ``x: [batch, 1]`` -> ``[batch, count,
        dim_y]`` float32.

        ``stratified``: Latin hypercube draws (each uniform variate behind the draws of
        one input falls once in each of ``count`` equal strata of ``[0, 1)``), so
        component shares and quantiles are exact to ``1 / count``. The evaluation's
        reference draws use them: with independent draws the reference's own
        fluctuation (a mixture's component shares off by ``~ 1 / sqrt(count)``, moved
        across the gaps between components) dominates W2 at large ``n``."""
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 2 or x.shape[1] != 1:
            raise ValueError(f"x must be [batch, 1], got shape {x.shape}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        return np.asarray(_draw(self.conditional_fn, key, x[:, 0], count, stratified), np.float32)

    def sample(self, key: jax.Array, num: int) -> tuple[np.ndarray, np.ndarray]:
        """``num`` joint draws: ``(x [num, 1], y [num, dim_y])`` float32."""
        x = _uniform_inputs(key, num)
        return np.asarray(x), self.conditional(jax.random.fold_in(key, 1), x, 1)[:, 0]

    def reference(self, x) -> dict[str, np.ndarray]:
        """The truth's curves at ``x: [batch, 1]`` (component means, radius, mean +- sd)."""
        x = jnp.asarray(x, jnp.float32)[:, 0]
        return {label: np.asarray(v) for label, v in self.reference_fn(x).items()}


@functools.partial(jax.jit, static_argnums=1)
def _uniform_inputs(key, num):
    return jax.random.uniform(key, (num, 1), minval=-1.0, maxval=1.0)


def _mixture_reference(x):
    means, _ = _mixture(x)
    return {f"component {k + 1} mean": means[:, k] for k in range(3)}


def _hetero_reference(x):
    mean, sd = jnp.sin(jnp.pi * x), _hetero_sd(x)
    return {"mean": mean, "mean - sd": mean - sd, "mean + sd": mean + sd}


def _identity(y):
    return np.asarray(y)[..., 0]


def _radius(y):
    return np.linalg.norm(np.asarray(y), axis=-1)


LAWS = {
    "mixture": ConditionalLaw("mixture", 1, _mixture_conditional, _mixture_reference, _identity),
    "ring": ConditionalLaw(
        "ring", 2, _ring_conditional, lambda x: {"radius": _ring_radius(x)}, _radius, "|y|"
    ),
    "heteroscedastic": ConditionalLaw(
        "heteroscedastic", 1, _hetero_conditional, _hetero_reference, _identity
    ),
}


def mixture_weights(x) -> np.ndarray:
    """The true component weights of the ``mixture`` law at ``x: [batch, 1]`` -> ``[batch,
    3]``."""
    return np.asarray(_mixture(jnp.asarray(x, jnp.float32)[:, 0])[1])
