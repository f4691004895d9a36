"""Windowed, global and multipole attention against the library's slow references
(``attention_core_reference``, ``windowed_attention_reference`` and
``multipole_attention_reference``: float64 loops written from the specification, sharing
no code with the fast paths), and the properties the specification promises."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mano_jax.attention import windowed_attention, windowed_attention_reference
from mano_jax.layers import GlobalAttention, MultipoleAttention, MultipoleBlock, WindowAttention
from mano_jax.multipole import (
    multipole_attention,
    multipole_attention_reference,
    num_levels_for,
    padded_side,
)
from mano_jax.segment_attention import attention_core, attention_core_reference
from mano_jax.windows import coverage, extract_windows, fold_windows

_jit = jax.jit


def _normal(shape, seed=0):
    """Test data from NumPy: no per-shape compilation of jax.random."""
    return jnp.asarray(np.random.default_rng(seed).standard_normal(shape), jnp.float32)


def _random_params(module, x, seed=1):
    """Random values for every parameter (LayerNorm included), without compiling an init:
    ``N(0, 0.3^2)``, around 1 for the LayerNorm scales."""
    shapes = jax.eval_shape(module.init, jax.random.key(0), x)
    rng = np.random.default_rng(seed)

    def draw(path, p):
        centre = 1.0 if "scale" in jax.tree_util.keystr(path) else 0.0
        return jnp.asarray(centre + 0.3 * rng.standard_normal(p.shape), p.dtype)

    return jax.tree_util.tree_map_with_path(draw, shapes)


def _assert_close(actual, expected, rtol=1e-4):
    """Close to float32 rounding of the expected values' scale."""
    expected = np.asarray(expected, np.float64)
    atol = rtol * float(np.abs(expected).max())
    chex.assert_trees_all_close(np.asarray(actual, np.float64), expected, rtol=rtol, atol=atol)


@functools.cache
def _output_and_input_grad(module):
    """``(params, x) -> (module(x), d module(x)[0, 0, 0].sum() / dx)``, one compilation."""

    def run(params, x):
        out, pullback = jax.vjp(lambda x: module.apply(params, x), x)
        (grad,) = pullback(jnp.zeros_like(out).at[0, 0, 0].set(1.0))
        return out, grad

    return _jit(run)


# --------------------------------------------------------------------------- windows


