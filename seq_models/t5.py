"""T5 (v1.1) building blocks: RMSNorm, gated-GELU feed-forward, relative position bias,
multi-head attention with a decoding cache, and the encoder and decoder stacks.

Layer layout (pre-norm, residual, no biases anywhere)::

    encoder layer:  h = h + Drop(SelfAttn(RMSNorm(h), bidirectional bias))
                    h = h + Drop(FF(RMSNorm(h)))
    decoder layer:  h = h + Drop(SelfAttn(RMSNorm(h), causal mask, unidirectional bias))
                    h = h + Drop(CrossAttn(RMSNorm(h), encoder outputs, encoder mask))
                    h = h + Drop(FF(RMSNorm(h)))
    stack output:   Drop(RMSNorm(h))

with ``FF(x) = W_o (gelu(W_0 x) * (W_1 x))``. The relative position bias is computed once
per stack and added to the self-attention logits of every layer (as T5 does).

Attention scaling (T5 convention): the logits are ``q . k`` with no ``1 / sqrt(head_dim)``
factor; the scale is folded into the initialisation instead (query kernel
``N(0, 1 / (d_model * head_dim))``, key and value ``N(0, 1 / d_model)``, output
``N(0, 1 / (num_heads * head_dim))``).

Dtype policy: parameters are float32; activations (the residual stream, projections,
attention values) are in the module's ``dtype`` (e.g. bfloat16); norms, attention logits,
the position bias and the softmax are computed in float32.

Decoding cache (Flax ``cache`` collection): calling ``T5Decoder`` with ``decode=True`` on a
full-length target ``[B, max_length, D]`` while ``cache`` is mutable creates the cache
(self-attention keys/values zeroed; cross-attention keys/values projected from the encoder
outputs once and stored, together with the encoder mask); each later ``decode=True`` call
takes one position ``[B, 1, D]``, appends its self-attention keys/values at the cache index
and reuses the stored cross-attention keys/values. ``init_decoder_cache`` does the first
step for a bare decoder.
"""

from __future__ import annotations

import math
from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax

Dtype = Any

NUM_BUCKETS = 32
MAX_DISTANCE = 128
_MASKED = float(np.finfo(np.float32).min)


def _check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not is_int or value < minimum:
        raise ValueError(f"{name} must be an int >= {minimum}, got {value!r}")
    return int(value)


def _check_rate(value: Any, name: str) -> float:
    real = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    if not (real and 0.0 <= value < 1.0):
        raise ValueError(f"{name} must be a number in [0, 1), got {value!r}")
    return float(value)


def _check_float_dtype(value: Any, name: str) -> None:
    try:
        ok = jnp.issubdtype(jnp.dtype(value), jnp.floating)
    except TypeError:
        ok = False
    if not ok:
        raise ValueError(f"{name} must be a floating dtype, got {value!r}")


