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

from smoothing.certificates import (
    ABSTAIN,
    Certificate,
    certificate,
    check_certificate_arguments,
)
from smoothing.intervals import check_alpha
from smoothing.sampling import BaseClassifier, NoiseStatistics, sample_statistics
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


def _check_count(value: int, name: str) -> int:
    if not (isinstance(value, int | np.integer) and value >= 1):
        raise ValueError(f"{name} must be an integer >= 1, got {value!r}")
    return int(value)


def predict_from_votes(votes, alpha: float) -> int:
    """Cohen's PREDICT on vote counts ``[k]``: the top class, or ``ABSTAIN`` when the
    two-sided binomial test of the top count against the runner-up's at p = 1/2 has
    p-value above ``alpha``."""
    alpha = check_alpha(alpha)
    votes = np.asarray(votes)
    order = np.argsort(-votes, kind="stable")
    top, second = int(votes[order[0]]), int(votes[order[1]])
    if stats.binomtest(top, top + second, 0.5).pvalue > alpha:
        return ABSTAIN
    return int(order[0])


def predict(
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    key: jax.Array,
    *,
    sigma: float,
    n: int = DEFAULT_N,
    alpha: float = DEFAULT_ALPHA,
    batch_size: int = DEFAULT_BATCH_SIZE,
) -> int:
    """The smoothed classifier's class for one input ``x``, or ``ABSTAIN`` (-1); wrong with
    probability at most ``alpha``. ``batch_size`` noisy copies are evaluated at once."""
    alpha = check_alpha(alpha)
    n = _check_count(n, "n")
    votes = sample_statistics(f, params, x, key, num=n, sigma=sigma, batch_size=batch_size).votes
    return predict_from_votes(votes, alpha)


def sample_certification(
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    key: jax.Array,
    *,
    sigma: float,
    n0: int = DEFAULT_N0,
    n: int = DEFAULT_N,
    batch_size: int = DEFAULT_BATCH_SIZE,
    maps: Sequence[SimplexMap] = (),
) -> tuple[NoiseStatistics, NoiseStatistics]:
    """Independent selection (``n0``) and estimation (``n``) statistics of one input, from
    two keys split from ``key``; every certificate of ``certificate`` can use them."""
    n0, n = _check_count(n0, "n0"), _check_count(n, "n")
    selection_key, estimation_key = jax.random.split(key)
    common = {"sigma": sigma, "batch_size": batch_size, "maps": maps}
    selection = sample_statistics(f, params, x, selection_key, num=n0, label="selection ", **common)
    estimation = sample_statistics(
        f, params, x, estimation_key, num=n, label="estimation ", **common
    )
    return selection, estimation


def certify(
    f: BaseClassifier,
    params: Any,
    x: jax.Array,
    key: jax.Array,
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
      f: base classifier, a pure function ``logits = f(params, xs)``, ``xs: [b, *x.shape]``
        -> ``[b, k]``; pass the same function object every call (it is compiled once).
      params: its parameters.
      x: one input on the model's input scale, e.g. ``[height, width, channels]``.
      key: ``jax.random`` key of the noise.
      sigma: noise standard deviation, on the model's input scale.
      n0, n: selection and estimation samples (Cohen et al.'s defaults 100 and 100 000).
      alpha: the certificate is wrong with probability at most ``alpha``.
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
    check_certificate_arguments(method, sigma, alpha, maps, lipschitz, split)
    selection, estimation = sample_certification(
        f,
        params,
        x,
        key,
        sigma=sigma,
        n0=n0,
        n=n,
        batch_size=batch_size,
        maps=maps if method == "lipschitz" else (),
    )
    return certificate(
        selection,
        estimation,
        method=method,
        sigma=sigma,
        alpha=alpha,
        maps=maps,
        lipschitz=lipschitz,
        split=split,
    )