@pytest.mark.parametrize(("k", "s"), [(4, 4), (4, 2), (2, 1), (4, 1)])
def test_fold_inverts_extract_and_counts_coverage(k, s):
    x = _normal((2, 8, 12, 3))
    w = extract_windows(x, (k, k), (s, s))
    assert w.shape == (2, (8 - k) // s + 1, (12 - k) // s + 1, k, k, 3)
    np.testing.assert_allclose(w[0, 1, 2, 1, 0], x[0, s + 1, 2 * s], rtol=0)
    np.testing.assert_allclose(fold_windows(w, (8, 12), (s, s)), x, rtol=1e-6)
    count = coverage((8, 12), (k, k), (s, s))
    brute = np.zeros((8, 12), int)
    for i in range(0, 8 - k + 1, s):
        for j in range(0, 12 - k + 1, s):
            brute[i : i + k, j : j + k] += 1
    np.testing.assert_array_equal(count, brute)


def test_windows_that_do_not_tile_raise():
    with pytest.raises(ValueError, match="do not tile"):
        extract_windows(_normal((1, 6, 6, 1)), (4, 4), (4, 4))
    with pytest.raises(ValueError, match="must tile the 6x6 grid"):
        windowed_attention_reference(np.zeros((1, 6, 6, 1)), {}, (4, 4), (4, 4))


# --------------------------------------------------------------------------- core


class AttentionCoreTest(chex.TestCase):
    """The XLA core against the written-out loop, with and without jit."""

    @chex.variants(with_jit=True, without_jit=True)
    def test_matches_the_reference_with_and_without_segments(self):
        q, k, v = (_normal((3, 2, 6, 4), seed) for seed in range(3))
        segments = jnp.array([[0, 0, 1, 1, -1, 0], [-1] * 6, [2, 2, 2, 2, 2, 2]], jnp.int32)
        core = self.variant(attention_core)
        for seg in (None, segments):
            out = core(q, k, v, seg)
            chex.assert_shape(out, q.shape)
            _assert_close(out, attention_core_reference(q, k, v, seg))
        assert not np.asarray(core(q, k, v, segments)[1]).any()  # a fully masked window


def test_attention_core_gradient_is_finite_with_fully_masked_windows():
    q, k, v = (_normal((3, 2, 6, 4), seed) for seed in range(3))
    segments = jnp.array([[0, 0, 1, 1, -1, 0], [-1] * 6, [2, 2, 2, 2, 2, 2]], jnp.int32)
    grads = _jit(jax.grad(lambda q: attention_core(q, k, v, segments).sum()))(q)
    chex.assert_tree_all_finite(grads)


def test_reference_core_is_the_softmax_of_the_definition():
    """One query, two keys, by hand: weights ``softmax(q.k / sqrt(d))``."""
    q = np.array([[[[1.0, 0.0, 0.0, 0.0]] * 2]])  # [1, 1, 2, 4]
    k = np.array([[[[2.0, 0.0, 0.0, 0.0], [0.0, 0.0, 0.0, 0.0]]]])
    v = np.array([[[[1.0, 0.0], [0.0, 1.0]]]])
    p = np.exp(1.0) / (np.exp(1.0) + 1.0)  # logits 2 / sqrt(4) = 1 and 0
    out = attention_core_reference(q, k, v, np.array([[0, 0]]))
    np.testing.assert_allclose(out[0, 0, 0], [p, 1 - p], rtol=1e-12)
    masked = attention_core_reference(q, k, v, np.array([[0, -1]]))
    np.testing.assert_allclose(masked[0, 0, 0], [1.0, 0.0], rtol=1e-12)
    np.testing.assert_array_equal(masked[0, 0, 1], [0.0, 0.0])


# --------------------------------------------------------------------------- window / global


@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_window_attention_matches_the_reference_and_stays_in_its_window(size):
    x = _normal((2, *size, 8))
    module = WindowAttention(num_heads=2, head_dim=4, window_size=4)
    params = _random_params(module, x)
    out, grad = _output_and_input_grad(module)(params, x)
    hp, wp = (-(-n // 4) * 4 for n in size)  # padded to whole windows
    xp = np.pad(np.asarray(x), ((0, 0), (0, hp - size[0]), (0, wp - size[1]), (0, 0)))
    segments = np.full((2, hp, wp), -1)
    segments[:, : size[0], : size[1]] = 0
    ref = windowed_attention_reference(xp, params["params"], (4, 4), (4, 4), segments)
    _assert_close(out, ref[:, : size[0], : size[1]])
    # Output (0, 0) sees exactly the valid tokens of its own 4x4 window.
    expected = np.zeros(size, bool)
    expected[:4, :4] = True
    np.testing.assert_array_equal(np.abs(np.asarray(grad[0])).sum(-1) > 0, expected)


def test_global_attention_matches_the_reference():
    x = _normal((1, 6, 6, 8))
    module = GlobalAttention(num_heads=2, head_dim=4)
    params = _random_params(module, x)
    ref = windowed_attention_reference(x, params["params"], (6, 6), (6, 6))
    _assert_close(_jit(module.apply)(params, x), ref)


def test_overlapping_windows_average_their_outputs():
    x = _normal((1, 8, 8, 4))
    p = _random_params(WindowAttention(2, 2, 4), x)["params"]
    out = _jit(lambda p, x: windowed_attention(x, p, (4, 4), (2, 2), impl="xla"))(p, x)
    _assert_close(out, windowed_attention_reference(x, p, (4, 4), (2, 2)))


def test_shifted_windows_follow_the_swin_regions():
    x = _normal((1, 8, 8, 4))
    module = WindowAttention(2, 2, 4, shift=True)
    params = _random_params(module, x)

    @_jit
    def supports(params, x):
        out, pullback = jax.vjp(lambda x: module.apply(params, x), x)
        one_hots = jnp.zeros((2, *out.shape)).at[0, 0, 3, 3].set(1.0).at[1, 0, 0, 0].set(1.0)
        return jax.vmap(lambda c: pullback(c)[0])(one_hots)

    grads = np.abs(np.asarray(supports(params, x))).sum(-1)[:, 0] > 0
    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    np.testing.assert_array_equal(grads[0], expected)
    # (0, 0) sits in the wrapped corner window; wrapped tokens from the far
    # rows/cols (6, 7) are another region and are not attended to.
    expected = np.zeros((8, 8), bool)
    expected[:2, :2] = True
    np.testing.assert_array_equal(grads[1], expected)


# --------------------------------------------------------------------------- multipole

MULTIPOLE_CASES = {
    "k4-r2": ((16, 16), dict(window_size=4)),
    "k4-r2-padded": ((20, 24), dict(window_size=4)),
    "k2-s1-r4": ((12, 12), dict(window_size=2, window_stride=1, sampling_rate=4)),
    "k3-avg-nearest": ((9, 30), dict(window_size=3, down="avg", up="nearest")),
}


@functools.cache
def _multipole_case(name):
    size, kwargs = MULTIPOLE_CASES[name]
    module = MultipoleAttention(num_heads=2, head_dim=4, impl="xla", **kwargs)
    x = _normal((1, *size, 8))
    params = _random_params(module, x)
    out, grad = _output_and_input_grad(module)(params, x)
    return module, params, x, out, grad


@pytest.mark.parametrize("name", list(MULTIPOLE_CASES))
def test_multipole_matches_the_written_out_vcycle(name):
    module, params, x, out, _ = _multipole_case(name)
    _, kwargs = MULTIPOLE_CASES[name]
    levels = {k: v for k, v in kwargs.items() if k not in ("down", "up")}
    ref = multipole_attention_reference(x, params["params"], **levels)
    _assert_close(out, ref)


@pytest.mark.parametrize("name", list(MULTIPOLE_CASES))
def test_one_layer_has_a_global_receptive_field(name):
    """Output (0, 0) depends on every input position (window attention's does not:
    see ``test_window_attention_matches_the_reference_and_stays_in_its_window``)."""
    *_, grad = _multipole_case(name)
    assert np.all(np.abs(np.asarray(grad[0])).sum(-1) > 0)


@pytest.mark.parametrize(
    ("height", "width", "k", "s", "r"),
    [(16, 16, 4, 4, 2), (20, 24, 4, 4, 2), (12, 12, 2, 1, 4), (9, 30, 3, 3, 2), (5, 5, 8, 8, 2)],
)
def test_levels_reach_one_window_and_padding_tiles_every_level(height, width, k, s, r):
    levels = num_levels_for(height, width, k, r)
    assert k * r ** (levels - 1) >= max(height, width)
    assert levels == 1 or k * r ** (levels - 2) < max(height, width)
    for n in (height, width):
        padded = padded_side(n, k, s, r, levels)

        def tiles(m):
            sides = [m // r**level for level in range(levels)]
            return m % r ** (levels - 1) == 0 and all(c <= k or (c - k) % s == 0 for c in sides)

        assert padded >= n and tiles(padded)
        assert not any(tiles(m) for m in range(n, padded))


def test_avg_down_and_nearest_up_have_no_parameters_and_keep_coarse_levels():
    module, params, x, out, _ = _multipole_case("k3-avg-nearest")
    assert set(params["params"]) == {"norm_scale", "norm_bias", "qkv", "out", "out_bias"}
    # A change inside one 2x2 block that keeps its mean leaves every coarse level as it
    # was, so only the level-0 window holding the block (rows and columns 0..2) moves.
    bump = jnp.zeros_like(x).at[0, 0, 0, 0].set(1.0).at[0, 1, 1, 0].set(-1.0)
    moved, _ = _output_and_input_grad(module)(params, x + bump)
    np.testing.assert_allclose(moved[:, 3:], out[:, 3:], atol=1e-5)
    np.testing.assert_allclose(moved[:, :, 3:], out[:, :, 3:], atol=1e-5)
    assert not np.allclose(moved[:, :3, :3], out[:, :3, :3], atol=1e-3)


def test_single_level_multipole_equals_window_attention():
    x = _normal((2, 10, 6, 8))
    window = WindowAttention(num_heads=2, head_dim=4, window_size=4)
    params = _random_params(window, x)
    single = MultipoleAttention(2, 4, 4, down="avg", up="nearest", num_levels=1)

    @_jit
    def three(params, x):
        pure = multipole_attention(x, params["params"], window_size=4, num_levels=1, impl="xla")
        return window.apply(params, x), single.apply(params, x), pure

    reference, *others = three(params, x)
    for other in others:
        np.testing.assert_allclose(other, reference, rtol=1e-6, atol=1e-6)


def test_block_shapes_and_gradients():
    x = _normal((1, 8, 8, 16))
    block = MultipoleBlock(num_heads=4, head_dim=None, window_size=4)
    params = _random_params(block, x)

    @_jit
    def forward_and_grads(params, x):
        return block.apply(params, x), jax.grad(lambda p: jnp.mean(block.apply(p, x) ** 2))(params)

    y, grads = forward_and_grads(params, x)
    chex.assert_shape(y, x.shape)
    chex.assert_tree_all_finite(grads)
    assert float(jnp.abs(grads["params"]["attention"]["down"]).sum()) > 0


def test_bfloat16_inputs_stay_close_to_float32():
    x = _normal((1, 8, 8, 8))
    module = MultipoleAttention(2, 4, 4)
    params = _random_params(module, x)
    out32, out16 = _jit(lambda p, x: (module.apply(p, x), module.apply(p, x.astype(jnp.bfloat16))))(
        params, x
    )
    assert out16.dtype == jnp.bfloat16
    scale = float(np.abs(out32).max())
    np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.03 * scale)


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: MultipoleAttention(0, 4, 4), "num_heads must be a positive int, got 0"),
        (lambda: MultipoleAttention(2, -4, 4), "head_dim must be None or a positive int, got -4"),
        (lambda: MultipoleAttention(2, 4, 0), "window_size must be a positive int, got 0"),
        (lambda: MultipoleAttention(2, 4, 4, window_stride=3), "window_stride must be a positive"),
        (lambda: MultipoleAttention(2, 4, 4, sampling_rate=1), "sampling_rate must be an int >= 2"),
        (lambda: MultipoleAttention(2, 4, 4, down="max"), "down must be one of"),
        (lambda: MultipoleAttention(2, 4, 4, up="bilinear"), "up must be one of"),
        (lambda: MultipoleAttention(2, 4, 4, impl="cuda"), "impl must be one of"),
        (lambda: MultipoleAttention(2, 4, 4, num_levels=0), "num_levels must be None or a pos"),
        (lambda: WindowAttention(2, 4, 2.5), "window_size must be a positive int, got 2.5"),
        (lambda: WindowAttention(True, 4, 4), "num_heads must be a positive int, got True"),
        (lambda: GlobalAttention(0, 4), "num_heads must be a positive int, got 0"),
        (lambda: MultipoleBlock(2, 4, 4, mlp_ratio=0.0), "mlp_ratio must be a finite number > 0"),
    ],
)
def test_constructors_name_the_bad_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()


@pytest.mark.parametrize(
    ("module", "shape", "match"),
    [
        (MultipoleAttention(2, 4, 8), (1, 6, 16, 8), "larger than the input"),
        (MultipoleAttention(3, None, 4), (1, 8, 8, 8), "num_heads 3 must divide"),
        (MultipoleAttention(2, 4, 4), (8, 8, 8), "rank 4"),
        (WindowAttention(2, 4, 9), (1, 8, 8, 8), "larger than the input"),
    ],
)
def test_inputs_that_do_not_fit_the_module(module, shape, match):
    with pytest.raises(ValueError, match=match):
        jax.eval_shape(module.init, jax.random.key(0), jax.ShapeDtypeStruct(shape, jnp.float32))
