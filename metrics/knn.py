"""Blockwise Euclidean distances and k-th nearest-neighbour radii, never an N x N matrix.

Sets are cut into row blocks of ``block`` points (the last one padded with masked
rows); a pass over the pairs of blocks keeps only per-row accumulators, so memory is
``O((N + M) * d + block**2)``. Distances use ``||a||^2 + ||b||^2 - 2 a.b`` clamped at 0,
and two points that are the same vector (equal ``ids``) are given exactly 0: the
formula's rounding would otherwise turn a duplicate's distance into noise of order
``sqrt(eps) * ||a||``, and whether duplicates fall inside each other's balls is what
``strict`` decides. Sets far from the origin are first shifted (``centring_shift``).

Sharding: the blocks of a set can be split over the devices of a 1-D mesh axis
(``Blocks.of(..., multiple=devices)`` pads whole blocks, ``Blocks.shard`` takes this
device's contiguous share inside ``jax.shard_map``); ``axis=None`` everywhere means one
device, and every helper is then the identity.
"""

from __future__ import annotations

import math
from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

DEFAULT_BLOCK_SIZE = 1024


def row_ids(*sets: np.ndarray) -> tuple[np.ndarray, ...]:
    """Integer ids shared across ``sets`` such that two rows have the same id iff they are
    the same vector (bitwise after a cast to the common dtype).

    sets: arrays ``[n_s, d]``. Returns one ``int32 [n_s]`` array per set.
    """
    union = np.concatenate([np.asarray(s) for s in sets])
    # Rows as opaque byte strings: equal ids only for identical bits (-0.0 != 0.0 is harmless:
    # those pairs just go through the formula, whose result is then exactly 0 or tiny).
    flat = np.ascontiguousarray(union).view(
        np.dtype((np.void, union.dtype.itemsize * union.shape[1]))
    )
    _, inverse = np.unique(flat.ravel(), return_inverse=True)
    splits = np.cumsum([len(s) for s in sets])[:-1]
    return tuple(part.astype(np.int32) for part in np.split(inverse.ravel(), splits))


def unique_rows(points: np.ndarray) -> tuple[np.ndarray, np.ndarray]:
    """The distinct rows of ``points [n, d]`` and the id of each row: ``(unique [u, d],
    ids int32 [n])`` with ``unique[ids] == points`` and ids in ``0 .. u - 1``."""
    (ids,) = row_ids(points)
    unique = np.empty((int(ids.max(initial=-1)) + 1, points.shape[1]), points.dtype)
    unique[ids] = points
    return unique, ids


def matching_row_ids(unique: np.ndarray, points: np.ndarray) -> np.ndarray:
    """Ids of the rows of ``points [m, d]`` in the numbering of ``unique [u, d]`` (distinct
    rows, id = position, as from ``unique_rows``): a row equal to ``unique[i]`` gets ``i``,
    the other rows ids ``>= u``, equal iff the rows are. Returns ``int32 [m]``."""
    known, new = row_ids(unique, points)
    lookup = np.arange(len(unique), len(unique) + len(known) + len(new), dtype=np.int32)
    lookup[known] = np.arange(len(unique), dtype=np.int32)
    return lookup[new]


def axis_share(values: jax.Array, axis: str | None) -> jax.Array:
    """This device's contiguous share of the leading axis of ``values`` (split evenly over
    mesh axis ``axis``, inside ``jax.shard_map``); ``values`` itself when ``axis`` is None."""
    if axis is None:
        return values
    count = values.shape[0] // jax.lax.axis_size(axis)
    return jax.lax.dynamic_slice_in_dim(values, jax.lax.axis_index(axis) * count, count)


def gather_shares(values: jax.Array, axis: str | None) -> jax.Array:
    """Inverse of ``axis_share``: every device's share concatenated, on every device."""
    return values if axis is None else jax.lax.all_gather(values, axis, tiled=True)


