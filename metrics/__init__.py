"""k-NN precision, recall, density and coverage for generated samples (text in particular).

Entry points: ``precision_recall`` (blockwise under ``jax.jit``, identical to ``prdc`` by
default); the pure pieces live in ``knn`` (distance blocks, k-th neighbour radii) and
``support`` (the jittable ``support_metrics``).
"""

from metrics.knn import DEFAULT_BLOCK_SIZE, kth_neighbour_radii, row_ids
from metrics.support import PRDC, precision_recall, support_metrics

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "PRDC",
    "kth_neighbour_radii",
    "precision_recall",
    "row_ids",
    "support_metrics",
]
