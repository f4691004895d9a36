"""Chain-and-causal attention (ChaCAL): causal attention summed over every path length.

Read the causal attention matrix of one head, ``A = softmax(q k^T / sqrt(d) + causal
mask)`` (row-stochastic, lower-triangular), as the adjacency matrix of a graph and sum
over all paths, discounted by ``gamma in [0, 1)``:

- full form: ``(I - gamma A) Y = (1 - gamma) A V``, i.e.
  ``Y = (1 - gamma) A (I - gamma A)^-1 V`` (``A`` and the inverse commute), the fixed
  point of ``Z = A (gamma Z + (1 - gamma) V)``;
- strict form: ``(I - gamma A_s) Y = (1 - gamma) A V`` with ``A_s = A - diag(A)``, a
  unit-triangular system, ``Y = (I - gamma A_s)^-1 (1 - gamma) A V`` (the inverse stands
  left of ``A`` and the order matters).

``gamma = 0`` is standard causal attention. Both forms are triangular solves
(``jax.scipy.linalg.solve_triangular``, never an explicit inverse), ``O(T^2 d)`` like
attention itself. ``block_size`` switches to a blocked forward substitution: diagonal
blocks solved exactly, the contributions of earlier blocks by matrix products, so no
second ``[T, T]`` matrix (``I - gamma A``) is ever formed.

Decoding: the strict form is attention over a cache of mixed values,
``y_t = sum_{j<=t} A_tj z_j`` with ``z_t = (1 - gamma) v_t`` and, once ``y_j`` is known,
``z_j = (1 - gamma) v_j + gamma y_j``. Indeed ``y_t = (1 - gamma) (A V)_t + gamma
(A_s Y)_t``, which is row ``t`` of the strict system (``chain_causal_decode_step``, tested
token by token against the strict form; it differs from the full form).

Precision: the logits, the softmax, the solve and its right-hand side are float32
whatever the input dtype (bfloat16 inputs are upcast); the result is cast back to
``v.dtype``.

Paper: "Chain and Causal Attention for Efficient Entity Tracking" (EMNLP 2024).
"""

from __future__ import annotations

from typing import Any, NamedTuple

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
from jax import lax
from jax.scipy.linalg import solve_triangular

from seq_models.t5 import _check_float_dtype, _check_int, _check_rate, attention_weights

Dtype = Any

# A learned gamma is MAX_GAMMA * sigmoid(logit): inside [0, 1) with room to spare, so the
# full form's diagonal 1 - gamma A_tt stays >= 1 - MAX_GAMMA.
MAX_GAMMA = 0.99


# ----------------------------------------------------------------------------- checks


def _check_qkv(q: Any, k: Any, v: Any) -> tuple[int, int, int, int]:
    shapes = {}
    for name, x in (("q", q), ("k", k), ("v", v)):
        shapes[name] = jnp.shape(x)
        if len(shapes[name]) != 4:
            raise ValueError(
                f"{name} must have shape [batch, length, heads, head_dim], got {shapes[name]}"
            )
        _check_float_dtype(jnp.result_type(x), name)
    if shapes["k"] != shapes["q"]:
        raise ValueError(f"k must have the shape of q {shapes['q']}, got {shapes['k']}")
    if shapes["v"][:3] != shapes["q"][:3]:
        raise ValueError(
            f"v must have shape [batch, length, heads, dv] = {shapes['q'][:3]} + (dv,), "
            f"got {shapes['v']}"
        )
    return shapes["q"]


def check_gamma(gamma: Any, num_heads: int) -> jax.Array:
    """``gamma`` as a float32 array of shape ``()`` or ``[num_heads]``.

    Raises:
      ValueError: another shape, or (for a concrete value) an entry outside [0, 1)
        or not finite. Traced values (inside ``jit``) are only checked for shape.
    """
    shape = jnp.shape(gamma)
    if shape not in ((), (num_heads,)):
        raise ValueError(f"gamma must be a scalar or have shape ({num_heads},), got {shape}")
    try:
        concrete = np.asarray(gamma, np.float64)
    except (jax.errors.TracerArrayConversionError, jax.errors.ConcretizationTypeError):
        concrete = None
    if concrete is not None and not np.all((concrete >= 0) & (concrete < 1)):
        raise ValueError(f"gamma must lie in [0, 1), got {concrete}")
    return jnp.asarray(gamma, jnp.float32)


