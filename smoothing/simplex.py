"""Simplex maps: logits -> a point of the probability simplex, with their L2 Lipschitz constant.

Randomized smoothing averages ``map(f(x + noise))`` over the noise. Hard votes (one-hot of
the argmax, Cohen et al.) are not continuous; the soft maps are, and the ICLR 2024
Lipschitz-variance-margin trade-off picks among them: a higher temperature ``t`` lowers
the Lipschitz constant (and the Monte-Carlo variance) but shrinks the margin.

- ``softmax(z / t)``: Jacobian ``(diag(p) - p p^T) / t``. For a unit vector ``u``,
  ``u^T (diag(p) - p p^T) u`` is the variance of a variable taking the value ``u_i`` with
  probability ``p_i``; by Popoviciu it is at most ``(u_i - u_j)^2 / 4 <= 1 / 2`` for the
  extreme pair ``i, j``. So softmax at temperature ``t`` is ``1 / (2 t)``-Lipschitz.
- ``sparsemax(z / t)`` (Martins & Astudillo 2016): the Euclidean projection of ``z / t``
  onto the simplex, and a projection onto a convex set is non-expansive: ``1 / t``.

Composed with an ``L``-Lipschitz logit map, the score ``x -> map(f(x))`` is
``L * lipschitz``-Lipschitz from inputs to the simplex, each entry in ``[0, 1]``.
"""

from __future__ import annotations

import dataclasses
import math

import jax
from optax.projections import projection_simplex

KINDS = ("softmax", "sparsemax")


@dataclasses.dataclass(frozen=True)
class SimplexMap:
    """A soft map from logits to the simplex (hashable: it is a static jit argument).

    Attributes:
      kind: ``"softmax"`` or ``"sparsemax"``.
      temperature: ``t > 0``; the logits are divided by it.
    """

    kind: str
    temperature: float = 1.0

    def __post_init__(self) -> None:
        if self.kind not in KINDS:
            raise ValueError(f"kind must be one of {KINDS}, got {self.kind!r}")
        if not (isinstance(self.temperature, int | float) and 0 < self.temperature < math.inf):
            raise ValueError(f"temperature must be a positive number, got {self.temperature!r}")
        object.__setattr__(self, "temperature", float(self.temperature))

    @property
    def lipschitz(self) -> float:
        """L2 Lipschitz constant of ``logits -> map(logits)`` (module docstring)."""
        scale = 0.5 if self.kind == "softmax" else 1.0
        return scale / self.temperature

    def __call__(self, logits: jax.Array) -> jax.Array:
        """``logits: [..., k]`` -> probabilities ``[..., k]`` (non-negative, summing to 1)."""
        z = logits / self.temperature
        if self.kind == "softmax":
            return jax.nn.softmax(z, axis=-1)
        flat = z.reshape(-1, z.shape[-1])
        return jax.vmap(projection_simplex)(flat).reshape(z.shape)

    def __str__(self) -> str:
        return f"{self.kind}(t={self.temperature:g})"
