"""Tests for mano_jax.fno: FFT spectral convolution vs explicit-DFT reference, FNO2d."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from mano_jax.fno import (
    FNO_PRESETS,
    FNO2d,
    FNOConfig,
    SpectralConv2d,
    _reference_full_spectrum,
    grid_coordinates,
    spectral_conv2d,
    spectral_conv2d_reference,
)

_jit = jax.jit

_conv = _jit(spectral_conv2d, static_argnums=(2, 3))

# (batch, H, W, C_in, C_out, modes1, modes2)
SHAPES = [
    (2, 8, 8, 3, 2, 3, 3),  # interior modes, even sizes
    (2, 8, 6, 2, 3, 4, 4),  # limits for even H, W: Nyquist row and Nyquist column kept
    (1, 9, 7, 2, 2, 4, 4),  # limits for odd H, W
    (3, 5, 10, 1, 4, 1, 6),  # H != W, odd H, Nyquist column, single row mode
    (2, 6, 9, 3, 1, 3, 2),  # C_out = 1, odd W, Nyquist row
    (1, 12, 16, 4, 4, 5, 7),
]


def _random_inputs(seed, b, h, w, c_in, c_out, m1, m2):
    rng = np.random.default_rng(seed)
    x = rng.standard_normal((b, h, w, c_in))
    weights = rng.standard_normal((2, c_in, c_out, m1, m2)) + 1j * rng.standard_normal(
        (2, c_in, c_out, m1, m2)
    )
    return x, weights


def _assert_close_f32(actual, expected):
    actual = np.asarray(actual, np.float64)
    scale = np.max(np.abs(expected))
    np.testing.assert_allclose(actual, expected, rtol=1e-4, atol=1e-5 * scale)


# ---------------------------------------------------------------------------------------
# spectral_conv2d vs reference
# ---------------------------------------------------------------------------------------


@pytest.mark.parametrize("shape", SHAPES)
def test_spectral_conv2d_matches_reference(shape):
    b, h, w, c_in, c_out, m1, m2 = shape
    x, weights = _random_inputs(0, *shape)
    expected = spectral_conv2d_reference(x, weights, m1, m2)
    assert expected.shape == (b, h, w, c_out)
    actual = _conv(jnp.asarray(x, jnp.float32), jnp.asarray(weights, jnp.complex64), m1, m2)
    assert actual.shape == (b, h, w, c_out)
    assert actual.dtype == jnp.float32
    _assert_close_f32(actual, expected)


@pytest.mark.parametrize("shape", SHAPES)
def test_reference_spectrum_is_hermitian_and_output_real(shape):
    _, h, w, _, _, m1, m2 = shape
    x, weights = _random_inputs(1, *shape)
    z = _reference_full_spectrum(x, weights, m1, m2)
    mirrored = np.conj(z[:, (-np.arange(h)) % h][:, :, (-np.arange(w)) % w])
    np.testing.assert_allclose(z, mirrored, atol=1e-10 * np.max(np.abs(z)))


@pytest.mark.parametrize("shape", SHAPES)
def test_matches_numpy_irfft_convention(shape):
    """The Hermitian projection of the DC/Nyquist columns changes nothing under the
    NumPy c2r convention (imaginary parts of self-mirrored frequencies ignored)."""
    b, h, w, c_in, c_out, m1, m2 = shape
    x, weights = _random_inputs(2, *shape)
    x_ft = np.fft.rfft2(x, axes=(1, 2))
    out_ft = np.zeros((b, h, w // 2 + 1, c_out), np.complex128)
    out_ft[:, :m1, :m2] = np.einsum("bxyi,ioxy->bxyo", x_ft[:, :m1, :m2], weights[0])
    out_ft[:, h - m1 :, :m2] = np.einsum("bxyi,ioxy->bxyo", x_ft[:, h - m1 :, :m2], weights[1])
    expected = np.fft.irfft2(out_ft, s=(h, w), axes=(1, 2))
    np.testing.assert_allclose(spectral_conv2d_reference(x, weights, m1, m2), expected, atol=1e-10)


def test_jit_matches_eager():
    shape = SHAPES[1]
    _, _, _, _, _, m1, m2 = shape
    x, weights = _random_inputs(3, *shape)
    x, weights = jnp.asarray(x, jnp.float32), jnp.asarray(weights, jnp.complex64)
    eager = spectral_conv2d(x, weights, m1, m2)
    jitted = jax.jit(spectral_conv2d, static_argnums=(2, 3))(x, weights, m1, m2)
    np.testing.assert_allclose(jitted, eager, rtol=1e-5, atol=1e-5)


# ---------------------------------------------------------------------------------------
# Structural properties
# ---------------------------------------------------------------------------------------


def test_linear_in_input_and_weights():
    shape = (2, 8, 10, 3, 2, 3, 4)
    _, _, _, _, _, m1, m2 = shape
    x1, w1 = _random_inputs(4, *shape)
    x2, w2 = _random_inputs(5, *shape)
    a, c = 0.7, -1.3
    f = lambda x, w: np.asarray(  # noqa: E731
        _conv(jnp.asarray(x, jnp.float32), jnp.asarray(w, jnp.complex64), m1, m2),
        np.float64,
    )
    _assert_close_f32(f(a * x1 + c * x2, w1), a * f(x1, w1) + c * f(x2, w1))
    _assert_close_f32(f(x1, a * w1 + c * w2), a * f(x1, w1) + c * f(x1, w2))


@pytest.mark.parametrize(("k0", "l0"), [(5, 0), (0, 6), (5, 2), (1, 7), (8, 8)])
def test_annihilates_frequencies_outside_kept_modes(k0, l0):
    h = w = 16
    m1 = m2 = 4
    t = np.arange(h)[:, None]
    u = np.arange(w)[None, :]
    wave = np.cos(2 * np.pi * (k0 * t / h + l0 * u / w)) + np.sin(
        2 * np.pi * (k0 * t / h - l0 * u / w)
    )
    x = jnp.asarray(np.broadcast_to(wave[None, :, :, None], (2, h, w, 3)), jnp.float32)
    _, weights = _random_inputs(6, 2, h, w, 3, 2, m1, m2)
    y = _conv(x, jnp.asarray(weights, jnp.complex64), m1, m2)
    assert float(jnp.max(jnp.abs(y))) < 1e-4


@pytest.mark.parametrize(("k0", "l0"), [(0, 0), (3, 0), (2, 3), (1, -3)])
def test_passes_kept_frequencies(k0, l0):
    h = w = 16
    m1 = m2 = 4
    t = np.arange(h)[:, None]
    u = np.arange(w)[None, :]
    wave = np.cos(2 * np.pi * (k0 * t / h + l0 * u / w))
    x = jnp.asarray(wave[None, :, :, None], jnp.float32)
    _, weights = _random_inputs(7, 1, h, w, 1, 1, m1, m2)
    y = _conv(x, jnp.asarray(weights, jnp.complex64), m1, m2)
    assert float(jnp.max(jnp.abs(y))) > 1e-2
    # The output stays within the same frequency pair (+-k0, +-l0).
    y_ft = np.abs(np.fft.fft2(np.asarray(y[0, :, :, 0], np.float64)))
    support = np.zeros((h, w), bool)
    for sk, sl in [(1, 1), (-1, -1)]:
        support[(sk * k0) % h, (sl * l0) % w] = True
    assert np.max(y_ft[~support]) < 1e-3 * np.max(y_ft)


@pytest.mark.parametrize("shift", [(1, 0), (0, 3), (-2, 5), (7, -4)])
def test_translation_equivariance(shift):
    shape = (2, 9, 12, 3, 2, 4, 5)
    _, _, _, _, _, m1, m2 = shape
    x, weights = _random_inputs(8, *shape)
    x = jnp.asarray(x, jnp.float32)
    weights = jnp.asarray(weights, jnp.complex64)
    y_of_shifted = _conv(jnp.roll(x, shift, axis=(1, 2)), weights, m1, m2)
    shifted_y = jnp.roll(_conv(x, weights, m1, m2), shift, axis=(1, 2))
    _assert_close_f32(y_of_shifted, np.asarray(shifted_y, np.float64))


def test_gradient_matches_finite_differences_float64():
    # Even W with the Nyquist column kept, so the Hermitian projection is exercised.
    shape = (1, 4, 4, 2, 2, 2, 3)
    _, _, _, _, _, m1, m2 = shape
    x_np, w_np = _random_inputs(9, *shape)
    with jax.enable_x64(True):
        x = jnp.asarray(x_np, jnp.float64)
        kernel = jnp.stack([jnp.asarray(w_np.real), jnp.asarray(w_np.imag)], axis=-1)
        assert kernel.dtype == jnp.float64

        @jax.jit  # check_grads nests it: no compile options
        def f(x, kernel):
            return spectral_conv2d(x, jax.lax.complex(kernel[..., 0], kernel[..., 1]), m1, m2)

        check_grads(f, (x, kernel), order=1, modes=("fwd", "rev"), atol=1e-6, rtol=1e-6)
    assert jnp.zeros(()).dtype == jnp.float32  # x64 did not leak


# ---------------------------------------------------------------------------------------
# Argument validation
# ---------------------------------------------------------------------------------------


def _zeros(h, w, c_in, c_out, m1, m2):
    return (
        jnp.zeros((1, h, w, c_in)),
        jnp.zeros((2, c_in, c_out, m1, m2), jnp.complex64),
    )


def test_too_many_modes1():
    x, w = _zeros(8, 8, 1, 1, 5, 2)
    with pytest.raises(ValueError, match=r"modes1 must be <= height // 2 = 4 \(height 8\)"):
        spectral_conv2d(x, w, 5, 2)


def test_too_many_modes2():
    x, w = _zeros(8, 7, 1, 1, 2, 5)
    with pytest.raises(ValueError, match=r"modes2 must be <= width // 2 \+ 1 = 4 \(width 7\)"):
        spectral_conv2d(x, w, 2, 5)


def test_non_positive_modes():
    x, w = _zeros(8, 8, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="modes1 must be a positive integer"):
        spectral_conv2d(x, w, 0, 2)


def test_wrong_rank():
    _, w = _zeros(8, 8, 1, 1, 2, 2)
    with pytest.raises(ValueError, match="x must have rank 4"):
        spectral_conv2d(jnp.zeros((8, 8, 1)), w, 2, 2)
    with pytest.raises(ValueError, match="x must have rank 4"):
        jax.eval_shape(FNO2d(modes1=2, modes2=2).init, jax.random.key(0), jnp.zeros((8, 8, 1)))


def test_weight_shape_mismatch():
    x, _ = _zeros(8, 8, 3, 1, 2, 2)
    with pytest.raises(ValueError, match="weights must have shape"):
        spectral_conv2d(x, jnp.zeros((2, 2, 1, 2, 2), jnp.complex64), 2, 2)
    with pytest.raises(ValueError, match="weights must have shape"):
        spectral_conv2d(x, jnp.zeros((2, 3, 1, 3, 2), jnp.complex64), 2, 2)


def test_fno_too_coarse_for_modes():
    model = FNO2d(modes1=6, modes2=6, width=4, depth=1)
    with pytest.raises(ValueError, match="modes1 must be <= height // 2"):
        jax.eval_shape(model.init, jax.random.key(0), jnp.zeros((1, 10, 10, 1)))


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: FNOConfig(width=0), "width must be a positive int, got 0"),
        (lambda: FNOConfig(modes1=2.0), "modes1 must be a positive int, got 2.0"),
        (lambda: FNOConfig(padding=-1), "padding must be an int >= 0, got -1"),
        (lambda: FNOConfig(activation="swish-ish"), "activation must be one of"),
        (lambda: FNO2d(depth=0), "depth must be a positive int, got 0"),
        (lambda: FNO2d(projection_features=-1), "projection_features must be a positive int"),
        (lambda: FNO2d(padding=-2), "padding must be an int >= 0, got -2"),
        (lambda: FNO2d(activation="gelu"), "activation must be callable"),
        (lambda: SpectralConv2d(features=0, modes1=2, modes2=2), "features must be a positive"),
        (lambda: SpectralConv2d(features=4, modes1=2, modes2=-1), "modes2 must be a positive"),
    ],
)
def test_constructors_name_the_bad_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


# ---------------------------------------------------------------------------------------
# Modules
# ---------------------------------------------------------------------------------------


def test_spectral_conv_module_init_and_apply():
    module = SpectralConv2d(features=5, modes1=3, modes2=2)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((2, 8, 8, 4)), jnp.float32)
    y, params = _jit(module.init_with_output)(jax.random.key(1), x)
    kernel = params["params"]["kernel"]
    assert kernel.shape == (2, 4, 5, 3, 2, 2)
    assert kernel.dtype == jnp.float32
    scale = 1.0 / (4 * 5)
    assert float(kernel.min()) >= 0.0
    assert float(kernel.max()) < scale
    weights = jax.lax.complex(kernel[..., 0], kernel[..., 1])
    np.testing.assert_allclose(y, spectral_conv2d(x, weights, 3, 2), rtol=1e-6, atol=1e-7)


def test_grid_coordinates():
    g = grid_coordinates(3, 5)
    assert g.shape == (3, 5, 2)
    np.testing.assert_allclose(g[:, 0, 0], [0.0, 0.5, 1.0])
    np.testing.assert_allclose(g[0, :, 1], [0.0, 0.25, 0.5, 0.75, 1.0])
    np.testing.assert_allclose(g[:, :, 0], np.broadcast_to(g[:, :1, 0], (3, 5)))


@pytest.fixture(scope="module")
def small_fno():
    """A small FNO2d and its params, initialised once (jitted) at 16x16."""
    model = FNO2d(modes1=4, modes2=4, width=8, depth=3, out_channels=2)
    params = _jit(model.init)(jax.random.key(0), jnp.zeros((2, 16, 16, 1)))
    return model, params


def _periodic_field(s):
    """[2, s, s, 1]: two smooth periodic fields sampled on t / s, t = 0 .. s-1."""
    t = jnp.arange(s) / s
    f1 = jnp.sin(2 * jnp.pi * t)[:, None] * jnp.cos(2 * jnp.pi * t)[None, :]
    f2 = jnp.cos(2 * jnp.pi * (t[:, None] + 2 * t[None, :]))
    return jnp.stack([f1, f2])[..., None]


def test_fno_same_params_two_resolutions(small_fno):
    model, params = small_fno
    apply = _jit(model.apply)
    y32 = apply(params, _periodic_field(32))
    y64 = apply(params, _periodic_field(64))
    assert y32.shape == (2, 32, 32, 2)
    assert y64.shape == (2, 64, 64, 2)
    assert np.all(np.isfinite(y32)) and np.all(np.isfinite(y64))
    # The same smooth input at two resolutions gives nearly the same output.
    rel = float(jnp.linalg.norm(y64[:, ::2, ::2] - y32) / jnp.linalg.norm(y32))
    assert rel < 0.05, rel


def test_fno_padded_rectangular_forward():
    # H + padding = 10 >= 2 * modes1, W + padding = 8 >= 2 * modes2 - 2.
    model = FNO2d(modes1=3, modes2=3, width=4, depth=2, projection_features=8, padding=2)
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 8, 6, 2)), jnp.float32)
    y, params = _jit(model.init_with_output)(jax.random.key(1), x)
    assert y.shape == (1, 8, 6, 1)
    assert np.all(np.isfinite(y))
    assert params["params"]["lift"]["kernel"].shape == (4, 4)  # 2 inputs + (x, y)
    with pytest.raises(ValueError, match="modes1 must be <= height // 2"):
        jax.eval_shape(FNO2d(modes1=3, modes2=3, width=4, depth=2).apply, params, x[:, :5])


def test_fno_gradient_finite(small_fno):
    model, params = small_fno
    rng = np.random.default_rng(2)
    x = jnp.asarray(rng.standard_normal((2, 16, 16, 1)), jnp.float32)
    target = jnp.asarray(rng.standard_normal((2, 16, 16, 2)), jnp.float32)

    def loss(params):
        return jnp.mean((model.apply(params, x) - target) ** 2)

    value, grads = _jit(jax.value_and_grad(loss))(params)
    assert np.isfinite(float(value))
    leaves = jax.tree_util.tree_leaves(grads)
    assert all(bool(jnp.all(jnp.isfinite(g))) for g in leaves)
    for layer in ("lift", "spectral_0", "pointwise_2", "project_out"):
        assert float(jnp.max(jnp.abs(grads["params"][layer]["kernel"]))) > 0


def _param_shapes(model, x_shape):
    shapes = jax.eval_shape(model.init, jax.random.key(0), jnp.zeros(x_shape))["params"]
    return jax.tree_util.tree_map(lambda a: a.shape, shapes)


def test_fno_param_structure():
    shapes = _param_shapes(FNO2d(modes1=3, modes2=2, width=6, depth=2), (1, 8, 8, 1))
    assert set(shapes) == {
        "lift",
        "spectral_0",
        "pointwise_0",
        "spectral_1",
        "pointwise_1",
        "project_hidden",
        "project_out",
    }
    assert shapes["lift"]["kernel"] == (3, 6)  # a, x, y
    assert shapes["spectral_0"]["kernel"] == (2, 6, 6, 3, 2, 2)
    assert shapes["pointwise_1"]["kernel"] == (6, 6)
    assert shapes["project_hidden"]["kernel"] == (6, 128)
    assert shapes["project_out"]["kernel"] == (128, 1)
    no_grid = FNO2d(modes1=3, modes2=2, width=6, depth=2, use_grid=False)
    assert _param_shapes(no_grid, (1, 8, 8, 1))["lift"]["kernel"] == (1, 6)


@pytest.mark.parametrize("name", sorted(FNO_PRESETS))
def test_presets_build_at_every_darcy_resolution_with_the_same_parameters(name):
    """Every preset applies from the smallest Darcy grid (16) to the paper's (85), with
    parameters that do not depend on the resolution."""
    model = FNO_PRESETS[name].make()
    shapes = []
    for s in (16, 32, 85):
        x = jax.ShapeDtypeStruct((2, s, s, 1), jnp.float32)
        out, params = jax.eval_shape(model.init_with_output, jax.random.key(0), x)
        assert out.shape == (2, s, s, 1)
        shapes.append(jax.tree.map(lambda a: a.shape, params))
    assert shapes[0] == shapes[1] == shapes[2]


def test_paper_preset_has_the_size_of_the_original_darcy_fno():
    """Li et al.'s FNO-2D for Darcy (4 Fourier layers of width 32 and 12 x 12 modes per
    corner, complex weights counted as two reals as the original code counts them) has
    about 2.37M parameters, 99.6 % of them spectral; the tiny preset is a fraction."""
    counts = {}
    for name, config in FNO_PRESETS.items():
        shapes = _param_shapes(config.make(), (1, 16, 16, 1))
        total = sum(np.prod(s) for layer in shapes.values() for s in layer.values())
        spectral = sum(np.prod(s["kernel"]) for k, s in shapes.items() if k.startswith("spectral"))
        counts[name] = total, spectral
    total, spectral = counts["darcy-paper"]
    assert 2.36e6 < total < 2.38e6, total
    assert spectral / total > 0.99
    assert counts["darcy-tiny"][0] < 0.3 * total
