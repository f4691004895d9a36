"""1-Lipschitz Flax Linen layers and a small 1-Lipschitz convolutional classifier.

Every layer is 1-Lipschitz in the L2 norm whatever its parameters, so the network is
too (a composition), and a logit margin ``m`` certifies the prediction within L2 radius
``m / sqrt(2)`` (``certify.py``).

- ``SRDense`` / ``SRConv``: a free weight, spectral-rescaled (``rescaling.py``) at every
  call; ``iters = T`` (``T = 1`` is AOL). The dense ``weight: [out, in]`` is stored in the
  math layout (``y = W x``), the conv ``kernel: [k, k, c_in, c_out]`` in Flax's HWIO
  layout (as ``nn.Conv``). A weight with NaN or inf raises a ``ValueError`` when the
  layer is applied outside ``jax.jit`` and makes the output NaN inside it.
- ``max_min`` / ``MaxMin``: GroupSort with groups of 2 on channel halves, a
  1-Lipschitz, gradient-norm-preserving activation (Anil et al. 2019).
- ``space_to_depth``: 2x2 pixel unshuffle, an isometry (a permutation), the
  downsampling.
"""

from __future__ import annotations

from collections.abc import Sequence

import flax.linen as nn
import jax
import jax.numpy as jnp

from lipschitz.checks import check_finite, check_iters, to_oihw
from lipschitz.convolution import _conv2d, check_padding
from lipschitz.rescaling import _spectral_rescale_conv, _spectral_rescale_dense


def max_min(x: jax.Array, axis: int = -1) -> jax.Array:
    """MaxMin: split ``axis`` into halves ``a, b``, return ``concat(max(a, b), min(a, b))``.

    ``x: [..., 2c]`` -> ``[..., 2c]``; 1-Lipschitz (it permutes the entries of each pair).
    """
    size = x.shape[axis]
    if size % 2:
        raise ValueError(f"max_min needs an even size along axis {axis}, got {size}")
    a, b = jnp.split(x, 2, axis=axis)
    return jnp.concatenate([jnp.maximum(a, b), jnp.minimum(a, b)], axis=axis)


class MaxMin(nn.Module):
    """``max_min`` over the channel axis (GroupSort2)."""

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        return max_min(x, axis=-1)


def space_to_depth(x: jax.Array, block: int = 2) -> jax.Array:
    """``[b, h, w, c]`` -> ``[b, h / block, w / block, c block^2]``, an isometry."""
    b, h, w, c = x.shape
    if h % block or w % block:
        raise ValueError(f"space_to_depth needs height and width divisible by {block}, got {h}x{w}")
    x = x.reshape(b, h // block, block, w // block, block, c)
    return x.transpose(0, 1, 3, 2, 4, 5).reshape(b, h // block, w // block, block * block * c)


def _check_size(value: int, name: str) -> None:
    if not isinstance(value, int) or isinstance(value, bool) or value < 1:
        raise ValueError(f"{name} must be an int >= 1, got {value!r}")


class SRDense(nn.Module):
    """Spectral-rescaled dense layer: ``y = diag(1 / t) W x + b``, ``||diag(1 / t) W|| <= 1``.

    Attributes:
      features: output size.
      iters: Gram steps ``T`` of the rescaling (``T = 1`` is AOL).
      use_bias: add a bias.

    Parameters: ``weight: [features, in]`` (``y = W x``), ``bias: [features]``.
    """

    features: int
    iters: int = 2
    use_bias: bool = True
    weight_init: nn.initializers.Initializer = nn.initializers.orthogonal()

    def __post_init__(self) -> None:
        check_iters(self.iters)
        _check_size(self.features, "features")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: [..., in]`` -> ``[..., features]``."""
        w = self.param("weight", self.weight_init, (self.features, x.shape[-1]), jnp.float32)
        check_finite(f"{self.name or type(self).__name__} weight", w)
        w = _spectral_rescale_dense(w.astype(x.dtype), self.iters)
        y = jnp.matmul(x, w.T, precision=jax.lax.Precision.HIGHEST)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y


class SRConv(nn.Module):
    """Spectral-rescaled stride-1 "same" convolution, 1-Lipschitz at every input size.

    Attributes:
      features: output channels.
      kernel_size: ``k``.
      iters: Gram steps ``T`` (``T = 1`` is AOL); the work grows like
        ``(2^T (k - 1) + 1)^2`` frequencies.
      padding: ``"zero"`` or ``"circular"`` (the rescaling is valid for both).
      use_bias: add a bias per output channel.

    Parameters: ``kernel: [k, k, c_in, features]`` (HWIO, as ``nn.Conv``), ``bias``.
    """

    features: int
    kernel_size: int = 3
    iters: int = 2
    padding: str = "zero"
    use_bias: bool = True
    kernel_init: nn.initializers.Initializer = nn.initializers.orthogonal()

    def __post_init__(self) -> None:
        check_iters(self.iters)
        _check_size(self.features, "features")
        _check_size(self.kernel_size, "kernel_size")
        check_padding(self.padding)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: [b, h, w, c_in]`` -> ``[b, h, w, features]``."""
        k = self.kernel_size
        # Orthonormal columns of the flattened [k k c_in, c_out] kernel (nn.Conv's shape).
        shape = (k, k, x.shape[-1], self.features)
        kernel = self.param("kernel", self.kernel_init, shape, jnp.float32)
        check_finite(f"{self.name or type(self).__name__} kernel", kernel)
        oihw = _spectral_rescale_conv(to_oihw(kernel.astype(x.dtype), "HWIO"), self.iters)
        y = _conv2d(x, oihw, self.padding)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y


class LipschitzConvNet(nn.Module):
    """A 1-Lipschitz (L2) convolutional classifier.

    ``stages`` of ``[SRConv -> MaxMin] x blocks`` at widths ``widths``, each stage but the
    last followed by ``space_to_depth``; then flatten, ``SRDense(hidden) -> MaxMin`` and
    ``SRDense(num_classes)``. Every piece is 1-Lipschitz, so is the network.

    Attributes:
      num_classes: logits.
      widths: channels per stage (even, for MaxMin).
      blocks: conv blocks per stage.
      hidden: width of the dense layer (even).
      iters: ``T`` of every spectral rescaling.
      kernel_size: conv kernel size.
    """

    num_classes: int = 10
    widths: Sequence[int] = (16, 32)
    blocks: int = 1
    hidden: int = 64
    iters: int = 2
    kernel_size: int = 3

    def __post_init__(self) -> None:
        for name in ("num_classes", "blocks", "kernel_size"):
            _check_size(getattr(self, name), name)
        check_iters(self.iters)
        widths = tuple(self.widths)
        if not widths or any(
            not isinstance(w, int) or isinstance(w, bool) or w < 2 or w % 2 for w in widths
        ):
            raise ValueError(f"widths must be even ints >= 2 (MaxMin pairs), got {self.widths!r}")
        if not isinstance(self.hidden, int) or self.hidden < 2 or self.hidden % 2:
            raise ValueError(f"hidden must be an even int >= 2, got {self.hidden!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: [b, h, w, c]`` (``h, w`` divisible by ``2 ** (len(widths) - 1)``) ->
        logits ``[b, num_classes]``."""
        for stage, width in enumerate(self.widths):
            for _ in range(self.blocks):
                x = SRConv(width, self.kernel_size, self.iters)(x)
                x = max_min(x)
            if stage < len(self.widths) - 1:
                x = space_to_depth(x)
        x = x.reshape(x.shape[0], -1)
        x = max_min(SRDense(self.hidden, self.iters)(x))
        return SRDense(self.num_classes, self.iters)(x)
