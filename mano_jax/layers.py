"""Flax Linen modules: multipole attention, its window and global baselines, the block.

The modules own the parameters and call the pure functions of ``attention.py``
and ``multipole.py``. All map ``x: [B, H, W, C] -> [B, H, W, C]``.
"""

from __future__ import annotations

import flax.linen as nn
import jax
import jax.numpy as jnp

from mano_jax.attention import IMPLS, NORMS, global_attention, resolve_impl, windowed_attention
from mano_jax.checks import check_choice, check_int, check_optional_int, check_positive
from mano_jax.multipole import (
    DOWN,
    UP,
    check_grid,
    check_window,
    multipole_attention,
    padded_side,
)


def _check_heads(num_heads: int, head_dim: int | None, impl: str, norm: str) -> None:
    check_int(num_heads, "num_heads")
    check_optional_int(head_dim, "head_dim")
    check_choice(impl, "impl", IMPLS)
    check_choice(norm, "norm", NORMS)


def _head_dim(channels: int, num_heads: int, head_dim: int | None) -> int:
    """``head_dim``, or ``channels // num_heads`` when it is ``None``."""
    if head_dim is not None:
        return head_dim
    if channels % num_heads:
        raise ValueError(
            f"num_heads {num_heads} must divide the {channels} input channels "
            "when head_dim is not given"
        )
    return channels // num_heads


def attention_params(
    module: nn.Module, channels: int, num_heads: int, head_dim: int, dtype
) -> dict[str, jax.Array]:
    """Declare one attention layer's parameters on ``module`` (see ``attention.py``)."""
    return {
        "norm_scale": module.param("norm_scale", nn.initializers.ones, (channels,), dtype),
        "norm_bias": module.param("norm_bias", nn.initializers.zeros, (channels,), dtype),
        "qkv": module.param(
            "qkv",
            nn.initializers.lecun_normal(in_axis=0, out_axis=(1, 2, 3)),
            (channels, 3, num_heads, head_dim),
            dtype,
        ),
        "out": module.param(
            "out",
            nn.initializers.lecun_normal(in_axis=(0, 1), out_axis=2),
            (num_heads, head_dim, channels),
            dtype,
        ),
        "out_bias": module.param("out_bias", nn.initializers.zeros, (channels,), dtype),
    }


def add_window_norm(
    module: nn.Module, params: dict[str, jax.Array], channels: int, dtype, norm: str
) -> dict[str, jax.Array]:
    """With ``norm="double"``, declare ``window_norm_scale`` and ``window_norm_bias``
    (``[C]``, ones and zeros) on ``module`` and add them to ``params``.

    Call it after every other parameter of the module: Flax draws the initial values
    from keys that follow the order of declaration, so declaring these last leaves the
    other parameters' initial values the same as with ``norm="single"``.
    """
    if norm == "double":
        params["window_norm_scale"] = module.param(
            "window_norm_scale", nn.initializers.ones, (channels,), dtype
        )
        params["window_norm_bias"] = module.param(
            "window_norm_bias", nn.initializers.zeros, (channels,), dtype
        )
    return params


class MultipoleAttention(nn.Module):
    """Multipole attention layer (``multipole.multipole_attention``).

    Attributes:
      num_heads: attention heads.
      head_dim: channels per head (``None``: ``C // num_heads``).
      window_size: ``k``; window_stride: ``s`` dividing ``k`` (default ``k``).
      sampling_rate: ``r >= 2``.
      down: ``"conv"`` (strided ``r x r`` conv, no bias) or ``"avg"``.
      up: ``"conv"`` (transposed ``r x r`` conv, no bias) or ``"nearest"``.
      impl: ``"auto" | "xla" | "pallas"``.
      num_levels: ``None`` derives the level count from the input size at call time;
        an int fixes it for every input size (as the original PyTorch code does).
      norm: ``"single"`` (one pre-LayerNorm) or ``"double"`` (the original's two
        LayerNorms, each with its own weights: ``window_norm_*`` then ``norm_*``).
    """

    num_heads: int
    head_dim: int | None
    window_size: int
    window_stride: int | None = None
    sampling_rate: int = 2
    down: str = "conv"
    up: str = "conv"
    impl: str = "auto"
    num_levels: int | None = None
    param_dtype: jnp.dtype = jnp.float32
    norm: str = "single"

    def __post_init__(self) -> None:
        _check_heads(self.num_heads, self.head_dim, self.impl, self.norm)
        check_window(self.window_size, self.window_stride)
        check_int(self.sampling_rate, "sampling_rate", minimum=2)
        check_choice(self.down, "down", DOWN)
        check_choice(self.up, "up", UP)
        check_optional_int(self.num_levels, "num_levels")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_grid(x, self.window_size)
        c, r = x.shape[-1], self.sampling_rate
        d = _head_dim(c, self.num_heads, self.head_dim)
        params = attention_params(self, c, self.num_heads, d, self.param_dtype)
        if self.down == "conv":
            params["down"] = self.param(
                "down",
                nn.initializers.lecun_normal(in_axis=(0, 1, 2), out_axis=3),
                (r, r, c, c),
                self.param_dtype,
            )
        if self.up == "conv":
            params["up"] = self.param(
                "up",
                nn.initializers.lecun_normal(in_axis=2, out_axis=(0, 1, 3)),
                (r, r, c, c),
                self.param_dtype,
            )
        add_window_norm(self, params, c, self.param_dtype, self.norm)
        return multipole_attention(
            x,
            params,
            window_size=self.window_size,
            window_stride=self.window_stride,
            sampling_rate=r,
            num_levels=self.num_levels,
            impl=self.impl,
        )


