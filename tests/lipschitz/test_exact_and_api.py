"""Exact references (power iteration, explicit matrices), the kernel layouts, the entry
points' argument checks, and the float64 zero-padding case that crashed XLA's CPU backend."""

import subprocess
import sys
import textwrap

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from conv_references import circular_norm, oihw_of, zero_norm
from threadpoolctl import threadpool_limits

import lipschitz
from lipschitz.exact import (
    conv_power_iteration,
    dense_power_iteration,
    power_iteration,
    zero_padding_exact,
)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """numpy's and scikit-learn's BLAS / OpenMP worker threads keep spinning after a call
    and compete with XLA on a small machine: the references here run single-threaded."""
    with threadpool_limits(1):
        yield


def test_power_iteration_converges_dense_and_conv():
    """Key first; the estimates approach the exact norms from below. A new-style key, a
    legacy PRNGKey and an int seed draw the same start."""
    rng = np.random.default_rng(0)
    key = jax.random.key(0)
    with jax.enable_x64(True):
        w = jnp.asarray(rng.normal(size=(12, 7)))
        estimates = [dense_power_iteration(k, w, 300) for k in (key, jax.random.PRNGKey(0), 0)]
        np.testing.assert_allclose(estimates[0], np.linalg.norm(w, 2))
        assert estimates[0] == estimates[1] == estimates[2]
        with pytest.raises(ValueError, match="key must be a jax.random key"):
            dense_power_iteration("zero", w, 3)
        kernel = jnp.asarray(rng.normal(size=(3, 3, 2, 3)))  # HWIO
        oihw = oihw_of(kernel)
        exact = zero_norm(oihw, 5)
        np.testing.assert_allclose(zero_padding_exact(kernel, 5), exact, rtol=1e-12)
        estimate = float(conv_power_iteration(key, kernel, 5, "zero", 2000))
        assert estimate <= exact * (1 + 1e-12)
        np.testing.assert_allclose(estimate, exact, rtol=1e-6)
        estimate = float(conv_power_iteration(key, kernel, 5, "circular", 2000))
        np.testing.assert_allclose(estimate, circular_norm(oihw, 5), rtol=1e-6)


def test_power_iteration_history_is_increasing_lower_bounds():
    w = jnp.asarray(np.random.default_rng(1).normal(size=(20, 20)), jnp.float32)
    _, v, history = power_iteration(lambda x: w @ x, jnp.ones(20), 50, history=True)
    assert history.shape == (50,)
    assert np.all(np.diff(np.asarray(history)) >= -1e-5)
    assert float(history[-1]) <= float(np.linalg.norm(np.asarray(w, np.float64), 2)) * (1 + 1e-6)
    np.testing.assert_allclose(jnp.linalg.norm(v), 1.0, rtol=1e-6)


def test_zero_padding_exact_float64_1x1x5x5_at_n16():
    """One program holding the identity-basis convolution and the SVD crashed XLA's CPU
    backend (segmentation fault) on this float64 case; the matrix and the SVD are now
    compiled apart. Run in a subprocess so that a regression cannot take pytest down."""
    script = textwrap.dedent(
        """
        import jax
        import numpy as np
        jax.config.update("jax_enable_x64", True)
        import lipschitz
        w = np.random.default_rng(0).normal(size=(1, 1, 5, 5))
        print(float(lipschitz.exact_spectral_norm(w, padding="zero", n=16, layout="OIHW")))
        print(float(lipschitz.zero_padding_exact(w.transpose(2, 3, 1, 0), 16)))
        """
    )
    run = subprocess.run(
        [sys.executable, "-c", script], capture_output=True, text=True, timeout=300
    )
    assert run.returncode == 0, (run.returncode, run.stderr[-2000:])
    values = [float(v) for v in run.stdout.split()]
    expected = zero_norm(np.random.default_rng(0).normal(size=(1, 1, 5, 5)), 16)
    np.testing.assert_allclose(values, [expected, expected], rtol=1e-12)


# --- layouts ---------------------------------------------------------------------------

N = 6


def _both_layouts(fn, hwio):
    """``fn(kernel, layout)`` on an HWIO kernel and on the same kernel transposed to OIHW."""
    return fn(hwio, "HWIO"), fn(jnp.transpose(hwio, (3, 2, 0, 1)), "OIHW")


