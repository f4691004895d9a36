"""Multi-head softmax attention inside windows, and over the whole grid.

Shapes: grids are NHWC ``[B, H, W, C]``. The windows of a grid become groups of
tokens ``[G, heads, T, d]`` for the attention core (``segment_attention``): tokens
attend only to tokens of their group with the same *segment id* (``segments``
int32, negative = padding, never attended to). The core runs on XLA
(``segment_attention.attention_core``) or as the Pallas kernel
(``pallas_attention.window_attention_pallas``), chosen by ``impl``: ``"auto"`` takes
the kernel on GPU, unless it fails to lower or compile for a shape there; that shape then
takes the XLA path, with one ``RuntimeWarning`` per process and shape.

Parameters of one attention layer (a dict; ``layers.py`` creates them)::

    norm_scale, norm_bias: [C]             pre-LayerNorm
    qkv:   [C, 3, heads, head_dim]         no bias
    out:   [heads, head_dim, C]            output projection
    out_bias: [C]
    window_norm_scale, window_norm_bias: [C]   optional (``norm="double"``)

With ``window_norm_*`` present, each token goes through two LayerNorms, each with its
own weights, before the ``qkv`` projection: ``window_norm`` first, then ``norm``. That
is what the original PyTorch code does (a LayerNorm in its windowing module, then
another at the start of its attention block); ``convert.py`` loads its checkpoints.
Like every other step before the attention core, both norms act token by token, so
they are applied once on the grid, before the windows are cut.
"""

from __future__ import annotations

import warnings

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mano_jax.pallas_attention import window_attention_pallas
from mano_jax.segment_attention import attention_core, attention_core_reference
from mano_jax.windows import extract_windows, fold_windows

__all__ = [
    "IMPLS",
    "NORMS",
    "attention_core",
    "global_attention",
    "normalize",
    "project_out",
    "project_qkv",
    "resolve_impl",
    "windowed_attention",
    "windowed_attention_grids",
    "windowed_attention_reference",
]

IMPLS = ("auto", "xla", "pallas")
NORMS = ("single", "double")
LN_EPS = 1e-5


def resolve_impl(impl: str) -> str:
    """``"auto"`` is the Pallas kernel on GPU and the XLA path elsewhere."""
    if impl not in IMPLS:
        raise ValueError(f"impl must be one of {IMPLS}, got {impl!r}")
    if impl == "auto":
        return "pallas" if jax.default_backend() == "gpu" else "xla"
    return impl


# (q, k, v, segments) shapes and dtypes -> whether the kernel lowered and compiled.
_KERNEL_COMPILES: dict[tuple, bool] = {}


def _kernel_compiles(q: jax.Array, k: jax.Array, v: jax.Array, segments) -> bool:
    """Whether the Pallas kernel's forward and gradient lower and compile for these shapes
    on the default backend; checked once per process and shape, with one warning if not."""
    args = [jax.ShapeDtypeStruct(a.shape, a.dtype) for a in (q, k, v)]
    args.append(None if segments is None else jax.ShapeDtypeStruct(segments.shape, jnp.int32))
    key = tuple(None if a is None else (a.shape, str(a.dtype)) for a in args)
    if key not in _KERNEL_COMPILES:

        def loss(q, k, v, segments):
            out = window_attention_pallas(q, k, v, segments)
            return jnp.sum(jnp.sin(out.astype(jnp.float32)))

        try:
            jax.jit(jax.grad(loss, argnums=(0, 1, 2))).lower(*args).compile()
            _KERNEL_COMPILES[key] = True
        except Exception as err:  # any lowering or compilation failure of the kernel
            warnings.warn(
                f"impl='auto': the Pallas attention kernel failed to lower or compile for "
                f"q {q.shape} {q.dtype} on {jax.default_backend()} ({err!r:.300}); "
                "falling back to the XLA path for this shape",
                RuntimeWarning,
                stacklevel=2,
            )
            _KERNEL_COMPILES[key] = False
    return _KERNEL_COMPILES[key]


