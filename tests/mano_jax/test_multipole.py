"""Windowed, global and multipole attention against slow, explicit references."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest

from mano_jax.attention import attention_core, windowed_attention
from mano_jax.layers import GlobalAttention, MultipoleAttention, MultipoleBlock, WindowAttention
from mano_jax.multipole import multipole_attention, num_levels_for, padded_side
from mano_jax.windows import coverage, extract_windows, fold_windows


def _normal(shape, seed=0, dtype=jnp.float32):
    return jax.random.normal(jax.random.PRNGKey(seed), shape, dtype)


def _params(module, x, seed=1):
    return jax.jit(module.init)(jax.random.PRNGKey(seed), x)


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


# --------------------------------------------------------------------------- core


def _softmax_attention_loop(q, k, v, segments):
    """One group, one head at a time, in float64 numpy."""
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    g, h, t, d = q.shape
    out = np.zeros_like(q)
    for gi in range(g):
        for hi in range(h):
            for ti in range(t):
                keys = [
                    u
                    for u in range(t)
                    if segments is None
                    or (segments[gi, u] == segments[gi, ti] and segments[gi, u] >= 0)
                ]
                if not keys:
                    continue
                logits = np.array([q[gi, hi, ti] @ k[gi, hi, u] for u in keys]) / np.sqrt(d)
                p = np.exp(logits - logits.max())
                p /= p.sum()
                out[gi, hi, ti] = sum(pi * v[gi, hi, u] for pi, u in zip(p, keys, strict=True))
    return out


@pytest.mark.parametrize("with_segments", [False, True])
def test_attention_core_matches_explicit_loop(with_segments):
    q, k, v = (_normal((3, 2, 6, 4), seed) for seed in range(3))
    segments = None
    if with_segments:
        segments = jnp.array([[0, 0, 1, 1, -1, 0], [-1] * 6, [2, 2, 2, 2, 2, 2]], jnp.int32)
    out = attention_core(q, k, v, segments)
    np.testing.assert_allclose(out, _softmax_attention_loop(q, k, v, segments), atol=1e-5)
    if with_segments:
        assert np.all(np.asarray(out[1]) == 0)  # a fully masked window outputs zeros
        grads = jax.grad(lambda q: attention_core(q, k, v, segments).sum())(q)
        assert np.all(np.isfinite(grads))


def _window_reference(x, p, k, valid):
    """Non-overlapping window attention, one window at a time, attending to the
    valid tokens only (the ``valid`` [H, W] mask), in float64 numpy."""
    x = np.asarray(x, np.float64)
    pr = {n: np.asarray(a, np.float64) for n, a in p.items()}
    mu = x.mean(-1, keepdims=True)
    z = (x - mu) / np.sqrt(x.var(-1, keepdims=True) + 1e-5) * pr["norm_scale"] + pr["norm_bias"]
    qkv = np.einsum("bxyc,csnd->bxysnd", z, pr["qkv"])
    out = np.zeros(x.shape[:3] + pr["qkv"].shape[2:])
    b, h, w, _ = x.shape
    for i in range(0, h, k):
        for j in range(0, w, k):
            rows, cols = slice(i, i + k), slice(j, j + k)
            tokens = qkv[:, rows, cols].reshape(b, -1, 3, *qkv.shape[-2:])
            seg = np.where(valid[rows, cols].reshape(-1), 0, -1)[None].repeat(b, 0)
            q, kk, v = (tokens[:, :, n].transpose(0, 2, 1, 3) for n in range(3))
            o = _softmax_attention_loop(q, kk, v, seg).transpose(0, 2, 1, 3)
            out[:, rows, cols] = o.reshape(b, k, k, *o.shape[-2:])
    return np.einsum("bxynd,ndc->bxyc", out, pr["out"]) + pr["out_bias"]


@pytest.mark.parametrize("size", [(8, 8), (6, 10)])
def test_window_attention_matches_reference_with_padding(size):
    x = _normal((2, *size, 8))
    module = WindowAttention(num_heads=2, head_dim=4, window_size=4)
    params = _params(module, x)
    out = module.apply(params, x)
    hp, wp = (padded_side(n, 4, 4, 2, 1) for n in size)
    xp = np.pad(np.asarray(x), ((0, 0), (0, hp - size[0]), (0, wp - size[1]), (0, 0)))
    valid = np.zeros((hp, wp), bool)
    valid[: size[0], : size[1]] = True
    ref = _window_reference(xp, params["params"], 4, valid)[:, : size[0], : size[1]]
    np.testing.assert_allclose(out, ref, atol=2e-5)


def test_global_attention_matches_reference():
    x = _normal((1, 6, 6, 8))
    module = GlobalAttention(num_heads=2, head_dim=4)
    params = _params(module, x)
    ref = _window_reference(x, params["params"], 6, np.ones((6, 6), bool))
    np.testing.assert_allclose(module.apply(params, x), ref, atol=2e-5)


# --------------------------------------------------------------------------- multipole


def _vcycle_reference(x, p, k, r, levels):
    """The specification's V-cycle with lax convolutions, for sizes k * r^(L-1)."""
    conv = dict(window_strides=(r, r), padding="VALID", dimension_numbers=("NHWC", "HWIO", "NHWC"))
    zs = [x]
    for _ in range(levels - 1):
        zs.append(jax.lax.conv_general_dilated(zs[-1], p["down"], **conv))
    outs = [windowed_attention(z, p, (k, k), (k, k), impl="xla") for z in zs]
    res = outs[-1]
    for j, o in enumerate(reversed(outs[:-1])):
        up = jax.lax.conv_transpose(
            res, p["up"][::-1, ::-1], (r, r), "VALID", dimension_numbers=("NHWC", "HWIO", "NHWC")
        )
        res = o + up / (j + 1)
    return res


