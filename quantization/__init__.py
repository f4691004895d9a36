"""Conditional distribution quantization: ``n`` weighted points for a conditional law.

- ``clvq``: classical Competitive Learning Vector Quantization of one law (a jitted
  ``lax.scan`` over the samples);
- ``w2_distance``: the exact Wasserstein-2 distance between discrete measures.
"""

from quantization.clvq import clvq, clvq_scan, step_sizes
from quantization.wasserstein import w2_distance, w2_to_samples

__all__ = ["clvq", "clvq_scan", "step_sizes", "w2_distance", "w2_to_samples"]
