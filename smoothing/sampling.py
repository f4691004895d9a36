"""Monte-Carlo statistics of a base classifier under Gaussian noise, for many inputs at once
and on one device or a mesh of devices.

The ``num`` noisy copies ``x + sigma z`` of one input are drawn in ``ceil(num / batch)``
*noise batches* of ``batch = min(batch_size, num)`` copies (of the last one only the first
``num - (batches - 1) batch`` count). The noise of batch ``j`` of input ``i`` comes from its
own key: with ``key_i`` the input's key,

    z[i, j] = normal(split(key_i, batches)[j], [batch, *x.shape]).

A pair (input, noise batch) is the unit of work, and its noise depends on ``key_i``, ``j``
and ``batch`` only: never on which other inputs are sampled together, nor on which device
draws it. Grouping the inputs differently or sharding over more devices therefore draws
the same noise, and the vote counts come out identical by construction.

Every unit is reduced to its statistics: hard-vote counts ``[k]``, a NaN flag, and for
each soft simplex map the mean ``[m, k]`` and the centred second moment ``[m, k, k]`` of the
mapped scores. The units of all inputs, input-major, are dealt in order to the calls of
one ``jax.jit``-compiled function, a ``jax.shard_map`` over a 1-D mesh with axis
``"data"``: each call gives every device the same number of consecutive units (as many as
``batch_size`` noisy copies hold, the per-device memory budget, and at least one), each
device draws the noise of its own units from their keys, runs the model on them and
reduces, and the per-unit statistics of all devices are gathered (``all_gather``: every
process receives all of them). All calls are dispatched before any result is read back.
On the host the units of each input are merged in float64, in unit order, whatever the
devices: the votes are integer sums (exact), the moments use Chan et al.'s pairwise
update, which keeps the variance accurate when it is tiny next to the mean.

The default mesh is this process's first device. In a multi-process run every process
calls with the same arguments and a mesh over all devices (``training.data_mesh()``
after ``training.initialize_distributed()``). The calls' shapes do not depend on the
number of inputs beyond its next power of two (the inputs are padded with unsampled
zeros), so groups of different sizes share compilations.

``reference_statistics`` computes the statistics of one input with a plain Python loop
over batches (same keys, so the same noise) and numpy on all the samples at once; it is
the slow, obviously correct reference the fast path is tested against.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

from lipschitz.checks import as_key
from smoothing import checks
from smoothing.simplex import SimplexMap

BaseClassifier = Callable[[Any, jax.Array], jax.Array]
DATA_AXIS = "data"


@dataclasses.dataclass(frozen=True)
class NoiseStatistics:
    """What the certificates need from ``num`` noisy evaluations of one input.

    Attributes:
      num: number of noisy samples.
      votes: ``[k]`` int64, how often each class was the argmax.
      mean: ``[m, k]`` float64, mean score of each of the ``m`` soft maps.
      cov: ``[m, k, k]`` float64, sample covariance of those scores (``num - 1``
        denominator; zeros when ``num = 1``).
    """

    num: int
    votes: np.ndarray
    mean: np.ndarray
    cov: np.ndarray

    @classmethod
    def from_votes(cls, votes) -> NoiseStatistics:
        """Hard-vote counts ``[k]`` only (no soft maps), e.g. counts computed elsewhere."""
        votes = np.asarray(votes)
        if votes.ndim != 1 or not np.issubdtype(votes.dtype, np.integer) or votes.min() < 0:
            raise ValueError(f"votes must be integer counts >= 0 of shape [k], got {votes!r}")
        votes = votes.astype(np.int64)
        k = votes.shape[-1]
        return cls(int(votes.sum()), votes, np.zeros((0, k)), np.zeros((0, k, k)))


def _check_classifier_output(f: BaseClassifier, params, shape: tuple[int, ...]) -> int:
    """The number of classes ``k`` of ``f`` on a batch of one input of ``shape``, checked
    ``>= 2``."""
    out = jax.eval_shape(f, params, jax.ShapeDtypeStruct((1, *shape), jnp.float32))
    if len(out.shape) != 2 or out.shape[0] != 1 or out.shape[1] < 2:
        raise ValueError(
            f"the base classifier must map a batch [b, *x.shape] to logits [b, k] with k >= 2 "
            f"classes, got output shape {out.shape} for a batch of 1"
        )
    return out.shape[1]


def check_mesh(mesh: Mesh | None) -> Mesh:
    """``mesh``, a 1-D ``jax.sharding.Mesh`` with axis ``"data"``; ``None``: this
    process's first device."""
    if mesh is None:
        return Mesh(np.asarray(jax.local_devices()[:1]), (DATA_AXIS,))
    if not isinstance(mesh, Mesh) or mesh.axis_names != (DATA_AXIS,):
        received = mesh.axis_names if isinstance(mesh, Mesh) else type(mesh).__name__
        raise ValueError(
            f"mesh must be a jax.sharding.Mesh with the one axis ('{DATA_AXIS}',), got {received}"
        )
    return mesh