def _allowed(mask: Any, batch: int, length: int) -> jax.Array:
    """The causal mask intersected with ``mask``: boolean, broadcastable to
    ``[B, H, T, T]``. A ``[B, T]`` padding mask removes padded keys and padded queries."""
    causal = jnp.tril(jnp.ones((length, length), bool))[None, None]
    if mask is None:
        return causal
    shape = jnp.shape(mask)
    if len(shape) == 2:
        if shape != (batch, length):
            raise ValueError(f"mask must have shape {(batch, length)} (padding), got {shape}")
        real = jnp.asarray(mask, bool)
        return causal & real[:, None, None, :] & real[:, None, :, None]
    if len(shape) != 4 or shape[-2:] != (length, length) or shape[0] not in (1, batch):
        raise ValueError(
            f"mask must have shape [batch, length] = {(batch, length)} or be broadcastable to "
            f"[batch, heads, length, length] with batch {batch} and length {length}, got {shape}"
        )
    return causal & jnp.asarray(mask, bool)


def segment_mask(segment_ids: jax.Array) -> jax.Array:
    """``[B, T]`` integer segment ids -> boolean ``[B, 1, T, T]``: a query attends only to
    keys of its own segment (packed sequences); pass it as ``mask``."""
    if jnp.ndim(segment_ids) != 2:
        raise ValueError(
            f"segment_ids must have shape [batch, length], got {jnp.shape(segment_ids)}"
        )
    return (segment_ids[:, :, None] == segment_ids[:, None, :])[:, None]


# ----------------------------------------------------------------------------- attention


def causal_weights(q: jax.Array, k: jax.Array, mask: Any = None) -> jax.Array:
    """``A = softmax(q k^T / sqrt(d))`` over the allowed keys, float32 ``[B, H, T, T]``.

    ``q, k: [B, T, H, d]``; ``mask`` as in ``chain_causal_attention``. ``A`` is exactly
    lower-triangular: disallowed entries are zero, and so is every row with no allowed
    key (a padded query), whose output is then zero.
    """
    batch, length, _, head_dim = jnp.shape(q)
    allowed = _allowed(mask, batch, length)
    scale = head_dim**-0.5
    weights = attention_weights(q.astype(jnp.float32) * scale, k.astype(jnp.float32), allowed)
    return jnp.where(allowed, weights, 0.0)


def causal_attention(q: jax.Array, k: jax.Array, v: jax.Array, *, mask: Any = None) -> jax.Array:
    """Standard causal attention ``A V``: ``q, k: [B, T, H, d]``, ``v: [B, T, H, dv]`` ->
    ``[B, T, H, dv]`` in ``v.dtype`` (float32 accumulation); ``mask`` as in
    ``chain_causal_attention``. Equals ``chain_causal_attention`` with ``gamma = 0``."""
    _check_qkv(q, k, v)
    weights = causal_weights(q, k, mask)
    out = jnp.einsum("bhqk,bkhd->bqhd", weights, v.astype(jnp.float32))
    return out.astype(v.dtype)


def _system(weights: jax.Array, gamma: jax.Array, strict: bool) -> jax.Array:
    """The lower triangle of ``I - gamma A`` (full) or ``-gamma A`` with the unit diagonal
    left implicit (strict, ``unit_diagonal=True`` never reads the diagonal)."""
    scaled = -gamma * weights
    if strict:
        return scaled
    return scaled + jnp.eye(weights.shape[-1], dtype=weights.dtype)


def _plain_solve(weights, rhs, gamma, strict):
    """``weights: [B, H, T, T]``, ``rhs: [B, H, T, dv]`` -> ``Y: [B, H, T, dv]``."""
    return solve_triangular(_system(weights, gamma, strict), rhs, lower=True, unit_diagonal=strict)


