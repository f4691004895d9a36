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

MIXTURE_SD = 0.15
RING_SD = 0.05


def _mixture(x: jax.Array) -> tuple[jax.Array, jax.Array]:
    """Component means and weights at ``x: [batch]``: ``([batch, 3], [batch, 3])``."""
    means = jnp.stack([-2 + x, 1.5 * x**2, 2 - x], axis=-1)
    weights = jax.nn.softmax(jnp.stack([2 * x, jnp.zeros_like(x), -2 * x], axis=-1), axis=-1)
    return means, weights


@functools.partial(jax.jit, static_argnums=2)
def _mixture_conditional(key, x, count):
    means, weights = _mixture(x)
    k_component, k_noise = jax.random.split(key)
    component = jax.random.categorical(
        k_component, jnp.log(weights)[:, None], shape=(len(x), count)
    )
    centre = jnp.take_along_axis(means, component, axis=-1)
    return (centre + MIXTURE_SD * jax.random.normal(k_noise, centre.shape))[..., None]


def _ring_radius(x):
    return 1 + 0.5 * x


@functools.partial(jax.jit, static_argnums=2)
def _ring_conditional(key, x, count):
    k_angle, k_noise = jax.random.split(key)
    angle = jax.random.uniform(k_angle, (len(x), count), maxval=2 * jnp.pi)
    radius = _ring_radius(x)[:, None] + RING_SD * jax.random.normal(k_noise, angle.shape)
    return jnp.stack([radius * jnp.cos(angle), radius * jnp.sin(angle)], axis=-1)


def _hetero_sd(x):
    return 0.1 + 0.4 * jnp.abs(x)


@functools.partial(jax.jit, static_argnums=2)
def _hetero_conditional(key, x, count):
    noise = jax.random.normal(key, (len(x), count))
    return (jnp.sin(jnp.pi * x)[:, None] + _hetero_sd(x)[:, None] * noise)[..., None]


@dataclasses.dataclass(frozen=True)
class ConditionalLaw:
    """A joint law of ``(X, Y)``, ``X ~ U[-1, 1]``, through its true conditional.

    Attributes:
      name: the law's name in ``LAWS``.
      dim_y: dimension of ``Y``.
      conditional_fn: ``(key, x [batch], count) -> y [batch, count, dim_y]``.
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

    def conditional(self, key: jax.Array, x, count: int) -> np.ndarray:
        """``count`` draws of ``Y | X = x`` for each ``x: [batch, 1]`` -> ``[batch, count,
        dim_y]`` float32."""
        x = jnp.asarray(x, jnp.float32)
        if x.ndim != 2 or x.shape[1] != 1:
            raise ValueError(f"x must be [batch, 1], got shape {x.shape}")
        if count < 1:
            raise ValueError(f"count must be >= 1, got {count}")
        return np.asarray(self.conditional_fn(key, x[:, 0], count), np.float32)

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
