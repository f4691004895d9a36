"""PREDICT and CERTIFY of the Gaussian-smoothed classifier (Cohen, Rosenfeld & Kolter 2019).

The base classifier is any pure function ``logits = f(params, xs)`` from a batch
``[b, *x.shape]`` to ``[b, k]``. The smoothed classifier predicts the class ``f`` returns
most often on ``x + sigma z``, ``z ~ N(0, I)``, with ``sigma`` on the model's input scale
(the noise is added to the array ``f`` receives: for images standardised to ``[-1, 1]``,
``sigma = 0.5`` is a quarter of the pixel range).

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
    _sample_statistics,
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
    key, x, _, _ = check_sampling(key, f, params, x, n, batch_size, ())
    votes = _sample_statistics(key, f, params, x, n, sigma, int(batch_size), ()).votes
    return _predict_from_votes(votes, alpha)


def _sample_certification(key, f, params, x, sigma, n0, n, batch_size, maps):
    """``sample_certification`` of checked arguments."""
    selection_key, estimation_key = jax.random.split(key)
    common = (sigma, batch_size, maps)
    selection = _sample_statistics(selection_key, f, params, x, n0, *common, "selection ")
    estimation = _sample_statistics(estimation_key, f, params, x, n, *common, "estimation ")
    return selection, estimation


def _check_sample_certification(key, f, params, x, n0, n, batch_size, maps):
    """Everything ``sample_certification`` checks but ``sigma``."""
    n0, n = checks.check_count(n0, "n0"), checks.check_count(n, "n")
    key, x, maps, _ = check_sampling(key, f, params, x, n, batch_size, maps)
    return key, x, n0, n, int(batch_size), maps


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
) -> tuple[NoiseStatistics, NoiseStatistics]:
    """Independent selection (``n0``) and estimation (``n``) statistics of one input, from
    two keys split from ``key`` (a ``jax.random`` key or an int seed); every certificate
    of ``certificate`` can use them."""
    sigma = checks.check_sigma(sigma)
    checked = _check_sample_certification(key, f, params, x, n0, n, batch_size, maps)
    key, x, n0, n, batch_size, maps = checked
    return _sample_certification(key, f, params, x, sigma, n0, n, batch_size, maps)


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
    checked = _check_sample_certification(key, f, params, x, n0, n, batch_size, sampled_maps)
    key, x, n0, n, batch_size, sampled_maps = checked
    selection, estimation = _sample_certification(
        key, f, params, x, sigma, n0, n, batch_size, sampled_maps
    )
    return _certificate(
        selection, estimation, method, sigma, alpha, tuple(maps), lipschitz, float(split)
    )
