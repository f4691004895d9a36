"""Dense Gram iteration against the SVD: Schatten norms, upper bounds, scaling, row bounds."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

from lipschitz.exact import dense_exact, schatten_norm
from lipschitz.gram import DEFAULT_ITERS, gram_iteration, gram_log_bound, gram_row_bounds


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """LAPACK (the SVDs) runs on OpenBLAS, whose worker threads compete with XLA's on a
    small machine: one thread for this module."""
    with threadpool_limits(1):
        yield


def _matrix(rng, shape, complex_=False):
    w = rng.normal(size=shape)
    if complex_:
        w = w + 1j * rng.normal(size=shape)
    return w


@jax.jit
def _gram_vs_schatten(w):
    """Gram bounds at T = 1..5 and the Schatten 2^(T+1)-norms from the SVD."""
    gram = jnp.stack([gram_iteration(w, t) for t in range(1, 6)])
    schatten = jnp.stack([schatten_norm(w, 2.0 ** (t + 1)) for t in range(1, 6)])
    return gram, schatten


@pytest.mark.parametrize("shape,complex_", [((3, 8), False), ((2, 9, 4), True)])
def test_gram_iteration_is_the_schatten_norm(shape, complex_):
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        gram, schatten = _gram_vs_schatten(jnp.asarray(_matrix(rng, shape, complex_)))
        np.testing.assert_allclose(gram, schatten, rtol=1e-10)


@jax.jit
def _dense_series(w):
    """Gram bounds at T = 1, 2, 4, 8 and the default T; the exact norm."""
    bounds = [gram_iteration(w, t) for t in (1, 2, 4, 8)] + [gram_iteration(w)]
    return jnp.stack(bounds), dense_exact(w)


@pytest.mark.parametrize("dtype", [jnp.float32, jnp.float64])
def test_dense_bound_is_above_exact_and_converges(dtype):
    rng = np.random.default_rng(1)
    tol = 1e-6 if dtype == jnp.float32 else 1e-12
    with jax.enable_x64(dtype == jnp.float64):
        for shape in [(7, 1), (12, 30)]:  # rank 1; the row and the column side
            bounds, exact = _dense_series(jnp.asarray(_matrix(rng, shape), dtype))
            bounds, exact = np.asarray(bounds, np.float64), float(exact)
            assert np.all(bounds >= exact * (1 - tol)), (shape, bounds, exact)
            assert np.all(np.diff(bounds[:-1]) <= tol * bounds[0]), bounds
            assert bounds[-1] / exact - 1 < 1e-3


def test_default_iters_by_dtype():
    rng = np.random.default_rng(2)
    w = rng.normal(size=(40, 30))
    assert gram_log_bound(jnp.asarray(w, jnp.float32), 1).dtype == jnp.float32
    with jax.enable_x64(True):
        w64 = jnp.asarray(w)
        exact = float(dense_exact(w64))
        np.testing.assert_allclose(
            gram_iteration(w64), gram_iteration(w64, DEFAULT_ITERS["float64"])
        )
        assert float(gram_iteration(w64)) / exact - 1 < 1e-8


def test_log_accumulator_survives_huge_and_tiny_scales():
    rng = np.random.default_rng(3)
    w = jnp.asarray(rng.normal(size=(20, 20)), jnp.float32)
    exact = float(dense_exact(w))
    for scale in (1e30, 1e-30):
        value = float(gram_iteration(w * scale, 8))
        assert np.isfinite(value) and value > 0
        np.testing.assert_allclose(value / scale, exact, rtol=1e-4)


def test_zero_matrix_gives_zero_with_finite_gradient():
    w = jnp.zeros((4, 3))
    assert float(gram_iteration(w, 3)) == 0.0
    grad = jax.grad(lambda x: gram_iteration(x, 3))(w)
    assert np.all(np.isfinite(grad))


def test_batched_matches_one_by_one():
    rng = np.random.default_rng(4)
    w = jnp.asarray(_matrix(rng, (3, 2, 5, 4), complex_=True), jnp.complex64)
    batched = gram_iteration(w, 5)
    assert batched.shape == (3, 2)
    for i in range(3):
        for j in range(2):
            np.testing.assert_allclose(batched[i, j], gram_iteration(w[i, j], 5), rtol=1e-6)


def test_row_bounds_definition_and_bound():
    rng = np.random.default_rng(5)
    with jax.enable_x64(True):
        w = jnp.asarray(rng.normal(size=(6, 9)))
        # T = 1: square roots of the absolute row sums of W W^T.
        np.testing.assert_allclose(
            gram_row_bounds(w, 1), np.sqrt(np.abs(np.asarray(w @ w.T)).sum(1)), rtol=1e-12
        )
        # T = 3: (W W^T)^4 explicitly.
        p = np.linalg.matrix_power(np.asarray(w @ w.T), 4)
        np.testing.assert_allclose(gram_row_bounds(w, 3), np.abs(p).sum(1) ** (1 / 8), rtol=1e-10)
        exact = float(dense_exact(w))
        maxima = [float(jnp.max(gram_row_bounds(w, t))) for t in (1, 2, 4, 8)]
        assert all(m >= exact for m in maxima)
        assert maxima[-1] / exact - 1 < 1e-2