LAYOUT_FUNCTIONS = {
    "spectral_norm_bound circular": lambda k, lay: lipschitz.spectral_norm_bound(
        k, "gram", "circular", N, layout=lay
    ),
    **{
        f"spectral_norm_bound zero {m}": (
            lambda k, lay, m=m: lipschitz.spectral_norm_bound(k, m, "zero", layout=lay)
        )
        for m in lipschitz.METHODS
    },
    "exact_spectral_norm circular": lambda k, lay: lipschitz.exact_spectral_norm(
        k, "circular", N, layout=lay
    ),
    "exact_spectral_norm zero": lambda k, lay: lipschitz.exact_spectral_norm(
        k, "zero", N, layout=lay
    ),
    "circular_gram_bound": lambda k, lay: lipschitz.circular_gram_bound(k, N, 4, layout=lay),
    "spatial_gram_bound": lambda k, lay: lipschitz.spatial_gram_bound(k, 2, layout=lay),
    "spatial_gram_row_bounds": lambda k, lay: lipschitz.spatial_gram_row_bounds(k, 2, layout=lay),
    "singla2021_bound": lambda k, lay: lipschitz.singla2021_bound(k, layout=lay),
    "araujo2021_bound": lambda k, lay: lipschitz.araujo2021_bound(k, layout=lay),
    "circular_exact": lambda k, lay: lipschitz.circular_exact(k, N, layout=lay),
    "zero_padding_exact": lambda k, lay: lipschitz.zero_padding_exact(k, N, layout=lay),
    "conv_matrix": lambda k, lay: lipschitz.conv_matrix(k, N, "zero", layout=lay),
    "conv_power_iteration": lambda k, lay: lipschitz.conv_power_iteration(
        jax.random.key(0), k, N, "circular", 20, layout=lay
    ),
    "lipschitz_penalty": lambda k, lay: lipschitz.lipschitz_penalty([k], layout=lay),
}


@pytest.fixture(scope="module")
def hwio_kernel():
    """A Flax-layout kernel ``[3, 3, c_in=2, c_out=4]``: its OIHW transpose has different
    channel counts, so reading one layout as the other is detectable."""
    return jnp.asarray(np.random.default_rng(4).normal(size=(3, 3, 2, 4)), jnp.float32)


@jax.jit
def _every_function_in_both_layouts(hwio):
    return {name: _both_layouts(fn, hwio) for name, fn in LAYOUT_FUNCTIONS.items()}


def test_both_layouts_give_the_same_value_for_the_transposed_kernel(hwio_kernel):
    """Every public function taking a kernel, in one compiled program."""
    for name, (hwio, oihw) in _every_function_in_both_layouts(hwio_kernel).items():
        chex.assert_trees_all_close(hwio, oihw, rtol=1e-6, custom_message=name)
    # Eagerly too (the layout is converted before the compiled part).
    chex.assert_trees_all_close(*_both_layouts(LAYOUT_FUNCTIONS["circular_exact"], hwio_kernel))


def test_layouts_of_rescaling_and_the_default():
    """The rescalings return the layout they were given; HWIO is the default everywhere."""
    kernel = jnp.asarray(np.random.default_rng(5).normal(size=(3, 3, 2, 4)), jnp.float32)
    oihw = jnp.transpose(kernel, (3, 2, 0, 1))
    for fn in (
        lambda k, **kw: lipschitz.spectral_rescale_conv(k, 2, **kw),
        lambda k, **kw: lipschitz.aol_conv(k, **kw),
    ):
        out = fn(kernel)
        assert out.shape == kernel.shape
        chex.assert_trees_all_close(fn(kernel, layout="HWIO"), out)
        chex.assert_trees_all_close(jnp.transpose(fn(oihw, layout="OIHW"), (2, 3, 1, 0)), out)


def test_a_flax_conv_kernel_is_bounded_as_the_flax_layer():
    """The default layout is nn.Conv's: the bound of a Flax kernel is at least the norm of
    the Flax layer's explicit matrix (built by applying nn.Conv to the identity basis)."""
    import flax.linen as nn

    with jax.enable_x64(True):
        conv = nn.Conv(3, (3, 3), padding="SAME", use_bias=False, dtype=jnp.float64)
        params = jax.jit(conv.init)(jax.random.key(0), jnp.ones((1, 5, 5, 2), jnp.float64))
        kernel = params["params"]["kernel"].astype(jnp.float64)
        basis = np.eye(5 * 5 * 2).reshape(-1, 5, 5, 2)
        columns = jax.jit(conv.apply)({"params": {"kernel": kernel}}, basis)
        matrix = np.asarray(columns).reshape(50, -1).T
        exact = np.linalg.norm(matrix, 2)
        np.testing.assert_allclose(lipschitz.exact_spectral_norm(kernel, "zero", 5), exact)
        assert float(lipschitz.spectral_norm_bound(kernel, "gram", "zero")) >= exact


def test_layout_errors_name_the_shape_and_suggest_the_other_layout():
    oihw = jnp.ones((4, 2, 3, 3))  # read as HWIO: spatial 4 x 2, not square
    with pytest.raises(ValueError, match=r"square spatial axes .*'HWIO'.*pass layout='OIHW'"):
        lipschitz.spectral_norm_bound(oihw, "gram", "zero")
    square = jnp.ones((8, 8, 3, 3))  # HWIO: an 8 x 8 kernel, larger than n = 6
    with pytest.raises(ValueError, match=r"kernel size <= n = 6 .*got 8x8.*pass layout='OIHW'"):
        lipschitz.spectral_norm_bound(square, "gram", "circular", 6)
    with pytest.raises(ValueError, match=r"kernel size <= n = 6"):
        lipschitz.circular_exact(jnp.ones((3, 3, 8, 8)), 6, layout="OIHW")
    with pytest.raises(ValueError, match=r"layout must be one of \('HWIO', 'OIHW'\), got 'NCHW'"):
        lipschitz.spectral_norm_bound(square, "gram", "zero", layout="NCHW")
    with pytest.raises(ValueError, match=r"\[kh, kw, c_in, c_out\] .*got shape \(3, 3, 3\)"):
        lipschitz.spatial_gram_bound(jnp.ones((3, 3, 3)), 2)
    with pytest.raises(ValueError, match=r"c_in = 2 input channels .*got 3"):
        lipschitz.conv2d(jnp.ones((1, 4, 4, 2)), jnp.ones((3, 3, 3, 5)))


