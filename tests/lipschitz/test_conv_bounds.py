"""Convolution bounds against explicit matrices: every bound is above the exact norm, the
circular Gram bound converges, the spatial Fourier path equals the direct one, and the
circular / zero-padding relations hold. Kernels are HWIO ``[k, k, c_in, c_out]`` (Flax's
layout, the default) unless a test is about the OIHW layout."""

import functools

import chex
import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conv_references import circular_norm, explicit_matrix, oihw_of, zero_norm
from threadpoolctl import threadpool_limits

import lipschitz
from lipschitz.checks import to_oihw
from lipschitz.conv_bounds import (
    _circular_gram_symbols,
    _circular_symbols,
    _spatial_gram_iterate,
    spatial_support,
)
from lipschitz.convolution import same_padding
from lipschitz.exact import circular_exact, conv_matrix


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """numpy's and scikit-learn's BLAS / OpenMP worker threads keep spinning after a call
    and compete with XLA on a small machine: the references here run single-threaded."""
    with threadpool_limits(1):
        yield


# (c_out, c_in, k, n): channels in != out, k in {1, 3, 5}, small n for explicit matrices.
SHAPES = [(3, 2, 1, 4), (4, 2, 3, 5), (3, 2, 5, 6)]


def _kernel(seed, c_out, c_in, k, dtype=np.float64):
    """A Gaussian HWIO kernel ``[k, k, c_in, c_out]``."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(k, k, c_in, c_out)) / k, dtype)


@functools.partial(jax.jit, static_argnames=("n",))
def _convolutions(x, kernel, n):
    """``conv2d`` and references: ``nn.Conv(padding="SAME")`` with the same HWIO kernel, an
    OIHW ``conv2d``, a "VALID" ``nn.Conv`` of the wrapped input, the explicit matrices."""
    c_out, k = kernel.shape[-1], kernel.shape[0]
    params = {"params": {"kernel": kernel}}
    same = nn.Conv(c_out, (k, k), padding="SAME", use_bias=False, dtype=x.dtype)
    valid = nn.Conv(c_out, (k, k), padding="VALID", use_bias=False, dtype=x.dtype)
    lo, hi = same_padding(k)
    wrapped = jnp.pad(x, [(0, 0), (lo, hi), (lo, hi), (0, 0)], mode="wrap")
    oihw = jnp.transpose(kernel, (3, 2, 0, 1))
    return {
        "zero": lipschitz.conv2d(x, kernel, "zero"),
        "zero flax": same.apply(params, x),
        "zero oihw": lipschitz.conv2d(x, oihw, "zero", layout="OIHW"),
        "circular": lipschitz.conv2d(x, kernel, "circular"),
        "circular flax": valid.apply(params, wrapped),
        "zero matrix": conv_matrix(kernel, n, "zero"),
        "circular matrix": conv_matrix(kernel, n, "circular"),
        "circular exact": circular_exact(kernel, n),
    }


def test_conv2d_is_flax_conv_and_the_explicit_matrix_is_conv2d():
    """``conv2d`` with an HWIO kernel is ``nn.Conv(padding="SAME")`` with that kernel (also
    for an even size), OIHW gives the same result, circular padding wraps the input;
    ``conv_matrix`` is the explicit matrix built entry by entry (numpy), and
    ``circular_exact`` (FFT + SVD) its norm."""
    with jax.enable_x64(True):
        for c_out, c_in, k, n in [(4, 2, 3, 5), (2, 3, 2, 4)]:
            kernel = _kernel(0, c_out, c_in, k)
            x = jnp.asarray(np.random.default_rng(1).normal(size=(1, n, n, c_in)))
            out = _convolutions(x, kernel, n)
            for name in ("zero flax", "zero oihw"):
                chex.assert_trees_all_close(out[name], out["zero"], atol=1e-12)
            chex.assert_trees_all_close(out["circular flax"], out["circular"], atol=1e-12)
            for padding in ("zero", "circular"):
                matrix = explicit_matrix(oihw_of(kernel), n, padding)
                np.testing.assert_allclose(out[f"{padding} matrix"], matrix, atol=1e-14)
                y = matrix @ np.asarray(x).ravel()
                np.testing.assert_allclose(y, np.asarray(out[padding]).ravel(), atol=1e-12)
            circular = np.linalg.norm(explicit_matrix(oihw_of(kernel), n, "circular"), 2)
            np.testing.assert_allclose(out["circular exact"], circular, rtol=1e-10)


def _bounds(kernel, n):
    """The circular Gram bound at ``n`` and the bounds valid for every size and padding
    (spatial Gram, Singla, Araujo): ``[4]``."""
    return jnp.stack(
        [lipschitz.spectral_norm_bound(kernel, "gram", "circular", n)]
        + [lipschitz.spectral_norm_bound(kernel, m, "zero") for m in lipschitz.METHODS[1:]]
    )


_all_bounds = jax.jit(_bounds, static_argnames=("n",))


@pytest.mark.parametrize("shape", SHAPES)
def test_every_bound_is_above_the_exact_norm(shape):
    """Exact norms from numpy: the explicit zero-padding matrix and the DFT symbols."""
    c_out, c_in, k, n = shape
    with jax.enable_x64(True):
        for seed in range(3):
            kernel = _kernel(seed, c_out, c_in, k)
            circular = circular_norm(oihw_of(kernel), n)
            zero = zero_norm(oihw_of(kernel), n)
            bounds = np.asarray(_all_bounds(kernel, n))
            # Circular Gram >= the circular norm at n; the others >= both norms at n.
            assert bounds[0] >= circular * (1 - 1e-12), (bounds, circular)
            assert np.all(bounds[1:] >= max(circular, zero) * (1 - 1e-12)), (bounds, zero)
    if shape == SHAPES[1]:
        # float32: the same bounds to float32 accuracy, so above the norms up to 1e-5.
        bounds32 = np.asarray(_all_bounds(kernel.astype(jnp.float32), n))
        assert bounds32.dtype == np.float32
        np.testing.assert_allclose(bounds32, bounds, rtol=1e-5)


@functools.partial(jax.jit, static_argnames=("n",))
def _circular_series(kernel, n):
    """The circular Gram bound at T = 1, 2, 4 and at the default T, and the bounds valid
    for every size (``_all_bounds``)."""
    values = [lipschitz.circular_gram_bound(kernel, n, t) for t in (1, 2, 4)]
    values.append(lipschitz.spectral_norm_bound(kernel, "gram", "circular", n))
    return jnp.stack(values), _bounds(kernel, n)[1:]


def test_circular_gram_converges_to_exact_in_float64():
    """Also on a kernel with more channels than explicit matrices allow: the n-independent
    bounds are above its circular norm (numpy FFT + SVD)."""
    with jax.enable_x64(True):
        for seed, (c_out, c_in, k, n) in enumerate([(6, 10, 5, 12), (5, 3, 1, 4)]):
            kernel = _kernel(seed, c_out, c_in, k)
            bounds, independent = _circular_series(kernel, n)
            exact = circular_norm(oihw_of(kernel), n)
            gaps = np.asarray(bounds) / float(exact) - 1
            assert -1e-12 <= gaps[-1] < 1e-4, gaps
            assert np.all(np.diff(gaps) <= 1e-15), gaps
            assert np.all(np.asarray(independent) >= float(exact) * (1 - 1e-12)), independent


@functools.partial(jax.jit, static_argnames=("iters", "fourier"))
def _spatial(kernel, iters, fourier):
    g, r = _spatial_gram_iterate(to_oihw(kernel, "HWIO"), iters, fourier=fourier)
    return g, r, lipschitz.spatial_gram_row_bounds(kernel, iters, fourier=fourier)


def test_spatial_fourier_path_equals_direct_self_correlation():
    with jax.enable_x64(True):
        for c_out, c_in, k, iters in [(2, 3, 2, 3)]:  # an even kernel: asymmetric shifts
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
    fast = _circular_gram_symbols(kernel, n)
    symbols = _circular_symbols(kernel, n)
    if kernel.shape[0] <= kernel.shape[1]:
        reference = symbols @ jnp.conj(jnp.swapaxes(symbols, -1, -2))
    else:
        reference = jnp.conj(jnp.swapaxes(symbols, -1, -2)) @ symbols
    return fast, reference


def test_gram_symbols_from_the_self_correlation_match_the_fft_symbols():
    """K_hat K_hat^H (rfft2 of the kernel, then a product) equals the symbol of the
    self-correlation, up to conjugation (same eigenvalues), also for n < 2k - 1."""
    with jax.enable_x64(True):
        for c_out, c_in, k, n in [(3, 5, 3, 4), (5, 3, 3, 8), (2, 3, 2, 2)]:
            kernel = to_oihw(_kernel(n, c_out, c_in, k), "HWIO")
            fast, reference = _gram_symbols_both_ways(kernel, n)
            matches = [
                np.allclose(fast, ref, atol=1e-12) for ref in (reference, np.conj(reference))
            ]
            assert any(matches), (c_out, c_in, k, n)
            np.testing.assert_allclose(fast, np.conj(np.swapaxes(fast, -1, -2)), atol=1e-12)


@functools.partial(jax.jit, static_argnames=("n", "prune"))
def _value_and_grad(kernel, n, prune):
    return jax.value_and_grad(lambda w: lipschitz.circular_gram_bound(w, n, 4, prune=prune))(kernel)


def test_pruned_circular_bound_equals_full_and_backward_matches_autodiff():
    """The pruned evaluation (refine only frequencies that can still be the maximum, and
    differentiate through the arg-max frequency) against running every frequency to T."""
    with jax.enable_x64(True):
        kernel = _kernel(0, 6, 4, 3)
        v_pruned, g_pruned = _value_and_grad(kernel, 8, True)
        v_full, g_full = _value_and_grad(kernel, 8, False)
        np.testing.assert_allclose(v_pruned, v_full, rtol=1e-12)
        np.testing.assert_allclose(g_pruned, g_full, rtol=1e-8, atol=1e-12)


def test_circular_and_zero_padding_relations():
    """Against explicit matrices (float64): for every n,
    - zero(n) <= circ(n + k - 1): the zero-padded layer is a section of the full linear
      convolution, which is the circular one at size n + k - 1 restricted to inputs that
      do not wrap;
    - zero(n) <= zero(n + 1): the size-n matrix is a principal submatrix;
    - circ(n) and zero(n) <= the spatial Gram bound (the bi-infinite operator's norm);
    - the sequence zero(n) approaches it from below (zero(n) <= sup_n circ(n))."""
    with jax.enable_x64(True):
        for seed, k in enumerate((3, 4)):
            kernel = _kernel(seed, 2, 3, k)
            oihw = oihw_of(kernel)
            spatial = float(lipschitz.spectral_norm_bound(kernel, "gram", "zero", None, 4))
            sizes = range(k, k + 3)
            zeros = [zero_norm(oihw, n) for n in sizes]
            for n, zero in zip(sizes, zeros, strict=True):
                assert zero <= circular_norm(oihw, n + k - 1) * (1 + 1e-12)
                assert zero <= spatial and circular_norm(oihw, n) <= spatial
            assert np.all(np.diff(zeros) >= -1e-12 * zeros[-1]), zeros
            sup_circ = circular_norm(oihw, 64)
            assert zeros[-1] <= sup_circ * (1 + 1e-9) <= spatial


def test_circular_norm_at_kernel_size_is_not_a_bound_for_larger_inputs():
    """Why ``n`` is required: the circular norm at n = k can be well below the norm at the
    actual input size (numpy FFT + SVD)."""
    kernels = [oihw_of(_kernel(seed, 4, 4, 3, np.float32)) for seed in range(20)]
    ratios = [circular_norm(w, 3) / circular_norm(w, 32) for w in kernels]
    assert min(ratios) < 0.95