def _check_buckets(num_buckets: Any, max_distance: Any, bidirectional: bool) -> None:
    minimum = 4 if bidirectional else 2
    is_int = isinstance(num_buckets, int | np.integer) and not isinstance(num_buckets, bool)
    if not is_int or num_buckets < minimum:
        kind = "bidirectional" if bidirectional else "unidirectional"
        raise ValueError(
            f"num_buckets must be an int >= {minimum} ({kind} buckets), got {num_buckets!r}"
        )
    exact = (num_buckets // 2 if bidirectional else num_buckets) // 2
    _check_int(max_distance, "max_distance", minimum=exact + 1)


def _check_last_dim(x: jax.Array, size: int, name: str) -> None:
    if jnp.ndim(x) != 3 or jnp.shape(x)[-1] != size:
        raise ValueError(f"{name} must have shape [batch, length, {size}], got {jnp.shape(x)}")


def _check_mask(mask: jax.Array | None, shape: tuple[int, int], name: str) -> None:
    if mask is not None and tuple(jnp.shape(mask)) != tuple(shape):
        raise ValueError(f"{name} must have shape {tuple(shape)}, got {jnp.shape(mask)}")


# ----------------------------------------------------------------------------- functions


def rms_norm(x: jax.Array, scale: jax.Array, epsilon: float = 1e-6) -> jax.Array:
    """T5 LayerNorm: ``y = x / sqrt(mean(x^2, -1) + epsilon) * scale``.

    No mean subtraction, no bias. ``x: [..., D]``, ``scale: [D]``; computed in float32,
    returned in ``x.dtype``.
    """
    x32 = x.astype(jnp.float32)
    variance = jnp.mean(jnp.square(x32), axis=-1, keepdims=True)
    y = x32 * lax.rsqrt(variance + epsilon) * scale.astype(jnp.float32)
    return y.astype(x.dtype)


def relative_position_bucket(
    relative_position: jax.Array,
    *,
    bidirectional: bool,
    num_buckets: int = NUM_BUCKETS,
    max_distance: int = MAX_DISTANCE,
) -> jax.Array:
    """T5's bucketing of ``relative_position = key_position - query_position`` (int array).

    Bidirectional: half the buckets for keys after the query, half for keys at or before
    it; unidirectional (causal): keys after the query all fall in bucket 0. Within each
    half of ``n`` buckets, distances below ``n // 2`` get one bucket each; larger
    distances share logarithmically wider buckets up to ``max_distance``, beyond which
    everything falls into the last bucket:
    ``bucket = n/2 + floor(log(d / (n/2)) / log(max_distance / (n/2)) * (n - n/2))``
    (float32, as in Mesh TensorFlow T5). Returns int32 buckets in ``[0, num_buckets)`` of
    the same shape.
    """
    _check_buckets(num_buckets, max_distance, bidirectional)
    n = -jnp.asarray(relative_position, jnp.int32)
    if bidirectional:
        num_buckets //= 2
        bucket = (n < 0).astype(jnp.int32) * num_buckets
        n = jnp.abs(n)
    else:
        bucket = jnp.zeros_like(n)
        n = jnp.maximum(n, 0)
    max_exact = num_buckets // 2
    ratio = jnp.log(jnp.maximum(n, max_exact).astype(jnp.float32) / max_exact)
    ratio = ratio / math.log(max_distance / max_exact) * (num_buckets - max_exact)
    large = jnp.minimum(max_exact + ratio.astype(jnp.int32), num_buckets - 1)
    return bucket + jnp.where(n < max_exact, n, large)


def attention_weights(
    query: jax.Array,
    key: jax.Array,
    mask: jax.Array | None = None,
    bias: jax.Array | None = None,
) -> jax.Array:
    """``softmax(q . k + bias)`` over keys, masked positions excluded (T5: no scaling).

    ``query: [B, Tq, H, Dh]``, ``key: [B, Tk, H, Dh]``, ``mask``: boolean, broadcastable
    to ``[B, H, Tq, Tk]`` (True = attend), ``bias``: broadcastable to ``[B, H, Tq, Tk]``.
    Logits and softmax in float32; returns float32 ``[B, H, Tq, Tk]``. A query with every
    key masked gets uniform weights (no NaN).
    """
    logits = jnp.einsum("bqhd,bkhd->bhqk", query, key, preferred_element_type=jnp.float32)
    if bias is not None:
        logits = logits + bias.astype(jnp.float32)
    if mask is not None:
        logits = jnp.where(mask, logits, _MASKED)
    return jax.nn.softmax(logits, axis=-1)


def causal_mask(length: int) -> jax.Array:
    """Boolean ``[1, 1, length, length]``: query ``t`` may attend keys ``s <= t``."""
    positions = jnp.arange(length)
    return (positions[None, :] <= positions[:, None])[None, None]


# ----------------------------------------------------------------------------- modules


class RMSNorm(nn.Module):
    """T5 LayerNorm (``rms_norm``) with a learned float32 ``scale`` (init 1).

    ``x: [..., D]`` -> same shape and dtype.
    """

    epsilon: float = 1e-6

    def __post_init__(self) -> None:
        if not (isinstance(self.epsilon, int | float) and 0 < self.epsilon < 1):
            raise ValueError(f"epsilon must be a number in (0, 1), got {self.epsilon!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array) -> jax.Array:
        scale = self.param("scale", nn.initializers.ones, (x.shape[-1],), jnp.float32)
        return rms_norm(x, scale, self.epsilon)


class GatedGeluFeedForward(nn.Module):
    """T5 v1.1 feed-forward ``wo(Drop(gelu(wi_0 x) * wi_1 x))``, no biases.

    ``x: [..., d_in]`` -> ``[..., d_model]`` in ``dtype``. GELU is the tanh approximation
    (T5 v1.1's ``gelu_new``).
    """

    d_model: int
    d_ff: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        _check_int(self.d_model, "d_model")
        _check_int(self.d_ff, "d_ff")
        _check_rate(self.dropout, "dropout")
        _check_float_dtype(self.dtype, "dtype")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, deterministic: bool = True) -> jax.Array:
        d_in = x.shape[-1]

        def dense(features: int, fan_in: int, name: str) -> nn.Dense:
            init = nn.initializers.normal(fan_in**-0.5)
            return nn.Dense(features, use_bias=False, dtype=self.dtype, kernel_init=init, name=name)

        x = x.astype(self.dtype)
        hidden = nn.gelu(dense(self.d_ff, d_in, "wi_0")(x), approximate=True)
        hidden = hidden * dense(self.d_ff, d_in, "wi_1")(x)
        hidden = nn.Dropout(self.dropout)(hidden, deterministic=deterministic)
        return dense(self.d_model, self.d_ff, "wo")(hidden)


class RelativePositionBias(nn.Module):
    """Learned per-head scalar bias indexed by ``relative_position_bucket``.

    ``__call__(query_positions [Tq], key_positions [Tk]) -> [1, num_heads, Tq, Tk]``
    float32; parameter ``embedding: [num_buckets, num_heads]``.
    """

    num_heads: int
    bidirectional: bool
    num_buckets: int = NUM_BUCKETS
    max_distance: int = MAX_DISTANCE

    def __post_init__(self) -> None:
        _check_int(self.num_heads, "num_heads")
        if not isinstance(self.bidirectional, bool):
            raise ValueError(f"bidirectional must be a bool, got {self.bidirectional!r}")
        _check_buckets(self.num_buckets, self.max_distance, self.bidirectional)
        super().__post_init__()

    @nn.compact
    def __call__(self, query_positions: jax.Array, key_positions: jax.Array) -> jax.Array:
        table = self.param(
            "embedding",
            nn.initializers.variance_scaling(1.0, "fan_avg", "uniform"),
            (self.num_buckets, self.num_heads),
            jnp.float32,
        )
        relative = key_positions[None, :] - query_positions[:, None]
        buckets = relative_position_bucket(
            relative,
            bidirectional=self.bidirectional,
            num_buckets=self.num_buckets,
            max_distance=self.max_distance,
        )
        return jnp.transpose(table[buckets], (2, 0, 1))[None]


class Attention(nn.Module):
    """Multi-head attention without biases, T5 scaling (``q . k``, see the module doc).

    ``__call__(inputs_q [B, Tq, D], inputs_kv [B, Tk, D] | None, mask, bias, ...)``
    -> ``[B, Tq, D]`` in ``dtype``. ``mask``: boolean broadcastable to ``[B, H, Tq, Tk]``
    (True = attend: padding and causal structure); ``bias``: broadcastable to
    ``[B, H, Tq, Tk]`` (the relative position bias). Self-attention when
    ``cross_attention`` is False (keys/values from ``inputs_q``), else from ``inputs_kv``.

    ``decode=True`` uses the ``cache`` collection. Self-attention: the first call creates
    ``cached_key``/``cached_value: [B, max_length, H, Dh]`` (zeros, ``max_length = Tq``
    of that call) and ``cache_index = 0`` and attends normally; every later call takes one
    position (``Tq == 1``), writes its key/value at ``cache_index``, increments it, and
    attends over the whole cache (``mask`` must exclude the unwritten positions).
    Cross-attention: the first call projects ``inputs_kv`` once into
    ``cached_key``/``cached_value: [B, Tk, H, Dh]``; later calls reuse them and ignore
    ``inputs_kv``.
    """

    num_heads: int
    head_dim: int
    cross_attention: bool = False
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        _check_int(self.num_heads, "num_heads")
        _check_int(self.head_dim, "head_dim")
        if not isinstance(self.cross_attention, bool):
            raise ValueError(f"cross_attention must be a bool, got {self.cross_attention!r}")
        _check_rate(self.dropout, "dropout")
        _check_float_dtype(self.dtype, "dtype")
        super().__post_init__()

    @nn.compact
    def __call__(
        self,
        inputs_q: jax.Array,
        inputs_kv: jax.Array | None = None,
        mask: jax.Array | None = None,
        bias: jax.Array | None = None,
        *,
        deterministic: bool = True,
        decode: bool = False,
    ) -> jax.Array:
        d_model = inputs_q.shape[-1]
        heads = (self.num_heads, self.head_dim)

        def projection(std: float, name: str) -> nn.DenseGeneral:
            init = nn.initializers.normal(std)
            return nn.DenseGeneral(
                heads, use_bias=False, dtype=self.dtype, kernel_init=init, name=name
            )

        query_proj = projection((d_model * self.head_dim) ** -0.5, "query")
        key_proj = projection(d_model**-0.5, "key")
        value_proj = projection(d_model**-0.5, "value")
        inputs_q = inputs_q.astype(self.dtype)
        query = query_proj(inputs_q)

        if self.cross_attention:
            if decode and self.has_variable("cache", "cached_key"):
                key = self.get_variable("cache", "cached_key")
                value = self.get_variable("cache", "cached_value")
            else:
                if inputs_kv is None:
                    raise ValueError(
                        "inputs_kv must be the encoder outputs [batch, length, d] for "
                        "cross-attention, got None"
                    )
                inputs_kv = inputs_kv.astype(self.dtype)
                key, value = key_proj(inputs_kv), value_proj(inputs_kv)
                if decode:
                    self.put_variable("cache", "cached_key", key)
                    self.put_variable("cache", "cached_value", value)
        else:
            key, value = key_proj(inputs_q), value_proj(inputs_q)
            if decode:
                initialized = self.has_variable("cache", "cached_key")
                cached_key = self.variable("cache", "cached_key", jnp.zeros, key.shape, key.dtype)
                cached_value = self.variable(
                    "cache", "cached_value", jnp.zeros, value.shape, value.dtype
                )
                index = self.variable("cache", "cache_index", lambda: jnp.array(0, jnp.int32))
                if initialized:
                    if inputs_q.shape[1] != 1:
                        raise ValueError(
                            "inputs_q must hold one position [batch, 1, d] when decoding "
                            f"from the cache, got {inputs_q.shape}"
                        )
                    start = (0, index.value, 0, 0)
                    key = lax.dynamic_update_slice(cached_key.value, key, start)
                    value = lax.dynamic_update_slice(cached_value.value, value, start)
                    cached_key.value, cached_value.value = key, value
                    index.value = index.value + 1

        weights = attention_weights(query, key, mask, bias)
        weights = nn.Dropout(self.dropout)(weights, deterministic=deterministic)
        mixed = jnp.einsum("bhqk,bkhd->bqhd", weights.astype(self.dtype), value)
        out_init = nn.initializers.normal((self.num_heads * self.head_dim) ** -0.5)
        return nn.DenseGeneral(
            d_model,
            axis=(-2, -1),
            use_bias=False,
            dtype=self.dtype,
            kernel_init=out_init,
            name="out",
        )(mixed)


def _check_stack(module: Any) -> None:
    _check_int(module.num_layers, "num_layers")
    _check_int(module.d_model, "d_model")
    _check_int(module.num_heads, "num_heads")
    _check_int(module.head_dim, "head_dim")
    _check_int(module.d_ff, "d_ff")
    _check_rate(module.dropout, "dropout")
    _check_float_dtype(module.dtype, "dtype")


class T5EncoderLayer(nn.Module):
    """Pre-RMSNorm self-attention + gated-GELU FF, residuals: ``[B, L, D]`` -> same."""

    num_heads: int
    head_dim: int
    d_ff: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        _check_int(self.num_heads, "num_heads")
        _check_int(self.head_dim, "head_dim")
        _check_int(self.d_ff, "d_ff")
        _check_rate(self.dropout, "dropout")
        _check_float_dtype(self.dtype, "dtype")
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array, bias: jax.Array, deterministic: bool = True
    ) -> jax.Array:
        drop = nn.Dropout(self.dropout)
        h = RMSNorm(name="attention_norm")(x)
        h = Attention(
            self.num_heads, self.head_dim, dropout=self.dropout, dtype=self.dtype, name="attention"
        )(h, mask=mask, bias=bias, deterministic=deterministic)
        x = x + drop(h, deterministic=deterministic)
        h = RMSNorm(name="ffn_norm")(x)
        h = GatedGeluFeedForward(x.shape[-1], self.d_ff, self.dropout, self.dtype, name="ffn")(
            h, deterministic
        )
        return x + drop(h, deterministic=deterministic)


