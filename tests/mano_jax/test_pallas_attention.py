"""The Pallas window-attention kernel against the XLA reference (interpret mode on CPU)."""

from __future__ import annotations

import math
import re

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import export
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton
from jax.extend import core as jcore

from mano_jax import attention
from mano_jax.layers import MultipoleAttention, WindowAttention
from mano_jax.pallas_attention import MAX_KERNEL_TOKENS, TILE_BUDGET, window_attention_pallas
from mano_jax.segment_attention import attention_core, attention_core_reference

TRITON_CALL = "__gpu$xla.gpu.triton"


def swin_segments(groups: int, kh: int, kw: int, rng: np.random.Generator) -> jax.Array:
    """``[groups, kh * kw]`` ids mixing the cases the layers produce.

    Window ``g % 5``: 0 one segment, 1 Swin's row split, 2 Swin's four corner
    regions, 3 random ids with padding (-1), 4 all padding (no key at all).
    """
    rows, cols = np.meshgrid(np.arange(kh), np.arange(kw), indexing="ij")
    split_r, split_c = rows >= (kh + 1) // 2, cols >= (kw + 1) // 2
    patterns = [
        np.zeros((kh, kw)),
        3 * split_r,
        3 * split_r + split_c,
        rng.integers(-1, 3, (kh, kw)),
        -np.ones((kh, kw)),
    ]
    seg = np.stack([patterns[g % 5].reshape(-1) for g in range(groups)])
    return jnp.asarray(seg, jnp.int32)


def normal(rng: np.random.Generator, shape, dtype=jnp.float32) -> jax.Array:
    """Test data from numpy: no per-shape compilation of jax.random on CPU."""
    return jnp.asarray(rng.standard_normal(shape, np.float32), dtype)


def qkv(shape, dtype, rng):
    return tuple(normal(rng, shape, dtype) for _ in range(3))


@jax.jit
def reference_and_grads(q, k, v, segments, cotangent):
    out, pullback = jax.vjp(lambda q, k, v: attention_core(q, k, v, segments), q, k, v)
    return out, pullback(cotangent)


def pallas_and_grads(block_groups=None):
    """``(out, grads with the Pallas backward, grads with the XLA backward)``."""

    @jax.jit
    def run(q, k, v, segments, cotangent):
        def f(backward):
            return lambda q, k, v: window_attention_pallas(
                q, k, v, segments, block_groups=block_groups, backward=backward
            )

        out, pullback = jax.vjp(f("pallas"), q, k, v)
        _, pullback_xla = jax.vjp(f("xla"), q, k, v)
        return out, pullback(cotangent), pullback_xla(cotangent)

    return run


# (groups, heads, (kh, kw), head_dim, value_dim, segments, block_groups)
CASES = [
    (5, 1, (2, 2), 4, 4, None, None),  # T = 4, no mask at all
    (9, 3, (2, 4), 8, 20, "swin", None),  # non-square T = 8, value_dim != head_dim
    (6, 3, (1, 4), 16, 16, "swin", 4),  # T = 4, G padded to 8
    (7, 3, (4, 4), 8, 20, "swin", None),  # T = 16, dot form, d and dv padded to 16, 32
    (3, 1, (4, 4), 4, 4, None, 2),  # T = 16, d = 4, G padded to 4
    (5, 1, (8, 8), 16, 16, "swin", None),  # T = 64
    (4, 3, (3, 4), 12, 12, None, None),  # T = 12, d = 12: both padded, mask added
]


@pytest.mark.parametrize(
    "groups, heads, window, head_dim, value_dim, seg_kind, block_groups", CASES
)
def test_float32_matches_reference(
    groups, heads, window, head_dim, value_dim, seg_kind, block_groups
):
    rng = np.random.default_rng(groups * 31 + head_dim)
    tokens = window[0] * window[1]
    q, k = qkv((groups, heads, tokens, head_dim), jnp.float32, rng)[:2]
    v = normal(rng, (groups, heads, tokens, value_dim))
    segments = None if seg_kind is None else swin_segments(groups, *window, rng)
    cotangent = normal(rng, v.shape)

    out, grads, grads_xla = pallas_and_grads(block_groups)(q, k, v, segments, cotangent)
    ref, ref_grads = reference_and_grads(q, k, v, segments, cotangent)

    assert out.shape == v.shape and out.dtype == jnp.float32
    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    for name, g, g_xla, r in zip("qkv", grads, grads_xla, ref_grads, strict=True):
        np.testing.assert_allclose(g, r, rtol=1e-5, atol=1e-5, err_msg=f"d{name}")
        np.testing.assert_allclose(g_xla, r, rtol=1e-5, atol=1e-5, err_msg=f"d{name}, xla")
    if segments is not None:
        empty = np.asarray(segments < 0).all(axis=1)
        assert empty.any()
        assert not np.asarray(out)[empty].any()  # windows with no key give exact zeros


