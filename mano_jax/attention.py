"""Multi-head softmax attention inside windows, and over the whole grid.

Shapes: grids are NHWC ``[B, H, W, C]``. The attention core works on groups of
tokens ``[G, heads, T, d]`` (a group is one window of one image, or a whole
image for global attention); tokens attend only to tokens of their group with
the same *segment id* (``segments: [G, T]`` int32, negative = padding, never
attended to). Segments express both the padding mask and Swin's shifted-window
mask with one array of ``G * T`` integers instead of a ``[G, T, T]`` mask.

Parameters of one attention layer (a dict; ``layers.py`` creates them)::

    norm_scale, norm_bias: [C]             pre-LayerNorm
    qkv:   [C, 3, heads, head_dim]         no bias
    out:   [heads, head_dim, C]            output projection
    out_bias: [C]
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from mano_jax.windows import extract_windows, fold_windows

IMPLS = ("auto", "xla", "pallas")
LN_EPS = 1e-5


def attention_core(
    q: jax.Array, k: jax.Array, v: jax.Array, segments: jax.Array | None = None
) -> jax.Array:
    """Softmax attention ``softmax(q k^T / sqrt(d)) v`` within segments (XLA reference).

    Args:
      q, k, v: ``[G, heads, T, d]``.
      segments: ``[G, T]`` int32 or ``None``; query ``t`` attends to key ``u`` iff
        ``segments[t] == segments[u] >= 0``. Queries with no key get zeros.

    Returns:
      ``[G, heads, T, d]`` in the dtype of ``v``; logits and softmax in float32.
    """
    scale = q.shape[-1] ** -0.5
    logits = jnp.einsum("ghtd,ghud->ghtu", q, k, preferred_element_type=jnp.float32) * scale
    if segments is not None:
        allowed = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] >= 0)
        allowed = allowed[:, None]
        logits = jnp.where(allowed, logits, -jnp.inf)
        has_key = jnp.any(allowed, axis=-1, keepdims=True)
        logits = jnp.where(has_key, logits, 0.0)
    weights = jax.nn.softmax(logits, axis=-1)
    if segments is not None:
        weights = jnp.where(has_key, weights, 0.0)
    out = jnp.einsum(
        "ghtu,ghud->ghtd", weights.astype(v.dtype), v, preferred_element_type=jnp.float32
    )
    return out.astype(v.dtype)


def resolve_impl(impl: str) -> str:
    """``"auto"`` is the Pallas kernel on GPU and the XLA path elsewhere."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "pallas" if jax.default_backend() == "gpu" else "xla"
    return impl


def _core(impl: str):
    if resolve_impl(impl) == "pallas":
        from mano_jax.pallas_attention import window_attention_pallas

        return window_attention_pallas
    return attention_core


def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + LN_EPS) * scale + bias).astype(x.dtype)


def project_qkv(x: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """``[..., C] -> [..., 3, heads, head_dim]`` after the pre-LayerNorm."""
    z = _layer_norm(x, params["norm_scale"], params["norm_bias"])
    return jnp.einsum("...c,cshd->...shd", z, params["qkv"].astype(x.dtype))


def project_out(o: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """``[..., heads, head_dim] -> [..., C]``."""
    return jnp.einsum("...hd,hdc->...c", o, params["out"].astype(o.dtype)) + params[
        "out_bias"
    ].astype(o.dtype)


def windowed_attention(
    x: jax.Array,
    params: dict[str, jax.Array],
    window: tuple[int, int],
    stride: tuple[int, int],
    segments: jax.Array | None = None,
    impl: str = "auto",
) -> jax.Array:
    """Attention inside ``window``-sized windows taken every ``stride``, folded back.

    Args:
      x: ``[B, H, W, C]``; the windows must tile it exactly (see ``windows.py``).
      params: attention parameters (module docstring).
      window, stride: ``(kh, kw)`` and ``(sh, sw)``.
      segments: ``[B, H, W]`` int32 segment ids (negative = padding) or ``None``.
      impl: ``"xla"``, ``"pallas"`` or ``"auto"``.

    Returns:
      ``[B, H, W, C]``; where windows overlap, the mean of their outputs.

    The projections are per token, so they are applied on the grid (once per
    token, not once per window copy) and commute with the window average.
    """
    b, h, w, _ = x.shape
    qkv = project_qkv(x, params)  # [B, H, W, 3, heads, d]
    _, _, _, _, heads, d = qkv.shape
    win = extract_windows(qkv.reshape(b, h, w, 3 * heads * d), window, stride)
    _, nh, nw, kh, kw, _ = win.shape
    groups, tokens = b * nh * nw, kh * kw
    win = win.reshape(groups, tokens, 3, heads, d).transpose(2, 0, 3, 1, 4)
    seg = None
    if segments is not None:
        seg = extract_windows(segments[..., None], window, stride).reshape(groups, tokens)
    o = _core(impl)(win[0], win[1], win[2], seg)  # [G, heads, T, d]
    o = o.transpose(0, 2, 1, 3).reshape(b, nh, nw, kh, kw, heads * d)
    o = fold_windows(o, (h, w), stride).reshape(b, h, w, heads, d)
    return project_out(o, params)


def global_attention(x: jax.Array, params: dict[str, jax.Array], impl: str = "xla") -> jax.Array:
    """Every token attends to every token of its image (ViT-style): ``[B, H, W, C]``.

    Time and memory grow as ``(H W)^2``; this is the quadratic baseline.
    """
    _, h, w, _ = x.shape
    return windowed_attention(x, params, (h, w), (h, w), impl=impl)
