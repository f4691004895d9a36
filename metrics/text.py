"""Precision and recall of generated text against human text: embed, pre-process, k-NN.

The pipeline of "Exploring Precision and Recall to assess the quality and diversity of
LLMs" (Le Bronnec et al., ACL 2024): the sets are truncated to equal size, each text is
embedded by ``embed_fn``, the embeddings are L2-normalised and projected by a PCA fitted
on the union (``text_embeddings``), then ``support.precision_recall`` compares them
(``text_precision_recall``; ``support.bootstrap_intervals`` for intervals).
"""

from __future__ import annotations

from collections.abc import Sequence

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

from metrics.embeddings import EmbedFn, embedder
from metrics.knn import DEFAULT_BLOCK_SIZE
from metrics.preprocess import preprocess, truncate_to_equal_size
from metrics.support import PRDC, precision_recall


def embed_texts(
    texts: Sequence[str],
    embed_fn: EmbedFn,
    batch_size: int = 256,
    progress: bool = True,
    desc: str = "embedding",
) -> np.ndarray:
    """``embed_fn`` applied to ``texts`` in batches of ``batch_size``: ``[n, dim]`` float."""
    if batch_size < 1:
        raise ValueError(f"batch_size must be an integer >= 1, got {batch_size}")
    batches = []
    for start in tqdm(
        range(0, len(texts), batch_size), desc=desc, unit="batch", disable=not progress
    ):
        chunk = list(texts[start : start + batch_size])
        batch = np.asarray(embed_fn(chunk))
        if batch.ndim != 2 or len(batch) != len(chunk):
            raise ValueError(
                f"embed_fn must return one row per text, [{len(chunk)}, dim], got shape "
                f"{batch.shape}"
            )
        batches.append(batch)
    if not batches:
        raise ValueError("texts must not be empty")
    return np.concatenate(batches)


def text_embeddings(
    reference_texts: Sequence[str],
    generated_texts: Sequence[str],
    embed_fn: EmbedFn | None = None,
    *,
    normalise: bool = True,
    explained_variance: float | None = 0.9,
    equal_size: bool = True,
    key: jax.Array | int | None = None,
    batch_size: int = 256,
    progress: bool = True,
) -> tuple[np.ndarray, np.ndarray]:
    """The points the k-NN metrics compare: ``reference [n, dim']``, ``generated [m, dim']``.

    embed_fn: list of texts -> ``[n, dim]`` (default: all-MiniLM-L6-v2, see ``embeddings``).
    equal_size truncates the larger set to the smaller's size, chosen with ``key`` (a
    ``jax.random`` key or an int seed, needed when the sizes differ; a keyword, since
    equal sizes draw nothing) before anything is embedded; ``normalise`` and
    ``explained_variance`` (None: no PCA) are the pre-processing steps of
    ``preprocess.preprocess``.
    """
    reference_texts, generated_texts = list(reference_texts), list(generated_texts)
    if equal_size and len(reference_texts) != len(generated_texts):
        if key is None:
            raise ValueError(
                f"equal_size=True with {len(reference_texts)} reference and "
                f"{len(generated_texts)} generated texts needs a jax.random key, got None"
            )
        keep_ref, keep_gen = truncate_to_equal_size(
            key, jnp.arange(len(reference_texts)), jnp.arange(len(generated_texts))
        )
        reference_texts = [reference_texts[i] for i in np.asarray(keep_ref)]
        generated_texts = [generated_texts[i] for i in np.asarray(keep_gen)]
    embed_fn = embedder("minilm") if embed_fn is None else embed_fn
    reference = embed_texts(reference_texts, embed_fn, batch_size, progress, "reference")
    generated = embed_texts(generated_texts, embed_fn, batch_size, progress, "generated")
    reference, generated = preprocess(
        reference,
        generated,
        normalise=normalise,
        explained_variance=explained_variance,
        equal_size=False,
    )
    return np.asarray(reference), np.asarray(generated)


def text_precision_recall(
    reference_texts: Sequence[str],
    generated_texts: Sequence[str],
    embed_fn: EmbedFn | None = None,
    *,
    k: int = 5,
    strict: bool = True,
    normalise: bool = True,
    explained_variance: float | None = 0.9,
    equal_size: bool = True,
    key: jax.Array | int | None = None,
    batch_size: int = 256,
    block_size: int = DEFAULT_BLOCK_SIZE,
    progress: bool = True,
) -> PRDC:
    """Precision, recall, density and coverage of ``generated_texts`` against the human
    ``reference_texts``: ``text_embeddings`` (the other arguments), then
    ``precision_recall`` (``k``, ``strict``, ``block_size``)."""
    reference, generated = text_embeddings(
        reference_texts,
        generated_texts,
        embed_fn,
        normalise=normalise,
        explained_variance=explained_variance,
        equal_size=equal_size,
        key=key,
        batch_size=batch_size,
        progress=progress,
    )
    return precision_recall(reference, generated, k=k, strict=strict, block_size=block_size)