@pytest.mark.parametrize("window, head_dim", [((2, 2), 8), ((4, 4), 16)])
def test_bfloat16_matches_reference(window, head_dim):
    groups, heads, tokens = 7, 3, window[0] * window[1]
    rng = np.random.default_rng(7)
    q, k, v = qkv((groups, heads, tokens, head_dim), jnp.bfloat16, rng)
    segments = swin_segments(groups, *window, rng)
    cotangent = normal(rng, q.shape, jnp.bfloat16)

    out, grads, grads_xla = pallas_and_grads()(q, k, v, segments, cotangent)
    ref, ref_grads = reference_and_grads(q, k, v, segments, cotangent)

    assert out.dtype == jnp.bfloat16
    assert all(g.dtype == jnp.bfloat16 for g in grads + grads_xla)
    f32 = np.float32
    np.testing.assert_allclose(out.astype(f32), ref.astype(f32), rtol=2e-2, atol=2e-2)
    for g, g_xla, r in zip(grads, grads_xla, ref_grads, strict=True):
        np.testing.assert_allclose(g.astype(f32), r.astype(f32), rtol=2e-2, atol=2e-2)
        np.testing.assert_allclose(g_xla.astype(f32), r.astype(f32), rtol=2e-2, atol=2e-2)


def test_long_groups_use_reference():
    rng = np.random.default_rng(1)
    tokens = 2 * MAX_KERNEL_TOKENS
    q, k, v = qkv((1, 1, tokens, 4), jnp.float32, rng)
    segments = jnp.arange(tokens, dtype=jnp.int32)[None] % 3 - 1
    np.testing.assert_allclose(
        window_attention_pallas(q, k, v, segments),
        attention_core(q, k, v, segments),
        rtol=1e-5,
        atol=1e-5,
    )


def _subjaxprs(params):
    for value in params.values():
        for item in value if isinstance(value, list | tuple) else [value]:
            if isinstance(item, jcore.ClosedJaxpr):
                yield item.jaxpr
            elif isinstance(item, jcore.Jaxpr):
                yield item


def _largest_array(jaxpr) -> int:
    """Elements of the largest array (or ref) anywhere in ``jaxpr``, loops included."""
    best = 0
    for eqn in jaxpr.eqns:
        for var in (*eqn.invars, *eqn.outvars):
            best = max(best, math.prod(getattr(var.aval, "shape", ())))
        for sub in _subjaxprs(eqn.params):
            best = max(best, _largest_array(sub))
    return best


def _kernels(jaxpr, found=None) -> list[dict]:
    """Every ``pallas_call`` in ``jaxpr``: its grid, largest block and largest array."""
    found = [] if found is None else found
    for eqn in jaxpr.eqns:
        if eqn.primitive.name == "pallas_call":
            mapping = eqn.params["grid_mapping"]
            blocks = [
                math.prod(getattr(b, "block_size", 1) for b in m.block_shape)
                for m in mapping.block_mappings
            ]
            found.append(
                {
                    "grid": tuple(mapping.grid),
                    "tile": mapping.block_mappings[0].block_shape[0].block_size,
                    "block": max(blocks),
                    "largest": _largest_array(eqn.params["jaxpr"]),
                }
            )
        for sub in _subjaxprs(eqn.params):
            _kernels(sub, found)
    return found


def _traced_kernels(groups, tokens, qk_dim, v_dim, block_groups=None) -> list[dict]:
    """The forward and backward kernels of one call, from its jaxpr (nothing compiled)."""
    q = jax.ShapeDtypeStruct((groups, 2, tokens, qk_dim), jnp.float32)
    v = jax.ShapeDtypeStruct((groups, 2, tokens, v_dim), jnp.float32)

    def loss(q, k, v):
        return window_attention_pallas(q, k, v, block_groups=block_groups, interpret=True).sum()

    kernels = _kernels(jax.make_jaxpr(jax.grad(loss, argnums=(0, 1, 2)))(q, q, v).jaxpr)
    assert len(kernels) == 2  # the forward and the backward kernel
    return kernels


# (groups, tokens, qk_dim, v_dim): broadcast and dot forms, padded sizes, few and many groups.
TILE_SHAPES = [
    (1000, 4, 16, 16),
    (1000, 4, 4, 4),
    (3, 4, 4, 4),
    (5, 12, 12, 20),
    (1000, 16, 8, 8),
    (37, 64, 32, 32),
    (1000, 64, 128, 128),
    (1000, 128, 16, 16),
]


