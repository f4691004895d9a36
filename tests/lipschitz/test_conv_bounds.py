"""Convolution bounds against explicit matrices: every bound is above the exact norm, the
circular Gram bound converges, the spatial Fourier path equals the direct one, and the
circular / zero-padding relations hold."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lipschitz
from lipschitz.conv_bounds import (
    circular_gram_bound,
    circular_gram_symbols,
    circular_symbols,
    spatial_gram_iterate,
    spatial_gram_row_bounds,
    spatial_support,
)
from lipschitz.convolution import conv2d, same_padding
from lipschitz.exact import circular_exact, conv_matrix, dense_exact, zero_padding_exact

# (c_out, c_in, k, n): channels in != out, k in {1, 3, 5}, small n for explicit matrices.
SHAPES = [(3, 2, 1, 4), (2, 3, 3, 4), (4, 2, 3, 5), (2, 5, 3, 3), (3, 2, 5, 6), (1, 4, 5, 5)]


def _kernel(seed, c_out, c_in, k, dtype=np.float64):
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(c_out, c_in, k, k)) / k, dtype)


@functools.partial(jax.jit, static_argnames=("method", "padding", "n", "iters"))
def _bound(w, method, padding, n, iters=None):
    return lipschitz.spectral_norm_bound(w, method, padding, n, iters)


@pytest.mark.parametrize("shape", [SHAPES[0], SHAPES[2], SHAPES[4], (2, 3, 2, 4)])
def test_conv2d_convention_and_explicit_matrix(shape):
    c_out, c_in, k, n = shape
    with jax.enable_x64(True):
        kernel = _kernel(0, c_out, c_in, k)
        x = jnp.asarray(np.random.default_rng(1).normal(size=(1, n, n, c_in)))
        lo, hi = same_padding(k)
        expected = jax.lax.conv_general_dilated(
            x, kernel, (1, 1), [(lo, hi)] * 2, dimension_numbers=("NHWC", "OIHW", "NHWC")
        )
        np.testing.assert_allclose(conv2d(x, kernel, "zero"), expected, rtol=1e-10, atol=1e-12)
        for padding in ("zero", "circular"):
            m = conv_matrix(kernel, n, padding)
            np.testing.assert_allclose(
                m @ x.ravel(), conv2d(x, kernel, padding).ravel(), rtol=1e-10, atol=1e-12
            )
        # FFT + SVD (Sedghi et al.) is the explicit circular matrix's norm.
        np.testing.assert_allclose(
            circular_exact(kernel, n), dense_exact(conv_matrix(kernel, n, "circular")), rtol=1e-10
        )


@functools.partial(jax.jit, static_argnames=("n",))
def _all_bounds(kernel, n):
    """The circular Gram bound at ``n`` and the bounds valid for every size and padding
    (spatial Gram, Singla, Araujo), in one compiled function: ``[4]``."""
    return jnp.stack(
        [lipschitz.spectral_norm_bound(kernel, "gram", "circular", n)]
        + [lipschitz.spectral_norm_bound(kernel, m, "zero") for m in lipschitz.METHODS[1:]]
    )


@pytest.mark.parametrize(
    "shape,dtype",
    [(s, jnp.float64) for s in SHAPES[:5]] + [(SHAPES[5], jnp.float32)],
)
def test_every_bound_is_above_the_exact_norm(shape, dtype):
    c_out, c_in, k, n = shape
    tol = 1e-5 if dtype == jnp.float32 else 1e-12
    with jax.enable_x64(True):
        kernels = [_kernel(seed, c_out, c_in, k) for seed in range(3)]
        exact = [[float(circular_exact(w, n)), float(zero_padding_exact(w, n))] for w in kernels]
    with jax.enable_x64(dtype == jnp.float64):
        for kernel, (circular, zero) in zip(kernels, exact, strict=True):
            bounds = np.asarray(_all_bounds(kernel.astype(dtype), n))
            # Circular Gram >= the circular norm at n; the others >= both norms at n.
            assert bounds[0] >= circular * (1 - tol), (bounds, circular)
            assert np.all(bounds[1:] >= max(circular, zero) * (1 - tol)), (bounds, circular, zero)


def test_bounds_above_exact_on_larger_kernels():
    """More channels than explicit matrices allow: the circular norm from FFT+SVD, which is
    also what the zero-padding bounds (valid for every size and padding) must exceed."""
    for c_out, c_in, k, n in [(8, 16, 5, 12)]:
        kernel = _kernel(7, c_out, c_in, k, np.float32)
        bounds = np.asarray(_all_bounds(kernel, n))
        assert np.all(bounds >= float(circular_exact(kernel, n)) * (1 - 1e-5)), bounds


@functools.partial(jax.jit, static_argnames=("n",))
def _circular_series(kernel, n):
    """The circular Gram bound at T = 1, 2, 4 and at the default T, and the exact norm."""
    values = [circular_gram_bound(kernel, n, t) for t in (1, 2, 4)]
    values.append(lipschitz.spectral_norm_bound(kernel, "gram", "circular", n))
    return jnp.stack(values), circular_exact(kernel, n)


def test_circular_gram_converges_to_exact_in_float64():
    with jax.enable_x64(True):
        for seed, (c_out, c_in, k, n) in enumerate([(8, 8, 3, 8), (6, 10, 5, 12), (5, 3, 1, 4)]):
            bounds, exact = _circular_series(_kernel(seed, c_out, c_in, k), n)
            gaps = np.asarray(bounds) / float(exact) - 1
            assert -1e-12 <= gaps[-1] < 1e-4, gaps
            assert np.all(np.diff(gaps) <= 1e-15), gaps


@functools.partial(jax.jit, static_argnames=("iters", "fourier"))
def _spatial(kernel, iters, fourier):
    g, r = spatial_gram_iterate(kernel, iters, fourier=fourier)
    return g, r, spatial_gram_row_bounds(kernel, iters, fourier=fourier)


def test_spatial_fourier_path_equals_direct_self_correlation():
    with jax.enable_x64(True):
        for c_out, c_in, k, iters in [(2, 4, 3, 3), (3, 2, 2, 2)]:
            kernel = _kernel(k + iters, c_out, c_in, k)
            g_fast, r_fast, t_fast = _spatial(kernel, iters, True)
            g_ref, r_ref, t_ref = _spatial(kernel, iters, False)
            size = spatial_support(k, iters)
            assert g_fast.shape == g_ref.shape == (c_out, c_out, size, size)
            np.testing.assert_allclose(
                g_fast * np.exp(r_fast - r_ref), g_ref, atol=1e-12 * float(jnp.max(abs(g_ref)))
            )
            np.testing.assert_allclose(t_fast, t_ref, rtol=1e-10)


@functools.partial(jax.jit, static_argnames=("n",))
def _gram_symbols_both_ways(kernel, n):
    fast = circular_gram_symbols(kernel, n)
    symbols = circular_symbols(kernel, n)
    if kernel.shape[0] <= kernel.shape[1]:
        reference = symbols @ jnp.conj(jnp.swapaxes(symbols, -1, -2))
    else:
        reference = jnp.conj(jnp.swapaxes(symbols, -1, -2)) @ symbols
    return fast, reference


def test_gram_symbols_from_the_self_correlation_match_the_fft_symbols():
    """K_hat K_hat^H (rfft2 of the kernel, then a product) equals the symbol of the
    self-correlation, up to conjugation (same eigenvalues), also for n < 2k - 1."""
    with jax.enable_x64(True):
        for c_out, c_in, k, n in [(3, 5, 3, 4), (5, 3, 3, 8), (2, 2, 5, 6), (2, 3, 2, 2)]:
            kernel = _kernel(n, c_out, c_in, k)
            fast, reference = _gram_symbols_both_ways(kernel, n)
            matches = [
                np.allclose(fast, ref, atol=1e-12) for ref in (reference, np.conj(reference))
            ]
            assert any(matches), (c_out, c_in, k, n)
            np.testing.assert_allclose(fast, np.conj(np.swapaxes(fast, -1, -2)), atol=1e-12)


@functools.partial(jax.jit, static_argnames=("n", "iters", "prune"))
def _value_and_grad(kernel, n, iters, prune):
    return jax.value_and_grad(lambda w: circular_gram_bound(w, n, iters, prune=prune))(kernel)


def test_pruned_circular_bound_equals_full_and_backward_matches_autodiff():
    """The pruned evaluation (refine only frequencies that can still be the maximum, and
    differentiate through the arg-max frequency) against running every frequency to T."""
    with jax.enable_x64(True):
        for seed, (c_out, c_in, k, n) in enumerate([(6, 4, 3, 12), (4, 6, 2, 9)]):
            kernel = _kernel(seed, c_out, c_in, k)
            for iters in (4,):
                v_pruned, g_pruned = _value_and_grad(kernel, n, iters, True)
                v_full, g_full = _value_and_grad(kernel, n, iters, False)
                np.testing.assert_allclose(v_pruned, v_full, rtol=1e-12)
                np.testing.assert_allclose(g_pruned, g_full, rtol=1e-8, atol=1e-12)


def test_spatial_bound_float32_matches_float64():
    kernel = _kernel(3, 8, 6, 3, np.float32)
    with jax.enable_x64(True):
        reference = float(_bound(kernel.astype(jnp.float64), "gram", "zero", None, 3))
    np.testing.assert_allclose(float(_bound(kernel, "gram", "zero", None, 3)), reference, rtol=1e-5)


_zero_exact = jax.jit(zero_padding_exact, static_argnums=1)
_circ_exact = jax.jit(circular_exact, static_argnums=1)


def test_circular_and_zero_padding_relations():
    """Against explicit matrices (float64): for every n,
    - zero(n) <= circ(n + k - 1): the zero-padded layer is a section of the full linear
      convolution, which is the circular one at size n + k - 1 restricted to inputs that
      do not wrap;
    - zero(n) <= zero(n + 1): the size-n matrix is a principal submatrix;
    - circ(n) and zero(n) <= the spatial Gram bound (the bi-infinite operator's norm);
    - the sequence zero(n) approaches it from below (zero(n) <= sup_n circ(n))."""
    with jax.enable_x64(True):
        for seed, (c_out, c_in, k) in enumerate([(2, 3, 3), (2, 2, 4)]):
            kernel = _kernel(seed, c_out, c_in, k)
            spatial = float(_bound(kernel, "gram", "zero", None, 4))
            sizes = range(k, k + 4)
            zeros = [float(_zero_exact(kernel, n)) for n in sizes]
            for n, zero in zip(sizes, zeros, strict=True):
                assert zero <= float(_circ_exact(kernel, n + k - 1)) * (1 + 1e-12)
                assert zero <= spatial and float(_circ_exact(kernel, n)) <= spatial
            assert np.all(np.diff(zeros) >= -1e-12 * zeros[-1]), zeros
            sup_circ = float(_circ_exact(kernel, 64))
            assert zeros[-1] <= sup_circ * (1 + 1e-9) <= spatial


def test_circular_norm_at_kernel_size_is_not_a_bound_for_larger_inputs():
    """Why ``n`` is required: the circular norm at n = k can be well below the norm at the
    actual input size."""
    kernels = jnp.stack([_kernel(seed, 4, 4, 3, np.float32) for seed in range(20)])
    small = jax.vmap(lambda w: circular_exact(w, 3))(kernels)
    large = jax.vmap(lambda w: circular_exact(w, 32))(kernels)
    assert float(jnp.min(small / large)) < 0.95


def test_circular_bound_is_jittable_and_differentiable_in_float32():
    kernel = _kernel(0, 6, 4, 3, np.float32)
    fn = jax.jit(lambda w: circular_gram_bound(w, 8, 6))
    value, grad = jax.value_and_grad(fn)(kernel)
    assert value.dtype == jnp.float32 and grad.shape == kernel.shape
    assert np.all(np.isfinite(grad))
