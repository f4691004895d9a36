"""k-NN precision, recall, density and coverage for generated samples (text in particular).

Entry points: ``precision_recall`` (blockwise under ``jax.jit``, identical to ``prdc`` by
default), ``ReferenceSet`` (one reference prepared once, compared with many generated
sets; ``mesh=`` splits the work over devices and processes, bitwise the one-device
results), ``bootstrap_intervals`` (percentile intervals of the four metrics) and
``text_precision_recall`` (embed, normalise, PCA, then the same). The pure pieces live
in ``knn`` (distance blocks, k-th neighbour radii), ``support`` (the jittable
``support_metrics``), ``bootstrap`` and ``preprocess``; text embedders in ``embeddings``
and ``minilm``; distinct-n and Self-BLEU in ``diversity``; the command in ``__main__``
(``python -m metrics pr``, ``--bootstrap N`` for intervals).

Example (runs as is; on a machine with several accelerators, or several processes after
``jax.distributed.initialize()``, the mesh spans them all)::

    import jax
    import numpy as np
    import metrics

    rng = np.random.default_rng(0)
    reference = rng.normal(size=(2000, 64)).astype(np.float32)
    models = {"close": rng.normal(size=(1500, 64)), "shifted": rng.normal(size=(1500, 64)) + 0.5}

    ref = metrics.ReferenceSet(reference, k=5)  # blocks and k-NN radii, computed once
    for name, generated in models.items():
        print(name, ref.compare(generated).summary())

    intervals = ref.bootstrap(jax.random.key(0), models["shifted"], num_resamples=500)
    print(intervals.summary())  # {metric: {"value", "low", "high"}}, 95% by default

    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    sharded = metrics.precision_recall(reference, models["close"], k=5, mesh=mesh)
    assert sharded.summary() == ref.compare(models["close"]).summary()
"""

from metrics.diversity import distinct_n, self_bleu
from metrics.embeddings import EMBEDDINGS, embedder, hashed_ngram_embedder, minilm_available
from metrics.knn import DEFAULT_BLOCK_SIZE, row_ids
from metrics.preprocess import l2_normalise, pca_project, preprocess, truncate_to_equal_size
from metrics.support import (
    PRDC,
    PRDCIntervals,
    ReferenceSet,
    bootstrap_intervals,
    precision_recall,
    precision_recall_reference,
    support_metrics,
)
from metrics.text import embed_texts, text_precision_recall

__all__ = [
    "DEFAULT_BLOCK_SIZE",
    "EMBEDDINGS",
    "PRDC",
    "PRDCIntervals",
    "ReferenceSet",
    "bootstrap_intervals",
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
