"""PREDICT and CERTIFY of the Gaussian-smoothed classifier (Cohen, Rosenfeld & Kolter 2019).

The base classifier is any pure function ``logits = f(params, xs)`` from a batch
``[b, *x.shape]`` to ``[b, k]``. The smoothed classifier predicts the class ``f`` returns
most often on ``x + sigma z``, ``z ~ N(0, I)``, with ``sigma`` on the model's input scale
(the noise is added to the array ``f`` receives: for images standardised to ``[-1, 1]``,
``sigma = 0.5`` is a quarter of the pixel range). To state ``sigma`` in pixel units
whatever ``f`` expects, smooth ``with_normalization(f, mean, std)`` (``normalization``).

``sample_certification_batch`` draws the selection and estimation statistics of many
inputs at once, input ``i`` from ``fold_in(key, indices[i])``, and optionally over a
mesh of devices; ``sample_certification`` (one input, its own key) is its one-input
case, and ``certify`` is ``sample_certification`` followed by ``certificate``.

Defaults are the paper's: ``n0 = 100`` selection samples, ``n = 100_000`` estimation
samples, ``alpha = 0.001``. Few samples cannot be confident at a small ``alpha``. With
``n = 10`` and ``alpha = 0.001``, PREDICT always abstains: its smallest possible p-value,
10 votes against 0, is ``2 / 2 ** 10 = 0.00195 > alpha`` (it needs ``n >= 11``).
CERTIFY abstains unless all 10 votes go to the selected class, and even then the
one-sided Clopper–Pearson bound is ``alpha ** (1 / 10) = 0.5012``, a radius of
``sigma Phi^-1(0.5012) = 0.003 sigma``: nothing is certified at any useful radius. The
largest radius ``n`` samples can ever give is ``sigma Phi^-1(alpha ** (1 / n))``
(``3.8 sigma`` at the defaults, ``2.5 sigma`` with ``n = 1000``).
"""

from __future__ import annotations

from collections.abc import Sequence
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from scipy import stats

from smoothing import checks
from smoothing.certificates import (
    ABSTAIN,
    Certificate,
    _certificate,
    check_certificate_arguments,
)
from smoothing.sampling import (
    BaseClassifier,
    NoiseStatistics,
    _sample,
    check_mesh,
    check_sampling,
)
from smoothing.simplex import SimplexMap

DEFAULT_N0 = 100
DEFAULT_N = 100_000
DEFAULT_ALPHA = 0.001
DEFAULT_BATCH_SIZE = 1000
# Candidate maps of the Lipschitz-aware certificate; the selection samples choose one per
# input. Sparsemax at a temperature above the logit gaps keeps every class in its support,
# where its margin is the logit margin over t: the useful range follows the logit scale.
DEFAULT_MAPS = tuple(SimplexMap("softmax", t) for t in (0.5, 1.0)) + tuple(
    SimplexMap("sparsemax", t) for t in (0.5, 1.0, 2.0, 4.0, 8.0)
)


def predict_from_votes(votes, alpha: float) -> int:
    """Cohen's PREDICT on vote counts ``[k]``: the top class, or ``ABSTAIN`` when the
    two-sided binomial test of the top count against the runner-up's at p = 1/2 has
    p-value above ``alpha``."""
    alpha = checks.check_alpha(alpha)
    votes = np.asarray(votes)
    if votes.ndim != 1 or votes.size < 2 or not np.issubdtype(votes.dtype, np.integer):
        raise ValueError(f"votes must be integer counts [k] with k >= 2, got {votes!r}")
    if votes.min() < 0:
        raise ValueError(f"votes must be counts >= 0, got {votes}")
    return _predict_from_votes(votes, alpha)


def _predict_from_votes(votes: np.ndarray, alpha: float) -> int:
    order = np.argsort(-votes, kind="stable")
    top, second = int(votes[order[0]]), int(votes[order[1]])
    if top + second == 0 or stats.binomtest(top, top + second, 0.5).pvalue > alpha:
        return ABSTAIN
    return int(order[0])


