"""MANO models: the operator for PDE data and the Swin-style classifier.

Both are one architecture with a pluggable attention, so the baselines share
every other layer with MANO:

* ``attention="multipole"``: MANO (multipole attention in every block);
* ``attention="window"``: the Swin baseline (window attention, shifted windows
  in every other block);
* ``attention="global"``: the ViT baseline (global attention).

``OperatorConfig.make()`` and ``ClassifierConfig.make()`` build the modules;
``OPERATOR_PRESETS`` and ``CLASSIFIER_PRESETS`` hold the named configurations
per model family.
"""

from __future__ import annotations

import dataclasses

import flax.linen as nn
import jax
import jax.numpy as jnp

from mano_jax.attention import IMPLS, NORMS
from mano_jax.checks import check_choice, check_int, check_optional_int, check_positive
from mano_jax.fno import grid_coordinates
from mano_jax.layers import AttentionBlock, GlobalAttention, MultipoleAttention, WindowAttention
from mano_jax.multipole import DOWN, UP, check_window

ATTENTIONS = ("multipole", "window", "global")


@dataclasses.dataclass(frozen=True)
class AttentionConfig:
    """Which attention the blocks use, and its shape.

    ``window_size`` is the window of ``"multipole"`` and ``"window"``;
    ``window_stride``, ``sampling_rate``, ``down``, ``up`` and ``num_levels`` only
    matter for ``"multipole"``. ``num_levels=None`` derives the level count from each
    input's size (``multipole.num_levels_for``); an int fixes it, as the original
    PyTorch code does. ``norm="double"`` gives every attention layer the original's
    two LayerNorms (``layers.MultipoleAttention``); ``"single"`` is one pre-LayerNorm.
    """

    attention: str = "multipole"
    num_heads: int = 4
    head_dim: int | None = None
    window_size: int = 4
    window_stride: int | None = None
    sampling_rate: int = 2
    down: str = "conv"
    up: str = "conv"
    impl: str = "auto"
    num_levels: int | None = None
    norm: str = "single"

    def __post_init__(self) -> None:
        check_choice(self.attention, "attention", ATTENTIONS)
        check_int(self.num_heads, "num_heads")
        check_optional_int(self.head_dim, "head_dim")
        check_window(self.window_size, self.window_stride)
        check_int(self.sampling_rate, "sampling_rate", minimum=2)
        check_choice(self.down, "down", DOWN)
        check_choice(self.up, "up", UP)
        check_choice(self.impl, "impl", IMPLS)
        check_optional_int(self.num_levels, "num_levels")
        check_choice(self.norm, "norm", NORMS)

    def _check_heads_divide(self, channels: int, heads: int, what: str) -> None:
        if self.head_dim is None and channels % heads:
            raise ValueError(
                f"{what} ({heads}) must divide the {channels} channels when head_dim is None"
            )

    def make_attention(
        self, num_heads: int | None = None, window_size: int | None = None, shift: bool = False
    ) -> nn.Module:
        """The attention module of one block (``shift`` only applies to ``"window"``)."""
        heads = self.num_heads if num_heads is None else num_heads
        k = self.window_size if window_size is None else window_size
        if self.attention == "multipole":
            stride = self.window_stride if self.window_stride and self.window_stride <= k else None
            return MultipoleAttention(
                heads,
                self.head_dim,
                k,
                stride,
                self.sampling_rate,
                self.down,
                self.up,
                self.impl,
                num_levels=self.num_levels,
                norm=self.norm,
            )
        if self.attention == "window":
            return WindowAttention(heads, self.head_dim, k, shift, self.impl, norm=self.norm)
        return GlobalAttention(heads, self.head_dim, norm=self.norm)


# --------------------------------------------------------------------------- operator