def _blocked_solve(weights, rhs, gamma, strict, block_size):
    """The same solution by blocks of ``block_size`` rows (forward substitution).

    Block ``i``: ``M_ii Y_i = R_i + gamma sum_{j<i} A_ij Y_j``. The rows of ``A`` of block
    ``i`` times the solution so far (zero at rows not solved yet) is that sum, so each step
    is one ``[b, T] x [T, dv]`` product and one ``b x b`` triangular solve.
    """
    length = weights.shape[-1]
    blocks = -(-length // block_size)
    pad = blocks * block_size - length
    # Padded rows and columns are zero: their equations read y = 0 and feed nothing.
    weights = jnp.pad(weights, [(0, 0), (0, 0), (0, pad), (0, pad)])
    rhs = jnp.pad(rhs, [(0, 0), (0, 0), (0, pad), (0, 0)])

    def step(solution, i):
        start = i * block_size
        rows = lax.dynamic_slice_in_dim(weights, start, block_size, axis=2)
        diagonal = lax.dynamic_slice_in_dim(rows, start, block_size, axis=3)
        known = lax.dynamic_slice_in_dim(rhs, start, block_size, axis=2)
        known = known + gamma * jnp.einsum("bhqk,bhkd->bhqd", rows, solution)
        block = _plain_solve(diagonal, known, gamma, strict)
        return lax.dynamic_update_slice_in_dim(solution, block, start, axis=2), None

    solution, _ = lax.scan(step, jnp.zeros_like(rhs), jnp.arange(blocks))
    return solution[:, :, :length]


def chain_causal_attention(
    q: jax.Array,
    k: jax.Array,
    v: jax.Array,
    gamma: Any,
    *,
    strict: bool = True,
    mask: Any = None,
    block_size: int | None = None,
) -> jax.Array:
    """Chain-and-causal attention of every head (see the module docstring).

    Args:
      q, k: ``[B, T, H, d]`` queries and keys (logits ``q . k / sqrt(d)``).
      v: ``[B, T, H, dv]`` values.
      gamma: path discount in [0, 1), a scalar or one per head ``[H]``.
      strict: solve ``(I - gamma A_s) Y = (1 - gamma) A V`` (diagonal of ``A`` removed
        from the inverse; the form the decode step computes); else the full form
        ``(I - gamma A) Y = (1 - gamma) A V``.
      mask: ``None``; a ``[B, T]`` padding mask (True at real tokens: padded keys are
        never attended, padded queries output zero); or a boolean broadcastable to
        ``[B, H, T, T]`` (True = may attend, e.g. ``segment_mask`` of packed sequences),
        always intersected with the causal mask.
      block_size: rows per block of the blocked solve (``None``: one triangular solve).

    Returns:
      ``Y: [B, T, H, dv]`` in ``v.dtype`` (computed in float32).

    Raises:
      ValueError: shapes that do not match, ``gamma`` not of shape ``()`` or ``[H]`` or
        (when concrete) outside [0, 1), a ``block_size`` that is not a positive int.
    """
    _, _, heads, _ = _check_qkv(q, k, v)
    gamma = check_gamma(gamma, heads).reshape(-1, 1, 1)
    if block_size is not None:
        _check_int(block_size, "block_size")
    weights = causal_weights(q, k, mask)
    values = jnp.swapaxes(v.astype(jnp.float32), 1, 2)  # [B, H, T, dv]
    rhs = (1.0 - gamma) * jnp.einsum("bhqk,bhkd->bhqd", weights, values)
    if block_size is None or block_size >= q.shape[1]:
        out = _plain_solve(weights, rhs, gamma, strict)
    else:
        out = _blocked_solve(weights, rhs, gamma, strict, block_size)
    return jnp.swapaxes(out, 1, 2).astype(v.dtype)


# ----------------------------------------------------------------------------- decoding


class ChainCausalCache(NamedTuple):
    """Decoding state of one chain-and-causal attention layer.

    Attributes:
      keys: ``[B, S, H, d]`` keys of the positions decoded so far (zero beyond).
      mixed: float32 ``[B, S, H, dv]``, the mixed values
        ``z_j = (1 - gamma) v_j + gamma y_j`` of the positions decoded so far.
      index: int32 scalar, the next position.
    """

    keys: jax.Array
    mixed: jax.Array
    index: jax.Array


def init_chain_causal_cache(
    batch: int,
    max_length: int,
    num_heads: int,
    head_dim: int,
    value_dim: int | None = None,
    dtype: Dtype = jnp.float32,
) -> ChainCausalCache:
    """An empty cache for ``max_length`` positions (keys in ``dtype``)."""
    for value, name in ((batch, "batch"), (max_length, "max_length")):
        _check_int(value, name)
    _check_int(num_heads, "num_heads")
    _check_int(head_dim, "head_dim")
    value_dim = head_dim if value_dim is None else _check_int(value_dim, "value_dim")
    _check_float_dtype(dtype, "dtype")
    return ChainCausalCache(
        keys=jnp.zeros((batch, max_length, num_heads, head_dim), dtype),
        mixed=jnp.zeros((batch, max_length, num_heads, value_dim), jnp.float32),
        index=jnp.array(0, jnp.int32),
    )


def chain_causal_decode_step(
    cache: ChainCausalCache, q: jax.Array, k: jax.Array, v: jax.Array, gamma: Any
) -> tuple[jax.Array, ChainCausalCache]:
    """One position of the strict form, ``O(t d)``: attention over the mixed values.

    ``q, k: [B, H, d]``, ``v: [B, H, dv]`` of position ``t = cache.index``. Returns
    ``(y_t [B, H, dv] in v.dtype, cache)`` with ``y_t = sum_{j<=t} A_tj z_j``,
    ``z_t = (1 - gamma) v_t``, and the cache holding ``z_t = (1 - gamma) v_t + gamma y_t``
    for the next steps. Token by token, this equals
    ``chain_causal_attention(..., strict=True)``. Decoding past the cache's length is not
    detected inside ``jit``.
    """
    batch, max_length, heads, head_dim = cache.keys.shape
    value_dim = cache.mixed.shape[-1]
    for x, name, size in ((q, "q", head_dim), (k, "k", head_dim), (v, "v", value_dim)):
        if jnp.shape(x) != (batch, heads, size):
            raise ValueError(f"{name} must have shape {(batch, heads, size)}, got {jnp.shape(x)}")
    gamma = check_gamma(gamma, heads).reshape(-1, 1)
    t = cache.index
    keys = lax.dynamic_update_slice_in_dim(cache.keys, k[:, None].astype(cache.keys.dtype), t, 1)
    fresh = (1.0 - gamma) * v.astype(jnp.float32)
    mixed = lax.dynamic_update_slice_in_dim(cache.mixed, fresh[:, None], t, 1)
    visible = (jnp.arange(max_length) <= t)[None, None, None, :]
    weights = attention_weights(
        q[:, None].astype(jnp.float32) * head_dim**-0.5, keys.astype(jnp.float32), visible
    )[:, :, 0]  # [B, H, S]
    y = jnp.einsum("bhk,bkhd->bhd", weights, mixed)
    mixed = lax.dynamic_update_slice_in_dim(mixed, (fresh + gamma * y)[:, None], t, 1)
    return y.astype(v.dtype), ChainCausalCache(keys, mixed, t + 1)


# ----------------------------------------------------------------------------- reference


def chain_causal_reference(
    q: Any, k: Any, v: Any, gamma: Any, *, strict: bool = True, mask: Any = None
) -> np.ndarray:
    """Slow reference in float64 NumPy with an explicit inverse, one head at a time:
    ``Y = (I - gamma A')^-1 (1 - gamma) A V`` with ``A' = A - diag(A)`` (strict) or ``A``.
    Same arguments and mask semantics as ``chain_causal_attention``; returns float64."""
    q, k, v = (np.asarray(x, np.float64) for x in (q, k, v))
    batch, length, heads, head_dim = q.shape
    gamma = np.broadcast_to(np.asarray(gamma, np.float64), (heads,))
    allowed = np.broadcast_to(
        np.asarray(_allowed(mask, batch, length)), (batch, heads, length, length)
    )
    out = np.zeros(v.shape, np.float64)
    for b in range(batch):
        for h in range(heads):
            logits = q[b, :, h] @ k[b, :, h].T / np.sqrt(head_dim)
            logits = np.where(allowed[b, h], logits, -np.inf)
            peak = np.max(logits, axis=1, keepdims=True)
            e = np.where(allowed[b, h], np.exp(logits - np.where(np.isfinite(peak), peak, 0)), 0)
            a = e / np.maximum(e.sum(axis=1, keepdims=True), 1e-300)
            a_inv = a - np.diag(np.diag(a)) if strict else a
            inverse = np.linalg.inv(np.eye(length) - gamma[h] * a_inv)
            out[b, :, h] = inverse @ ((1 - gamma[h]) * a @ v[b, :, h])
    return out


# ----------------------------------------------------------------------------- module


def learned_gamma(logit: jax.Array) -> jax.Array:
    """``MAX_GAMMA * sigmoid(logit)``: the per-head gamma of ``ChainCausalAttention``."""
    return MAX_GAMMA * jax.nn.sigmoid(logit)


class ChainCausalAttention(nn.Module):
    """Multi-head chain-and-causal self-attention: ``x [B, T, D] -> [B, T, D]``.

    Query, key, value and output projections without biases (``DenseGeneral``, LeCun
    normal initialisation), then ``chain_causal_attention``. ``gamma``: a fixed value in
    [0, 1) (``0.0`` is standard causal attention and skips the solve), or ``None`` to
    learn one per head, ``MAX_GAMMA * sigmoid(gamma_logit)`` (parameter
    ``gamma_logit: [H]``, initialised so that ``gamma = gamma_init``).
    ``__call__(x, mask=None)``: ``mask`` as in ``chain_causal_attention``. Activations in
    ``dtype``; the attention itself is float32.
    """

    num_heads: int
    head_dim: int
    gamma: float | None = None
    gamma_init: float = 0.5
    strict: bool = True
    block_size: int | None = None
    dtype: Dtype = jnp.float32

    def __post_init__(self) -> None:
        _check_int(self.num_heads, "num_heads")
        _check_int(self.head_dim, "head_dim")
        if self.gamma is not None:
            _check_rate(self.gamma, "gamma")
        if not (isinstance(self.gamma_init, int | float) and 0 < self.gamma_init < MAX_GAMMA):
            raise ValueError(
                f"gamma_init must be a number in (0, {MAX_GAMMA}), got {self.gamma_init!r}"
            )
        if not isinstance(self.strict, bool):
            raise ValueError(f"strict must be a bool, got {self.strict!r}")
        if self.block_size is not None:
            _check_int(self.block_size, "block_size")
        _check_float_dtype(self.dtype, "dtype")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, mask: Any = None) -> jax.Array:
        if jnp.ndim(x) != 3:
            raise ValueError(f"x must have shape [batch, length, d_model], got {jnp.shape(x)}")
        heads = (self.num_heads, self.head_dim)
        x = x.astype(self.dtype)
        q, k, v = (
            nn.DenseGeneral(heads, use_bias=False, dtype=self.dtype, name=name)(x)
            for name in ("query", "key", "value")
        )
        if self.gamma == 0.0:
            mixed = causal_attention(q, k, v, mask=mask)
        else:
            if self.gamma is None:
                fraction = self.gamma_init / MAX_GAMMA
                logit = self.param(
                    "gamma_logit",
                    nn.initializers.constant(np.log(fraction / (1 - fraction))),
                    (self.num_heads,),
                    jnp.float32,
                )
                gamma = learned_gamma(logit)
            else:
                gamma = self.gamma
            mixed = chain_causal_attention(
                q, k, v, gamma, strict=self.strict, mask=mask, block_size=self.block_size
            )
        return nn.DenseGeneral(
            x.shape[-1], axis=(-2, -1), use_bias=False, dtype=self.dtype, name="out"
        )(mixed)
