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
attention itself.

Memory. The plain solve holds ``A`` and the system matrix ``I - gamma A`` (a second
``[T, T]`` buffer per head): XLA's compiled forward has about 3 ``[T, T]`` float32
buffers per head of temporaries, against 2 for standard causal attention (logits and
weights), whatever the solve's own workspace. ``block_size``
switches to a blocked forward substitution that computes ``A`` block by block from
``q`` and ``k``: each block of ``b`` rows is one ``[b, T]`` softmax, one product with the
mixed values ``(1 - gamma) V + gamma Y`` (the right-hand side and the contributions of
the earlier blocks at once) and one exact ``b x b`` triangular solve. Neither ``A`` nor
``I - gamma A`` is ever formed: the forward's temporaries are about ``2.5 b T`` floats
per head, linear in ``T`` (measured at ``b = 256``, 4 heads of 64: 0.63, 0.31, 0.16
``[T, T]`` buffers per head at ``T`` = 1024, 2048, 4096; plain solve 3.0). Under
differentiation each block is rematerialised (the backward pass recomputes its rows of
``A``, about one extra attention forward of compute), so training stores only the
scan's carry per block, ``(T / b)`` copies of ``[T, dv]``, i.e. ``dv / b`` of a
``[T, T]`` buffer (not linear in ``T``, but a small fraction of ``A``), plus ``O(b T)``
workspace: 1.4 and 0.8 ``[T, T]`` buffers per head at ``T`` = 1024 and 2048 against
5.1 and 5.1 for the plain solve and 4.0 for standard attention.

Decoding: the strict form is attention over a cache of mixed values,
``y_t = sum_{j<=t} A_tj z_j`` with ``z_t = (1 - gamma) v_t`` and, once ``y_j`` is known,
``z_j = (1 - gamma) v_j + gamma y_j``. Indeed ``y_t = (1 - gamma) (A V)_t + gamma
(A_s Y)_t``, which is row ``t`` of the strict system (``chain_causal_decode_step``, tested
token by token against the strict form; it differs from the full form).

Precision: the logits, the softmax, the solve and its right-hand side are float32
whatever the input dtype (bfloat16 inputs are upcast); the result is cast back to
``v.dtype``.

Known problem (jax 0.10.2, CPU): the compiled gradient of the one-solve form at
``T = 1024`` (batch 1, 4 heads of 64) hangs on its second call, a deadlock inside the
XLA CPU runtime that ``softmax`` followed by ``solve_triangular`` alone reproduces
(the gradient of ``solve_triangular`` alone does not hang). The blocked form
(``block_size``) ran at ``T = 1024`` and ``2048``; at ``T >= 2048`` the same runtime hung
intermittently for standard attention and the blocked form too (see
``benchmarks/RESULTS.md``), so the problem is not specific to this module. Use
``block_size`` to train on long sequences on CPU.

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


def _check_mask(mask: Any, batch: int, length: int) -> None:
    """Raise unless ``mask`` is ``None``, a ``[B, T]`` padding mask or a boolean
    broadcastable to ``[B, H, T, T]`` with its last two axes of size ``T``."""
    if mask is None:
        return
    shape = jnp.shape(mask)
    if len(shape) == 2:
        if shape != (batch, length):
            raise ValueError(f"mask must have shape {(batch, length)} (padding), got {shape}")
        return
    if len(shape) != 4 or shape[-2:] != (length, length) or shape[0] not in (1, batch):
        raise ValueError(
            f"mask must have shape [batch, length] = {(batch, length)} or be broadcastable to "
            f"[batch, heads, length, length] with batch {batch} and length {length}, got {shape}"
        )


def _allowed_rows(mask: Any, length: int, start: Any, size: int) -> jax.Array:
    """Rows ``start .. start + size`` of the causal mask intersected with ``mask``
    (already checked): boolean, broadcastable to ``[B, H, size, T]``. A ``[B, T]`` padding
    mask removes padded keys and padded queries. ``start`` may be traced."""
    rows = start + jnp.arange(size)
    allowed = (rows[:, None] >= jnp.arange(length)[None, :])[None, None]
    if mask is None:
        return allowed
    mask = jnp.asarray(mask, bool)
    if mask.ndim == 2:
        queries = lax.dynamic_slice_in_dim(mask, start, size, axis=1)
        return allowed & mask[:, None, None, :] & queries[:, None, :, None]
    return allowed & lax.dynamic_slice_in_dim(mask, start, size, axis=2)


