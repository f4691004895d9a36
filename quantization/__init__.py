"""Conditional distribution quantization: ``n`` weighted points for a conditional law.

- ``clvq``: classical Competitive Learning Vector Quantization of one law (a jitted
  ``lax.scan`` over the samples);
- ``w2_distance``: the exact Wasserstein-2 distance between discrete measures;
- ``ConditionalQuantizer``: ``n`` point heads and a weight head on an MLP, trained with
  ``wta_loss`` (winner-take-all distortion plus the weight head's cross-entropy);
  ``model.predict(params, x) -> (points [batch, n, dim_y], weights [batch, n])``;
- ``laws``: synthetic conditional laws with samplers of the true conditional;
- ``baselines``: the mixture density network and k-means quantizers;
- ``job``: the training jobs of ``python -m quantization``.
"""

from quantization.baselines import (
    MixtureDensityNetwork,
    kmeans_quantizer,
    mixture_nll,
    nearest_targets,
)
from quantization.clvq import clvq, clvq_scan, step_sizes
from quantization.conditional import (
    Body,
    ConditionalQuantizer,
    head_wins,
    make_loss_fn,
    squared_distances,
    wta_loss,
)
from quantization.laws import LAWS, ConditionalLaw
from quantization.wasserstein import w2_distance, w2_to_samples

__all__ = [
    "LAWS",
    "Body",
    "ConditionalLaw",
    "ConditionalQuantizer",
    "MixtureDensityNetwork",
    "clvq",
    "clvq_scan",
    "head_wins",
    "kmeans_quantizer",
    "make_loss_fn",
    "mixture_nll",
    "nearest_targets",
    "squared_distances",
    "step_sizes",
    "w2_distance",
    "w2_to_samples",
    "wta_loss",
]