def test_multipole_matches_the_vcycle_of_the_spec():
    x = _normal((2, 16, 16, 8))
    module = MultipoleAttention(num_heads=2, head_dim=4, window_size=4, sampling_rate=2)
    params = _params(module, x)
    assert num_levels_for(16, 16, 4, 2) == 3
    ref = _vcycle_reference(x, params["params"], 4, 2, 3)
    np.testing.assert_allclose(module.apply(params, x), ref, atol=1e-5)


def test_avg_down_and_nearest_up_have_no_parameters():
    x = _normal((1, 8, 8, 4))
    module = MultipoleAttention(2, 2, 2, down="avg", up="nearest")
    params = _params(module, x)
    assert set(params["params"]) == {"norm_scale", "norm_bias", "qkv", "out", "out_bias"}
    coarse = x.reshape(1, 4, 2, 4, 2, 4).mean(axis=(2, 4))
    out = module.apply(params, x)
    assert out.shape == x.shape
    # Changing the input inside one 2x2 block without changing its mean only
    # changes level 0, so outputs outside that block's window stay put.
    bump = jnp.zeros_like(x).at[0, 0, 0].set(1.0).at[0, 1, 1].set(-1.0)
    moved = module.apply(params, x + bump)
    np.testing.assert_allclose(moved[:, 2:, 2:], out[:, 2:, 2:], atol=1e-6)
    assert coarse.shape == (1, 4, 4, 4)


@pytest.mark.parametrize(
    ("size", "kwargs"),
    [
        ((16, 16), dict(window_size=4)),
        ((20, 24), dict(window_size=4)),
        ((12, 12), dict(window_size=2, window_stride=1, sampling_rate=4)),
        ((9, 30), dict(window_size=3, down="avg", up="nearest")),
    ],
)
def test_one_layer_has_a_global_receptive_field(size, kwargs):
    x = _normal((1, *size, 8))
    h, w = size
    module = MultipoleAttention(num_heads=2, head_dim=4, **kwargs)
    params = _params(module, x)
    grad = jax.jit(jax.grad(lambda x: module.apply(params, x)[0, 0, 0].sum()))(x)
    assert float(jnp.abs(grad[0, h - 1, w - 1]).sum()) > 0
    window = WindowAttention(num_heads=2, head_dim=4, window_size=kwargs["window_size"])
    wparams = _params(window, x)
    wgrad = jax.jit(jax.grad(lambda x: window.apply(wparams, x)[0, 0, 0].sum()))(x)
    assert float(jnp.abs(wgrad[0, h - 1, w - 1]).sum()) == 0.0
    assert float(jnp.abs(wgrad[0, 0, 1]).sum()) > 0


@pytest.mark.parametrize("size", [(8, 8), (10, 6)])
def test_single_level_multipole_equals_window_attention(size):
    x = _normal((2, *size, 8))
    window = WindowAttention(num_heads=2, head_dim=4, window_size=4)
    params = _params(window, x)
    single = MultipoleAttention(2, 4, 4, down="avg", up="nearest", num_levels=1)
    np.testing.assert_allclose(single.apply(params, x), window.apply(params, x), rtol=1e-6)
    pure = multipole_attention(x, params["params"], window_size=4, num_levels=1, impl="xla")
    np.testing.assert_allclose(pure, window.apply(params, x), rtol=1e-6)