def _allowed(mask: Any, batch: int, length: int) -> jax.Array:
    """The causal mask intersected with ``mask``: boolean, broadcastable to
    ``[B, H, T, T]``. A ``[B, T]`` padding mask removes padded keys and padded queries."""
    _check_mask(mask, batch, length)
    return _allowed_rows(mask, length, 0, length)


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
    batch, length = jnp.shape(q)[:2]
    _check_mask(mask, batch, length)
    return _weight_rows(q, k, mask, 0, length)


def _weight_rows(q: jax.Array, k: jax.Array, mask: Any, start: Any, size: int) -> jax.Array:
    """Rows ``start .. start + size`` of ``causal_weights``: float32 ``[B, H, size, T]``
    from the queries of those rows only (``start`` may be traced)."""
    allowed = _allowed_rows(mask, k.shape[1], start, size)
    rows = q if size == q.shape[1] else lax.dynamic_slice_in_dim(q, start, size, axis=1)
    scale = q.shape[-1] ** -0.5
    weights = attention_weights(rows.astype(jnp.float32) * scale, k.astype(jnp.float32), allowed)
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


def _blocked_attention(q, k, v, gamma, strict, mask, block_size):
    """The solution by blocks of ``block_size`` rows (forward substitution), computing
    the rows of ``A`` block by block from ``q`` and ``k``: ``A`` is never formed whole.

    Block ``i`` (rows ``I``): ``M_II Y_I = A_I Z`` with ``M_II`` the diagonal block of the
    system (``I - gamma A_II``, strict: diagonal of ``A_II`` removed) and ``Z`` the mixed
    values ``(1 - gamma) V + gamma Y``, where ``Y`` is zero at the rows not solved yet
    (block ``i`` included): ``A_I Z = (1 - gamma) A_I V + gamma sum_{j<i} A_IJ Y_J``, the
    right-hand side plus the contributions of the earlier blocks. So each block costs
    one ``[b, T]`` row of logits and softmax, one ``[b, T] x [T, dv]`` product and one
    ``b x b`` triangular solve; ``Z`` is the carry. ``q, k: [B, T, H, d]``,
    ``v: [B, T, H, dv]``, ``gamma: [H or 1, 1, 1]`` -> ``Y: [B, H, T, dv]`` float32.
    """
    length = q.shape[1]
    mixed = (1.0 - gamma) * jnp.swapaxes(v.astype(jnp.float32), 1, 2)  # [B, H, T, dv]

    def solve_block(mixed, start, size):
        rows = _weight_rows(q, k, mask, start, size)  # [B, H, size, T]
        known = jnp.einsum("bhqk,bhkd->bhqd", rows, mixed)
        diagonal = lax.dynamic_slice_in_dim(rows, start, size, axis=3)
        block = _plain_solve(diagonal, known, gamma, strict)
        current = lax.dynamic_slice_in_dim(mixed, start, size, axis=2)
        mixed = lax.dynamic_update_slice_in_dim(mixed, current + gamma * block, start, axis=2)
        return mixed, block

    full = length // block_size
    # Rematerialised under differentiation: the backward pass recomputes each block's
    # rows of A instead of storing all of them (which would be A itself).
    step = jax.checkpoint(lambda z, i: solve_block(z, i * block_size, block_size))
    mixed, blocks = lax.scan(step, mixed, jnp.arange(full))
    batch, heads, _, dv = mixed.shape
    out = jnp.moveaxis(blocks, 0, 2).reshape(batch, heads, full * block_size, dv)
    if full * block_size < length:  # a last, shorter block
        _, last = solve_block(mixed, full * block_size, length - full * block_size)
        out = jnp.concatenate([out, last], axis=2)
    return out


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
      block_size: rows per block of the blocked solve, which never forms ``A`` whole
        (memory linear in ``T`` in the forward pass, see the module docstring);
        ``None`` (or ``>= T``): one triangular solve of the ``[T, T]`` system.

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
    if block_size is not None and block_size < q.shape[1]:
        _check_mask(mask, q.shape[0], q.shape[1])
        out = _blocked_attention(q, k, v, gamma, strict, mask, block_size)
        return jnp.swapaxes(out, 1, 2).astype(v.dtype)
    weights = causal_weights(q, k, mask)
    values = jnp.swapaxes(v.astype(jnp.float32), 1, 2)  # [B, H, T, dv]
    rhs = (1.0 - gamma) * jnp.einsum("bhqk,bhkd->bhqd", weights, values)
    out = _plain_solve(weights, rhs, gamma, strict)
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
