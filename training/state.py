"""The train state: everything a step reads and writes, as one pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import optax
from flax import struct

PyTree = Any


@struct.dataclass
class TrainState:
    """Parameters, optimizer state, step counter and base RNG key.

    ``rng`` is a raw ``uint32[2]`` key (checkpointable as a plain array); the key
    used at step ``t`` is ``jax.random.fold_in(rng, t)``, so a resumed run draws
    the same randomness as an uninterrupted one.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    rng: jax.Array

    @classmethod
    def create(
        cls, params: PyTree, optimizer: optax.GradientTransformation, rng: jax.Array | int
    ) -> TrainState:
        if isinstance(rng, int):
            rng = jax.random.PRNGKey(rng)
        elif jnp.issubdtype(rng.dtype, jax.dtypes.prng_key):
            rng = jax.random.key_data(rng)
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            rng=jnp.asarray(rng, jnp.uint32),
        )

    def step_key(self) -> jax.Array:
        """The PRNG key of the current step."""
        return jax.random.fold_in(self.rng, self.step)
