"""The train state: everything a step reads and writes, as one pytree."""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax
from flax import struct

PyTree = Any

DEFAULT_KEY_IMPL = "threefry2x32"


def key_data(key: jax.Array | int) -> tuple[jax.Array, str]:
    """``(raw uint32 key data, implementation name)`` of a seed or key.

    Accepts an ``int`` seed (``jax.random.key(seed)``), a new-style key
    (``jax.random.key``) or a legacy raw ``uint32`` key (``jax.random.PRNGKey``,
    read with the default implementation).
    """
    if isinstance(key, bool) or not isinstance(key, int | np.integer | jax.Array | np.ndarray):
        raise ValueError(f"rng must be an int seed or a jax.random.key, got {key!r}")
    if isinstance(key, int | np.integer):
        key = jax.random.key(int(key))
    elif not jnp.issubdtype(key.dtype, jax.dtypes.prng_key):
        try:
            if key.dtype != jnp.uint32:
                raise TypeError
            key = jax.random.wrap_key_data(key)
        except (TypeError, ValueError):
            raise ValueError(
                "rng must be an int seed, a jax.random.key or a raw uint32 key of the "
                f"default implementation, got {key.dtype}{list(key.shape)}"
            ) from None
    if key.shape != ():
        raise ValueError(f"rng must be a single key (shape ()), got shape {key.shape}")
    return jax.random.key_data(key), str(jax.random.key_impl(key))


@struct.dataclass
class TrainState:
    """Parameters, optimizer state, step counter and base PRNG key.

    ``rng`` holds the raw ``uint32`` data of the base key (checkpointable as a
    plain array; ``key_impl`` names its implementation). The key of step ``t`` is
    ``jax.random.fold_in(key, t)``, so a resumed run draws the same randomness as
    an uninterrupted one.
    """

    step: jax.Array
    params: PyTree
    opt_state: PyTree
    rng: jax.Array
    key_impl: str = struct.field(pytree_node=False, default=DEFAULT_KEY_IMPL)

    @classmethod
    def create(
        cls, params: PyTree, optimizer: optax.GradientTransformation, rng: jax.Array | int
    ) -> TrainState:
        """A state at step 0 with ``optimizer.init(params)``.

        Args:
          rng: the base key: a new-style ``jax.random.key``, an ``int`` seed
            (the same as ``jax.random.key(seed)``) or a legacy raw key.
        """
        data, impl = key_data(rng)
        return cls(
            step=jnp.zeros((), jnp.int32),
            params=params,
            opt_state=optimizer.init(params),
            rng=jnp.asarray(data, jnp.uint32),
            key_impl=impl,
        )

    def base_key(self) -> jax.Array:
        """The base key as a new-style key."""
        return jax.random.wrap_key_data(self.rng, impl=self.key_impl)

    def step_key(self) -> jax.Array:
        """The new-style PRNG key of the current step."""
        return jax.random.fold_in(self.base_key(), self.step)
