"""Feature pre-processing of the paper's pipeline: equal-size truncation, L2 normalisation
of every point, PCA fitted on the union keeping a fraction of the explained variance.

Each step is a pure function; ``preprocess`` chains the ones asked for, in that order.
"""

from __future__ import annotations

import functools

import jax
import jax.numpy as jnp
import numpy as np
from threadpoolctl import threadpool_limits


def as_key(key) -> jax.Array:
    """A ``jax.random`` key from a new-style key, a legacy ``PRNGKey`` or an ``int`` seed."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(int(key))
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and key.ndim == 0:
        return key
    if dtype == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return jax.random.wrap_key_data(key)
    raise ValueError(
        f"key must be a jax.random key (jax.random.key or PRNGKey) or an int seed, got {key!r}"
    )


@functools.partial(jax.jit, static_argnames=("counts", "size"))
def _subset_rows(key: jax.Array, counts: tuple[int, int], size: int):
    """Sorted random ``size`` of ``range(count)`` for each count, one key each: ``[size]``."""
    ref_key, gen_key = jax.random.split(key)
    return tuple(
        jnp.sort(jax.random.permutation(k, count)[:size])
        for k, count in ((ref_key, counts[0]), (gen_key, counts[1]))
    )


def truncate_to_equal_size(
    key: jax.Array | int, reference: jax.Array, generated: jax.Array
) -> tuple[jax.Array, jax.Array]:
    """Random subsets of ``min(N, M)`` rows of each set (without replacement, in their
    original order); the smaller set is returned whole.

    key: a ``jax.random`` key (new-style or legacy) or an int seed.
    reference: ``[N, ...]``, generated: ``[M, ...]`` (points, or indices of texts).
    """
    size = min(len(reference), len(generated))
    rows = _subset_rows(as_key(key), (len(reference), len(generated)), size)
    return tuple(
        points if len(points) == size else points[index]
        for points, index in zip((reference, generated), rows, strict=True)
    )


@jax.jit
def l2_normalise(points: jax.Array) -> jax.Array:
    """Each row divided by its Euclidean norm (zero rows stay zero, NaN rows NaN).
    points: ``[n, d]``."""
    norms = jnp.linalg.norm(points, axis=-1, keepdims=True)
    return points / jnp.where(norms == 0, 1, norms)


def pca_components(points: jax.Array, explained_variance: float) -> tuple[jax.Array, jax.Array]:
    """Mean ``[d]`` and principal axes ``[d, q]`` of ``points [n, d]``, ``q`` the fewest axes
    whose share of the total variance reaches ``explained_variance`` (in ``(0, 1]``).

    From the eigendecomposition of the smaller of the ``d x d`` scatter and the ``n x n``
    Gram matrix of the centred points (whose eigenvectors ``u`` give the axes
    ``centred^T u / sqrt(eigenvalue)``).
    """
    n, d = points.shape
    gram = n < d
    # LAPACK's own threads fight XLA's on a small machine (10x slower); one thread is enough
    # for a matrix of this size. Wait for the result inside the limit: the call returns
    # before the decomposition has run (asynchronous dispatch).
    with threadpool_limits(1, user_api="blas"):
        mean, eigenvalues, vectors = jax.block_until_ready(_eigh_of_scatter(points, gram))
    variances = np.maximum(np.asarray(eigenvalues, np.float64)[::-1], 0)
    total = variances.sum()
    shares = np.cumsum(variances) / total if total > 0 else np.ones_like(variances)
    # The tolerance keeps explained_variance=1 from failing on the last share's rounding.
    q = min(int(np.searchsorted(shares, explained_variance - 1e-6)) + 1, len(shares))
    return mean, _top_axes(points, mean, eigenvalues, vectors, q, gram)


@functools.partial(jax.jit, static_argnames=("gram",))
def _eigh_of_scatter(points: jax.Array, gram: bool):
    """Mean, and the eigendecomposition (ascending) of the centred points' scatter
    ``[d, d]`` or, with ``gram``, their Gram matrix ``[n, n]``."""
    mean = jnp.mean(points, axis=0)
    centred = points - mean
    eigenvalues, vectors = jnp.linalg.eigh(centred @ centred.T if gram else centred.T @ centred)
    return mean, eigenvalues, vectors


@functools.partial(jax.jit, static_argnames=("q", "gram"))
def _top_axes(points, mean, eigenvalues, vectors, q: int, gram: bool) -> jax.Array:
    """The ``q`` principal axes ``[d, q]``, largest variance first."""
    top = vectors[:, ::-1][:, :q]
    if gram:
        centred = points - mean
        top = centred.T @ top / jnp.sqrt(jnp.maximum(eigenvalues[::-1][:q], 1e-30))
    return top


def pca_project(
    reference: jax.Array, generated: jax.Array, explained_variance: float = 0.9
) -> tuple[jax.Array, jax.Array]:
    """PCA fitted on the union of ``reference [N, d]`` and ``generated [M, d]``; both sets
    projected on the axes keeping ``explained_variance``: ``[N, q]``, ``[M, q]``."""
    mean, axes = pca_components(jnp.concatenate([reference, generated]), explained_variance)
    return _project(reference, mean, axes), _project(generated, mean, axes)


@jax.jit
def _project(points: jax.Array, mean: jax.Array, axes: jax.Array) -> jax.Array:
    return (points - mean) @ axes


def preprocess(
    reference,
    generated,
    *,
    normalise: bool = True,
    explained_variance: float | None = 0.9,
    equal_size: bool = True,
    key: jax.Array | int | None = None,
) -> tuple[jax.Array, jax.Array]:
    """The paper's pipeline: truncate to equal size (``key``, a ``jax.random`` key or an int
    seed, subsamples the larger set; it is a keyword because only unequal sizes draw
    randomness), L2-normalise each point, PCA on the union to ``explained_variance``
    (``None``: no PCA).

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
        reference, generated = truncate_to_equal_size(key, reference, generated)
    if normalise:
        reference, generated = l2_normalise(reference), l2_normalise(generated)
    if explained_variance is not None:
        reference, generated = pca_project(reference, generated, explained_variance)
    return reference, generated
