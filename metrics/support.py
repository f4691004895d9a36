"""k-NN support estimates: precision, recall, density, coverage and the realism score.

Reference set ``X`` (``N`` points, e.g. human text) and generated set ``Y`` (``M``
points); ``r(x)`` is the distance from ``x`` to its k-th nearest neighbour in its own set
(``knn.kth_neighbour_radii``) and ``<`` is strict unless ``strict=False``:

- precision = (1/M) sum_j 1[exists i: |y_j - x_i| < r(x_i)]     (Kynkaanniemi et al. 2019)
- recall    = (1/N) sum_i 1[exists j: |x_i - y_j| < r(y_j)]
- density   = (1/(k M)) sum_j sum_i 1[|y_j - x_i| < r(x_i)]     (Naeem et al. 2020)
- coverage  = (1/N) sum_i 1[min_j |x_i - y_j| < r(x_i)]
- realism(y_j) = max_i r(x_i) / |y_j - x_i| over the reference points whose radius is at
  most the median radius (Kynkaanniemi et al. 2019 drop the half with the largest balls);
  > 1 means y_j lies inside such a ball.

``support_metrics`` is the pure, jittable core; ``precision_recall`` validates its inputs,
finds duplicated points and returns Python floats. The defaults reproduce
``prdc.compute_prdc`` (strict ``<``, the point itself counted among its neighbours).
"""

from __future__ import annotations

import functools
import warnings
from typing import NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from metrics.knn import (
    DEFAULT_BLOCK_SIZE,
    Blocks,
    kth_neighbour_radii,
    remove_common_offset,
    row_ids,
    scan_block_pairs,
)


class PRDC(NamedTuple):
    """Precision, recall, density and coverage, with the per-point quantities behind them.

    Scalars are floats from ``precision_recall`` and 0-d arrays from ``support_metrics``.
    """

    precision: float
    recall: float
    density: float
    coverage: float
    realism: np.ndarray  # [M] realism score of each generated point
    reference_radii: np.ndarray  # [N] r(x_i)
    generated_radii: np.ndarray  # [M] r(y_j)

    def summary(self) -> dict[str, float]:
        """The four scalar metrics as a plain dict."""
        return {
            "precision": float(self.precision),
            "recall": float(self.recall),
            "density": float(self.density),
            "coverage": float(self.coverage),
        }


@functools.partial(jax.jit, static_argnames=("k", "strict", "block_size", "accumulate"))
def support_metrics(
    reference: jax.Array,
    generated: jax.Array,
    reference_ids: jax.Array | None = None,
    generated_ids: jax.Array | None = None,
    *,
    k: int = 5,
    strict: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    accumulate: str | None = None,
) -> PRDC:
    """The metrics of the module docstring, blockwise (memory ``O((N + M) * d + block**2)``).

    reference: ``[N, d]``, generated: ``[M, d]`` float (float32, or float64 under jax x64),
    both with at least ``k + 1`` finite rows. reference_ids ``[N]`` / generated_ids ``[M]``:
    optional ids equal exactly for identical vectors (``knn.row_ids``), making their
    distance exactly 0; without them duplicates are at whatever small distance rounding
    gives. ``accumulate="float64"`` (needs jax x64) computes squared distances in float64
    before rounding them to the inputs' float32, as scikit-learn, and so ``prdc``, does.
    Returns a ``PRDC`` of arrays.
    """
    dtype = jnp.promote_types(jnp.result_type(reference, generated), jnp.float32)
    reference, generated = reference.astype(dtype), generated.astype(dtype)
    if accumulate is None:  # with float64 accumulation, the raw coordinates as scikit-learn
        reference, generated = remove_common_offset(reference, generated)
    xs = Blocks.of(reference, block_size, reference_ids, accumulate)
    ys = Blocks.of(generated, block_size, generated_ids, accumulate)
    x_radii = kth_neighbour_radii(xs, k)
    y_radii = kth_neighbour_radii(ys, k)
    inside = jnp.less if strict else jnp.less_equal
    # Padded points get radius -inf: no point is inside their balls.
    x_radii_blocks = xs.split(x_radii, -jnp.inf)
    y_radii_blocks = ys.split(y_radii, -jnp.inf)
    realism_radii = jnp.where(x_radii_blocks <= jnp.median(x_radii), x_radii_blocks, -jnp.inf)

    def step(y_state, x_state, dist, y_index, x_index, x_valid):
        # dist: [y block, x block]. Per generated row: number of reference balls it is in and
        # its best realism ratio; per reference column: whether it is in some generated
        # ball and its distance to the nearest generated point.
        counts, realism = y_state
        in_y_balls, nearest = x_state
        counts = counts + jnp.sum(inside(dist, x_radii_blocks[x_index]), axis=1, dtype=jnp.int32)
        r = realism_radii[x_index]
        ratio = jnp.where(dist > 0, r / dist, jnp.where(r > 0, jnp.inf, -jnp.inf))
        realism = jnp.maximum(realism, jnp.max(ratio, axis=1))
        y_valid = ys.valid(y_index)[:, None]
        in_y_balls = in_y_balls | jnp.any(inside(dist, y_radii_blocks[y_index][:, None]), axis=0)
        nearest = jnp.minimum(nearest, jnp.min(jnp.where(y_valid, dist, jnp.inf), axis=0))
        return (counts, realism), (in_y_balls, nearest)

    y_init = (jnp.zeros(ys.block, jnp.int32), jnp.full(ys.block, -jnp.inf, dtype))
    x_init = (jnp.zeros(xs.points.shape[:2], bool), jnp.full(xs.points.shape[:2], jnp.inf, dtype))
    (counts, realism), (in_y_balls, nearest) = scan_block_pairs(ys, xs, y_init, x_init, step)
    counts, realism = ys.unpad(counts), ys.unpad(realism)
    in_y_balls, nearest = xs.unpad(in_y_balls), xs.unpad(nearest)
    return PRDC(
        precision=jnp.mean(counts > 0, dtype=dtype),
        recall=jnp.mean(in_y_balls, dtype=dtype),
        density=jnp.mean(counts.astype(dtype)) / k,
        coverage=jnp.mean(inside(nearest, x_radii), dtype=dtype),
        realism=realism,
        reference_radii=x_radii,
        generated_radii=y_radii,
    )


