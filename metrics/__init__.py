"""k-NN precision, recall, density and coverage for generated samples (text in particular).

Entry points: ``precision_recall`` (blockwise under ``jax.jit``, identical to ``prdc`` by
default) and ``text_precision_recall`` (embed, normalise, PCA, then the same). The pure
pieces live in ``knn`` (distance blocks, k-th neighbour radii), ``support`` (the jittable
``support_metrics``) and ``preprocess``; text embedders in ``embeddings`` and ``minilm``;
distinct-n and Self-BLEU in ``diversity``; the command in ``__main__``
(``python -m metrics pr``).
"""

from metrics.diversity import distinct_n, self_bleu
from metrics.embeddings import EMBEDDINGS, embedder, hashed_ngram_embedder, minilm_available
from metrics.knn import DEFAULT_BLOCK_SIZE, row_ids
from metrics.preprocess import l2_normalise, pca_project, preprocess, truncate_to_equal_size
from metrics.support import PRDC, precision_recall, precision_recall_reference, support_metrics
from metrics.text import embed_texts, text_precision_recall

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "EMBEDDINGS",
    "PRDC",
    "distinct_n",
    "embed_texts",
    "embedder",
    "hashed_ngram_embedder",
    "l2_normalise",
    "minilm_available",
    "pca_project",
    "precision_recall",
    "precision_recall_reference",
    "preprocess",
    "row_ids",
    "self_bleu",
    "support_metrics",
    "text_precision_recall",
    "truncate_to_equal_size",
]