def check_sampling(
    key, f: BaseClassifier, params, xs, num: int, batch_size: int, maps
) -> tuple[jax.Array, np.ndarray, tuple[SimplexMap, ...], int]:
    """Validate the arguments of the samplers but ``sigma`` (``checks.check_sigma``, which
    callers that also certify have already run) and ``mesh``: ``(key, xs, maps, k)``
    normalised (a key from a seed, ``xs: [b, *shape]`` as a float32 numpy array, ``maps``
    as a tuple) and the number of classes ``k`` of ``f``."""
    checks.check_count(num, "the number of noise samples")
    checks.check_count(batch_size, "batch_size")
    maps = tuple(maps)
    if not all(isinstance(m, SimplexMap) for m in maps):
        raise ValueError(f"maps must be SimplexMap instances, got {maps!r}")
    key = as_key(key)
    xs = np.asarray(xs, np.float32)
    if xs.ndim < 1 or xs.shape[0] < 1:
        raise ValueError(f"xs must be a batch [b, *x.shape] of b >= 1 inputs, got {xs.shape}")
    return key, xs, maps, _check_classifier_output(f, params, xs.shape[1:])


def _unit_statistics(logits: jax.Array, size: jax.Array, maps: tuple[SimplexMap, ...]):
    """Statistics of one noise batch ``logits: [batch, k]``, the first ``size`` rows counted:
    votes ``[k]``, NaN flag, count, mean ``[m, k]``, centred second moment ``[m, k, k]``."""
    batch, k = logits.shape
    valid = jnp.arange(batch) < size
    weight = valid.astype(jnp.float32)
    votes = jnp.zeros(k, jnp.int32).at[jnp.argmax(logits, -1)].add(valid.astype(jnp.int32))
    has_nan = jnp.any(jnp.isnan(logits) & valid[:, None])
    count = weight.sum()
    scores = jnp.stack([m(logits) for m in maps]) if maps else jnp.zeros((0, batch, k))
    mean = jnp.einsum("b,mbk->mk", weight, scores) / jnp.maximum(count, 1.0)  # padding: 0
    centred = scores - mean[:, None]
    m2 = jnp.einsum("b,mbi,mbj->mij", weight, centred, centred)
    return votes, has_nan, count, mean, m2


@functools.partial(jax.jit, static_argnames=("f", "maps", "mesh", "batch", "impl"))
def _call_statistics(f, maps, mesh, batch, impl, params, xs, sigma, inputs, keys, sizes):
    """Statistics of the units of one call, each device taking its own slice of them.

    ``xs: [b, *shape]``, ``params`` and ``sigma`` replicated; ``inputs: [units]`` (the
    input of each unit), ``keys: [units, *key_data]`` (its key data, of ``impl``) and
    ``sizes: [units]`` (its counted copies) split over ``"data"``. Returns the statistics
    of ``_unit_statistics`` with a leading ``[units]`` axis, on every device.
    """

    def local(params, xs, sigma, inputs, keys, sizes):
        keys = jax.random.wrap_key_data(keys, impl=impl)
        noise = jax.vmap(lambda k: jax.random.normal(k, (batch, *xs.shape[1:]), xs.dtype))(keys)
        noisy = xs[inputs][:, None] + sigma * noise
        logits = f(params, noisy.reshape(-1, *xs.shape[1:]))
        logits = logits.reshape(*noise.shape[:2], logits.shape[-1])
        stats = jax.vmap(functools.partial(_unit_statistics, maps=maps))(logits, sizes)
        return jax.lax.all_gather(stats, DATA_AXIS, tiled=True, to="invarying")

    replicated, data = PartitionSpec(), PartitionSpec(DATA_AXIS)
    sharded = jax.shard_map(
        local, mesh=mesh, in_specs=(replicated,) * 3 + (data,) * 3, out_specs=replicated
    )
    return sharded(params, xs, sigma, inputs, keys, sizes)


