"""1-Lipschitz Flax Linen layers and a small 1-Lipschitz convolutional classifier.

Every layer is 1-Lipschitz in the L2 norm whatever its parameters, so the network is
too (a composition), and a logit margin ``m`` certifies the prediction within L2 radius
``m / sqrt(2)`` (``certify.py``).

- ``SRDense`` / ``SRConv``: a free weight, spectral-rescaled (``rescaling.py``) at every
  call; ``iters = T`` (``T = 1`` is AOL). Weights are stored in the math layout of the
  bounds: dense ``weight: [out, in]`` (``y = W x``), conv ``weight: [c_out, c_in, k, k]``.
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

from lipschitz.convolution import PADDINGS, conv2d
from lipschitz.rescaling import spectral_rescale_conv, spectral_rescale_dense


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


def _check_iters(iters: int) -> None:
    if not isinstance(iters, int) or iters < 1:
        raise ValueError(f"iters must be an int >= 1, got {iters!r}")


class SRDense(nn.Module):
    """Spectral-rescaled dense layer: ``y = diag(1 / t) W x + b``, ``||diag(1 / t) W|| <= 1``.

    Attributes:
      features: output size.
      iters: Gram steps ``T`` of the rescaling (``T = 1`` is AOL).
      use_bias: add a bias.
    """

    features: int
    iters: int = 2
    use_bias: bool = True
    weight_init: nn.initializers.Initializer = nn.initializers.orthogonal()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: [..., in]`` -> ``[..., features]``."""
        _check_iters(self.iters)
        w = self.param("weight", self.weight_init, (self.features, x.shape[-1]), jnp.float32)
        w = spectral_rescale_dense(w.astype(x.dtype), self.iters)
        y = jnp.matmul(x, w.T, precision=jax.lax.Precision.HIGHEST)
        if self.use_bias:
            y = y + self.param("bias", nn.initializers.zeros, (self.features,), jnp.float32)
        return y


def _conv_init(key, shape, dtype=jnp.float32):
    """Orthogonal rows of the flattened ``[c_out, c_in k k]`` kernel."""
    c_out, c_in, k_h, k_w = shape
    flat = nn.initializers.orthogonal()(key, (c_out, c_in * k_h * k_w), dtype)
    return flat.reshape(shape)


class SRConv(nn.Module):
    """Spectral-rescaled stride-1 "same" convolution, 1-Lipschitz at every input size.

    Attributes:
      features: output channels.
      kernel_size: ``k``.
      iters: Gram steps ``T`` (``T = 1`` is AOL); the work grows like
        ``(2^T (k - 1) + 1)^2`` frequencies.
      padding: ``"zero"`` or ``"circular"`` (the rescaling is valid for both).
      use_bias: add a bias per output channel.
    """

    features: int
    kernel_size: int = 3
    iters: int = 2
    padding: str = "zero"
    use_bias: bool = True
    weight_init: nn.initializers.Initializer = _conv_init

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        """``x: [b, h, w, c_in]`` -> ``[b, h, w, features]``."""
        _check_iters(self.iters)
        if self.padding not in PADDINGS:
            raise ValueError(f"padding must be one of {PADDINGS}, got {self.padding!r}")
        k = self.kernel_size
        w = self.param("weight", self.weight_init, (self.features, x.shape[-1], k, k), jnp.float32)
        y = conv2d(x, spectral_rescale_conv(w.astype(x.dtype), self.iters), self.padding)
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
