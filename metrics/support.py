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
``precision_recall_reference`` computes the same from full float64 distance matrices:
the slow reference to check the fast path (and one's own runs) against.
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
def _support_metrics(
    reference: jax.Array,
    generated: jax.Array,
    reference_ids: jax.Array | None,
    generated_ids: jax.Array | None,
    *,
    k: int,
    strict: bool,
    block_size: int,
    accumulate: str | None,
) -> PRDC:
    """``support_metrics`` of checked arguments."""
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
    result = PRDC(
        precision=jnp.mean(counts > 0, dtype=dtype),
        recall=jnp.mean(in_y_balls, dtype=dtype),
        density=jnp.mean(counts.astype(dtype)) / k,
        coverage=jnp.mean(inside(nearest, x_radii), dtype=dtype),
        realism=realism,
        reference_radii=x_radii,
        generated_radii=y_radii,
    )
    # A NaN distance fails every "<" and would silently count as "outside every ball":
    # non-finite input makes every output NaN instead.
    finite = jnp.all(jnp.isfinite(reference)) & jnp.all(jnp.isfinite(generated))
    return PRDC(*(jnp.where(finite, v, jnp.asarray(jnp.nan, v.dtype)) for v in result))


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
    """The metrics of the module docstring, blockwise (memory ``O((N + M) * d + block**2)``);
    a pure function, usable inside ``jax.jit`` (``k``, ``strict``, ``block_size`` and
    ``accumulate`` static).

    reference: ``[N, d]``, generated: ``[M, d]`` float (float32, or float64 under jax x64),
    both with at least ``k + 1`` rows. reference_ids ``[N]`` / generated_ids ``[M]``:
    optional ids equal exactly for identical vectors (``knn.row_ids``), making their
    distance exactly 0; without them duplicates are at whatever small distance rounding
    gives. ``accumulate="float64"`` (needs jax x64) computes squared distances in float64
    before rounding them to the inputs' float32, as scikit-learn, and so ``prdc``, does.
    Returns a ``PRDC`` of arrays.

    Raises:
      ValueError: shapes that do not fit (checked also under ``jax.jit``), or NaN / inf
        in concrete inputs. Under ``jax.jit`` non-finite inputs give NaN everywhere.
    """
    _check_sets(k, block_size, jnp.shape(reference), jnp.shape(generated))
    for name, points in (("reference", reference), ("generated", generated)):
        if not isinstance(points, jax.core.Tracer):
            _check_finite_rows(name, np.asarray(points))
    settings = {"k": int(k), "strict": bool(strict), "block_size": int(block_size)}
    return _support_metrics(
        reference, generated, reference_ids, generated_ids, **settings, accumulate=accumulate
    )


def _check_finite_rows(name: str, points: np.ndarray) -> None:
    bad = np.flatnonzero(~np.isfinite(points).all(axis=1))
    if bad.size:
        raise ValueError(
            f"{name} must be finite, got NaN or inf in {bad.size} rows (first: {bad[:5].tolist()})"
        )


def _as_points(name: str, value) -> np.ndarray:
    points = np.asarray(value)
    if points.ndim != 2:
        raise ValueError(f"{name} must be a 2-D array [points, features], got shape {points.shape}")
    if not (np.issubdtype(points.dtype, np.floating) or np.issubdtype(points.dtype, np.integer)):
        raise ValueError(f"{name} must hold real numbers, got dtype {points.dtype}")
    _check_finite_rows(name, points)
    return points


def _check_sets(k, block_size, reference_shape, generated_shape) -> None:
    """``k``, ``block_size`` and the shapes ``[N, d]``, ``[M, d]`` (``N, M >= k + 1``)."""
    if isinstance(k, bool) or not isinstance(k, (int, np.integer)) or k < 1:
        raise ValueError(f"k must be an integer >= 1, got {k!r}")
    if (
        isinstance(block_size, bool)
        or not isinstance(block_size, (int, np.integer))
        or (block_size < 1)
    ):
        raise ValueError(f"block_size must be an integer >= 1, got {block_size!r}")
    for name, shape in (("reference", reference_shape), ("generated", generated_shape)):
        if len(shape) != 2:
            raise ValueError(f"{name} must be a 2-D array [points, features], got shape {shape}")
    if reference_shape[1] != generated_shape[1]:
        raise ValueError(
            f"generated must have the reference's feature dimension {reference_shape[1]}, got "
            f"{generated_shape[1]}"
        )
    for name, shape in (("reference", reference_shape), ("generated", generated_shape)):
        if shape[0] < k + 1:
            raise ValueError(f"{name} needs at least k + 1 = {k + 1} points, got {shape[0]}")


def _checked_sets(reference, generated, k, block_size) -> tuple[np.ndarray, np.ndarray]:
    x = _as_points("reference", reference)
    y = _as_points("generated", generated)
    _check_sets(k, block_size, x.shape, y.shape)
    return x, y


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
    x, y = _checked_sets(reference, generated, k, block_size)
    # float64 only where jax has it (x64 on); integers become floats.
    dtype = jax.dtypes.canonicalize_dtype(np.promote_types(np.result_type(x, y), np.float32))
    x, y = jnp.asarray(x, dtype), jnp.asarray(y, dtype)
    x_ids, y_ids = row_ids(np.asarray(x), np.asarray(y))
    settings = {"k": int(k), "strict": bool(strict), "block_size": int(block_size)}
    if prdc_rounding and dtype == np.float32:
        with jax.enable_x64(True):
            result = _support_metrics(x, y, x_ids, y_ids, **settings, accumulate="float64")
    else:
        result = _support_metrics(x, y, x_ids, y_ids, **settings, accumulate=None)
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


def precision_recall_reference(reference, generated, k: int = 5, strict: bool = True) -> PRDC:
    """The metrics straight from their definitions (module docstring), with full distance
    matrices in float64 numpy: the slow, obviously correct reference that
    ``precision_recall`` (blockwise, jitted, float32) is tested against. Memory
    ``O((N + M)^2)``: small sets only.

    reference: ``[N, d]``, generated: ``[M, d]``, each with at least ``k + 1`` finite rows.
    Returns a ``PRDC`` of floats and float64 arrays.
    """
    x, y = _checked_sets(reference, generated, k, 1)
    x, y = x.astype(np.float64), y.astype(np.float64)

    def distances(a, b):  # [len(a), len(b)]
        return np.sqrt(((a[:, None, :] - b[None, :, :]) ** 2).sum(axis=-1))

    d_xy = distances(x, y)
    # NND_k: the (k+1)-th smallest distance to the own set, the point itself included.
    r_x = np.sort(distances(x, x), axis=1)[:, k]
    r_y = np.sort(distances(y, y), axis=1)[:, k]
    inside = np.less if strict else np.less_equal
    in_x_balls = inside(d_xy, r_x[:, None])  # [N, M]: y_j in B(x_i, r(x_i))
    in_y_balls = inside(d_xy, r_y[None, :])  # [N, M]: x_i in B(y_j, r(y_j))
    kept = np.where(r_x <= np.median(r_x), r_x, -np.inf)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_xy > 0, kept / d_xy, np.where(kept > 0, np.inf, -np.inf))
    return PRDC(
        precision=float(in_x_balls.any(axis=0).mean()),
        recall=float(in_y_balls.any(axis=1).mean()),
        density=float(in_x_balls.sum() / (k * len(y))),
        coverage=float(inside(d_xy.min(axis=1), r_x).mean()),
        realism=ratio.max(axis=0),
        reference_radii=r_x,
        generated_radii=r_y,
    )
