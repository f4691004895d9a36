"""Monte-Carlo statistics of a base classifier under Gaussian noise.

``sample_statistics`` draws ``num`` noisy copies ``x + sigma z`` of one input in batches of
at most ``batch_size`` (the memory budget), evaluates the base classifier
``logits = f(params, xs)`` on each batch and keeps, per batch, the hard-vote counts and,
for every soft simplex map, the mean and the centred second moment of the mapped scores.
Noise, model and statistics of a batch are one ``jax.jit``-compiled function (one key per
batch, split from ``key``); all batches are dispatched before any result is read back,
and the per-batch moments are merged on the host in float64 (Chan et al.'s pairwise
update), which keeps the variance accurate when it is tiny next to the mean.

``reference_statistics`` computes the same numbers with a plain Python loop over batches
(same keys, so the same noise) and numpy on all the samples at once; it is the slow,
obviously correct reference the fast path is tested against, and the baseline of the
throughput benchmark.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable, Sequence
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

from lipschitz.checks import as_key
from smoothing import checks
from smoothing.simplex import SimplexMap

BaseClassifier = Callable[[Any, jax.Array], jax.Array]


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


def _check_classifier_output(f: BaseClassifier, params, x: jax.Array) -> int:
    """The number of classes ``k`` of ``f`` on a batch of one ``x``, checked ``>= 2``."""
    out = jax.eval_shape(f, params, jax.ShapeDtypeStruct((1, *x.shape), x.dtype))
    if len(out.shape) != 2 or out.shape[0] != 1 or out.shape[1] < 2:
        raise ValueError(
            f"the base classifier must map a batch [b, *x.shape] to logits [b, k] with k >= 2 "
            f"classes, got output shape {out.shape} for a batch of 1"
        )
    return out.shape[1]


def _noisy_batch(x: jax.Array, key: jax.Array, sigma, batch: int) -> jax.Array:
    """``[batch, *x.shape]`` copies of ``x`` with ``N(0, sigma^2)`` noise."""
    return x[None] + sigma * jax.random.normal(key, (batch, *x.shape), x.dtype)


@functools.partial(jax.jit, static_argnames=("f", "maps", "batch"))
def _batch_statistics(f, maps, params, x, key, sigma, size, batch):
    """Statistics of one batch of ``batch`` noisy copies, the first ``size`` of them counted:
    votes ``[k]``, NaN flag, count, mean ``[m, k]``, centred second moment ``[m, k, k]``."""
    logits = f(params, _noisy_batch(x, key, sigma, batch))
    k = logits.shape[-1]
    valid = jnp.arange(batch) < size
    weight = valid.astype(jnp.float32)
    votes = jnp.zeros(k, jnp.int32).at[jnp.argmax(logits, -1)].add(valid.astype(jnp.int32))
    has_nan = jnp.any(jnp.isnan(logits) & valid[:, None])
    count = weight.sum()
    scores = jnp.stack([m(logits) for m in maps]) if maps else jnp.zeros((0, batch, k))
    mean = jnp.einsum("b,mbk->mk", weight, scores) / count
    centred = scores - mean[:, None]
    m2 = jnp.einsum("b,mbi,mbj->mij", weight, centred, centred)
    return votes, has_nan, count, mean, m2


def check_sampling(
    key, f: BaseClassifier, params, x, num: int, batch_size: int, maps
) -> tuple[jax.Array, jax.Array, tuple[SimplexMap, ...], int]:
    """Validate the arguments of ``sample_statistics`` but ``sigma`` (``checks.check_sigma``,
    which callers that also certify have already run): ``(key, x, maps, k)`` normalised (a
    key from a seed, ``x`` as float32, ``maps`` as a tuple) and the number of classes
    ``k`` of ``f``."""
    checks.check_count(num, "the number of noise samples")
    checks.check_count(batch_size, "batch_size")
    maps = tuple(maps)
    if not all(isinstance(m, SimplexMap) for m in maps):
        raise ValueError(f"maps must be SimplexMap instances, got {maps!r}")
    key = as_key(key)
    x = jnp.asarray(x, jnp.float32)
    return key, x, maps, _check_classifier_output(f, params, x)


def _batch_keys(key: jax.Array, num: int, batch_size: int) -> tuple[int, jax.Array]:
    batch = min(batch_size, num)
    return batch, jax.random.split(key, -(-num // batch))


def _nan_error(index: int, num_batches: int, batch: int, num: int, label: str) -> ValueError:
    return ValueError(
        f"the base classifier returned NaN logits for {label}noise batch {index} of "
        f"{num_batches} (samples {index * batch} to {min((index + 1) * batch, num) - 1}); "
        "check the model and its input scale"
    )


def _sample_statistics(
    key: jax.Array,
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    num: int,
    sigma: float,
    batch_size: int,
    maps: tuple[SimplexMap, ...],
    label: str = "",
) -> NoiseStatistics:
    """``sample_statistics`` of checked arguments (``check_sampling``)."""
    batch, keys = _batch_keys(key, num, batch_size)
    # Dispatch every batch before reading any result back: the host never waits per batch.
    per_batch = [
        _batch_statistics(f, maps, params, x, k, jnp.float32(sigma), num - i * batch, batch)
        for i, k in enumerate(keys)
    ]
    votes, has_nan, count, mean, m2 = (
        np.stack(a) for a in zip(*jax.device_get(per_batch), strict=True)
    )
    if has_nan.any():
        raise _nan_error(int(np.flatnonzero(has_nan)[0]), len(keys), batch, num, label)
    count = count.astype(np.float64)
    mean, m2 = mean.astype(np.float64), m2.astype(np.float64)
    total = np.einsum("b,bmk->mk", count, mean) / num
    spread = mean - total[None]
    m2 = m2.sum(0) + np.einsum("b,bmi,bmj->mij", count, spread, spread)
    cov = m2 / (num - 1) if num > 1 else np.zeros_like(m2)
    return NoiseStatistics(num, votes.sum(0).astype(np.int64), total, cov)


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
) -> NoiseStatistics:
    """Statistics of ``f(params, x + sigma z)`` over ``num`` draws of ``z ~ N(0, I)``.

    Args:
      key: a ``jax.random`` key (``jax.random.key``, a legacy ``PRNGKey``) or an int seed;
        one key per batch is split from it.
      f: the base classifier, a pure function ``logits = f(params, xs)`` from a batch
        ``[b, *x.shape]`` to ``[b, k]``. Pass the same function object on every call:
        it is a static argument of the compiled sampler.
      params: its parameters (any pytree).
      x: one input, e.g. ``[height, width, channels]``, on the model's input scale.
      num: number of noisy samples.
      sigma: noise standard deviation, on the model's input scale.
      batch_size: most noisy copies evaluated at once (the memory budget).
      maps: soft simplex maps whose scores are averaged (hard votes are always counted).
      label: prefix naming the sample set in error messages (e.g. ``"selection "``).

    Raises:
      ValueError: bad arguments, fewer than 2 classes, or NaN logits (naming the batch).
    """
    sigma = checks.check_sigma(sigma)
    key, x, maps, _ = check_sampling(key, f, params, x, num, batch_size, maps)
    return _sample_statistics(key, f, params, x, int(num), sigma, int(batch_size), maps, label)


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
    key, x, maps, k = check_sampling(key, f, params, x, num, batch_size, maps)
    batch, keys = _batch_keys(key, num, batch_size)
    model = jax.jit(f)
    mapped = jax.jit(lambda logits: jnp.stack([m(logits) for m in maps]))
    votes = np.zeros(k, np.int64)
    scores: list[np.ndarray] = []
    for i, batch_key in enumerate(keys):
        size = min(batch, num - i * batch)
        logits = model(params, _noisy_batch(x, batch_key, jnp.float32(sigma), batch))
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