@pytest.mark.parametrize("groups, tokens, qk_dim, v_dim", TILE_SHAPES)
def test_default_tile_covers_the_groups_and_fits_the_budget(groups, tokens, qk_dim, v_dim):
    """Measured on the traced kernels, not on the rule's own arithmetic: the programs
    cover every group with less than one tile of padding; no array a program holds
    exceeds ``TILE_BUDGET`` elements unless one window alone needs more; and the tile
    is the largest with that property, up to the groups rounded up to a power of two."""
    kernels = _traced_kernels(groups, tokens, qk_dim, v_dim)
    single = _traced_kernels(groups, tokens, qk_dim, v_dim, block_groups=1)
    for kernel, one in zip(kernels, single, strict=True):
        tile, (heads, programs) = kernel["tile"], kernel["grid"]
        assert tile & (tile - 1) == 0 and heads == 2
        assert programs * tile >= groups > (programs - 1) * tile
        assert tile == 1 or kernel["block"] <= TILE_BUDGET
        assert kernel["largest"] <= max(TILE_BUDGET, one["largest"])
    tile = kernels[0]["tile"]
    if tile < groups:  # 2 * tile is still at most the groups rounded up to a power of two
        for kernel, one in zip(
            _traced_kernels(groups, tokens, qk_dim, v_dim, block_groups=2 * tile),
            single,
            strict=True,
        ):
            assert kernel["block"] > TILE_BUDGET or kernel["largest"] > max(
                TILE_BUDGET, one["largest"]
            )