def predict(
    key: jax.Array | int,
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    *,
    sigma: float,
    n: int = DEFAULT_N,
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """The smoothed classifier's class for one input ``x``, or ``ABSTAIN`` (-1); wrong with
    probability at most ``alpha``. ``key`` (a ``jax.random`` key or an int seed) draws the
    noise; ``batch_size`` noisy copies are evaluated at once."""
    alpha, sigma = checks.check_alpha(alpha), checks.check_sigma(sigma)
    n = checks.check_count(n, "n")
    key, xs, _, _ = check_sampling(key, f, params, np.asarray(x)[None], n, batch_size, ())
    [[stats]] = _sample(
        key[None, None], f, params, xs, (n,), sigma, batch_size, (), check_mesh(None), [[""]]
    )
    return _predict_from_votes(stats.votes, alpha)


def _sample_certification(keys, f, params, xs, sigma, n0, n, batch_size, maps, mesh, names):
    """``sample_certification_batch`` of checked arguments, input ``i`` from ``keys[i]``
    (``[b]``) and named ``names[i]`` in NaN errors: ``[b]`` pairs (selection,
    estimation)."""
    stage_keys = jax.vmap(jax.random.split)(keys)
    labels = [(f"{name}selection ", f"{name}estimation ") for name in names]
    stages = _sample(stage_keys, f, params, xs, (n0, n), sigma, batch_size, maps, mesh, labels)
    return list(zip(*stages, strict=True))


def _check_sample_certification(key, f, params, xs, n0, n, batch_size, maps, mesh):
    """Everything ``sample_certification_batch`` checks but ``sigma`` and ``indices``."""
    n0, n = checks.check_count(n0, "n0"), checks.check_count(n, "n")
    key, xs, maps, _ = check_sampling(key, f, params, xs, n, batch_size, maps)
    return key, xs, n0, n, int(batch_size), maps, check_mesh(mesh)


def sample_certification(
    key: jax.Array | int,
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    *,
    sigma: float,
    n0: int = DEFAULT_N0,
    n: int = DEFAULT_N,
    batch_size: int = DEFAULT_BATCH_SIZE,
    maps: Sequence[SimplexMap] = (),
    mesh: Mesh | None = None,
) -> tuple[NoiseStatistics, NoiseStatistics]:
    """Independent selection (``n0``) and estimation (``n``) statistics of one input ``x``,
    from the two keys ``split(key)`` (``key``: a ``jax.random`` key or an int seed); every
    certificate of ``certificate`` can use them. ``mesh``: as in ``sample_statistics``.
    The one-input case of ``sample_certification_batch``: input ``i`` of a batch drawn
    with key ``k`` gets exactly ``sample_certification(fold_in(k, i), ...)``."""
    sigma = checks.check_sigma(sigma)
    checked = _check_sample_certification(
        key, f, params, np.asarray(x)[None], n0, n, batch_size, maps, mesh
    )
    key, xs, n0, n, batch_size, maps, mesh = checked
    [pair] = _sample_certification(
        key[None], f, params, xs, sigma, n0, n, batch_size, maps, mesh, [""]
    )
    return pair


def sample_certification_batch(
    key: jax.Array | int,
    f: BaseClassifier,
    params: Any,
    xs: jax.Array,
    *,
    sigma: float,
    n0: int = DEFAULT_N0,
    n: int = DEFAULT_N,
    batch_size: int = DEFAULT_BATCH_SIZE,
    maps: Sequence[SimplexMap] = (),
    indices: Sequence[int] | np.ndarray | None = None,
    mesh: Mesh | None = None,
) -> list[tuple[NoiseStatistics, NoiseStatistics]]:
    """``sample_certification`` of many inputs at once: their noise batches share the
    compiled calls (several small batches fill one call up to ``batch_size`` noisy copies
    per device) and are all dispatched before any result is read back.

    Key scheme: input ``i`` uses the key ``fold_in(key, indices[i])`` and gets exactly
    the statistics of ``sample_certification(fold_in(key, indices[i]), f, params, xs[i],
    ...)``; its noise depends on that key alone (``smoothing.sampling``), so the results
    do not depend on how inputs are grouped into calls of this function, nor on the mesh.

    Args:
      key: a ``jax.random`` key or an int seed, the root of the per-input keys.
      f: base classifier ``logits = f(params, xs)``, ``[b, *x.shape] -> [b, k]`` (the same
        function object every call: it is compiled once).
      params: its parameters.
      xs: ``[b, *x.shape]``, the inputs on the model's input scale.
      sigma, n0, n, batch_size, maps: as in ``certify`` (``maps``: the soft maps whose
        statistics are gathered); ``batch_size`` is per device.
      indices: ``[b]`` integers in ``[0, 2^32)``, the index of each input in the data set
        (default ``0, ..., b - 1``): certifying a data set in groups with the indices of
        each group gives the same statistics as one call on the whole set.
      mesh: a 1-D ``jax.sharding.Mesh`` with axis ``"data"`` over which the noise batches
        are spread; default this process's first device. In a multi-process run every
        process passes the same arguments and a mesh over all devices, and receives all
        the statistics.

    Returns:
      ``[b]`` pairs ``(selection, estimation)`` of ``NoiseStatistics``.
    """
    sigma = checks.check_sigma(sigma)
    checked = _check_sample_certification(key, f, params, xs, n0, n, batch_size, maps, mesh)
    key, xs, n0, n, batch_size, maps, mesh = checked
    indices = _check_indices(indices, len(xs))
    keys = jax.vmap(jax.random.fold_in, (None, 0))(key, indices)
    names = [f"input {i}, " for i in indices]
    return _sample_certification(keys, f, params, xs, sigma, n0, n, batch_size, maps, mesh, names)


def _check_indices(indices, count: int) -> np.ndarray:
    """``indices`` (default ``0, ..., count - 1``) as ``uint32 [count]``."""
    if indices is None:
        return np.arange(count, dtype=np.uint32)
    array = np.asarray(indices)
    if (
        array.shape != (count,)
        or not np.issubdtype(array.dtype, np.integer)
        or array.min() < 0
        or array.max() >= 2**32
    ):
        raise ValueError(
            f"indices must be [{count}] integers in [0, 2^32), one per input, got {indices!r}"
        )
    return array.astype(np.uint32)


def certify(
    key: jax.Array | int,
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    *,
    sigma: float,
    n0: int = DEFAULT_N0,
    n: int = DEFAULT_N,
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = DEFAULT_BATCH_SIZE,
    method: str = "cohen",
    lipschitz: float | None = None,
    maps: Sequence[SimplexMap] = DEFAULT_MAPS,
    split: float = 0.5,
) -> Certificate:
    """Certify the smoothed classifier at one input ``x``.

    Args:
      key: ``jax.random`` key of the noise (``jax.random.key``, a legacy ``PRNGKey``, or
        an int seed).
      f: base classifier, a pure function ``logits = f(params, xs)``, ``xs: [b, *x.shape]``
        -> ``[b, k]``; pass the same function object every call (it is compiled once).
      params: its parameters.
      x: one input on the model's input scale, e.g. ``[height, width, channels]``.
      sigma: noise standard deviation, on the model's input scale.
      n0, n: selection and estimation samples (Cohen et al.'s defaults 100 and 100 000).
      alpha: the certificate is wrong with probability at most ``alpha``
        (``>= checks.MIN_ALPHA``).
      batch_size: most noisy copies evaluated at once (memory budget).
      method: ``"cohen"`` (exactly Cohen et al.), ``"multi"`` (``R_multi``),
        ``"combined"`` (either, chosen on the selection samples) or ``"lipschitz"``
        (``smoothing.certificates``).
      lipschitz: L2 Lipschitz constant of ``x -> f(params, x)`` (``"lipschitz"`` only;
        1 for the networks of ``lipschitz.layers``).
      maps: soft simplex maps tried by ``"lipschitz"``.
      split: share of ``alpha`` spent on the margin bounds (``"lipschitz"``).

    Returns:
      ``Certificate(prediction, radius, method)``; ``prediction`` is ``ABSTAIN`` (-1) with
      radius 0 when nothing can be certified.
    """
    sigma, alpha = check_certificate_arguments(method, sigma, alpha, maps, lipschitz, split)
    sampled_maps = tuple(maps) if method == "lipschitz" else ()
    checked = _check_sample_certification(
        key, f, params, np.asarray(x)[None], n0, n, batch_size, sampled_maps, None
    )
    key, xs, n0, n, batch_size, sampled_maps, mesh = checked
    [(selection, estimation)] = _sample_certification(
        key[None], f, params, xs, sigma, n0, n, batch_size, sampled_maps, mesh, [""]
    )
    return _certificate(
        selection, estimation, method, sigma, alpha, tuple(maps), lipschitz, float(split)
    )