@dataclasses.dataclass(frozen=True)
class _Dispatched:
    """The per-call results (on the devices) of ``inputs`` inputs x ``batches`` batches."""

    num: int
    batch: int
    inputs: int
    batches: int
    calls: list[Any]


def _dispatch(
    keys: jax.Array, f, maps, mesh: Mesh, params, xs, sigma, num: int, batch_size: int
) -> _Dispatched:
    """Start the sampling of ``num`` noisy copies of each input ``i < b`` of ``xs`` from
    ``keys[i]`` (``keys: [b]``; ``xs: [>= b, *shape]``, placed on ``mesh`` with
    ``params`` and ``sigma``). The calls' shapes depend on ``xs.shape``, ``num``,
    ``batch_size`` and the mesh, not on ``b``."""
    batch = min(batch_size, num)
    batches = -(-num // batch)
    inputs = keys.shape[0]
    units = inputs * batches
    devices = mesh.devices.size
    per_device = max(1, min(batch_size // batch, -(-xs.shape[0] * batches // devices)))
    per_call = per_device * devices
    calls = -(-units // per_call)

    def padded(a: np.ndarray) -> np.ndarray:  # dummy units (input 0, size 0) at the end
        return np.concatenate([a, np.zeros((calls * per_call - units, *a.shape[1:]), a.dtype)])

    unit_keys = jax.vmap(lambda key: jax.random.split(key, batches))(keys)
    unit_arrays = [
        padded(np.repeat(np.arange(inputs, dtype=np.int32), batches)),
        padded(np.asarray(jax.random.key_data(unit_keys)).reshape(units, -1)),
        padded(
            np.tile(np.minimum(batch, num - batch * np.arange(batches, dtype=np.int32)), inputs)
        ),
    ]
    sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    impl = jax.random.key_impl(keys)
    results = []
    for c in range(calls):
        chunk = jax.device_put(
            [a[c * per_call : (c + 1) * per_call] for a in unit_arrays], sharding
        )
        results.append(_call_statistics(f, maps, mesh, batch, impl, params, xs, sigma, *chunk))
    return _Dispatched(num, batch, inputs, batches, results)


def _nan_error(index: int, num_batches: int, batch: int, num: int, label: str) -> ValueError:
    return ValueError(
        f"the base classifier returned NaN logits for {label}noise batch {index} of "
        f"{num_batches} (samples {index * batch} to {min((index + 1) * batch, num) - 1}); "
        "check the model and its input scale"
    )


def _merge(dispatched: _Dispatched, results, labels: Sequence[str]) -> list[NoiseStatistics]:
    """Per-input statistics from the per-unit ``results`` of ``dispatched`` (host, float64);
    ``labels[i]`` names input ``i`` in NaN errors."""
    units = dispatched.inputs * dispatched.batches
    votes, has_nan, count, mean, m2 = (
        np.concatenate(a)[:units].reshape(dispatched.inputs, dispatched.batches, *a[0].shape[1:])
        for a in zip(*results, strict=True)
    )
    num = dispatched.num
    if has_nan.any():
        i, j = np.argwhere(has_nan)[0]
        raise _nan_error(int(j), dispatched.batches, dispatched.batch, num, labels[i])
    count = count.astype(np.float64)
    mean, m2 = mean.astype(np.float64), m2.astype(np.float64)
    total = np.einsum("ib,ibmk->imk", count, mean) / num
    spread = mean - total[:, None]
    m2 = m2.sum(1) + np.einsum("ib,ibmj,ibml->imjl", count, spread, spread)
    cov = m2 / (num - 1) if num > 1 else np.zeros_like(m2)
    votes = votes.sum(1).astype(np.int64)
    return [NoiseStatistics(num, votes[i], total[i], cov[i]) for i in range(len(votes))]


def _sample(
    keys: jax.Array,
    f: BaseClassifier,
    params: Any,
    xs: np.ndarray,
    nums: Sequence[int],
    sigma: float,
    batch_size: int,
    maps: tuple[SimplexMap, ...],
    mesh: Mesh,
    labels: Sequence[Sequence[str]],
) -> list[list[NoiseStatistics]]:
    """The samplers on checked arguments: for every stage ``s``, ``nums[s]`` noisy copies of
    each input of ``xs: [b, *shape]`` from key ``keys[i, s]`` (``keys: [b, stages]``);
    ``labels[i][s]`` names the sample set in NaN errors. Returns ``[stages][b]`` statistics.
    All stages are dispatched before any result is read back. ``xs`` is padded with zeros
    to a power of two of inputs (never sampled), so that groups of different sizes share
    compilations."""
    padding = np.zeros(((1 << (len(xs) - 1).bit_length()) - len(xs), *xs.shape[1:]), xs.dtype)
    replicated = NamedSharding(mesh, PartitionSpec())
    params, xs, sigma = jax.device_put(
        (params, np.concatenate([xs, padding]), np.float32(sigma)), replicated
    )
    dispatched = [
        _dispatch(keys[:, s], f, maps, mesh, params, xs, sigma, num, batch_size)
        for s, num in enumerate(nums)
    ]
    results = jax.device_get([d.calls for d in dispatched])
    return [
        _merge(d, r, [names[s] for names in labels])
        for s, (d, r) in enumerate(zip(dispatched, results, strict=True))
    ]


def sample_statistics(
    key: jax.Array | int,
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    *,
    num: int,
    sigma: float,
    batch_size: int = 1000,
    maps: Sequence[SimplexMap] = (),
    label: str = "",
    mesh: Mesh | None = None,
) -> NoiseStatistics:
    """Statistics of ``f(params, x + sigma z)`` over ``num`` draws of ``z ~ N(0, I)``.

    Args:
      key: a ``jax.random`` key (``jax.random.key``, a legacy ``PRNGKey``) or an int seed;
        noise batch ``j`` is drawn from ``split(key, batches)[j]`` (module docstring).
      f: the base classifier, a pure function ``logits = f(params, xs)`` from a batch
        ``[b, *x.shape]`` to ``[b, k]``. Pass the same function object on every call:
        it is a static argument of the compiled sampler.
      params: its parameters (any pytree).
      x: one input, e.g. ``[height, width, channels]``, on the model's input scale.
      num: number of noisy samples.
      sigma: noise standard deviation, on the model's input scale.
      batch_size: most noisy copies one device evaluates at once (the memory budget).
      maps: soft simplex maps whose scores are averaged (hard votes are always counted).
      label: prefix naming the sample set in error messages (e.g. ``"selection "``).
      mesh: a 1-D ``jax.sharding.Mesh`` with axis ``"data"`` over which the noise batches
        are spread (same statistics on any mesh); default this process's first device.

    Raises:
      ValueError: bad arguments, fewer than 2 classes, or NaN logits (naming the batch).
    """
    sigma = checks.check_sigma(sigma)
    key, xs, maps, _ = check_sampling(key, f, params, np.asarray(x)[None], num, batch_size, maps)
    keys = key[None, None]
    mesh = check_mesh(mesh)
    [[stats]] = _sample(keys, f, params, xs, (num,), sigma, batch_size, maps, mesh, [[label]])
    return stats


def reference_statistics(
    key: jax.Array | int,
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    *,
    num: int,
    sigma: float,
    batch_size: int = 1000,
    maps: Sequence[SimplexMap] = (),
) -> NoiseStatistics:
    """``sample_statistics`` by a Python loop over batches (same keys, same noise): the
    jitted ``f`` and maps on each batch, the votes counted on the host after every batch,
    all scores kept, numpy statistics at the end."""
    sigma = checks.check_sigma(sigma)
    key, xs, maps, k = check_sampling(key, f, params, np.asarray(x)[None], num, batch_size, maps)
    x = jnp.asarray(xs[0])
    batch = min(batch_size, num)
    keys = jax.random.split(key, -(-num // batch))
    model = jax.jit(f)
    mapped = jax.jit(lambda logits: jnp.stack([m(logits) for m in maps]))
    votes = np.zeros(k, np.int64)
    scores: list[np.ndarray] = []
    for i, batch_key in enumerate(keys):
        size = min(batch, num - i * batch)
        noise = jax.random.normal(batch_key, (batch, *x.shape), x.dtype)
        logits = model(params, x[None] + jnp.float32(sigma) * noise)
        if bool(jnp.isnan(logits[:size]).any()):
            raise _nan_error(i, len(keys), batch, num, "")
        votes += np.bincount(np.asarray(jnp.argmax(logits[:size], -1)), minlength=k)
        if maps:
            scores.append(np.asarray(mapped(logits), np.float64)[:, :size])
    all_scores = np.concatenate(scores, axis=1) if maps else np.zeros((0, num, k))
    mean = all_scores.mean(axis=1)
    cov = np.array(
        [np.cov(s, rowvar=False) if num > 1 else np.zeros((k, k)) for s in all_scores]
    ).reshape(len(maps), k, k)
    return NoiseStatistics(num, votes, mean, cov)
