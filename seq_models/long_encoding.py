"""The LOCOST encoder on inputs of a million tokens, in bounded memory (inference).

One encoder layer evaluated in pieces that need a fraction of its memory, with the same
result as :class:`seq_models.locost.LOCOSTEncoderLayer` (deterministic):

- the position-wise parts (RMSNorms, the projections of the SSM block, the gate and the
  gated-GELU feed-forward, whose ``[L, d_ff]`` hidden states are the largest
  activations) over blocks of ``position_block`` positions (``lax.map``);
- the SSM convolution over all ``L`` positions at once (one FFT each), ``channel_groups``
  groups of channels at a time (:func:`seq_models.ssm_block.ssm_apply`).

What stays in memory is a few ``[B, L, d_model]`` arrays (input, SSM input, SSM output,
layer output) and the parameters, against the one-call layer's ``[B, L, d_ff]`` hidden
states and ``[K, d_model, L]`` kernels plus their spectra. :func:`encode_in_blocks`
runs the whole encoder one jitted layer at a time (each layer's input is donated) with a
progress bar.

Example (random parameters; 100,000 tokens of the ``tiny`` preset)::

    import jax, jax.numpy as jnp
    from seq_models import locost_config, encode_in_blocks
    model = locost_config("tiny").make()
    ids = jnp.ones((1, 16), jnp.int32)
    params = model.init(jax.random.key(0), ids, jnp.ones((1, 16), bool), ids)["params"]
    out = encode_in_blocks(model, params, jnp.ones((1, 100_000), jnp.int32))  # [1, L, 64]
"""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from seq_models.locost import DTYPES, LOCOST, LOCOSTConfig, finish_encoding
from seq_models.s4d import S4DParams, _check_int
from seq_models.ssm_block import SSM_PARAM_NAMES, SSM_SUBMODULE, ssm_apply
from seq_models.t5 import GatedGeluFeedForward, rms_norm

POSITION_BLOCK = 8192
# Default channel groups: at most this many float32 values per group's [L, H / G] slice.
GROUP_BUDGET = 2**24