def _raises(match, fn, *args, **kwargs):
    with pytest.raises(ValueError, match=match):
        fn(*args, **kwargs)


def test_value_errors():
    dense = jnp.ones((3, 4))
    kernel = jnp.ones((3, 3, 3, 2))
    bound = lipschitz.spectral_norm_bound
    exact = lipschitz.exact_spectral_norm
    _raises(r"dense matrix \[m, n\].*got shape \(3, 3, 3, 2\)", bound, kernel)
    _raises(
        r"convolution kernel \[kh, kw, c_in, c_out\].*got shape \(3, 4\)",
        bound,
        dense,
        padding="zero",
    )
    _raises("square", bound, jnp.ones((2, 3, 3, 2)), padding="zero")
    _raises(r"iters must be an int >= 1, got 0", bound, dense, iters=0)
    _raises(r"iters must be an int >= 1, got 2.5", bound, dense, iters=2.5)
    _raises("n .* is required for padding='circular'", bound, kernel, padding="circular")
    _raises(r"kernel size <= n = 2 .*got 3x3", bound, kernel, padding="circular", n=2)
    _raises(r"kernel size <= n = 2", bound, kernel, padding="zero", n=2)
    _raises(r"n \(the input height .* int >= 1, got 8.0", bound, kernel, "gram", "circular", 8.0)
    _raises("n applies only to convolutions", bound, dense, n=8)
    _raises("method must be one of .* got 'power'", bound, dense, method="power")
    _raises("padding must be one of .* got 'same'", bound, kernel, padding="same", n=8)
    _raises("iters applies only to methods", bound, kernel, "singla2021", "zero", iters=3)
    _raises("a dense matrix .* takes method 'gram'", bound, dense, method="singla2021")
    _raises("floating-point array, got dtype int32", bound, jnp.ones((3, 3), jnp.int32))
    _raises("n .* is required for padding='zero'", exact, kernel, padding="zero")
    _raises(r"kernel size <= n = 1", exact, kernel, padding="circular", n=1)
    _raises("explicit zero-padding matrix", exact, jnp.ones((3, 3, 64, 64)), "zero", 32)
    _raises("padding must be one of", exact, kernel, padding="reflect", n=4)
    _raises(r"non-empty matrix \[\.\.\., m, n\], got shape \(3,\)", exact, jnp.ones(3))
    _raises(r"iters must be an int >= 1, got 0", lipschitz.gram_iteration, dense, 0)
    _raises("grid must be >", lipschitz.araujo2021_bound, jnp.ones((5, 5, 2, 2)), grid=8)
    _raises("padding must be one of", lipschitz.conv_matrix, kernel, 4, "same")


class TestEntryPoints(chex.TestCase):
    """The entry points with and without an outer ``jax.jit``: the same values, above the
    exact norms (float64 SVD of the explicit matrices)."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_bounds_above_exact(self):
        rng = np.random.default_rng(2)
        with jax.enable_x64(True):
            dense = jnp.asarray(rng.normal(size=(6, 4)))
            kernel = jnp.asarray(rng.normal(size=(3, 3, 2, 3)))
            # The explicit matrix (checked entry by entry in test_conv_bounds), numpy's SVD.
            zero = np.linalg.norm(np.asarray(lipschitz.conv_matrix(kernel, 5, "zero")), 2)

            @self.variant
            def bounds(w, k):
                return jnp.stack(
                    [lipschitz.spectral_norm_bound(w, iters=4)]
                    + [lipschitz.spectral_norm_bound(k, m, "zero", 5) for m in lipschitz.METHODS]
                )

            values = np.asarray(bounds(dense, kernel))
            assert values.dtype == np.float64
            assert values[0] >= np.linalg.norm(np.asarray(dense), 2) * (1 - 1e-12)
            assert np.all(values[1:] >= zero * (1 - 1e-12)), (values, zero)

    @chex.variants(with_jit=True, without_jit=True)
    def test_non_finite_raises_eagerly_and_is_nan_under_jit(self):
        w = jnp.ones((6, 4)).at[2, 1].set(jnp.nan)
        bound = self.variant(lambda w: lipschitz.spectral_norm_bound(w, iters=4))
        if self.variant.type == chex.ChexVariantType.WITHOUT_JIT:
            with pytest.raises(ValueError, match="w must be finite"):
                bound(w)
        else:
            assert np.isnan(float(bound(w)))
