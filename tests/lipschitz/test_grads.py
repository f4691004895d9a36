"""Gradients of every bound and rescaling against central finite differences (float64)."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import lipschitz
from lipschitz.rescaling import spectral_rescale_conv, spectral_rescale_dense


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """LAPACK (the SVDs) runs on OpenBLAS, whose worker threads compete with XLA's on a
    small machine: one thread for this module."""
    with threadpool_limits(1):
        yield


def _check_grads(fn, args, directions=3, eps=1e-6, rtol=1e-6):
    """Reverse-mode derivatives of ``fn(*args) -> [q]`` against central finite differences
    along random unit directions (what ``jax.test_util.check_grads`` does), for a random
    combination of the ``q`` outputs, so that one compiled function (value and gradient)
    covers them all."""
    count = jax.eval_shape(fn, *args).shape[0]
    weights = jax.random.uniform(jax.random.key(1), (count,), minval=0.5)
    argnums = tuple(range(len(args)))
    value_and_grad = jax.jit(jax.value_and_grad(lambda *a: jnp.dot(weights, fn(*a)), argnums))
    _, grads = value_and_grad(*args)
    for key in jax.random.split(jax.random.key(0), directions):
        keys = jax.random.split(key, len(args))
        vs = [jax.random.normal(k, a.shape, a.dtype) for k, a in zip(keys, args, strict=True)]
        norm = jnp.sqrt(sum(jnp.sum(v**2) for v in vs))
        vs = [v / norm for v in vs]
        plus = value_and_grad(*[a + eps * v for a, v in zip(args, vs, strict=True)])[0]
        minus = value_and_grad(*[a - eps * v for a, v in zip(args, vs, strict=True)])[0]
        analytic = sum(jnp.vdot(g, v) for g, v in zip(grads, vs, strict=True))
        scale = jnp.sqrt(sum(jnp.sum(g**2) for g in grads))
        np.testing.assert_allclose(
            analytic, (plus - minus) / (2 * eps), rtol=rtol, atol=rtol * float(scale)
        )


def test_bound_gradients_match_finite_differences():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        dense = jnp.asarray(rng.normal(size=(4, 3)))
        kernel = jnp.asarray(rng.normal(size=(3, 3, 2, 3)))  # HWIO

        def bounds(w, k):
            bound = lipschitz.spectral_norm_bound
            return jnp.stack(
                [
                    bound(w, iters=3),
                    bound(k, "gram", "circular", 5, 3),  # pruned, arg-max backward
                    bound(k, "gram", "zero", iters=2),
                    bound(k, "singla2021", "zero"),
                    bound(k, "araujo2021", "zero"),
                ]
            )

        _check_grads(bounds, (dense, kernel))


def test_rescaling_gradients_match_finite_differences():
    rng = np.random.default_rng(1)
    with jax.enable_x64(True):
        dense = jnp.asarray(rng.normal(size=(3, 4)))
        kernel = jnp.asarray(rng.normal(size=(3, 3, 2, 2)))
        probe_d = jnp.asarray(rng.normal(size=(3, 4)))
        probe_k = jnp.asarray(rng.normal(size=(3, 3, 2, 2)))

        def quantities(w, k):
            return jnp.stack(
                [
                    jnp.sum(spectral_rescale_dense(w, 2) * probe_d),
                    jnp.sum(spectral_rescale_conv(k, 2) * probe_k),
                ]
            )

        _check_grads(quantities, (dense, kernel))