def default_channel_groups(d_model: int, length: int, budget: int = GROUP_BUDGET) -> int:
    """The fewest channel groups ``G`` (a divisor of ``d_model``) with ``L d_model / G <=
    budget`` values per group (``d_model`` groups of one channel if none is that small)."""
    for groups in range(1, d_model + 1):
        if d_model % groups == 0 and length * (d_model // groups) <= budget:
            return groups
    return d_model


def encoder_layer_in_blocks(
    config: LOCOSTConfig,
    params: Mapping[str, Any],
    h: jax.Array,
    mask: jax.Array | None = None,
    *,
    position_block: int = POSITION_BLOCK,
    channel_groups: int = 1,
) -> jax.Array:
    """``LOCOSTEncoderLayer(config).apply({"params": params}, h, mask)`` in blocks.

    Args:
      config: the model sizes (dropout is not applied: inference).
      params: one encoder layer's parameters (``ssm_norm``, ``ssm_block``, ``ff_norm``,
        ``ff``).
      h: ``[B, L, d_model]`` hidden states.
      mask: ``[B, L]``, True at real tokens, or None.
      position_block: positions per block of the position-wise parts; a nearby divisor of
        ``L`` is used when there is one, otherwise ``L`` is padded (padding is masked).
      channel_groups: groups of channels of the SSM convolution (divides ``d_model``).

    Returns:
      ``[B, L, d_model]`` in ``config.dtype``.
    """
    b, length, width = _check_layer_input(config, h, mask)
    _check_int(position_block, "position_block")
    size = _block_size(length, position_block)
    blocks = -(-length // size)
    padded = blocks * size
    dtype = DTYPES[config.dtype]
    block_params = params["ssm_block"]
    dense = nn.Dense(width, dtype=dtype, param_dtype=jnp.float32)
    ff = GatedGeluFeedForward(width, config.d_ff, 0.0, dtype)
    real = jnp.ones((b, length), bool) if mask is None else jnp.asarray(mask, bool)
    real = jnp.pad(real, ((0, 0), (0, padded - length)))
    x = jnp.pad(h.astype(dtype), ((0, 0), (0, padded - length), (0, 0)))
    x_blocks = jnp.moveaxis(x.reshape(b, blocks, size, width), 1, 0)  # [J, B, S, D]
    real_blocks = jnp.moveaxis(real.reshape(b, blocks, size), 1, 0)  # [J, B, S]

    def project(name: str, xb: jax.Array) -> jax.Array:  # RMSNorm, then a projection
        normed = rms_norm(xb, params["ssm_norm"]["scale"])
        return dense.apply({"params": block_params[name]}, normed)

    def ssm_input(args: tuple[jax.Array, jax.Array]) -> jax.Array:  # zero at padding
        xb, rb = args
        k = project("k_proj", xb)
        return jnp.where(rb[..., None], k, jnp.zeros((), k.dtype)).astype(jnp.float32)

    k = jax.lax.map(ssm_input, (x_blocks, real_blocks))
    k = jnp.moveaxis(k, 0, 1).reshape(b, padded, width)
    ssm = S4DParams(**{name: block_params[SSM_SUBMODULE][name] for name in SSM_PARAM_NAMES})
    y = ssm_apply(ssm, k, channel_groups=channel_groups)  # [B, padded, D] float32
    y_blocks = jnp.moveaxis(y.reshape(b, blocks, size, width), 1, 0)

    def rest(args: tuple[jax.Array, jax.Array]) -> jax.Array:  # gate, out_proj, feed-forward
        xb, yb = args
        gated = (project("q_proj", xb).astype(jnp.float32) * yb).astype(dtype)
        xb = xb + dense.apply({"params": block_params["out_proj"]}, gated)
        normed = rms_norm(xb, params["ff_norm"]["scale"])
        return xb + ff.apply({"params": params["ff"]}, normed)

    out = jax.lax.map(rest, (x_blocks, y_blocks))  # [J, B, S, D]
    return jnp.moveaxis(out, 0, 1).reshape(b, padded, width)[:, :length]


def encode_in_blocks(
    model: LOCOST,
    params: Mapping[str, Any],
    inputs: jax.Array,
    inputs_mask: jax.Array | None = None,
    *,
    position_block: int = POSITION_BLOCK,
    channel_groups: int | None = None,
    progress: bool = False,
) -> jax.Array:
    """``model.encode(inputs, inputs_mask)`` of a very long input, one layer at a time.

    Args:
      model: a :class:`~seq_models.locost.LOCOST`.
      params: its parameters.
      inputs: ``[B, L]`` token ids.
      inputs_mask: ``[B, L]`` (True at real tokens) or None (all real).
      position_block: as :func:`encoder_layer_in_blocks`.
      channel_groups: as :func:`encoder_layer_in_blocks`; None picks
        :func:`default_channel_groups` for ``L``.
      progress: a progress bar over the encoder layers.

    Returns:
      ``[B, L, d_model]`` encoder outputs, zero at padding.
    """
    config = model.config
    if np.ndim(inputs) != 2:
        raise ValueError(f"inputs must have shape [B, L], got {np.shape(inputs)}")
    length = np.shape(inputs)[1]
    if channel_groups is None:
        channel_groups = default_channel_groups(config.d_model, length)
    h = model.apply({"params": params}, jnp.asarray(inputs), method=LOCOST.embed_tokens)
    h = h.astype(DTYPES[config.dtype])

    def layer(p: Mapping[str, Any], h: jax.Array, mask: jax.Array | None) -> jax.Array:
        return encoder_layer_in_blocks(
            config, p, h, mask, position_block=position_block, channel_groups=channel_groups
        )

    step = jax.jit(layer, donate_argnums=1)
    bar = tqdm(
        range(config.num_encoder_layers),
        desc=f"encoder ({length:,} tokens)",
        disable=not progress,
        dynamic_ncols=True,
    )
    for i in bar:
        h = jax.block_until_ready(step(params["encoder"][f"layers_{i}"], h, inputs_mask))
    h = rms_norm(h, params["encoder"]["final_norm"]["scale"])
    return finish_encoding(h, inputs_mask)


def _check_layer_input(config: LOCOSTConfig, h: Any, mask: Any | None) -> tuple[int, int, int]:
    if np.ndim(h) != 3 or np.shape(h)[-1] != config.d_model:
        raise ValueError(
            f"h must have shape [B, L, d_model] with d_model = {config.d_model}, got {np.shape(h)}"
        )
    if mask is not None and tuple(np.shape(mask)) != tuple(np.shape(h)[:2]):
        raise ValueError(f"mask must have shape [B, L] = {np.shape(h)[:2]}, got {np.shape(mask)}")
    return np.shape(h)


def _block_size(length: int, target: int) -> int:
    """A block length near ``target`` that divides ``length`` (``length`` itself if
    shorter); ``target`` when no divisor lies in ``(target / 2, target]``."""
    if length <= target:
        return length
    for size in range(target, target // 2, -1):
        if length % size == 0:
            return size
    return target