class Blocks:
    """A set of points cut into ``[num_blocks, block, d]`` with the squared norms and ids of
    each row; a pytree whose static part is the count ``n`` of real (unpadded) rows and the
    ``dtype`` distances are rounded to. ``first`` is the index of the first block in the
    whole set (non-zero for a device's share, ``shard``)."""

    def __init__(self, points, sq_norms, ids, n: int, dtype: jnp.dtype, first=0):
        self.points, self.sq_norms, self.ids, self.n, self.dtype = points, sq_norms, ids, n, dtype
        self.first = first

    @classmethod
    def of(
        cls,
        x: jax.Array,
        block: int,
        ids: jax.Array | None = None,
        accumulate: Any = None,
        multiple: int = 1,
    ) -> Blocks:
        """x: ``[n, d]``; ids: ``[n]`` or None (no duplicate handling). Squared distances
        are computed in ``accumulate`` (default ``x.dtype``), then rounded to ``x.dtype``.
        The number of blocks is padded up to a multiple of ``multiple`` (the devices the
        blocks are split over)."""
        n, d = x.shape
        block = min(block, n)
        num = math.ceil(n / block / multiple) * multiple
        pad = num * block - n
        points = jnp.pad(x, ((0, pad), (0, 0))).reshape(num, block, d)
        points = points.astype(accumulate or x.dtype)
        sq_norms = jnp.sum(points * points, axis=-1)
        if ids is not None:
            ids = jnp.pad(ids, (0, pad), constant_values=-1).reshape(num, block)
        return cls(points, sq_norms, ids, n, x.dtype)

    @property
    def block(self) -> int:
        return self.points.shape[1]

    def valid(self, index: jax.Array) -> jax.Array:
        """``[block]`` bool: which rows of block ``index`` (of these blocks) are real points;
        ``index [b, 1]`` gives ``[b, block]``."""
        return (self.first + index) * self.block + jnp.arange(self.block) < self.n

    def mask(self, values: jax.Array, fill: float) -> jax.Array:
        """Per-row ``values [num_blocks, block]`` with the padded rows set to ``fill``."""
        rows = self.valid(jnp.arange(self.points.shape[0])[:, None])
        return jnp.where(rows, values, jnp.asarray(fill, values.dtype))

    def shard(self, axis: str | None) -> Blocks:
        """This device's contiguous share of the blocks along mesh axis ``axis`` (inside
        ``jax.shard_map``; the number of blocks a multiple of its size); itself when None."""
        if axis is None:
            return self
        count = self.points.shape[0] // jax.lax.axis_size(axis)
        children = (self.points, self.sq_norms, self.ids)
        points, sq_norms, ids = (None if a is None else axis_share(a, axis) for a in children)
        first = self.first + jax.lax.axis_index(axis) * count
        return Blocks(points, sq_norms, ids, self.n, self.dtype, first)

    def unpad(self, per_block: jax.Array) -> jax.Array:
        """``[num_blocks, block, ...]`` -> ``[n, ...]`` (of a whole set, not a share)."""
        return per_block.reshape(-1, *per_block.shape[2:])[: self.n]

    def tree_flatten(self):
        return (self.points, self.sq_norms, self.ids, self.first), (self.n, self.dtype)

    @classmethod
    def tree_unflatten(cls, static, children):
        return cls(*children[:3], *static, children[3])


jax.tree_util.register_pytree_node_class(Blocks)


def centring_shift(reference: jax.Array) -> jax.Array:
    """The vector ``[d]`` to subtract from ``reference [n, d]`` and from every set compared
    with it: the reference's mean when that mean is farther from the origin than the
    points' RMS distance to it, else 0.

    Distances do not change, but ``|a|^2 + |b|^2 - 2 a.b`` loses about
    ``eps * |a|^2 / |a - b|^2`` to cancellation, which a large common offset would make
    large; shifting only then keeps already centred data (and its exact arithmetic) as is.
    The shift depends on the reference alone, so the reference's radii are the same
    whatever it is compared with. When every reference coordinate is an integer the shift
    is the rounded mean: shifted integer points stay integers, so (below ``2^24`` in
    float32) every squared distance is exact and equal distances stay equal, as ``prdc``
    (float64) has them; a fractional shift would turn those ties into rounding noise and
    flip ``<`` decisions.
    """
    mean = jnp.mean(reference, axis=0)
    spread = jnp.sum((reference - mean) ** 2) / len(reference)
    integral = jnp.all(reference == jnp.round(reference))
    offset = jnp.where(integral, jnp.round(mean), mean)
    return jnp.where(jnp.sum(mean**2) > spread, offset, 0).astype(reference.dtype)


