"""Feature pre-processing of the paper's pipeline: equal-size truncation, L2 normalisation
of every point, PCA fitted on the union keeping a fraction of the explained variance.

Each step is a pure function; ``preprocess`` chains the ones asked for, in that order.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_limits


def truncate_to_equal_size(
    reference: jax.Array, generated: jax.Array, key: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Random subsets of ``min(N, M)`` rows of each set (without replacement, in their
    original order); the smaller set is returned whole.

    reference: ``[N, ...]``, generated: ``[M, ...]`` (points, or indices of texts).
    """
    size = min(len(reference), len(generated))
    ref_key, gen_key = jax.random.split(key)

    def subset(points, k):
        if len(points) == size:
            return points
        return points[jnp.sort(jax.random.permutation(k, len(points))[:size])]

    return subset(reference, ref_key), subset(generated, gen_key)


def l2_normalise(points: jax.Array) -> jax.Array:
    """Each row divided by its Euclidean norm (zero rows stay zero). points: ``[n, d]``."""
    norms = jnp.linalg.norm(points, axis=-1, keepdims=True)
    return points / jnp.where(norms > 0, norms, 1)


def pca_components(points: jax.Array, explained_variance: float) -> tuple[jax.Array, jax.Array]:
    """Mean ``[d]`` and principal axes ``[d, q]`` of ``points [n, d]``, ``q`` the fewest axes
    whose share of the total variance reaches ``explained_variance`` (in ``(0, 1]``).

    From the eigendecomposition of the smaller of the ``d x d`` scatter and the ``n x n``
    Gram matrix of the centred points (whose eigenvectors ``u`` give the axes
    ``centred^T u / sqrt(eigenvalue)``).
    """
    n, d = points.shape
    mean = jnp.mean(points, axis=0)
    centred = points - mean
    gram = n < d
    # LAPACK's own threads fight XLA's on a small machine (10x slower); one thread is enough
    # for a matrix of this size.
    with threadpool_limits(1, user_api="blas"):
        eigenvalues, vectors = jnp.linalg.eigh(centred @ centred.T if gram else centred.T @ centred)
    variances = np.maximum(np.asarray(eigenvalues, np.float64)[::-1], 0)
    total = variances.sum()
    shares = np.cumsum(variances) / total if total > 0 else np.ones_like(variances)
    # The tolerance keeps explained_variance=1 from failing on the last share's rounding.
    q = min(int(np.searchsorted(shares, explained_variance - 1e-6)) + 1, len(shares))
    top = vectors[:, ::-1][:, :q]
    if gram:
        top = centred.T @ top / jnp.sqrt(jnp.maximum(eigenvalues[::-1][:q], 1e-30))
    return mean, top


def pca_project(
    reference: jax.Array, generated: jax.Array, explained_variance: float = 0.9
) -> tuple[jax.Array, jax.Array]:
    """PCA fitted on the union of ``reference [N, d]`` and ``generated [M, d]``; both sets
    projected on the axes keeping ``explained_variance``: ``[N, q]``, ``[M, q]``."""
    mean, axes = pca_components(jnp.concatenate([reference, generated]), explained_variance)
    return (reference - mean) @ axes, (generated - mean) @ axes


def preprocess(
    reference,
    generated,
    *,
    normalise: bool = True,
    explained_variance: float | None = 0.9,
    equal_size: bool = True,
    key: jax.Array | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The paper's pipeline: truncate to equal size (``key`` subsamples the larger set),
    L2-normalise each point, PCA on the union to ``explained_variance`` (``None``: no PCA).

    reference: ``[N, d]``, generated: ``[M, d]``. Returns the two processed float arrays.
    """
    if explained_variance is not None and not 0 < explained_variance <= 1:
        raise ValueError(f"explained_variance must be in (0, 1] or None, got {explained_variance}")
    reference = jnp.asarray(reference, jnp.promote_types(jnp.asarray(reference).dtype, jnp.float32))
    generated = jnp.asarray(generated, reference.dtype)
    if reference.ndim != 2 or generated.ndim != 2 or reference.shape[1] != generated.shape[1]:
        raise ValueError(
            "reference and generated must be [points, features] with the same features, got "
            f"shapes {reference.shape} and {generated.shape}"
        )
    if equal_size and len(reference) != len(generated):
        if key is None:
            raise ValueError(
                f"equal_size=True with {len(reference)} reference and {len(generated)} generated "
                "points needs a jax.random key to subsample, got key=None"
            )
        reference, generated = truncate_to_equal_size(reference, generated, key)
    if normalise:
        reference, generated = l2_normalise(reference), l2_normalise(generated)
    if explained_variance is not None:
        reference, generated = pca_project(reference, generated, explained_variance)
    return reference, generated
