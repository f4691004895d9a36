"""Relative errors of the Darcy benchmark: relative L2 (the neural-operator literature's
figure) and relative MSE (the figure of the MANO paper)."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["relative_l2", "relative_mse"]


def _relative_errors(pred: Any, target: Any) -> jnp.ndarray:
    """``[batch]``: ``||pred_b - target_b||_2 / ||target_b||_2`` of flattened samples."""
    if np.shape(pred) != np.shape(target):
        raise ValueError(
            f"pred and target must have the same shape, got {np.shape(pred)} and {np.shape(target)}"
        )
    if len(np.shape(pred)) < 1 or np.shape(pred)[0] < 1:
        raise ValueError(f"pred must have shape [batch, ...] with batch >= 1, got {np.shape(pred)}")
    batch = np.shape(pred)[0]
    pred = jnp.reshape(jnp.asarray(pred), (batch, -1))
    target = jnp.reshape(jnp.asarray(target), (batch, -1))
    return jnp.linalg.norm(pred - target, axis=1) / jnp.linalg.norm(target, axis=1)


def relative_l2(pred: Any, target: Any) -> jnp.ndarray:
    """Mean over samples of ``||pred_b - target_b||_2 / ||target_b||_2``.

    Args:
      pred: ``[batch, ...]`` predictions.
      target: ``[batch, ...]`` references, same shape, no all-zero sample.

    Returns:
      Scalar ``jax.Array``; each sample is flattened before taking norms.
    """
    return jnp.mean(_relative_errors(pred, target))


def relative_mse(pred: Any, target: Any) -> jnp.ndarray:
    """Mean over samples of ``||pred_b - target_b||_2^2 / ||target_b||_2^2``: each sample's
    mean squared error over its mean square, the squared relative L2 averaged.

    Same arguments as ``relative_l2``. A model with relative L2 ``e`` on every sample
    has relative MSE ``e^2``; in general ``relative_l2^2 <= relative_mse``, so the MANO
    paper's Darcy figure (relative MSE 0.008) means a relative L2 of at most 0.089.
    """
    return jnp.mean(_relative_errors(pred, target) ** 2)