class T5Encoder(nn.Module):
    """Full-attention T5 encoder: ``__call__(x [B, L, D], mask [B, L]) -> [B, L, D]``.

    ``x`` are embedded inputs (input dropout applied here), ``mask`` is True at real
    tokens (None: all real). Bidirectional relative-position self-attention (bias shared by
    all layers) + gated-GELU FF, final RMSNorm and dropout; outputs at padded positions
    are zero, and padding never influences a real position. Output dtype: ``dtype``.
    """

    num_layers: int
    d_model: int
    num_heads: int
    head_dim: int
    d_ff: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    num_buckets: int = NUM_BUCKETS
    max_distance: int = MAX_DISTANCE

    def __post_init__(self) -> None:
        _check_stack(self)
        _check_buckets(self.num_buckets, self.max_distance, True)
        super().__post_init__()

    @nn.compact
    def __call__(
        self, x: jax.Array, mask: jax.Array | None = None, deterministic: bool = True
    ) -> jax.Array:
        _check_last_dim(x, self.d_model, "x")
        batch, length, _ = x.shape
        _check_mask(mask, (batch, length), "mask")
        if mask is None:
            mask = jnp.ones((batch, length), bool)
        mask = mask.astype(bool)
        positions = jnp.arange(length)
        bias = RelativePositionBias(
            self.num_heads, True, self.num_buckets, self.max_distance, name="relative_bias"
        )(positions, positions)
        drop = nn.Dropout(self.dropout)
        x = drop(x.astype(self.dtype), deterministic=deterministic)
        for i in range(self.num_layers):
            x = T5EncoderLayer(
                self.num_heads,
                self.head_dim,
                self.d_ff,
                self.dropout,
                self.dtype,
                name=f"layers_{i}",
            )(x, mask[:, None, None, :], bias, deterministic)
        x = drop(RMSNorm(name="final_norm")(x), deterministic=deterministic)
        return jnp.where(mask[..., None], x, jnp.zeros((), x.dtype))