def _as_points(name: str, value) -> np.ndarray:
    points = np.asarray(value)
    if points.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [points, features], got shape {points.shape}")
    if not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {points.dtype}")
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{name} must be finite, got NaN or inf in {bad.size} rows (first: {bad[:5].tolist()})"
        )
    return points


def precision_recall(
    reference,
    generated,
    k: int = 5,
    strict: bool = True,
    block_size: int = DEFAULT_BLOCK_SIZE,
    prdc_rounding: bool = False,
) -> PRDC:
    """Precision, recall, density and coverage of ``generated`` against ``reference``.

    reference: ``[N, d]`` (e.g. embeddings of human text), generated: ``[M, d]``, each with at
    least ``k + 1`` finite rows; computed in float32 (float64 when jax x64 is on and the
    inputs are float64) by blocks of ``block_size`` points, never an N x M matrix.
    ``strict=True`` counts a point inside a ball when its distance is ``<`` the radius
    (identical to ``prdc``); ``strict=False`` uses ``<=``, which keeps exact duplicates
    inside each other's (zero-radius) balls. Warns when duplicates make radii zero.

    In float32, a decision whose distance and radius agree to float32 rounding (~1e-7
    relative) may go either way; ``prdc`` (scikit-learn) computes squared distances in
    float64 and rounds them to float32, and ``prdc_rounding=True`` does the same (float64
    dot products, about 2x slower) to take exactly its decisions on float32 inputs.
    Returns a ``PRDC`` of floats and numpy arrays.
    """
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or (block_size < 1)
    ):
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    x = _as_points("reference", reference)
    y = _as_points("generated", generated)
    if x.shape[1] != y.shape[1]:
        raise ValueError(
            f"generated must have the reference's feature dimension {x.shape[1]}, got {y.shape[1]}"
        )
    for name, points in (("reference", x), ("generated", y)):
        if len(points) < k + 1:
            raise ValueError(f"{name} needs at least k + 1 = {k + 1} points, got {len(points)}")
    # float64 only where jax has it (x64 on); integers become floats.
    dtype = jax.dtypes.canonicalize_dtype(np.promote_types(np.result_type(x, y), np.float32))
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    x_ids, y_ids = row_ids(np.asarray(x), np.asarray(y))
    settings = {"k": int(k), "strict": bool(strict), "block_size": int(block_size)}
    if prdc_rounding and dtype == np.float32:
        with jax.enable_x64(True):
            result = support_metrics(x, y, x_ids, y_ids, **settings, accumulate="float64")
    else:
        result = support_metrics(x, y, x_ids, y_ids, **settings)
    result = PRDC(*(float(v) for v in result[:4]), *(np.asarray(v) for v in result[4:]))
    zero = {
        name: int(np.sum(radii == 0))
        for name, radii in (
            ("reference", result.reference_radii),
            ("generated", result.generated_radii),
        )
    }
    if any(zero.values()):
        consequence = (
            "their balls are empty under strict '<' (strict=False counts duplicates inside)"
            if strict
            else "their balls hold only their duplicates"
        )
        warnings.warn(
            f"{zero['reference']} reference and {zero['generated']} generated points have a "
            f"zero k-NN radius (k={k} or more duplicates each): {consequence}",
            stacklevel=2,
        )
    return result
