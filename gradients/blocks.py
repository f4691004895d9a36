"""Residual branches ``g(theta, h)`` for Highway-BP, with initialisers of stacked parameters.

Each ``init_*(key, num_blocks, ...)`` returns parameters stacked along a leading axis of
length ``num_blocks`` (one independent draw per block), ready for ``highway_bp``. The
last projection of every branch is scaled by ``1 / sqrt(num_steps)`` (GPT-2 style), so
the stack's output stays of order one whatever its depth.

- ``mlp_block``: pre-LayerNorm MLP, ``h: [..., d]``;
- ``conv_block``: ResNet-v2 branch ``conv(relu(conv(relu(h))))``, 3x3 SAME,
  ``h: [batch, height, width, channels]``;
- ``attention_block``: pre-LayerNorm causal multi-head self-attention,
  ``h: [batch, length, d]``; with ``mlp_block`` the two sub-blocks of a Transformer
  block: ``highway_bp((attention_block, mlp_block), k)``;
- ``rnn_step``: ``tanh(h W + x U + b)``, the branch of a residual RNN
  ``h_t = r * h_{t-1} + rnn_step(theta, h_{t-1}, x_t)`` for ``highway_rnn``.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp

from gradients.checks import check_int, check_positive


def layer_norm(h: jax.Array, eps: float = 1e-5) -> jax.Array:
    """LayerNorm over the last axis, without learned scale and shift."""
    mean = h.mean(-1, keepdims=True)
    var = jnp.square(h - mean).mean(-1, keepdims=True)
    return (h - mean) * jax.lax.rsqrt(var + eps)


def _normal(key: jax.Array, shape: tuple[int, ...], std: float) -> jax.Array:
    return std * jax.random.normal(key, shape)


def _output_scale(num_blocks: int, num_steps: int | None) -> jax.Array:
    steps = num_blocks if num_steps is None else check_int(num_steps, "num_steps")
    return 1 / jnp.sqrt(steps)


def init_mlp_blocks(
    key: jax.Array, num_blocks: int, width: int, hidden: int, *, num_steps: int | None = None
) -> dict[str, jax.Array]:
    """``{"w1": [L, d, hidden], "b1": [L, hidden], "w2": [L, hidden, d], "b2": [L, d]}``.

    ``num_steps``: residual steps in the whole stack (default ``num_blocks``; a
    Transformer has two per block), for the output scaling.
    """
    num_blocks = check_int(num_blocks, "num_blocks")
    width, hidden = check_int(width, "width"), check_int(hidden, "hidden")
    scale = _output_scale(num_blocks, num_steps)
    k1, k2 = jax.random.split(key)
    return {
        "w1": _normal(k1, (num_blocks, width, hidden), width**-0.5),
        "b1": jnp.zeros((num_blocks, hidden)),
        "w2": _normal(k2, (num_blocks, hidden, width), scale * hidden**-0.5),
        "b2": jnp.zeros((num_blocks, width)),
    }


def mlp_block(theta: dict[str, jax.Array], h: jax.Array) -> jax.Array:
    """``gelu(LN(h) w1 + b1) w2 + b2``: ``h: [..., d]`` -> ``[..., d]``."""
    hidden = jax.nn.gelu(layer_norm(h) @ theta["w1"] + theta["b1"])
    return hidden @ theta["w2"] + theta["b2"]


def init_conv_blocks(
    key: jax.Array, num_blocks: int, channels: int, *, kernel_size: int = 3
) -> dict[str, jax.Array]:
    """``{"k1", "k2": [L, kh, kw, c, c] (HWIO), "b1", "b2": [L, c]}`` (He init, output scaled)."""
    num_blocks = check_int(num_blocks, "num_blocks")
    channels = check_int(channels, "channels")
    kernel_size = check_int(kernel_size, "kernel_size")
    k1, k2 = jax.random.split(key)
    shape = (num_blocks, kernel_size, kernel_size, channels, channels)
    fan_in = kernel_size * kernel_size * channels
    return {
        "k1": _normal(k1, shape, (2 / fan_in) ** 0.5),
        "b1": jnp.zeros((num_blocks, channels)),
        "k2": _normal(k2, shape, (1 / fan_in / num_blocks) ** 0.5),
        "b2": jnp.zeros((num_blocks, channels)),
    }


def conv2d(h: jax.Array, kernel: jax.Array, bias: jax.Array) -> jax.Array:
    """SAME, stride-1 convolution ``h: [b, height, width, c_in]``, ``kernel: [k, k, c_in,
    c_out]`` (HWIO) -> ``[b, height, width, c_out]``, as a matmul over shifted copies
    (im2col): under ``vmap`` over blocks it is one batched GEMM, where
    ``lax.conv_general_dilated`` with per-block kernels becomes a grouped convolution,
    ten times slower on CPU."""
    size = kernel.shape[0]
    low = (size - 1) // 2  # SAME padding, as XLA splits it
    height, width = h.shape[1:3]
    padded = jnp.pad(h, ((0, 0), (low, size - 1 - low), (low, size - 1 - low), (0, 0)))
    patches = jnp.concatenate(
        [padded[:, i : i + height, j : j + width] for i in range(size) for j in range(size)],
        axis=-1,
    )  # [b, height, width, size * size * c], (i, j, c) order as kernel.reshape below
    return patches @ kernel.reshape(-1, kernel.shape[-1]) + bias


def conv_block(theta: dict[str, jax.Array], h: jax.Array) -> jax.Array:
    """``conv(relu(conv(relu(h))))``: ``h: [b, height, width, c]`` -> same shape."""
    hidden = conv2d(jax.nn.relu(h), theta["k1"], theta["b1"])
    return conv2d(jax.nn.relu(hidden), theta["k2"], theta["b2"])


def init_attention_blocks(
    key: jax.Array, num_blocks: int, width: int, *, num_steps: int | None = None
) -> dict[str, jax.Array]:
    """``{"qkv": [L, d, 3d], "out": [L, d, d]}``; ``num_steps`` as in ``init_mlp_blocks``."""
    num_blocks, width = check_int(num_blocks, "num_blocks"), check_int(width, "width")
    scale = _output_scale(num_blocks, num_steps)
    k1, k2 = jax.random.split(key)
    return {
        "qkv": _normal(k1, (num_blocks, width, 3 * width), width**-0.5),
        "out": _normal(k2, (num_blocks, width, width), scale * width**-0.5),
    }


def attention_block(theta: dict[str, jax.Array], h: jax.Array, num_heads: int = 2) -> jax.Array:
    """Causal multi-head self-attention of ``LN(h)``: ``h: [b, n, d]`` -> ``[b, n, d]``."""
    check_int(num_heads, "num_heads")
    b, n, d = h.shape
    if d % num_heads:
        raise ValueError(f"width {d} must be divisible by num_heads {num_heads}")
    q, k, v = jnp.split(layer_norm(h) @ theta["qkv"], 3, axis=-1)
    q, k, v = (a.reshape(b, n, num_heads, d // num_heads) for a in (q, k, v))
    logits = jnp.einsum("bqhc,bkhc->bhqk", q, k) / jnp.sqrt(d // num_heads)
    causal = jnp.tril(jnp.ones((n, n), bool))
    weights = jax.nn.softmax(jnp.where(causal, logits, -jnp.inf), axis=-1)
    mixed = jnp.einsum("bhqk,bkhc->bqhc", weights, v).reshape(b, n, d)
    return mixed @ theta["out"]


def init_rnn_step(key: jax.Array, width: int, input_size: int, *, gain: float = 0.5):
    """``{"w": [d, d], "u": [input_size, d], "b": [d]}``; ``gain`` scales ``w``'s spectral
    radius (about ``gain``)."""
    width, input_size = check_int(width, "width"), check_int(input_size, "input_size")
    gain = check_positive(gain, "gain")
    k1, k2 = jax.random.split(key)
    return {
        "w": _normal(k1, (width, width), gain * width**-0.5),
        "u": _normal(k2, (input_size, width), input_size**-0.5),
        "b": jnp.zeros((width,)),
    }


def rnn_step(theta: dict[str, jax.Array], h: jax.Array, x: jax.Array) -> jax.Array:
    """``tanh(h w + x u + b)``: ``h: [..., d]``, ``x: [..., input_size]`` -> ``[..., d]``."""
    return jnp.tanh(h @ theta["w"] + x @ theta["u"] + theta["b"])
