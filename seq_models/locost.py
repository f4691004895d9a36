"""LOCOST: a state-space encoder and a T5 decoder for very long inputs.

Encoder layer (pre-norm, T5 RMSNorm)::

    h = h + Drop(SSMBlock(RMSNorm(h), mask))        gated bidirectional S4D-Lin
    h = h + Drop(GatedGeluFF(RMSNorm(h)))

then a final RMSNorm; O(L log L) in the input length L (one FFT convolution per
layer, no attention). Decoder: ``seq_models.t5.T5Decoder`` (relative-position
self-attention, cross-attention to the encoder, gated-GELU feed-forward). One token
embedding is shared by encoder and decoder; the LM head is tied to it (T5's
``d_model ** -0.5`` rescaling before the tied head) or separate.

Precision policy: parameters in float32; activations in ``config.dtype`` (bfloat16
allowed); the SSM kernel, FFT convolution, norms, softmax and the logits in float32.

``LOCOST.encode``, ``LOCOST.decode`` (teacher forcing), ``LOCOST.init_cache`` and
``LOCOST.decode_step`` (for ``seq_models.generation``) are the entry points;
``locost_config(preset, **overrides)`` builds a configuration.
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp

from miles_cli import check_config, option
from seq_models.generation import beam_search
from seq_models.ssm_block import SSM_SUBMODULE, SSMBlock
from seq_models.t5 import GatedGeluFeedForward, RMSNorm, T5Decoder

DTYPES = {"float32": jnp.float32, "bfloat16": jnp.bfloat16}


@dataclasses.dataclass(frozen=True)
class LOCOSTConfig:
    """Sizes of a LOCOST model.

    Attributes:
      vocab_size: tokens of the shared embedding and of the LM head.
      d_model: model width (one SSM per channel).
      state_size: SSM state size N (N / 2 complex modes per channel).
      d_ff: hidden width of the gated-GELU feed-forward layers.
      num_encoder_layers: SSM encoder layers.
      num_decoder_layers: T5 decoder layers.
      num_heads: decoder attention heads.
      head_dim: width of one attention head.
      dropout: dropout rate (training only).
      tie_embeddings: LM head tied to the token embedding.
      dtype: activation dtype, float32 or bfloat16.
      chunk: None for one FFT per encoder layer; an int for the overlap-add convolution in
        blocks of that many positions (for inference on inputs too long for memory, use
        ``seq_models.long_encoding`` instead).
    """

    vocab_size: int = option(32128, minimum=2)
    d_model: int = option(768, minimum=1)
    state_size: int = option(512, minimum=2, even=True)
    d_ff: int = option(2048, minimum=1)
    num_encoder_layers: int = option(12, minimum=1)
    num_decoder_layers: int = option(12, minimum=1)
    num_heads: int = option(12, minimum=1)
    head_dim: int = option(64, minimum=1)
    dropout: float = option(0.1, minimum=0, below=1)
    tie_embeddings: bool = option(True)
    dtype: str = option("float32", choices=tuple(DTYPES))
    chunk: int | None = option(None, minimum=1)

    def __post_init__(self) -> None:
        check_config(self)

    def make(self) -> LOCOST:
        return LOCOST(self)


PRESETS: dict[str, LOCOSTConfig] = {
    # Tests and CPU training: a few hundred thousand parameters with a 4000-token vocabulary.
    "tiny": LOCOSTConfig(
        vocab_size=4000,
        d_model=64,
        state_size=32,
        d_ff=128,
        num_encoder_layers=2,
        num_decoder_layers=2,
        num_heads=4,
        head_dim=16,
    ),
    # The paper's model: LongT5-base sized (untied LM head, as T5 v1.1), about 255M
    # parameters.
    "base": LOCOSTConfig(tie_embeddings=False),
}


def locost_config(preset: str, **overrides: Any) -> LOCOSTConfig:
    """The configuration of ``preset`` (``tiny``, ``base``) with ``overrides``."""
    if preset not in PRESETS:
        raise ValueError(f"preset must be one of {sorted(PRESETS)}, got {preset!r}")
    return dataclasses.replace(PRESETS[preset], **overrides)


def shift_right(targets: jax.Array, start_id: int = 0) -> jax.Array:
    """Decoder inputs ``[B, T]``: ``start_id`` then ``targets[:, :-1]`` (T5 starts from pad)."""
    start = jnp.full((targets.shape[0], 1), start_id, targets.dtype)
    return jnp.concatenate([start, targets[:, :-1]], axis=1)


class LOCOSTEncoderLayer(nn.Module):
    """One encoder layer: ``h + SSMBlock(RMSNorm(h))``, then ``+ FF(RMSNorm(.))``.

    Attributes:
      config: the model sizes.
    """

    config: LOCOSTConfig

    @nn.compact
    def __call__(
        self, h: jax.Array, mask: jax.Array | None = None, *, deterministic: bool = True
    ) -> jax.Array:
        c = self.config
        dtype = DTYPES[c.dtype]
        drop = nn.Dropout(c.dropout)
        block = SSMBlock(c.d_model, c.state_size, chunk=c.chunk, dtype=dtype, name="ssm_block")
        h = h + drop(block(RMSNorm(name="ssm_norm")(h), mask), deterministic=deterministic)
        ff = GatedGeluFeedForward(c.d_model, c.d_ff, c.dropout, dtype, name="ff")
        return h + drop(ff(RMSNorm(name="ff_norm")(h), deterministic), deterministic)


class LOCOSTEncoder(nn.Module):
    """The SSM encoder stack: ``x [B, L, D], mask [B, L] -> [B, L, D]`` (zero at padding).

    Attributes:
      config: the model sizes.
    """

    config: LOCOSTConfig

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array | None = None, *, deterministic: bool = True
    ) -> jax.Array:
        c = self.config
        drop = nn.Dropout(c.dropout)
        h = drop(x.astype(DTYPES[c.dtype]), deterministic=deterministic)
        for i in range(c.num_encoder_layers):
            h = LOCOSTEncoderLayer(c, name=f"layers_{i}")(h, mask, deterministic=deterministic)
        return finish_encoding(drop(RMSNorm(name="final_norm")(h), deterministic), mask)


def finish_encoding(h: jax.Array, mask: jax.Array | None) -> jax.Array:
    """Encoder outputs ``[B, L, D]`` set to zero at padding (``mask`` False)."""
    if mask is None:
        return h
    return jnp.where(jnp.asarray(mask, bool)[..., None], h, jnp.zeros((), h.dtype))


class LOCOST(nn.Module):
    """LOCOST encoder-decoder.

    ``__call__(inputs [B, L], inputs_mask [B, L], targets [B, T]) -> logits [B, T, V]``
    (float32) with teacher forcing: the decoder reads ``shift_right(targets)``.

    Attributes:
      config: the model sizes.
    """

    config: LOCOSTConfig

    def setup(self) -> None:
        c = self.config
        self.embed = nn.Embed(
            c.vocab_size,
            c.d_model,
            embedding_init=nn.initializers.normal(1.0),
            name="token_embedding",
        )
        self.encoder = LOCOSTEncoder(c, name="encoder")
        self.decoder = T5Decoder(
            c.num_decoder_layers,
            c.d_model,
            c.num_heads,
            c.head_dim,
            c.d_ff,
            c.dropout,
            DTYPES[c.dtype],
            name="decoder",
        )
        if not c.tie_embeddings:
            self.lm_head = nn.Dense(c.vocab_size, use_bias=False, name="lm_head")

    def encode(
        self, inputs: jax.Array, inputs_mask: jax.Array, *, deterministic: bool = True
    ) -> jax.Array:
        """``inputs: [B, L]`` token ids, ``inputs_mask: [B, L]`` -> ``[B, L, D]``."""
        return self.encoder(self.embed(inputs), inputs_mask, deterministic=deterministic)

    def logits(self, hidden: jax.Array) -> jax.Array:
        """Decoder states ``[B, T, D]`` -> float32 logits ``[B, T, V]``."""
        hidden = hidden.astype(jnp.float32)
        if self.config.tie_embeddings:
            return self.embed.attend(hidden * self.config.d_model**-0.5)
        return self.lm_head(hidden)

    def decode(
        self,
        decoder_inputs: jax.Array,
        encoded: jax.Array,
        inputs_mask: jax.Array,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        """Teacher-forced logits ``[B, T, V]`` of ``decoder_inputs: [B, T]`` (already
        shifted right) given the encoder outputs ``[B, L, D]``."""
        hidden = self.decoder(
            self.embed(decoder_inputs), encoded, inputs_mask, deterministic=deterministic
        )
        return self.logits(hidden)

    def __call__(
        self,
        inputs: jax.Array,
        inputs_mask: jax.Array,
        targets: jax.Array,
        *,
        deterministic: bool = True,
    ) -> jax.Array:
        encoded = self.encode(inputs, inputs_mask, deterministic=deterministic)
        return self.decode(shift_right(targets), encoded, inputs_mask, deterministic=deterministic)

    def init_cache(self, inputs: jax.Array, inputs_mask: jax.Array, max_length: int) -> None:
        """Encode once and create the decoder cache for ``max_length`` steps (apply with
        ``mutable=["cache"]``: self-attention keys/values zeroed, cross-attention keys/values
        of the encoder outputs projected once)."""
        self.init_cache_from(self.encode(inputs, inputs_mask), inputs_mask, max_length)

    def init_cache_from(self, encoded: jax.Array, inputs_mask: jax.Array, max_length: int) -> None:
        """``init_cache`` from encoder outputs ``[B, L, D]`` computed beforehand."""
        zeros = jnp.zeros((encoded.shape[0], max_length, self.config.d_model), encoded.dtype)
        self.decoder(zeros, encoded, inputs_mask, decode=True)

    def embed_tokens(self, tokens: jax.Array) -> jax.Array:
        """Token embeddings ``[B, L, D]`` of ``tokens: [B, L]``."""
        return self.embed(tokens)

    def decode_step(self, tokens: jax.Array) -> jax.Array:
        """One cached decoding step: ``tokens: [B, 1]`` -> logits ``[B, 1, V]``."""
        return self.logits(self.decoder(self.embed(tokens), decode=True))


def ssm_parameter_mask(params: Any) -> Any:
    """A pytree of booleans like ``params``: False for the SSM parameters (every leaf
    under an ``ssm`` submodule), True elsewhere; the weight-decay mask of the optimizer."""
    flat = jax.tree_util.tree_flatten_with_path(params)[0]
    treedef = jax.tree_util.tree_structure(params)
    keep = [not any(getattr(k, "key", None) == SSM_SUBMODULE for k in path) for path, _ in flat]
    return jax.tree_util.tree_unflatten(treedef, keep)


def count_parameters(config: LOCOSTConfig, input_length: int = 16, target_length: int = 8) -> int:
    """The parameter count of ``config`` from ``jax.eval_shape`` (nothing allocated)."""
    model = config.make()
    shapes = jax.eval_shape(
        model.init,
        jax.random.key(0),
        jax.ShapeDtypeStruct((1, input_length), jnp.int32),
        jax.ShapeDtypeStruct((1, input_length), jnp.bool_),
        jax.ShapeDtypeStruct((1, target_length), jnp.int32),
    )
    return sum(int(x.size) for x in jax.tree.leaves(shapes))


def step_fn(params: Any, tokens: jax.Array, cache: Any, *, model: LOCOST):
    """``seq_models.generation``'s step function for ``model`` (bind ``model`` with
    ``functools.partial`` once and reuse it so the search compiles once)."""
    logits, variables = model.apply(
        {"params": params, "cache": cache},
        tokens[:, None],
        method=LOCOST.decode_step,
        mutable=["cache"],
    )
    return logits[:, 0], variables["cache"]


@functools.cache
def beam_decoder(model: LOCOST, max_length: int, num_beams: int, eos_id: int, pad_id: int):
    """A jitted ``decode(params, encoded [B, L, D], inputs_mask [B, L]) -> tokens
    [B, max_length]``: beam search from encoder outputs computed beforehand (one
    compilation per model, length and beam width)."""
    step = functools.partial(step_fn, model=model)

    @jax.jit
    def decode(params, encoded, inputs_mask):
        _, variables = model.apply(
            {"params": params},
            encoded,
            inputs_mask,
            max_length,
            method=LOCOST.init_cache_from,
            mutable=["cache"],
        )
        start = jnp.full((encoded.shape[0],), pad_id, jnp.int32)
        tokens, _ = beam_search(
            step,
            params,
            variables["cache"],
            start,
            max_length=max_length,
            num_beams=num_beams,
            eos_id=eos_id,
            pad_id=pad_id,
        )
        return tokens

    return decode