def _shift_segments(height: int, width: int, window: int, shift: int) -> jax.Array:
    """Swin's region labels on a grid rolled by ``-shift``: ``[H, W]`` int32.

    Tokens that wrapped around the border carry a different label from their
    window neighbours, so they do not attend to each other.
    """

    def bands(n):
        return jnp.where(jnp.arange(n) < n - window, 0, jnp.where(jnp.arange(n) < n - shift, 1, 2))

    return (3 * bands(height)[:, None] + bands(width)[None, :]).astype(jnp.int32)


class WindowAttention(nn.Module):
    """Single-level window attention (Swin-style), the linear-cost baseline.

    Inputs whose sides are not multiples of ``window_size`` are zero-padded; the
    padding is masked out and cropped. ``shift=True`` rolls the grid by half a
    window first (Swin's shifted windows, with its wrap-around mask). Each
    output depends only on the tokens of its own window. ``norm`` as for
    ``MultipoleAttention``.
    """

    num_heads: int
    head_dim: int | None
    window_size: int
    shift: bool = False
    impl: str = "auto"
    param_dtype: jnp.dtype = jnp.float32
    norm: str = "single"

    def __post_init__(self) -> None:
        _check_heads(self.num_heads, self.head_dim, self.impl, self.norm)
        check_window(self.window_size, None)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        k = self.window_size
        check_grid(x, k)
        b, h, w, c = x.shape
        d = _head_dim(c, self.num_heads, self.head_dim)
        params = attention_params(self, c, self.num_heads, d, self.param_dtype)
        add_window_norm(self, params, c, self.param_dtype, self.norm)
        hp, wp = (padded_side(n, k, k, 2, 1) for n in (h, w))
        z = jnp.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
        segments = jnp.zeros((hp, wp), jnp.int32)
        shift = k // 2 if self.shift else 0
        if shift:
            z = jnp.roll(z, (-shift, -shift), axis=(1, 2))
            segments = _shift_segments(hp, wp, k, shift)
        valid = jnp.roll(
            jnp.zeros((hp, wp), bool).at[:h, :w].set(True), (-shift, -shift), axis=(0, 1)
        )
        segments = jnp.broadcast_to(jnp.where(valid, segments, -1), (b, hp, wp))
        masked = shift or (hp, wp) != (h, w)
        out = windowed_attention(z, params, (k, k), (k, k), segments if masked else None, self.impl)
        if shift:
            out = jnp.roll(out, (shift, shift), axis=(1, 2))
        return out[:, :h, :w]


class GlobalAttention(nn.Module):
    """Every token attends to every token (ViT-style), the quadratic baseline.

    ``norm`` as for ``MultipoleAttention``.
    """

    num_heads: int
    head_dim: int | None
    impl: str = "xla"
    param_dtype: jnp.dtype = jnp.float32
    norm: str = "single"

    def __post_init__(self) -> None:
        _check_heads(self.num_heads, self.head_dim, self.impl, self.norm)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        check_grid(x, 1)
        c = x.shape[-1]
        d = _head_dim(c, self.num_heads, self.head_dim)
        params = attention_params(self, c, self.num_heads, d, self.param_dtype)
        add_window_norm(self, params, c, self.param_dtype, self.norm)
        return global_attention(x, params, resolve_impl(self.impl))


class AttentionBlock(nn.Module):
    """Pre-norm residual block around any attention module:
    ``x + attention(x)``, then ``x + FFN(x)`` with
    ``FFN = LayerNorm -> Dense(hidden) -> GELU -> Dense(C)``, where ``hidden`` is
    ``mlp_dim`` when given, else ``int(mlp_ratio * C)``.

    The attention module owns its pre-LayerNorm.
    """

    attention: nn.Module
    mlp_ratio: float = 4.0
    mlp_dim: int | None = None

    def __post_init__(self) -> None:
        if not isinstance(self.attention, nn.Module):
            raise ValueError(f"attention must be a flax.linen Module, got {self.attention!r}")
        check_positive(self.mlp_ratio, "mlp_ratio")
        check_optional_int(self.mlp_dim, "mlp_dim")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        x = x + self.attention(x)
        c = x.shape[-1]
        hidden = int(self.mlp_ratio * c) if self.mlp_dim is None else self.mlp_dim
        if hidden < 1:
            raise ValueError(
                f"mlp_ratio * channels must be >= 1, got {self.mlp_ratio} * {c} channels"
            )
        y = nn.LayerNorm(epsilon=1e-5)(x)
        y = nn.gelu(nn.Dense(hidden)(y), approximate=False)
        return x + nn.Dense(c)(y)


def MultipoleBlock(  # noqa: N802 - builds a module, named like one
    num_heads: int,
    head_dim: int | None,
    window_size: int,
    window_stride: int | None = None,
    sampling_rate: int = 2,
    down: str = "conv",
    up: str = "conv",
    impl: str = "auto",
    mlp_ratio: float = 4.0,
    name: str | None = None,
    *,
    num_levels: int | None = None,
    norm: str = "single",
    mlp_dim: int | None = None,
) -> AttentionBlock:
    """The multipole block: ``AttentionBlock(MultipoleAttention(...))``."""
    attention = MultipoleAttention(
        num_heads,
        head_dim,
        window_size,
        window_stride,
        sampling_rate,
        down,
        up,
        impl,
        num_levels=num_levels,
        norm=norm,
    )
    return AttentionBlock(attention, mlp_ratio, mlp_dim, name=name)
