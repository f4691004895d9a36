"""A decoder-only T5-style language model, and generation from prompts of any lengths.

``DecoderLM``: token embedding, ``T5Decoder(cross_attention=False)`` (relative-position
causal self-attention, gated-GELU feed-forward, pre-RMSNorm) and an LM head tied to the
embedding (T5's ``d_model ** -0.5`` rescaling). ``__call__(tokens [B, T]) -> logits [B,
T, V]`` (float32): ``logits[:, t]`` predicts ``tokens[:, t + 1]``.

Prompts of different lengths share a batch left-padded (:func:`prefill`): positions are
only relative, so a prompt's computation does not depend on where it starts, and the
padding is kept out of the attention by clearing it from the cache's written-positions
mask after every prefill step. The cache then continues with the generation functions of
:mod:`seq_models.generation` (:func:`step_fn`).
"""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from miles_cli import check_config, option
from seq_models.t5 import T5Decoder


@dataclasses.dataclass(frozen=True)
class DecoderLMConfig:
    """Sizes of a decoder-only LM.

    Attributes:
      vocab_size: tokens of the embedding and of the tied head.
      d_model: model width.
      d_ff: hidden width of the gated-GELU feed-forward layers.
      num_layers: decoder layers.
      num_heads: attention heads.
      head_dim: width of one head.
      dropout: dropout rate (training only).
    """

    vocab_size: int = option(4000, minimum=2)
    d_model: int = option(64, minimum=1)
    d_ff: int = option(128, minimum=1)
    num_layers: int = option(2, minimum=1)
    num_heads: int = option(4, minimum=1)
    head_dim: int = option(16, minimum=1)
    dropout: float = option(0.1, minimum=0, below=1)

    def __post_init__(self) -> None:
        check_config(self)

    def make(self) -> DecoderLM:
        return DecoderLM(self)


class DecoderLM(nn.Module):
    """Decoder-only LM: ``tokens [B, T] -> logits [B, T, V]`` (see the module doc).

    Attributes:
      config: the model sizes.
    """

    config: DecoderLMConfig

    def setup(self) -> None:
        c = self.config
        self.embed = nn.Embed(c.vocab_size, c.d_model, embedding_init=nn.initializers.normal(1.0))
        self.decoder = T5Decoder(
            c.num_layers,
            c.d_model,
            c.num_heads,
            c.head_dim,
            c.d_ff,
            c.dropout,
            cross_attention=False,
        )

    def logits(self, hidden: jax.Array) -> jax.Array:
        return self.embed.attend(hidden.astype(jnp.float32) * self.config.d_model**-0.5)

    def __call__(self, tokens: jax.Array, *, deterministic: bool = True) -> jax.Array:
        if np.ndim(tokens) != 2:
            raise ValueError(f"tokens must have shape [B, T], got {np.shape(tokens)}")
        return self.logits(self.decoder(self.embed(tokens), deterministic=deterministic))

    def init_cache(self, batch: int, max_length: int) -> None:
        """Create the cache for ``max_length`` positions (apply with ``mutable=["cache"]``)."""
        zeros = jnp.zeros((batch, max_length, self.config.d_model), jnp.float32)
        self.decoder(zeros, decode=True)

    def decode_step(self, tokens: jax.Array) -> jax.Array:
        """One cached step: ``tokens [B, 1]`` -> logits ``[B, 1, V]``."""
        return self.logits(self.decoder(self.embed(tokens), decode=True))


def step_fn(params: Any, tokens: jax.Array, cache: Any, *, model: DecoderLM):
    """:mod:`seq_models.generation`'s step function for ``model`` (bind ``model`` with
    ``functools.partial`` once)."""
    logits, variables = model.apply(
        {"params": params, "cache": cache},
        tokens[:, None],
        method=DecoderLM.decode_step,
        mutable=["cache"],
    )
    return logits[:, 0], variables["cache"]


def prefill(
    model: DecoderLM, params: Any, prompts: jax.Array, prompt_mask: jax.Array, max_new_tokens: int
) -> tuple[Any, jax.Array]:
    """The cache after reading left-padded prompts, and the tokens to feed next.

    Args:
      model, params: the LM.
      prompts: ``[B, P]`` token ids, each prompt right-aligned (padding on the left).
      prompt_mask: ``[B, P]``, True at real prompt tokens (a suffix of each row; at least
        the last position).
      max_new_tokens: positions left in the cache for generation.

    Returns:
      ``(cache, start_tokens [B])``: the cache holds ``prompts[:, :-1]`` (padding cleared
      from its written-positions mask); ``start_tokens = prompts[:, -1]`` is the first
      input of the search, whose first output is the first new token.
    """
    mask = np.asarray(prompt_mask, bool)
    if np.ndim(prompts) != 2 or mask.shape != np.shape(prompts):
        raise ValueError(
            f"prompts and prompt_mask must have the same shape [B, P], got {np.shape(prompts)} "
            f"and {mask.shape}"
        )
    if not mask[:, -1].all() or (np.diff(mask.astype(int), axis=1) < 0).any():
        raise ValueError(
            "prompt_mask must mark a non-empty suffix of each row (prompts padded on the left)"
        )
    if not isinstance(max_new_tokens, int) or max_new_tokens < 1:
        raise ValueError(f"max_new_tokens must be a positive int, got {max_new_tokens!r}")
    return _prefill(model, params, jnp.asarray(prompts), jnp.asarray(mask), max_new_tokens)


@functools.partial(jax.jit, static_argnames=("model", "max_new_tokens"))
def _prefill(model, params, prompts, prompt_mask, max_new_tokens):
    batch, length = prompts.shape
    _, variables = model.apply(
        {"params": params},
        batch,
        length + max_new_tokens,
        method=DecoderLM.init_cache,
        mutable=["cache"],
    )
    cache = variables["cache"]
    keep = jnp.concatenate([prompt_mask, jnp.ones((batch, max_new_tokens), bool)], axis=1)
    step = functools.partial(step_fn, model=model)

    def read(cache, token):
        _, cache = step(params, token, cache)
        decoder = dict(cache["decoder"], self_mask=cache["decoder"]["self_mask"] & keep)
        return dict(cache, decoder=decoder), None

    cache, _ = jax.lax.scan(read, cache, prompts[:, :-1].T)
    return cache, prompts[:, -1]