@pytest.mark.parametrize("tokens, qk_dim", [(4, 4), (16, 8)])  # broadcast, dot form
def test_every_tile_gives_the_reference(tokens, qk_dim):
    groups = 5
    rng = np.random.default_rng(tokens)
    q, k, v = qkv((groups, 2, tokens, qk_dim), jnp.float32, rng)
    segments = swin_segments(groups, 2, tokens // 2, rng)
    tiles = (1, 2, 4, 8)

    @jax.jit
    def every_tile(q, k, v, segments):
        return [window_attention_pallas(q, k, v, segments, block_groups=t) for t in tiles]

    expected = attention_core_reference(q, k, v, segments)
    for tile, out in zip(tiles, every_tile(q, k, v, segments), strict=True):
        np.testing.assert_allclose(out, expected, rtol=1e-5, atol=1e-5, err_msg=f"tile {tile}")


def test_validation_names_the_argument():
    x = jnp.zeros((2, 1, 4, 8))
    with pytest.raises(ValueError, match="q must have rank 4"):
        window_attention_pallas(x[0], x, x)
    with pytest.raises(ValueError, match="k must have the shape of q"):
        window_attention_pallas(x, x[:, :, :2], x)
    with pytest.raises(ValueError, match="k must have the dtype of q"):
        window_attention_pallas(x, x.astype(jnp.bfloat16), x)
    with pytest.raises(ValueError, match="v must be"):
        window_attention_pallas(x, x, x[:1])
    with pytest.raises(ValueError, match="segments must have shape"):
        window_attention_pallas(x, x, x, jnp.zeros((2, 3), jnp.int32))
    with pytest.raises(ValueError, match="segments must be integer"):
        window_attention_pallas(x, x, x, jnp.zeros((2, 4)))
    with pytest.raises(ValueError, match="block_groups must be a positive power of two"):
        window_attention_pallas(x, x, x, block_groups=3)
    with pytest.raises(ValueError, match="backward must be one of"):
        window_attention_pallas(x, x, x, backward="triton")
    assert window_attention_pallas(x[:0], x[:0], x[:0]).shape == (0, 1, 4, 8)


def _export_cuda(fn, *args):
    return export.export(
        jax.jit(fn),
        platforms=["cuda"],
        disabled_checks=[export.DisabledSafetyCheck.custom_call(TRITON_CALL)],
    )(*args)


def _export_tpu(fn, *args):
    return export.export(jax.jit(fn), platforms=["tpu"])(*args)


def _triton_export_available() -> str | None:
    """``None`` if this jaxlib lowers a trivial Pallas-Triton kernel for cuda, else why not."""

    def double(x_ref, o_ref):
        o_ref[...] = 2 * x_ref[...]

    def probe(x):
        return pl.pallas_call(
            double,
            out_shape=jax.ShapeDtypeStruct(x.shape, x.dtype),
            compiler_params=pltriton.CompilerParams(),
        )(x)

    try:
        _export_cuda(probe, jax.ShapeDtypeStruct((16, 16), jnp.float32))
    except Exception as err:  # any failure here is the toolchain's, not the kernel's
        return f"this jaxlib cannot lower Pallas-Triton kernels for cuda: {err!r:.200}"
    return None


@pytest.mark.parametrize(
    "shape, dtype, with_segments",
    [
        ((6, 2, 4, 8), jnp.float32, True),  # broadcast form
        ((6, 2, 12, 8), jnp.bfloat16, False),  # padded T, mask added
        ((6, 2, 64, 32), jnp.bfloat16, True),  # dot form, tile 2 (not a multiple of 8)
    ],
)
@pytest.mark.parametrize("platform", ["cuda", "tpu"])
def test_lowers_for_cuda_and_tpu(platform, shape, dtype, with_segments):
    """Lower (not compile: no GPU or TPU here) the kernel and its gradient for cuda
    (Triton) and TPU (Mosaic)."""
    if platform == "cuda":
        reason = _triton_export_available()
        if reason is not None:
            pytest.skip(reason)
        lower, call = _export_cuda, TRITON_CALL
    else:
        lower, call = _export_tpu, "tpu_custom_call"
    arrays = [jax.ShapeDtypeStruct(shape, dtype)] * 3
    segments = jax.ShapeDtypeStruct((shape[0], shape[2]), jnp.int32) if with_segments else None

    def forward(q, k, v, segments):
        return window_attention_pallas(q, k, v, segments, interpret=False)

    exported = lower(forward, *arrays, segments)
    assert re.findall(r"custom_call @([\w$.]+)", exported.mlir_module()) == [call]

    def loss(q, k, v, segments):
        return jnp.sum(jnp.sin(forward(q, k, v, segments).astype(jnp.float32)))

    # The forward kernel (its output is needed for sin') and the backward kernel.
    grad = lower(jax.grad(loss, argnums=(0, 1, 2)), *arrays, segments)
    assert grad.mlir_module().count(f"custom_call @{call}") == 2


def _forward_and_grads(module, params, x, cotangent):
    out, pullback = jax.vjp(module.apply, params, x)
    return out, pullback(cotangent)


@pytest.mark.parametrize(
    "make, shape",
    [
        (
            lambda impl: MultipoleAttention(2, 8, 2, window_stride=1, sampling_rate=4, impl=impl),
            (1, 9, 6, 8),
        ),
        (lambda impl: WindowAttention(2, 8, 4, shift=True, impl=impl), (2, 10, 6, 8)),
    ],
    ids=["multipole-k2-s1-r4", "window-shifted"],
)
def test_layers_pallas_matches_xla(make, shape):
    rng = np.random.default_rng(3)
    x, cotangent = normal(rng, shape), normal(rng, shape)
    # Random values for every parameter (LayerNorm included), without compiling an init.
    shapes = jax.eval_shape(make("xla").init, jax.random.key(0), x)
    params = jax.tree.map(lambda p: 0.3 * normal(rng, p.shape), shapes)
    run = jax.jit(_forward_and_grads, static_argnums=0)
    out, (d_params, d_x) = run(make("pallas"), params, x, cotangent)
    ref, (ref_params, ref_x) = run(make("xla"), params, x, cotangent)

    np.testing.assert_allclose(out, ref, rtol=1e-5, atol=1e-5)
    np.testing.assert_allclose(d_x, ref_x, rtol=1e-5, atol=1e-5)
    flat, ref_flat = jax.tree.leaves_with_path(d_params), jax.tree.leaves(ref_params)
    for (path, g), r in zip(flat, ref_flat, strict=True):
        scale = float(np.abs(r).max())
        np.testing.assert_allclose(
            g, r, rtol=1e-5, atol=1e-5 * scale, err_msg=jax.tree_util.keystr(path)
        )


def test_auto_falls_back_to_xla_with_one_warning_when_the_kernel_does_not_lower(monkeypatch):
    """``impl="auto"`` on a "GPU" where the kernel cannot lower (here: compiled, not
    interpreted, on CPU): the XLA path's output, one warning for the shape, not one per call."""
    monkeypatch.setattr(jax, "default_backend", lambda: "gpu")
    monkeypatch.setattr(attention, "_KERNEL_COMPILES", {})
    rng = np.random.default_rng(5)
    x = normal(rng, (1, 4, 4, 4))
    layer, xla = (MultipoleAttention(1, 4, 2, impl=impl) for impl in ("auto", "xla"))
    # Levels 4x4 and 2x2 share one window shape, so one kernel shape.
    shapes = jax.eval_shape(xla.init, jax.random.key(0), x)
    params = jax.tree.map(lambda p: 0.3 * normal(rng, p.shape), shapes)
    with pytest.warns(RuntimeWarning, match="falling back to the XLA path") as record:
        out = layer.apply(params, x)
        layer.apply(params, x + 1.0)
    assert len(record) == 1
    ref = xla.apply(params, x)
    np.testing.assert_allclose(out, ref, rtol=1e-6, atol=1e-6)
