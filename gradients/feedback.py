"""Stationary state feedback: the fixed matrix ``A`` that replaces ``dh_{t+1}/dh_t`` in BPTT.

    delta_t = e_t + A^T delta_{t+1}        (delta_{T-1} = e_{T-1})

``A`` is either diagonal, a vector ``a: [d]`` (each channel a reverse-time linear
recurrence, computed by ``lax.associative_scan``: ``O(d T)`` work, ``O(log T)`` depth),
or dense ``[d, d]`` (a sequential ``lax.scan`` of ``d x d`` products, ``O(d^2 T)``:
the reference implementation's cost, kept as a baseline).

Kinds (``feedback_matrix``):

- ``"diagonal"``: ``a = linspace(0, 1, d)`` (the paper's choice: channel 0 is fully
  truncated, channel ``d - 1`` an undecayed sum);
- ``"gaussian"``: entries ``N(0, 1 / d)``, spectral radius about 1 (circular law),
  spectral norm about 2, as in the reference code (``randn(d, d) / sqrt(d)``); over
  long sequences the feedback can grow with the largest eigenvalue modulus;
- ``"orthogonal"``: a Haar-random orthogonal matrix (all singular values 1), the
  reference's QR of a Gaussian matrix up to column signs.

The state may be a pytree (an LSTM's ``(h, c)``): its leaves' last axes are
concatenated into one channel axis of size ``d`` (in ``jax.tree.leaves`` order) and
``A`` acts on that, as the reference does with ``concat(h, c)``.
"""

from __future__ import annotations

from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from gradients.checks import check_int
from gradients.recurrence import reverse_linear_recurrence

PyTree = Any
MATRIX_KINDS = ("diagonal", "gaussian", "orthogonal")


def feedback_matrix(key: jax.Array | None, kind: str, size: int) -> jax.Array:
    """The fixed feedback of ``kind``: ``[size]`` (diagonal) or ``[size, size]``.

    Args:
      key: a ``jax.random`` key (``jax.random.key`` or the legacy ``PRNGKey``); needed by
        the random kinds, ignored (may be ``None``) for ``"diagonal"``.
      kind: one of ``MATRIX_KINDS``.
      size: the number of state channels ``d >= 1``.
    """
    if isinstance(key, str):
        raise ValueError(
            f"key must be a jax.random key or None (the key comes first: "
            f"feedback_matrix(key, kind, size)), got {key!r}"
        )
    if kind not in MATRIX_KINDS:
        raise ValueError(f"kind must be one of {MATRIX_KINDS}, got {kind!r}")
    size = check_int(size, "size")
    if kind == "diagonal":
        return jnp.linspace(0.0, 1.0, size)
    if key is None:
        raise ValueError(f"key must be a jax.random key for the {kind!r} feedback, got None")
    if kind == "gaussian":
        return jax.random.normal(key, (size, size)) / np.sqrt(size)
    return jax.random.orthogonal(key, size)


def channels(state: PyTree) -> jax.Array:
    """Concatenate the state's leaves along their last axis: ``[..., d]``."""
    return jnp.concatenate(jax.tree.leaves(state), axis=-1)


def split_channels(flat: jax.Array, like: PyTree) -> PyTree:
    """Inverse of ``channels``: ``flat: [..., d]`` back to the structure of ``like``."""
    leaves, treedef = jax.tree.flatten(like)
    cuts = np.cumsum([leaf.shape[-1] for leaf in leaves])[:-1]
    parts = jnp.split(flat, cuts, axis=-1)
    return jax.tree.unflatten(
        treedef, [p.astype(leaf.dtype) for p, leaf in zip(parts, leaves, strict=True)]
    )


def feedback_recurrence(e: jax.Array, feedback: jax.Array | None) -> jax.Array:
    """``delta_t = e_t + A^T delta_{t+1}`` backwards in time.

    Args:
      e: ``[T, ..., d]`` the loss's gradient at every state (time-major).
      feedback: ``None`` (``A = 0``: ``delta = e``, truncated BPTT), a diagonal
        ``[d]`` or a dense ``[d, d]``.

    Returns:
      ``delta: [T, ..., d]``.
    """
    if feedback is None:
        return e
    if feedback.ndim == 1:
        return reverse_linear_recurrence(e, feedback.astype(e.dtype))
    matrix = feedback.astype(e.dtype)

    def step(delta_next, e_t):
        delta = e_t + delta_next @ matrix  # row vectors: delta A == (A^T delta^T)^T
        return delta, delta

    return jax.lax.scan(step, jnp.zeros_like(e[0]), e, reverse=True)[1]
