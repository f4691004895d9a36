"""Pointwise Gaussian normaliser (``UnitGaussianNormalizer`` of the neural-operator literature)."""

from __future__ import annotations

import dataclasses
import functools
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

__all__ = ["UnitGaussianNormalizer"]

Array = Any  # np.ndarray or jax.Array


@functools.partial(
    jax.tree_util.register_dataclass, data_fields=["mean", "std"], meta_fields=["eps"]
)
@dataclasses.dataclass(frozen=True)
class UnitGaussianNormalizer:
    """Pointwise standardisation ``encode(x) = (x - mean) / (std + eps)``.

    ``mean`` and ``std`` are per-point statistics over the sample axis of a
    training set (``std`` with Bessel's correction, as ``torch.std``), so the
    encoded training data have zero mean and (up to ``eps``) unit standard
    deviation at every point. A pytree: ``mean`` and ``std`` are leaves, ``eps``
    is static, so instances pass through ``jax.jit``. Works on numpy arrays
    (numpy in, numpy out when fitted on numpy) and on ``jax.Array``.

    Attributes:
      mean: ``[*point_shape]`` pointwise mean.
      std: ``[*point_shape]`` pointwise standard deviation.
      eps: added to ``std`` before dividing.
    """

    mean: Array
    std: Array
    eps: float = 1e-5

    @classmethod
    def fit(cls, x: Array, eps: float = 1e-5) -> UnitGaussianNormalizer:
        """Fits on ``x: [n, *point_shape]`` with ``n >= 2``; returns arrays of ``x``'s kind.

        Statistics are computed in float32 or wider (float64 inputs keep float64).
        """
        if np.ndim(x) < 1 or np.shape(x)[0] < 2:
            raise ValueError(
                f"x must have shape [n, ...] with n >= 2 samples, got shape {np.shape(x)}"
            )
        if not (np.isfinite(eps) and eps >= 0):
            raise ValueError(f"eps must be a finite number >= 0, got {eps!r}")
        xp = jnp if isinstance(x, jax.Array) else np
        x = xp.asarray(x)
        if not xp.issubdtype(x.dtype, xp.floating):
            x = x.astype(xp.float32)
        return cls(mean=xp.mean(x, axis=0), std=xp.std(x, axis=0, ddof=1), eps=float(eps))

    def _check(self, x: Array) -> None:
        point_shape = tuple(np.shape(self.mean))
        shape = tuple(np.shape(x))
        if len(shape) < len(point_shape) or shape[len(shape) - len(point_shape) :] != point_shape:
            raise ValueError(
                f"x must have shape [..., {', '.join(map(str, point_shape))}], got shape {shape}"
            )

    def encode(self, x: Array) -> Array:
        """``[..., *point_shape] -> [..., *point_shape]``: ``(x - mean) / (std + eps)``."""
        self._check(x)
        return (x - self.mean) / (self.std + self.eps)

    def decode(self, x: Array) -> Array:
        """Inverse of ``encode``: ``x * (std + eps) + mean``."""
        self._check(x)
        return x * (self.std + self.eps) + self.mean
