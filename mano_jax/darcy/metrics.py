"""Relative L2 error, the metric of the Darcy benchmark."""

from __future__ import annotations

from typing import Any

import jax.numpy as jnp
import numpy as np

__all__ = ["relative_l2"]


def relative_l2(pred: Any, target: Any) -> jnp.ndarray:
    """Mean over samples of ``||pred_b - target_b||_2 / ||target_b||_2``.

    Args:
      pred: ``[batch, ...]`` predictions.
      target: ``[batch, ...]`` references, same shape, no all-zero sample.

    Returns:
      Scalar ``jax.Array``; each sample is flattened before taking norms.
    """
    if np.shape(pred) != np.shape(target):
        raise ValueError(
            f"pred and target must have the same shape, got {np.shape(pred)} and {np.shape(target)}"
        )
    if len(np.shape(pred)) < 1 or np.shape(pred)[0] < 1:
        raise ValueError(f"pred must have shape [batch, ...] with batch >= 1, got {np.shape(pred)}")
    batch = np.shape(pred)[0]
    pred = jnp.reshape(jnp.asarray(pred), (batch, -1))
    target = jnp.reshape(jnp.asarray(target), (batch, -1))
    error = jnp.linalg.norm(pred - target, axis=1)
    return jnp.mean(error / jnp.linalg.norm(target, axis=1))
