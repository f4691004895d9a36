"""Exact references (power iteration, explicit matrices) and the entry points' argument checks."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lipschitz
from lipschitz.exact import (
    circular_exact,
    conv_power_iteration,
    dense_exact,
    dense_power_iteration,
    power_iteration,
    zero_padding_exact,
)


def test_power_iteration_converges_dense_and_conv():
    rng = np.random.default_rng(0)
    key = jax.random.PRNGKey(0)
    with jax.enable_x64(True):
        w = jnp.asarray(rng.normal(size=(12, 7)))
        np.testing.assert_allclose(dense_power_iteration(w, 300, key), dense_exact(w), rtol=1e-8)
        kernel = jnp.asarray(rng.normal(size=(3, 2, 3, 3)))
        for padding, exact in [
            ("zero", zero_padding_exact(kernel, 5)),
            ("circular", circular_exact(kernel, 5)),
        ]:
            estimate = conv_power_iteration(kernel, 5, padding, 2000, key)
            assert float(estimate) <= float(exact) * (1 + 1e-12)
            np.testing.assert_allclose(estimate, exact, rtol=1e-6)


def test_power_iteration_history_is_increasing_lower_bounds():
    w = jnp.asarray(np.random.default_rng(1).normal(size=(20, 20)), jnp.float32)
    _, v, history = power_iteration(lambda x: w @ x, jnp.ones(20), 50, history=True)
    assert history.shape == (50,)
    assert np.all(np.diff(np.asarray(history)) >= -1e-5)
    assert float(history[-1]) <= float(dense_exact(w)) * (1 + 1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(v), 1.0, rtol=1e-6)


def test_entry_points_dense_and_jit():
    w = jnp.asarray(np.random.default_rng(2).normal(size=(6, 4)), jnp.float32)
    exact = float(lipschitz.exact_spectral_norm(w))
    bound = jax.jit(lipschitz.spectral_norm_bound, static_argnames=("method", "iters"))(w, iters=4)
    assert float(bound) >= exact * (1 - 1e-6)
    np.testing.assert_allclose(exact, np.linalg.norm(np.asarray(w), 2), rtol=1e-5)


def _raises(match, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


def test_value_errors():
    dense = jnp.ones((3, 4))
    kernel = jnp.ones((2, 3, 3, 3))
    bound = lipschitz.spectral_norm_bound
    exact = lipschitz.exact_spectral_norm
    _raises(r"dense matrix \[m, n\].*got shape \(2, 3, 3, 3\)", bound, kernel)
    _raises(
        r"convolution kernel \[c_out, c_in, k, k\].*got shape \(3, 4\)",
        bound,
        dense,
        padding="zero",
    )
    _raises("square", bound, jnp.ones((2, 3, 3, 2)), padding="zero")
    _raises(r"iters must be an int >= 1, got 0", bound, dense, iters=0)
    _raises(r"iters must be an int >= 1, got 2.5", bound, dense, iters=2.5)
    _raises("n .* is required for padding='circular'", bound, kernel, padding="circular")
    _raises("n must be >= the kernel size 3, got 2", bound, kernel, padding="circular", n=2)
    _raises("n must be >= the kernel size 3, got 2", bound, kernel, padding="zero", n=2)
    _raises("n must be an int", bound, kernel, padding="circular", n=8.0)
    _raises("n applies only to convolutions", bound, dense, n=8)
    _raises("method must be one of .* got 'power'", bound, dense, method="power")
    _raises("padding must be one of .* got 'same'", bound, kernel, padding="same", n=8)
    _raises("iters applies only to methods", bound, kernel, "singla2021", "zero", iters=3)
    _raises("a dense matrix .* takes method 'gram'", bound, dense, method="singla2021")
    _raises("real floating-point", bound, jnp.ones((3, 3), jnp.int32))
    _raises("n .* is required for padding='zero'", exact, kernel, padding="zero")
    _raises("n must be >= the kernel size", exact, kernel, padding="circular", n=1)
    _raises(
        "MAX_EXPLICIT_SIZE|explicit zero-padding matrix",
        exact,
        jnp.ones((64, 64, 3, 3)),
        "zero",
        32,
    )
    _raises("padding must be one of", exact, kernel, padding="reflect", n=4)
    _raises(r"dense matrix \[m, n\]", exact, jnp.ones(3))
    with pytest.raises(ValueError, match="iters must be >= 1"):
        lipschitz.gram_iteration(dense, 0)
    with pytest.raises(ValueError, match="grid must be >"):
        lipschitz.araujo2021_bound(jnp.ones((2, 2, 5, 5)), grid=8)


def test_bounds_run_in_float64_and_keep_the_dtype():
    with jax.enable_x64(True):
        kernel = jnp.asarray(np.random.default_rng(3).normal(size=(3, 2, 3, 3)))
        fn = jax.jit(
            functools.partial(lipschitz.spectral_norm_bound, padding="circular", n=6),
            static_argnames=("method",),
        )
        for method in lipschitz.METHODS:
            assert fn(kernel, method=method).dtype == jnp.float64