def distance_block(
    a: jax.Array,
    a_sq: jax.Array,
    b: jax.Array,
    b_sq: jax.Array,
    a_ids: jax.Array | None = None,
    b_ids: jax.Array | None = None,
    dtype: Any = None,
) -> jax.Array:
    """Euclidean distances ``[p, q]`` between rows of ``a [p, d]`` and ``b [q, d]``.

    ``a_sq [p]``, ``b_sq [q]`` are the squared row norms. ``|a|^2 + |b|^2 - 2 a.b`` in the
    inputs' dtype, rounded to ``dtype`` (default: the same), then ``sqrt(max(., 0))``; pairs
    with equal ids (the same vector) are exactly 0.
    """
    sq = a_sq[:, None] + b_sq[None, :] - 2 * (a @ b.T)
    dist = jnp.sqrt(jnp.maximum(sq.astype(dtype or sq.dtype), 0))
    if a_ids is not None and b_ids is not None:
        dist = jnp.where(a_ids[:, None] == b_ids[None, :], 0, dist)
    return dist


def scan_block_pairs(
    rows: Blocks,
    cols: Blocks,
    row_init: Any,
    col_init: Any,
    step: Callable[..., tuple[Any, Any]],
) -> tuple[Any, Any]:
    """Fold ``step`` over every (row block, column block) pair, one distance block at a time.

    ``step(row_state, col_state, dist, row_index, col_index, col_valid) -> (row_state,
    col_state)`` sees the ``[row_block, col_block]`` distance block, with padded columns
    flagged by ``col_valid [col_block]``. ``row_init`` is the state of one row block (reset
    for each); ``col_init`` holds the state of all columns, leaves ``[num_col_blocks,
    col_block, ...]``, carried across row blocks (or None). Returns the final row states
    stacked ``[num_row_blocks, ...]`` and the final column state.
    """

    def one_row_block(col_state, row):
        row_index, a, a_sq, a_ids = row

        def inner(row_state, col):
            col_index, b, b_sq, b_ids, col_block_state = col
            dist = distance_block(a, a_sq, b, b_sq, a_ids, b_ids, rows.dtype)
            valid = cols.valid(col_index)
            return step(row_state, col_block_state, dist, row_index, col_index, valid)

        col_indices = jnp.arange(cols.points.shape[0])
        row_state, col_state = jax.lax.scan(
            inner, row_init, (col_indices, cols.points, cols.sq_norms, cols.ids, col_state)
        )
        return col_state, row_state

    row_indices = jnp.arange(rows.points.shape[0])
    col_state, row_states = jax.lax.scan(
        one_row_block, col_init, (row_indices, rows.points, rows.sq_norms, rows.ids)
    )
    return row_states, col_state


def kth_neighbour_distances(rows: Blocks, cols: Blocks, k: int) -> jax.Array:
    """Distance from each point of ``rows`` to its (k+1)-th nearest point of ``cols``:
    ``[num_row_blocks, row_block]`` (padded rows hold a meaningless value). ``cols`` has at
    least ``k + 1`` points. A running smallest-(k+1) list per row is merged with each
    distance block by ``lax.top_k``; the value does not depend on the order of the blocks.
    """

    def step(smallest, _, dist, row_index, col_index, col_valid):
        dist = jnp.where(col_valid[None, :], dist, jnp.inf)
        merged = jnp.concatenate([smallest, dist], axis=1)
        return -jax.lax.top_k(-merged, k + 1)[0], None

    init = jnp.full((rows.block, k + 1), jnp.inf, rows.dtype)
    smallest, _ = scan_block_pairs(rows, cols, init, None, step)
    return smallest[..., k]


def kth_neighbour_radii(points: Blocks, k: int) -> jax.Array:
    """``NND_k``: distance from each point to its k-th nearest neighbour in its own set,
    i.e. the (k+1)-th smallest distance counting the point itself (as ``prdc`` does).

    points: ``Blocks`` of ``n >= k + 1`` points. Returns ``[n]``.
    """
    return points.unpad(kth_neighbour_distances(points, points, k))
