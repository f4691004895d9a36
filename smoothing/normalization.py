"""Base classifiers that normalise their own inputs, so that ``sigma`` is in pixel units.

Smoothing adds the noise to the array the base classifier receives: ``sigma`` and the
certified radii are on that array's scale. Models trained on normalised inputs
``(x - mean) / std`` (per channel) would have them in normalised units, a different
scale per data set and per channel. Cohen et al. instead put the normalisation inside
the network, as its first layer, and add the noise to images with pixels in ``[0, 1]``:
their ``sigma = 0.25, 0.5, 1`` and their radii are L2 distances between ``[0, 1]`` images.

``with_normalization(f, mean, std)`` does the same for any base classifier: it returns
``g(params, xs) = f(params, (xs - mean) / std)``, which takes pixel-space inputs, so the
noise ``xs + sigma z`` is added before the normalisation and ``sigma`` is in pixel units
whatever ``f`` expects. With a scalar ``std``, smoothing ``g`` at ``sigma`` is smoothing
``f`` at ``sigma / std`` on normalised inputs, and the radii differ by the factor ``std``
(pixel radius = ``std`` x normalised radius).

Example (ImageNet statistics, NHWC images with pixels in ``[0, 1]``)::

    g = smoothing.with_normalization(
        resnet_logits, mean=[0.485, 0.456, 0.406], std=[0.229, 0.224, 0.225]
    )
    cert = smoothing.certify(key, g, params, image, sigma=0.25)  # radius in pixel units

Create the wrapper once and reuse it: it is a static argument of the compiled sampler
(two wrappers of the same ``f``, ``mean`` and ``std`` are equal, so they also share one
compilation).
"""

from __future__ import annotations

import dataclasses
from typing import Any

import jax
import numpy as np

from smoothing.sampling import BaseClassifier


@dataclasses.dataclass(frozen=True, eq=False)
class NormalizedClassifier:
    """``xs -> f(params, (xs - mean) / std)``: a base classifier of pixel-space inputs.

    Attributes:
      f: the wrapped base classifier, ``logits = f(params, xs)``.
      mean, std: float32 arrays broadcasting against one input (e.g. ``[channels]`` for
        NHWC images, or scalars); ``std > 0``.
    """

    f: BaseClassifier
    mean: np.ndarray
    std: np.ndarray

    def __call__(self, params: Any, xs: jax.Array) -> jax.Array:
        """``xs: [b, *x.shape]`` pixel-space inputs -> the logits ``[b, k]`` of ``f``."""
        shape = tuple(xs.shape[1:])
        for name, value in (("mean", self.mean), ("std", self.std)):
            if not _broadcasts_to(value.shape, shape):
                raise ValueError(
                    f"{name} must broadcast to the shape of one input {shape} (e.g. [channels] "
                    f"for NHWC images), got shape {value.shape}"
                )
        return self.f(params, (xs - self.mean) / self.std)

    def _identity(self) -> tuple:
        arrays = (self.mean, self.std)
        return (self.f, *((a.shape, a.tobytes()) for a in arrays))

    def __eq__(self, other: object) -> bool:
        return isinstance(other, NormalizedClassifier) and self._identity() == other._identity()

    def __hash__(self) -> int:
        return hash(self._identity())


def _broadcasts_to(shape: tuple[int, ...], target: tuple[int, ...]) -> bool:
    """Whether an array of ``shape`` broadcasts to ``target`` without enlarging it."""
    try:
        return len(shape) <= len(target) and np.broadcast_shapes(shape, target) == target
    except ValueError:
        return False


def with_normalization(f: BaseClassifier, mean, std) -> NormalizedClassifier:
    """The base classifier ``g(params, xs) = f(params, (xs - mean) / std)`` (module docstring).

    Args:
      f: a base classifier of normalised inputs, ``logits = f(params, xs)``.
      mean: finite, broadcasting against one input: a scalar or e.g. ``[channels]``.
      std: positive and finite, same rules.

    Raises:
      ValueError: non-finite ``mean``, non-positive or non-finite ``std``, or ``mean`` and
        ``std`` of shapes that do not broadcast together (a shape that does not fit the
        inputs raises when ``g`` first sees them, at the sampler's argument check).
    """
    if not callable(f):
        raise ValueError(f"f must be a base classifier logits = f(params, xs), got {f!r}")
    mean, std = (np.asarray(a, np.float32) for a in (mean, std))
    if not np.all(np.isfinite(mean)):
        raise ValueError(f"mean must be finite, got {mean}")
    if not np.all((std > 0) & np.isfinite(std)):
        raise ValueError(f"std must be positive and finite, got {std}")
    try:
        np.broadcast_shapes(mean.shape, std.shape)
    except ValueError:
        raise ValueError(
            f"mean and std must broadcast together, got shapes {mean.shape} and {std.shape}"
        ) from None
    return NormalizedClassifier(f, mean, std)
