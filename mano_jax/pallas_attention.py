"""Fused windowed attention as Pallas kernels (forward and backward), tested against XLA.

``window_attention_pallas(q, k, v, segments)`` computes exactly what
``segment_attention.attention_core`` computes,

    o[g, h, t] = sum_u softmax_u(s[g, h, t, :]) v[g, h, u],
    s[g, h, t, u] = q[g, h, t] . k[g, h, u] / sqrt(d)   (-inf where masked),

with key ``u`` visible to query ``t`` iff ``segments[g, t] == segments[g, u] >= 0``
and zeros for queries that see no key. One program of the grid
``(heads, G / tile)`` loads ``tile`` windows of one head of q, k, v (and their
segment ids), forms the ``[tile, T, T]`` scores in float32, masks them, takes a
numerically stable softmax and writes the ``[tile, T, d]`` output. No
``[G, heads, T, T]`` array is ever written to HBM.

Layout. The kernel reads the caller's ``[G, heads, T, d]`` arrays directly:
the BlockSpec squeezes the head axis, so one block is ``(tile, T, d)`` of one
head and nothing is transposed. Outside the kernel, ``G`` is padded up to a
multiple of the tile, and ``T`` and ``d`` up to powers of two (Triton needs
power-of-two block sizes); padded tokens and windows get segment ``-1`` (never
attended to, output zero), padded feature columns are zero (they add nothing to
``q . k``; the scale uses the true ``d``). Padding is sliced off the output.

Scores. Triton's ``dot`` needs at least 16 rows and a contraction of at least
16, so two forms are used, chosen statically from the padded sizes:

* ``T < 16`` (windows of 1, 2, 4 or 8 tokens): broadcast multiply and sum,
  ``(q[:, :, None, :] * k[:, None, :, :]).sum(-1)`` on the whole tile at once,
  and the same for ``weights @ v``.
* ``T >= 16``: a loop over the tile's windows, each a 2-D ``dot`` of
  ``[T, d] x [d, T]`` and ``[T, T] x [T, d]`` (``d`` padded to at least 16).

Both forms implement the three contractions ``a b^T``, ``a b`` and ``a^T b``
(``_BroadcastOps``, ``_DotOps``), and the forward and backward math is written
once on top of them.

Tile rule (``block_groups=None``). The tile is the largest power of two such
that one program's largest array stays within ``4096`` elements: the
``[tile, T, T, d]`` product of the broadcast form, or the ``[tile, T, d]``
block of the dot form, and never more than ``G`` rounded up to a power of two.
So ``T = 4, d = 16`` gives 16 windows per program, ``T = 16, d = 16`` gives 16
and ``T = 64, d = 32`` gives 2. The backward kernel uses the same tile. Programs
run 4 warps, 8 for ``T = 128`` (a ``[128, 128]`` float32 score block).

Backward. ``jax.custom_vjp`` with a second kernel on the same grid and blocks:
each program recomputes its windows' softmax weights ``w`` from q and k and
writes ``dq = ds k / sqrt(d)``, ``dk = ds^T q / sqrt(d)`` and ``dv = w^T do``,
where ``ds = w (dw - rowsum(w dw))`` and ``dw = do v^T``. A window's keys are
only seen by its own queries, so nothing is accumulated across programs, and
only q, k, v and the segment ids are kept for the backward pass. ``dw`` is
rounded to the dtype of ``v``, everything else stays float32 until the cast to
the input dtypes.
``backward="xla"`` instead recomputes the backward pass through the XLA
reference (``jax.vjp(attention_core, ...)``), which materialises
``[G, heads, T, T]`` weights. ``segments`` is integer and gets no cotangent.

Long windows. The kernel keeps a whole window's ``[T, T]`` scores in one
program, which suits windows (``T = k^2`` up to ``MAX_KERNEL_TOKENS = 128``);
for longer groups (global attention over a whole image) the function returns
``attention_core`` (the XLA path, with its own gradient) instead of compiling a
kernel that would not fit on chip.

Backends. ``interpret=None`` compiles the kernel when the default backend is GPU
and runs it in Pallas interpret mode elsewhere (CPU, TPU), which is how it is
tested. The ``pallas_call`` carries Triton's settings (warps, stages) on cuda and
rocm and Mosaic's defaults on TPU (``jax.lax.platform_dependent``); the segment
ids travel as ``[G, 1, T]`` so that every block's last two dimensions are whole,
as Mosaic requires for any tile. ``attention.resolve_impl("auto")`` picks this
kernel only on GPU, and ``impl="auto"`` falls back to the XLA path (one warning
per shape) where the kernel fails to lower or compile.

What has run where: nothing here has run on a GPU or a TPU (the project's machine
has neither). On CPU the forward and backward kernels run in interpret mode and
agree with ``attention_core`` (tests). The forward kernel and the gradient
(forward + backward kernels) lower through ``jax.export`` for ``cuda`` (Triton
custom call) and for ``tpu`` (Mosaic custom call) on a CPU machine; the tests keep
both exports. Lowering is not compiling: Triton's and Mosaic's own compilers, and
any timing, still need the hardware.

Roundings. In float32 the kernel and ``attention_core`` agree to float32
tolerance. ``attention_core`` normalises the softmax after the product with ``v``
and scales ``q`` before ``q k^T``; the kernel normalises the weights first (both
are the same map): in bfloat16 their roundings differ within bfloat16 tolerance.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from jax.experimental import pallas as pl
from jax.experimental.pallas import triton as pltriton

from mano_jax.segment_attention import attention_core

MIN_DOT = 16  # smallest rows / contraction of a Triton dot
TILE_BUDGET = 4096  # elements of the largest per-program array, see the tile rule
BACKWARDS = ("pallas", "xla")
MAX_KERNEL_TOKENS = 128  # longer groups go to the XLA path (module docstring)


def _next_pow2(n: int) -> int:
    return 1 << max(int(n) - 1, 0).bit_length()


def _padded_sizes(tokens: int, qk_dim: int, v_dim: int) -> tuple[int, int, int, bool]:
    """``(T', d', dv', use_dot)``: power-of-two sizes the kernel works on."""
    tp = _next_pow2(tokens)
    use_dot = tp >= MIN_DOT
    floor = MIN_DOT if use_dot else 1
    return tp, max(floor, _next_pow2(qk_dim)), max(floor, _next_pow2(v_dim)), use_dot


def default_block_groups(groups: int, tokens: int, qk_dim: int, v_dim: int) -> int:
    """Windows per program under the tile rule of the module docstring."""
    tp, dp, dvp, use_dot = _padded_sizes(tokens, qk_dim, v_dim)
    per_window = tp * max(dp, dvp) * (1 if use_dot else tp)
    tile = 1
    while 2 * tile * per_window <= TILE_BUDGET and 2 * tile <= _next_pow2(groups):
        tile *= 2
    return tile


class _BroadcastOps:
    """Batched ``[tile, ...]`` contractions as broadcast multiply and sum, in float32."""

    @staticmethod
    def nt(a, b):  # [n, t, c] x [n, u, c] -> [n, t, u]
        return jnp.sum(_f32(a)[:, :, None, :] * _f32(b)[:, None, :, :], axis=-1)

    @staticmethod
    def nn(a, b):  # [n, t, u] x [n, u, e] -> [n, t, e]
        return jnp.sum(_f32(a)[:, :, :, None] * _f32(b)[:, None, :, :], axis=2)

    @staticmethod
    def tn(a, b):  # [n, t, u] x [n, t, e] -> [n, u, e]
        return jnp.sum(_f32(a)[:, :, :, None] * _f32(b)[:, :, None, :], axis=1)


class _DotOps:
    """The same contractions for one window as 2-D ``dot``s accumulating in float32."""

    @staticmethod
    def _dot(a, b, contract):
        return jax.lax.dot_general(a, b, (contract, ((), ())), preferred_element_type=jnp.float32)

    @classmethod
    def nt(cls, a, b):  # [t, c] x [u, c] -> [t, u]
        return cls._dot(a, b, ((1,), (1,)))

    @classmethod
    def nn(cls, a, b):  # [t, u] x [u, e] -> [t, e]
        return cls._dot(a, b, ((1,), (0,)))

    @classmethod
    def tn(cls, a, b):  # [t, u] x [t, e] -> [u, e]
        return cls._dot(a, b, ((0,), (0,)))


def _f32(x: jax.Array) -> jax.Array:
    return x.astype(jnp.float32)


def _allowed(seg: jax.Array | None) -> jax.Array | None:
    """``[..., T]`` segment ids -> ``[..., T, T]`` mask of the keys each query may see."""
    if seg is None:
        return None
    key = seg[..., None, :]
    return (seg[..., :, None] == key) & (key >= 0)


def _softmax(s: jax.Array, allowed: jax.Array | None) -> jax.Array:
    """Stable softmax over the last axis of float32 ``s``; rows with no allowed key give 0."""
    if allowed is None:
        p = jnp.exp(s - jnp.max(s, axis=-1, keepdims=True))
        return p / jnp.sum(p, axis=-1, keepdims=True)
    s = jnp.where(allowed, s, jnp.finfo(jnp.float32).min)
    p = jnp.where(allowed, jnp.exp(s - jnp.max(s, axis=-1, keepdims=True)), 0.0)
    total = jnp.sum(p, axis=-1, keepdims=True)
    return p / jnp.where(total > 0.0, total, 1.0)


def _attend(ops, q, k, v, allowed, scale):
    """Attention output in float32; the weights are rounded to the dtype of ``v``."""
    w = _softmax(ops.nt(q, k) * scale, allowed)
    return ops.nn(w.astype(v.dtype), v)


def _attend_grads(ops, q, k, v, d_out, allowed, scale):
    """``(dq, dk, dv)`` in float32: the reverse pass of ``attention_core`` for one block.

    ``o = w v`` with ``w = softmax(s)`` and ``s = q k^T scale``; with ``dw = do v^T``
    (rounded to the dtype of ``v`` as in the reference), ``ds = w (dw - rowsum(w dw))``,
    ``dq = ds k scale``, ``dk = ds^T q scale`` and ``dv = w^T do``.
    """
    w = _softmax(ops.nt(q, k) * scale, allowed)
    d_v = ops.tn(w.astype(v.dtype), d_out)
    d_w = _f32(ops.nt(d_out, v).astype(v.dtype))
    d_s = w * (d_w - jnp.sum(w * d_w, axis=-1, keepdims=True)) * scale
    return ops.nn(d_s, _f32(k)), ops.tn(d_s, _f32(q)), d_v


def _over_windows(use_dot: bool, tile: int, body) -> None:
    """Run ``body(index)`` on the whole tile (broadcast form) or window by window (dot form)."""
    if not use_dot:
        body(...)
        return

    def step(j, carry):
        body(j)
        return carry

    jax.lax.fori_loop(0, tile, step, 0)


def _forward_kernel(*refs, scale: float, use_dot: bool, masked: bool):
    q_ref, k_ref, v_ref, *seg, o_ref = refs
    ops = _DotOps if use_dot else _BroadcastOps

    def body(i):
        allowed = _allowed(seg[0][i]) if masked else None
        o = _attend(ops, q_ref[i], k_ref[i], v_ref[i], allowed, scale)
        o_ref[i] = o.astype(o_ref.dtype)

    _over_windows(use_dot, q_ref.shape[0], body)


def _backward_kernel(*refs, scale: float, use_dot: bool, masked: bool):
    q_ref, k_ref, v_ref, *seg, do_ref, dq_ref, dk_ref, dv_ref = refs
    ops = _DotOps if use_dot else _BroadcastOps

    def body(i):
        allowed = _allowed(seg[0][i]) if masked else None
        grads = _attend_grads(ops, q_ref[i], k_ref[i], v_ref[i], do_ref[i], allowed, scale)
        for ref, g in zip((dq_ref, dk_ref, dv_ref), grads, strict=True):
            ref[i] = g.astype(ref.dtype)

    _over_windows(use_dot, q_ref.shape[0], body)


def _window_call(q, k, v, segments, d_out, tile: int, interpret: bool) -> list[jax.Array]:
    """Pad, run one kernel over the ``(heads, G / tile)`` grid, slice the padding off.

    ``d_out is None``: the forward kernel, ``[out]``. Otherwise ``d_out`` is the
    output cotangent and the backward kernel gives ``[dq, dk, dv]``.
    """
    groups, heads, tokens, qk_dim = q.shape
    v_dim = v.shape[-1]
    tp, dp, dvp, use_dot = _padded_sizes(tokens, qk_dim, v_dim)
    gp = -(-groups // tile) * tile
    masked = segments is not None or tp != tokens

    def pad(x, width):
        return jnp.pad(x, ((0, gp - groups), (0, 0), (0, tp - tokens), (0, width - x.shape[-1])))

    def spec(width):
        return pl.BlockSpec((tile, None, tp, width), lambda h, i: (i, h, 0, 0))

    operands = [pad(q, dp), pad(k, dp), pad(v, dvp)]
    in_specs = [spec(dp), spec(dp), spec(dvp)]
    if masked:
        seg = (
            jnp.zeros((groups, tokens), jnp.int32)
            if segments is None
            else segments.astype(jnp.int32)
        )
        seg = jnp.pad(seg, ((0, gp - groups), (0, tp - tokens)), constant_values=-1)
        # [G, 1, T]: the block's last two dimensions are whole (Mosaic's rule, for any tile).
        operands.append(seg[:, None, :])
        in_specs.append(pl.BlockSpec((tile, None, tp), lambda h, i: (i, 0, 0)))
    if d_out is None:
        kernel, name, like = _forward_kernel, "window_attention_fwd", [(v, dvp)]
    else:
        operands.append(pad(d_out, dvp))
        in_specs.append(spec(dvp))
        kernel, name, like = _backward_kernel, "window_attention_bwd", [(q, dp), (k, dp), (v, dvp)]

    def call(compiler_params):
        return pl.pallas_call(
            functools.partial(kernel, scale=float(qk_dim) ** -0.5, use_dot=use_dot, masked=masked),
            out_shape=[jax.ShapeDtypeStruct((gp, heads, tp, w), x.dtype) for x, w in like],
            grid=(heads, gp // tile),
            in_specs=in_specs,
            out_specs=[spec(w) for _, w in like],
            compiler_params=compiler_params,
            interpret=interpret,
            name=name,
        )(*operands)

    def triton():
        return call(pltriton.CompilerParams(num_warps=8 if tp >= 128 else 4, num_stages=1))

    # Triton's settings where the kernel lowers to Triton; Mosaic (TPU) takes its defaults.
    if interpret:
        outs = call(None)
    else:
        outs = jax.lax.platform_dependent(cuda=triton, rocm=triton, default=lambda: call(None))
    return [o[:groups, :, :tokens, : x.shape[-1]] for o, (x, _) in zip(outs, like, strict=True)]


@functools.partial(jax.custom_vjp, nondiff_argnums=(4, 5, 6))
def _attention(q, k, v, segments, tile, interpret, backward):
    del backward
    [out] = _window_call(q, k, v, segments, None, tile, interpret)
    return out


def _attention_fwd(q, k, v, segments, tile, interpret, backward):
    return _attention(q, k, v, segments, tile, interpret, backward), (q, k, v, segments)


def _attention_bwd(tile, interpret, backward, residuals, d_out):
    q, k, v, segments = residuals
    if backward == "xla":
        _, pullback = jax.vjp(lambda q, k, v: attention_core(q, k, v, segments), q, k, v)
        return (*pullback(d_out), None)
    return (*_window_call(q, k, v, segments, d_out, tile, interpret), None)


_attention.defvjp(_attention_fwd, _attention_bwd)


def _check_inputs(q, k, v, segments) -> None:
    for name, x in (("q", q), ("k", k), ("v", v)):
        if getattr(x, "ndim", None) != 4:
            raise ValueError(
                f"{name} must have rank 4 [groups, heads, tokens, head_dim], "
                f"got shape {getattr(x, 'shape', type(x))}"
            )
        if not jnp.issubdtype(x.dtype, jnp.floating):
            raise ValueError(f"{name} must be floating point, got dtype {x.dtype}")
    if k.shape != q.shape:
        raise ValueError(f"k must have the shape of q {q.shape}, got {k.shape}")
    if k.dtype != q.dtype:
        raise ValueError(f"k must have the dtype of q ({q.dtype}), got {k.dtype}")
    if v.shape[:3] != q.shape[:3]:
        raise ValueError(
            f"v must be [groups, heads, tokens, value_dim] with [groups, heads, tokens] = "
            f"{q.shape[:3]} as in q, got {v.shape}"
        )
    if segments is not None:
        expected = (q.shape[0], q.shape[2])
        if getattr(segments, "shape", None) != expected:
            raise ValueError(
                f"segments must have shape [groups, tokens] = {expected}, "
                f"got {getattr(segments, 'shape', type(segments))}"
            )
        if not jnp.issubdtype(segments.dtype, jnp.integer):
            raise ValueError(f"segments must be integer, got dtype {segments.dtype}")


def window_attention_pallas(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    segments: jax.Array | None = None,
    *,
    block_groups: int | None = None,
    interpret: bool | None = None,
    backward: str = "pallas",
) -> jax.Array:
    """Softmax attention within windows and segments, as a fused Pallas kernel.

    Same contract as ``segment_attention.attention_core`` (see the module docstring).

    Args:
      q, k: ``[G, heads, T, d]``, floating point, same shape and dtype.
      v: ``[G, heads, T, dv]``.
      segments: ``[G, T]`` integer or ``None``; query ``t`` attends to key ``u``
        iff ``segments[g, t] == segments[g, u] >= 0``. Queries with no key get zeros.
      block_groups: windows per program, a power of two (``None``: the tile rule).
      interpret: Pallas interpret mode (``None``: interpret unless the default
        backend is GPU).
      backward: ``"pallas"`` (the fused backward kernel) or ``"xla"`` (reverse
        mode through ``attention_core``) for the gradient.

    Returns:
      ``[G, heads, T, dv]`` in the dtype of ``v``; scores and softmax in float32.
      Groups of more than ``MAX_KERNEL_TOKENS`` tokens go through ``attention_core``.
    """
    _check_inputs(q, k, v, segments)
    if backward not in BACKWARDS:
        raise ValueError(f"backward must be one of {BACKWARDS}, got {backward!r}")
    groups, _, tokens, qk_dim = q.shape
    if block_groups is None:
        block_groups = default_block_groups(groups, tokens, qk_dim, v.shape[-1])
    elif (
        not isinstance(block_groups, int | np.integer)
        or block_groups < 1
        or block_groups & (block_groups - 1)
    ):
        raise ValueError(f"block_groups must be a positive power of two, got {block_groups!r}")
    if interpret is None:
        interpret = jax.default_backend() != "gpu"
    if 0 in q.shape or v.shape[-1] == 0:
        return jnp.zeros(v.shape, v.dtype)
    if _next_pow2(tokens) > MAX_KERNEL_TOKENS:
        return attention_core(q, k, v, segments)
    return _attention(q, k, v, segments, int(block_groups), bool(interpret), backward)