def test_overlapping_windows_average_their_outputs():
    x = _normal((1, 8, 8, 4))
    module = WindowAttention(2, 2, 4)
    p = _params(module, x)["params"]
    out = windowed_attention(x, p, (4, 4), (2, 2), impl="xla")
    # Brute force: attention in each 4x4 window (stride 2), averaged per position.
    total = np.zeros((1, 8, 8, 4))
    count = np.zeros((8, 8, 1))
    for i in range(0, 5, 2):
        for j in range(0, 5, 2):
            o = windowed_attention(x[:, i : i + 4, j : j + 4], p, (4, 4), (4, 4), impl="xla")
            total[:, i : i + 4, j : j + 4] += np.asarray(o)
            count[i : i + 4, j : j + 4] += 1
    np.testing.assert_allclose(out, total / count, atol=1e-6)


def test_shifted_windows_follow_the_swin_regions():
    x = _normal((1, 8, 8, 4))
    module = WindowAttention(2, 2, 4, shift=True)
    params = _params(module, x)

    def support(i, j):
        grad = jax.grad(lambda x: module.apply(params, x)[0, i, j].sum())(x)
        return np.abs(np.asarray(grad[0])).sum(-1) > 0

    expected = np.zeros((8, 8), bool)
    expected[2:6, 2:6] = True
    np.testing.assert_array_equal(support(3, 3), expected)
    # (0, 0) sits in the wrapped corner window; wrapped tokens from the far
    # rows/cols (6, 7) are another region and are not attended to.
    expected = np.zeros((8, 8), bool)
    expected[:2, :2] = True
    np.testing.assert_array_equal(support(0, 0), expected)


def test_block_shapes_and_gradients():
    x = _normal((2, 12, 12, 16))
    block = MultipoleBlock(num_heads=4, head_dim=None, window_size=4)
    params = jax.jit(block.init)(jax.random.PRNGKey(1), x)
    y = jax.jit(block.apply)(params, x)
    assert y.shape == x.shape
    grads = jax.jit(jax.grad(lambda p: jnp.mean(block.apply(p, x) ** 2)))(params)
    assert all(np.all(np.isfinite(g)) for g in jax.tree.leaves(grads))
    assert float(jnp.abs(grads["params"]["attention"]["down"]).sum()) > 0


def test_bfloat16_inputs_stay_close_to_float32():
    x = _normal((1, 16, 16, 8))
    module = MultipoleAttention(2, 4, 4)
    params = _params(module, x)
    out32 = module.apply(params, x)
    out16 = module.apply(params, x.astype(jnp.bfloat16))
    assert out16.dtype == jnp.bfloat16
    np.testing.assert_allclose(np.asarray(out16, np.float32), out32, atol=0.1, rtol=0.05)


@pytest.mark.parametrize(
    ("module", "shape", "match"),
    [
        (MultipoleAttention(2, 4, 8), (1, 6, 16, 8), "larger than the input"),
        (MultipoleAttention(2, 4, 4, sampling_rate=1), (1, 8, 8, 8), "sampling_rate"),
        (MultipoleAttention(3, None, 4), (1, 8, 8, 8), "num_heads 3 must divide"),
        (MultipoleAttention(2, 4, 4), (8, 8, 8), "rank 4"),
        (MultipoleAttention(2, 4, 4, window_stride=3), (1, 8, 8, 8), "window_stride"),
        (MultipoleAttention(2, 4, 4, down="max"), (1, 8, 8, 8), "down must be"),
        (MultipoleAttention(2, 4, 4, up="bilinear"), (1, 8, 8, 8), "up must be"),
        (MultipoleAttention(2, 4, 4, impl="cuda"), (1, 8, 8, 8), "impl must be"),
        (MultipoleAttention(2, 4, 0), (1, 8, 8, 8), "window_size"),
        (WindowAttention(2, 4, 9), (1, 8, 8, 8), "larger than the input"),
        (GlobalAttention(0, 4), (1, 8, 8, 8), "num_heads"),
    ],
)
def test_argument_errors(module, shape, match):
    with pytest.raises(ValueError, match=match):
        module.init(jax.random.PRNGKey(0), jnp.zeros(shape))
