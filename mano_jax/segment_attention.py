"""Softmax attention among the tokens of one segment: the core every attention layer calls.

Tokens come in groups ``[G, heads, T, d]`` (a group is one window of one image, or a
whole image for global attention). Query ``t`` of group ``g`` attends to key ``u`` iff
``segments[g, t] == segments[g, u] >= 0``; a negative id marks padding, never attended
to, and a query that sees no key outputs zeros. Segments express both the padding mask
and Swin's shifted-window mask with ``G * T`` integers instead of a ``[G, T, T]`` mask.

- ``attention_core``: the XLA path (two einsums and a masked softmax, normalised after ``v``);
- ``attention_core_reference``: the same map, one group, head and query at a time in
  float64 NumPy, for checking the fast paths (``pallas_attention``) and users' runs.

Both the XLA path here and the Pallas kernel of ``pallas_attention`` depend on this
module only, and ``attention`` chooses between them.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["attention_core", "attention_core_reference"]


def attention_core(
    q: jax.Array, k: jax.Array, v: jax.Array, segments: jax.Array | None = None
) -> jax.Array:
    """Softmax attention ``softmax(q k^T / sqrt(d)) v`` within segments (XLA).

    Args:
      q, k: ``[G, heads, T, d]``.
      v: ``[G, heads, T, dv]``.
      segments: ``[G, T]`` int32 or ``None``; query ``t`` attends to key ``u`` iff
        ``segments[t] == segments[u] >= 0``. Queries with no key get zeros.

    Returns:
      ``[G, heads, T, dv]`` in the dtype of ``v``; logits and softmax in float32.

    The scale is applied to ``q`` (``[G, heads, T, d]``) rather than to the logits and
    the softmax is normalised after the product with ``v``: both keep elementwise work
    off the ``[G, heads, T, T]`` logits (on XLA:CPU each such pass costs as much as a
    whole coarse level of multipole attention).
    """
    q = q * jnp.asarray(q.shape[-1] ** -0.5, q.dtype)
    logits = jnp.einsum("ghtd,ghud->ghtu", q, k, preferred_element_type=jnp.float32)
    if segments is not None:
        allowed = (segments[:, :, None] == segments[:, None, :]) & (segments[:, None, :] >= 0)
        allowed = allowed[:, None]
        logits = jnp.where(allowed, logits, -jnp.inf)
        has_key = jnp.any(allowed, axis=-1, keepdims=True)
        logits = jnp.where(has_key, logits, 0.0)
    # softmax(s) v = (exp(s - m) v) / sum(exp(s - m)) for any constant m per query: the
    # division acts on [G, heads, T, dv], not on the [G, heads, T, T] weights.
    p = jnp.exp(logits - jax.lax.stop_gradient(logits.max(axis=-1, keepdims=True)))
    out = jnp.einsum("ghtu,ghud->ghtd", p.astype(v.dtype), v, preferred_element_type=jnp.float32)
    out = out / p.sum(axis=-1, keepdims=True)
    if segments is not None:
        out = jnp.where(has_key, out, 0.0)
    return out.astype(v.dtype)


def attention_core_reference(q, k, v, segments=None) -> np.ndarray:
    """``attention_core`` written out: one group, head and query at a time, float64 NumPy.

    For query ``t`` the visible keys are ``U = {u : segments[g, u] == segments[g, t] >= 0}``
    (all keys when ``segments`` is ``None``) and the output is
    ``sum_{u in U} p_u v[u]`` with ``p = softmax_u(q[t] . k[u] / sqrt(d))``, or zeros when
    ``U`` is empty. ``O(G heads T^2 d)`` Python work: for tests and spot checks only.

    Args:
      q, k: ``[G, heads, T, d]``; v: ``[G, heads, T, dv]`` (any array-likes).
      segments: ``[G, T]`` integers or ``None``.

    Returns:
      ``[G, heads, T, dv]`` float64.
    """
    q, k, v = (np.asarray(a, np.float64) for a in (q, k, v))
    seg = None if segments is None else np.asarray(segments)
    groups, heads, tokens, d = q.shape
    out = np.zeros((groups, heads, tokens, v.shape[-1]))
    for g in range(groups):
        for t in range(tokens):
            if seg is None:
                keys = list(range(tokens))
            else:
                keys = [u for u in range(tokens) if seg[g, u] == seg[g, t] and seg[g, u] >= 0]
            if not keys:
                continue
            for h in range(heads):
                logits = np.array([q[g, h, t] @ k[g, h, u] for u in keys]) / np.sqrt(d)
                p = np.exp(logits - logits.max())
                p /= p.sum()
                out[g, h, t] = sum(p_u * v[g, h, u] for p_u, u in zip(p, keys, strict=True))
    return out