def _core(impl: str, q: jax.Array, k: jax.Array, v: jax.Array, segments) -> jax.Array:
    """The attention core ``impl`` names; ``"auto"`` falls back to XLA (once warned) where
    the kernel does not lower or compile."""
    if resolve_impl(impl) == "pallas" and (impl == "pallas" or _kernel_compiles(q, k, v, segments)):
        return window_attention_pallas(q, k, v, segments)
    return attention_core(q, k, v, segments)


def _layer_norm(x: jax.Array, scale: jax.Array, bias: jax.Array) -> jax.Array:
    x32 = x.astype(jnp.float32)
    mean = x32.mean(-1, keepdims=True)
    var = jnp.square(x32 - mean).mean(-1, keepdims=True)
    return ((x32 - mean) * jax.lax.rsqrt(var + LN_EPS) * scale + bias).astype(x.dtype)


def normalize(x: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """``[..., C] -> [..., C]``: the pre-LayerNorm (``window_norm`` then ``norm`` when
    ``params`` has ``window_norm_*``, kept in float32 between the two), in ``x.dtype``."""
    z = x
    if "window_norm_scale" in params:
        scale, bias = params["window_norm_scale"], params["window_norm_bias"]
        z = _layer_norm(x.astype(jnp.float32), scale, bias)
    return _layer_norm(z, params["norm_scale"], params["norm_bias"]).astype(x.dtype)


def project_qkv(x: jax.Array, params: dict[str, jax.Array]) -> jax.Array:
    """``[..., C] -> [..., 3, heads, head_dim]`` after the pre-LayerNorm (``normalize``)."""
    return jnp.einsum("...c,cshd->...shd", normalize(x, params), params["qkv"].astype(x.dtype))


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
    """
    [out] = windowed_attention_grids(
        [x], params, [window], [stride], None if segments is None else [segments], impl
    )
    return out


def windowed_attention_grids(
    grids: list[jax.Array],
    params: dict[str, jax.Array],
    windows: list[tuple[int, int]],
    strides: list[tuple[int, int]],
    segments: list[jax.Array] | None = None,
    impl: str = "auto",
) -> list[jax.Array]:
    """``windowed_attention`` of several grids with the same parameters, in one pass.

    Grid ``i`` (``[B_i, H_i, W_i, C]``) is cut into ``windows[i]`` every ``strides[i]``
    (with ``segments[i]``, ``[B_i, H_i, W_i]`` int32, when given). The windows of all
    grids that share a window and stride go through one ``qkv`` projection, one
    attention core call and one output projection (multipole attention's levels).

    Layout. Non-overlapping windows (stride = window) are cut from the normalised grid
    (``C`` channels, the transpose fuses with the LayerNorm), projected window by window
    straight to the core's ``[G, heads, T, d]`` and projected back before folding, so
    the only copies are the core's head-major layout and the fold. Overlapping windows
    (a gather) are cut after the ``qkv`` projection and averaged before the output
    projection: the projections are per token and commute with the average, so each
    token is projected once, not once per window that covers it.

    Returns:
      ``[B_i, H_i, W_i, C]`` per grid.
    """
    groups: dict[tuple, list[int]] = {}
    for i, key in enumerate(zip(windows, strides, strict=True)):
        groups.setdefault(key, []).append(i)
    outputs: list[jax.Array | None] = [None] * len(grids)
    for (window, stride), members in groups.items():
        tiles = window == stride
        qkv, seg, layouts = [], [], []
        for i in members:
            x = grids[i]
            z = normalize(x, params) if tiles else project_qkv(x, params)
            win = extract_windows(z.reshape(*x.shape[:3], -1), window, stride)
            layouts.append(win.shape[:3])  # (B, nH, nW)
            qkv.append(win.reshape(-1, window[0] * window[1], win.shape[-1]))
            if segments is not None:
                s = extract_windows(segments[i][..., None], window, stride)
                seg.append(s.reshape(-1, window[0] * window[1]))
        win = jnp.concatenate(qkv) if len(qkv) > 1 else qkv[0]  # [G, T, C or 3 heads d]
        _, heads, d = params["qkv"].shape[1:]
        if tiles:
            q, k, v = jnp.einsum("gtc,cshd->sghtd", win, params["qkv"].astype(win.dtype))
        else:
            g, t, _ = win.shape
            q, k, v = win.reshape(g, t, 3, heads, d).transpose(2, 0, 3, 1, 4)
        seg = (jnp.concatenate(seg) if len(seg) > 1 else seg[0]) if segments is not None else None
        o = _core(impl, q, k, v, seg)
        chex.assert_shape(o, (win.shape[0], heads, win.shape[1], d))
        if tiles:
            o = jnp.einsum("ghtd,hdc->gtc", o, params["out"].astype(o.dtype))
            o = o + params["out_bias"].astype(o.dtype)
        else:
            o = o.transpose(0, 2, 1, 3).reshape(o.shape[0], o.shape[2], heads * d)
        start = 0
        for i, layout in zip(members, layouts, strict=True):
            b, h, w, _ = grids[i].shape
            count = int(np.prod(layout))
            part = o[start : start + count].reshape(*layout, *window, o.shape[-1])
            out = fold_windows(part, (h, w), stride)
            if not tiles:
                out = project_out(out.reshape(b, h, w, heads, d), params)
            outputs[i] = out
            start += count
    return outputs


def global_attention(x: jax.Array, params: dict[str, jax.Array], impl: str = "xla") -> jax.Array:
    """Every token attends to every token of its image (ViT-style): ``[B, H, W, C]``.

    Time and memory grow as ``(H W)^2``; this is the quadratic baseline.
    """
    _, h, w, _ = x.shape
    return windowed_attention(x, params, (h, w), (h, w), impl=impl)


def windowed_attention_reference(
    x,
    params: dict,
    window: tuple[int, int],
    stride: tuple[int, int],
    segments=None,
) -> np.ndarray:
    """``windowed_attention`` written out window by window, in float64 NumPy.

    For every window position ``(i, j)`` (every ``stride``): pre-LayerNorm of the
    window's tokens (after the ``window_norm`` LayerNorm when ``params`` has it),
    ``q, k, v`` projections, softmax attention within segments
    (``segment_attention.attention_core_reference``) and the output projection with its
    bias; each grid position is then the mean over the windows that cover it. For
    tests and spot checks: Python loops, no JAX.

    Args:
      x: ``[B, H, W, C]``.
      params: attention parameters (module docstring).
      window, stride: ``(kh, kw)`` and ``(sh, sw)``; the windows must tile the grid:
        ``(H - kh) % sh == 0`` and ``(W - kw) % sw == 0``.
      segments: ``[B, H, W]`` integer segment ids (negative = padding) or ``None``.

    Returns:
      ``[B, H, W, C]`` float64.
    """
    x = np.asarray(x, np.float64)
    p = {name: np.asarray(value, np.float64) for name, value in params.items()}
    b, h, w, c = x.shape
    (kh, kw), (sh, sw) = window, stride
    if kh > h or kw > w or (h - kh) % sh or (w - kw) % sw:
        raise ValueError(
            f"windows {window} with stride {stride} must tile the {h}x{w} grid exactly"
        )

    def layer_norm(x, scale, bias):
        mean = x.mean(-1, keepdims=True)
        var = ((x - mean) ** 2).mean(-1, keepdims=True)
        return (x - mean) / np.sqrt(var + LN_EPS) * scale + bias

    if "window_norm_scale" in p:
        x = layer_norm(x, p["window_norm_scale"], p["window_norm_bias"])
    z = layer_norm(x, p["norm_scale"], p["norm_bias"])
    total = np.zeros((b, h, w, c))
    count = np.zeros((h, w, 1))
    for i in range(0, h - kh + 1, sh):
        for j in range(0, w - kw + 1, sw):
            tokens = z[:, i : i + kh, j : j + kw].reshape(b, kh * kw, c)
            q, k, v = (np.einsum("btc,chd->bhtd", tokens, p["qkv"][:, n]) for n in range(3))
            seg = None
            if segments is not None:
                seg = np.asarray(segments)[:, i : i + kh, j : j + kw].reshape(b, kh * kw)
            o = attention_core_reference(q, k, v, seg)  # [B, heads, T, d]
            y = np.einsum("bhtd,hdc->btc", o, p["out"]) + p["out_bias"]
            total[:, i : i + kh, j : j + kw] += y.reshape(b, kh, kw, c)
            count[i : i + kh, j : j + kw] += 1
    return total / count