class T5DecoderLayer(nn.Module):
    """Pre-RMSNorm causal self-attention (+ shared position bias), cross-attention and
    gated-GELU FF, each with a residual: ``x [B, T, D]`` -> ``[B, T, D]``.

    ``self_mask``/``cross_mask``: boolean, broadcastable to ``[B, H, T, T_keys]`` and
    ``[B, H, T, S]``; ``self_bias: [1, H, T, T_keys]``; ``decode`` as in ``Attention``.
    ``cross_attention=False`` leaves the cross-attention sub-layer out (a decoder-only
    layer; ``encoded`` and ``cross_mask`` are then ignored).
    """

    num_heads: int
    head_dim: int
    d_ff: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    cross_attention: bool = True

    def __post_init__(self) -> None:
        _check_int(self.num_heads, "num_heads")
        _check_int(self.head_dim, "head_dim")
        _check_int(self.d_ff, "d_ff")
        _check_rate(self.dropout, "dropout")
        _check_float_dtype(self.dtype, "dtype")
        super().__post_init__()

    @nn.compact
    def __call__(
        self,
        x: jax.Array,
        encoded: jax.Array | None,
        self_mask: jax.Array,
        self_bias: jax.Array,
        cross_mask: jax.Array,
        deterministic: bool = True,
        decode: bool = False,
    ) -> jax.Array:
        drop = nn.Dropout(self.dropout)
        kwargs = dict(dropout=self.dropout, dtype=self.dtype)
        h = RMSNorm(name="self_attention_norm")(x)
        h = Attention(self.num_heads, self.head_dim, name="self_attention", **kwargs)(
            h, mask=self_mask, bias=self_bias, deterministic=deterministic, decode=decode
        )
        x = x + drop(h, deterministic=deterministic)
        if self.cross_attention:
            h = RMSNorm(name="cross_attention_norm")(x)
            h = Attention(
                self.num_heads,
                self.head_dim,
                cross_attention=True,
                name="cross_attention",
                **kwargs,
            )(h, encoded, mask=cross_mask, deterministic=deterministic, decode=decode)
            x = x + drop(h, deterministic=deterministic)
        h = RMSNorm(name="ffn_norm")(x)
        h = GatedGeluFeedForward(x.shape[-1], self.d_ff, self.dropout, self.dtype, name="ffn")(
            h, deterministic
        )
        return x + drop(h, deterministic=deterministic)


