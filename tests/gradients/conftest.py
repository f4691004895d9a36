"""Shared helpers for the gradients tests."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest


def _relative_error(actual, expected) -> float:
    """``|actual - expected| / |expected|`` over all leaves of two pytrees together."""
    leaves_a, leaves_b = jax.tree.leaves(actual), jax.tree.leaves(expected)
    assert jax.tree.structure(actual) == jax.tree.structure(expected)
    diff = sum(float(jnp.sum(jnp.square(a - b))) for a, b in zip(leaves_a, leaves_b, strict=True))
    norm = sum(float(jnp.sum(jnp.square(b))) for b in leaves_b)
    return float(np.sqrt(diff / max(norm, 1e-30)))


@pytest.fixture(scope="session")
def relative_error():
    return _relative_error


@pytest.fixture(scope="session")
def assert_trees_close():
    def check(actual, expected, rtol=2e-5):
        error = _relative_error(actual, expected)
        assert error < rtol, f"relative error {error:.2e} >= {rtol:.0e}"

    return check