@dataclasses.dataclass(frozen=True)
class OperatorConfig(AttentionConfig):
    """``AttentionOperator`` hyper-parameters (MANO when ``attention="multipole"``).

    The FFN of each block is ``mlp_dim`` wide when given, else ``int(mlp_ratio * dim)``.
    ``convert.from_torch_mano`` builds the configuration of an original PyTorch model.
    """

    dim: int = 64
    depth: int = 4
    mlp_ratio: float = 2.0
    dropout: float = 0.0
    use_grid: bool = True
    out_channels: int = 1
    mlp_dim: int | None = None

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.dim, "dim")
        check_int(self.depth, "depth")
        check_positive(self.mlp_ratio, "mlp_ratio")
        check_optional_int(self.mlp_dim, "mlp_dim")
        if not 0.0 <= self.dropout < 1.0:
            raise ValueError(f"dropout must be in [0, 1), got {self.dropout!r}")
        check_int(self.out_channels, "out_channels")
        self._check_heads_divide(self.dim, self.num_heads, "num_heads")

    def make(self) -> AttentionOperator:
        return AttentionOperator(self)


class AttentionOperator(nn.Module):
    """``[B, H, W, C_in] -> [B, H, W, out_channels]`` at full resolution::

        lift Dense(dim) of (x, grid) -> dropout -> depth attention blocks
        -> LayerNorm -> Dense(dim) -> tanh -> Dense(out_channels)

    The parameters do not depend on ``H, W``: the model applies at any resolution.
    Pass ``rng`` to apply dropout (training); without it the model is deterministic.
    """

    config: OperatorConfig

    def __post_init__(self) -> None:
        if not isinstance(self.config, OperatorConfig):
            raise ValueError(f"config must be an OperatorConfig, got {self.config!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, rng: jax.Array | None = None) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"x must have rank 4 [batch, height, width, channels], got {x.shape}")
        cfg = self.config
        b, h, w, _ = x.shape
        if cfg.use_grid:
            grid = jnp.broadcast_to(grid_coordinates(h, w, x.dtype), (b, h, w, 2))
            x = jnp.concatenate([x, grid], axis=-1)
        x = nn.Dense(cfg.dim, name="lift")(x)
        x = nn.Dropout(cfg.dropout, deterministic=rng is None)(x, rng=rng)
        for i in range(cfg.depth):
            attention = cfg.make_attention(shift=i % 2 == 1)
            x = AttentionBlock(attention, cfg.mlp_ratio, cfg.mlp_dim, name=f"block_{i}")(x)
        x = nn.LayerNorm(epsilon=1e-5)(x)
        x = jnp.tanh(nn.Dense(cfg.dim, name="project_hidden")(x))
        return nn.Dense(cfg.out_channels, name="project_out")(x)


def _operator_family(base: OperatorConfig, attention: str) -> OperatorConfig:
    return dataclasses.replace(base, attention=attention)


_DARCY_TINY = OperatorConfig(dim=48, depth=3, num_heads=4, head_dim=12, window_size=4)
_DARCY_PAPER = OperatorConfig(
    dim=128, depth=8, num_heads=4, head_dim=32, window_size=2, window_stride=1, sampling_rate=4
)
# The paper's window geometry (k 2, stride 1, r 4) at a width and depth a CPU trains in
# minutes: about an eighth of darcy-paper's arithmetic.
_DARCY_PAPER_SMALL = dataclasses.replace(_DARCY_PAPER, dim=64, depth=4, head_dim=16)
OPERATOR_PRESETS: dict[str, dict[str, OperatorConfig]] = {
    family: {
        "darcy-tiny": _operator_family(_DARCY_TINY, attention),
        "darcy-paper": _operator_family(_DARCY_PAPER, attention),
        "darcy-paper-small": _operator_family(_DARCY_PAPER_SMALL, attention),
    }
    for family, attention in (("mano", "multipole"), ("swin", "window"), ("vit", "global"))
}


# --------------------------------------------------------------------------- classifier


@dataclasses.dataclass(frozen=True)
class ClassifierConfig(AttentionConfig):
    """``HierarchicalClassifier`` hyper-parameters (Swin-MANO when ``attention="multipole"``).

    ``depths[i]`` blocks with ``stage_heads[i]`` heads at stage ``i``; stages are
    separated by patch merging (resolution / 2, channels x 2). One stage with
    global attention is a ViT.
    """

    num_classes: int = 10
    patch_size: int = 2
    embed_dim: int = 32
    depths: tuple[int, ...] = (2, 2)
    stage_heads: tuple[int, ...] = (2, 4)
    mlp_ratio: float = 4.0

    def __post_init__(self) -> None:
        super().__post_init__()
        check_int(self.num_classes, "num_classes", minimum=2)
        check_int(self.patch_size, "patch_size")
        check_int(self.embed_dim, "embed_dim")
        check_positive(self.mlp_ratio, "mlp_ratio")
        if len(self.depths) != len(self.stage_heads) or not self.depths:
            raise ValueError(
                f"depths and stage_heads must be non-empty and of equal length, got "
                f"{self.depths} and {self.stage_heads}"
            )
        for stage, (depth, heads) in enumerate(zip(self.depths, self.stage_heads, strict=True)):
            check_int(depth, f"depths[{stage}]")
            check_int(heads, f"stage_heads[{stage}]")
            self._check_heads_divide(self.embed_dim * 2**stage, heads, f"stage_heads[{stage}]")

    def make(self) -> HierarchicalClassifier:
        return HierarchicalClassifier(self)


class PatchMerging(nn.Module):
    """``[B, H, W, C] -> [B, ceil(H/2), ceil(W/2), 2C]``: concat 2x2, LayerNorm, Dense."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        b, h, w, c = x.shape
        x = jnp.pad(x, ((0, 0), (0, h % 2), (0, w % 2), (0, 0)))
        h, w = x.shape[1] // 2, x.shape[2] // 2
        x = x.reshape(b, h, 2, w, 2, c).transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, 4 * c)
        return nn.Dense(2 * c, use_bias=False)(nn.LayerNorm(epsilon=1e-5)(x))


class HierarchicalClassifier(nn.Module):
    """Images ``[B, H, W, C] -> logits [B, num_classes]``::

        patch embedding (patch x patch, stride patch) -> LayerNorm
        -> stage 0 blocks -> patch merging -> stage 1 blocks -> ...
        -> LayerNorm -> mean over tokens -> Dense(num_classes)

    Windows larger than a stage's grid shrink to the grid (as in Swin).
    """

    config: ClassifierConfig

    def __post_init__(self) -> None:
        if not isinstance(self.config, ClassifierConfig):
            raise ValueError(f"config must be a ClassifierConfig, got {self.config!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        if x.ndim != 4:
            raise ValueError(f"x must have rank 4 [batch, height, width, channels], got {x.shape}")
        cfg = self.config
        p = cfg.patch_size
        if x.shape[1] < p or x.shape[2] < p:
            raise ValueError(f"images {x.shape[1:3]} are smaller than patch_size {p}")
        x = nn.Conv(cfg.embed_dim, (p, p), strides=(p, p), padding="VALID", name="patch_embed")(x)
        x = nn.LayerNorm(epsilon=1e-5)(x)
        for stage, (depth, heads) in enumerate(zip(cfg.depths, cfg.stage_heads, strict=True)):
            if stage:
                x = PatchMerging(name=f"merge_{stage}")(x)
            k = min(cfg.window_size, *x.shape[1:3])
            for i in range(depth):
                shift = i % 2 == 1 and k < min(x.shape[1:3])
                attention = cfg.make_attention(heads, k, shift)
                x = AttentionBlock(attention, cfg.mlp_ratio, name=f"stage_{stage}_block_{i}")(x)
        x = nn.LayerNorm(epsilon=1e-5)(x).mean(axis=(1, 2))
        return nn.Dense(cfg.num_classes, name="head")(x)


_TINY = ClassifierConfig(patch_size=2, embed_dim=32, depths=(2, 2), stage_heads=(2, 4))
_SWIN_T = ClassifierConfig(
    patch_size=4, embed_dim=96, depths=(2, 2, 6, 2), stage_heads=(3, 6, 12, 24), window_size=7
)
CLASSIFIER_PRESETS: dict[str, dict[str, ClassifierConfig]] = {
    "mano": {"tiny": _TINY, "swin-t": _SWIN_T},
    "swin": {
        "tiny": dataclasses.replace(_TINY, attention="window"),
        "swin-t": dataclasses.replace(_SWIN_T, attention="window"),
    },
    # One stage of global attention with the tiny hierarchy's width and depth budget.
    "vit": {
        "tiny": dataclasses.replace(
            _TINY, attention="global", embed_dim=48, depths=(4,), stage_heads=(4,)
        ),
        "vit-s": ClassifierConfig(
            attention="global", patch_size=16, embed_dim=384, depths=(12,), stage_heads=(6,)
        ),
    },
}