class T5Decoder(nn.Module):
    """T5 decoder stack without embeddings or LM head.

    ``__call__(targets [B, T, D], encoded [B, S, D], encoder_mask [B, S], *,
    deterministic=True, decode=False) -> [B, T, D]`` (final-normed, in ``dtype``).
    ``targets`` are the embedded decoder inputs (shifted right by the caller; input dropout
    applied here); ``encoder_mask`` is True at real encoder tokens (None: all real).
    Position ``t`` depends only on ``targets[:, :t + 1]`` and on real encoder positions.

    Decoding: the first ``decode=True`` call with ``cache`` mutable and
    ``T = max_length`` creates the cache (see ``init_decoder_cache``); every later
    ``decode=True`` call takes ``targets [B, 1, D]`` for the next position (``encoded``
    and ``encoder_mask`` may be None: both are cached) and returns ``[B, 1, D]``. The
    decoder-level cache holds ``index`` (int32 scalar, the next position),
    ``self_mask: [B, max_length]`` (written positions) and ``encoder_mask: [B, S]``.
    Decoding past ``max_length`` is not detected inside ``jit``.

    ``cross_attention=False``: a decoder-only stack (no cross-attention, ``encoded`` and
    ``encoder_mask`` unused and not cached).
    """

    num_layers: int
    d_model: int
    num_heads: int
    head_dim: int
    d_ff: int
    dropout: float = 0.0
    dtype: Dtype = jnp.float32
    num_buckets: int = NUM_BUCKETS
    max_distance: int = MAX_DISTANCE
    cross_attention: bool = True

    def __post_init__(self) -> None:
        _check_stack(self)
        _check_buckets(self.num_buckets, self.max_distance, False)
        if not isinstance(self.cross_attention, bool):
            raise ValueError(f"cross_attention must be a bool, got {self.cross_attention!r}")
        super().__post_init__()

    def _check_encoded(
        self, encoded: jax.Array | None, encoder_mask: jax.Array | None, batch: int
    ) -> jax.Array:
        """The encoder mask ``[B, S]`` (all True if None) after checking ``encoded``."""
        if encoded is None:
            raise ValueError("encoded must be the encoder outputs [batch, S, d], got None")
        _check_last_dim(encoded, self.d_model, "encoded")
        if encoded.shape[0] != batch:
            raise ValueError(
                f"encoded must have batch size {batch} (that of targets), got {encoded.shape[0]}"
            )
        _check_mask(encoder_mask, encoded.shape[:2], "encoder_mask")
        if encoder_mask is None:
            return jnp.ones(encoded.shape[:2], bool)
        return encoder_mask.astype(bool)

    @nn.compact
    def __call__(
        self,
        targets: jax.Array,
        encoded: jax.Array | None = None,
        encoder_mask: jax.Array | None = None,
        *,
        deterministic: bool = True,
        decode: bool = False,
    ) -> jax.Array:
        _check_last_dim(targets, self.d_model, "targets")
        batch, length, _ = targets.shape
        relative_bias = RelativePositionBias(
            self.num_heads, False, self.num_buckets, self.max_distance, name="relative_bias"
        )
        stepping = decode and self.has_variable("cache", "index")
        if stepping:
            if length != 1:
                raise ValueError(
                    "targets must hold one position [batch, 1, d] when decoding from the "
                    f"cache, got {targets.shape}"
                )
            index = self.get_variable("cache", "index")
            written = self.get_variable("cache", "self_mask")
            written = written | (jnp.arange(written.shape[1]) == index)[None, :]
            self.put_variable("cache", "index", index + 1)
            self.put_variable("cache", "self_mask", written)
            self_mask = written[:, None, None, :]
            self_bias = relative_bias(index[None], jnp.arange(written.shape[1]))
            if self.cross_attention:
                encoder_mask = self.get_variable("cache", "encoder_mask")
        else:
            if self.cross_attention:
                encoder_mask = self._check_encoded(encoded, encoder_mask, batch)
            if decode:
                self.put_variable("cache", "index", jnp.array(0, jnp.int32))
                self.put_variable("cache", "self_mask", jnp.zeros((batch, length), bool))
                if self.cross_attention:
                    self.put_variable("cache", "encoder_mask", encoder_mask)
            positions = jnp.arange(length)
            self_mask = causal_mask(length)
            self_bias = relative_bias(positions, positions)
        cross_mask = encoder_mask[:, None, None, :] if self.cross_attention else None

        drop = nn.Dropout(self.dropout)
        x = drop(targets.astype(self.dtype), deterministic=deterministic)
        for i in range(self.num_layers):
            x = T5DecoderLayer(
                self.num_heads,
                self.head_dim,
                self.d_ff,
                self.dropout,
                self.dtype,
                self.cross_attention,
                name=f"layers_{i}",
            )(x, encoded, self_mask, self_bias, cross_mask, deterministic, decode)
        return drop(RMSNorm(name="final_norm")(x), deterministic=deterministic)


def init_decoder_cache(
    decoder: T5Decoder,
    params: Any,
    encoded: jax.Array,
    encoder_mask: jax.Array | None,
    max_length: int,
) -> dict:
    """The decoding cache of a bare ``T5Decoder`` for ``max_length`` decoder positions.

    ``params``: the decoder's parameters (``variables['params']``), ``encoded: [B, S, D]``,
    ``encoder_mask: [B, S]`` (None: all real). Runs the decoder once with ``decode=True``
    on zero targets ``[B, max_length, D]``, which projects and stores the cross-attention
    keys/values. Every array leaf of the result has the batch as its leading axis except
    the int32 scalar indices. Inside a larger module, call the decoder the same way (the
    first ``decode=True`` call, ``mutable=['cache']``) to get the cache.
    """
    _check_int(max_length, "max_length")
    _check_last_dim(encoded, decoder.d_model, "encoded")
    targets = jnp.zeros((encoded.shape[0], max_length, decoder.d_model), decoder.dtype)
    _, variables = decoder.apply(
        {"params": params}, targets, encoded, encoder_mask, decode=True, mutable=["cache"]
    )
    return variables["cache"]
