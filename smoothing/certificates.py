"""Certificates of a smoothed classifier from selection and estimation statistics (host).

Every certificate follows Cohen et al.'s protocol: the *selection* samples (``n0``) fix
everything that is chosen (the predicted class, the buckets, the simplex map, which
certificate to use), the independent *estimation* samples (``n``) give the bounds, and
the result holds with probability at least ``1 - alpha`` over the estimation samples.

- ``cohen``: one-sided Clopper–Pearson lower bound on ``pA`` at ``alpha``; abstain below
  1/2, else ``sigma Phi^-1(pA_lower)`` (``R_mono``: the runner-up bound is ``1 - pA_lower``).
  A bound that comes out NaN (scipy's quantile failing) abstains.
- ``multi`` (``R_multi``): Clopper–Pearson bounds at ``alpha / #buckets`` on the bucket
  counts (``buckets.py``), radius ``sigma / 2 (Phi^-1(pA_lower) - Phi^-1(pB_upper))``.
  It beats ``cohen`` when the runner-up mass is split over several classes. It loses
  when the classes besides ``A`` and ``B`` hold less mass than the Bonferroni correction
  widens the bounds by: always with two classes, where ``pB = 1 - pA`` and ``pB_upper``
  is at best ``1 - pA_lower`` at a smaller level.
- ``combined``: whichever of ``cohen`` and ``multi`` the selection samples predict to be
  larger (plugging their frequencies into ``n`` estimation samples), then that one alone
  at the full ``alpha``: the choice never sees the estimation samples.
- ``lipschitz``: the candidates of ``combined`` plus, for each soft simplex map, the
  better of two radii of the map-smoothed classifier, the budget split between them
  (``split * alpha`` to the margin, the rest to the Gaussian radius), because they use
  different bounds: the Gaussian radius empirical-Bernstein bounds on the bucket means,
  the margin radius ``m / (sqrt(2) L~)`` empirical-Bernstein lower bounds on the
  differences ``f_A - f_S`` for every non-``A`` bucket ``S`` (each at most ``g_A - g_c`` for
  ``c`` in ``S``; bounding the difference directly is never looser than
  ``pA_lower - pB_upper``). The candidate is chosen on the selection samples as in
  ``combined``, so the simplex map and its temperature are too.
"""

from __future__ import annotations

import dataclasses
import math
from collections.abc import Callable, Sequence

import numpy as np

from smoothing import checks
from smoothing.buckets import class_buckets
from smoothing.intervals import (
    _bernstein_halfwidth,
    _clopper_pearson_lower,
    _clopper_pearson_upper,
)
from smoothing.radii import _gaussian_radius, _margin_radius, _smoothed_lipschitz
from smoothing.sampling import NoiseStatistics
from smoothing.simplex import SimplexMap

ABSTAIN = -1
METHODS = ("cohen", "multi", "combined", "lipschitz")


@dataclasses.dataclass(frozen=True)
class Certificate:
    """A prediction of the smoothed classifier and its certified L2 radius.

    Attributes:
      prediction: the class, or ``ABSTAIN`` (-1).
      radius: certified radius on the input scale (0 when abstaining).
      method: the certificate that produced it: ``"cohen"``, ``"multi"``, or a soft map
        and the winning radius, e.g. ``"sparsemax(t=2) margin"``.
    """

    prediction: int
    radius: float
    method: str

    @property
    def abstained(self) -> bool:
        return self.prediction == ABSTAIN


Candidate = Callable[[NoiseStatistics, NoiseStatistics], Certificate]


def _result(top: int, radius: float, method: str) -> Certificate:
    """A certificate of ``top`` at ``radius``, or an abstention unless ``radius > 0`` (NaN
    abstains)."""
    if radius > 0:
        return Certificate(top, float(radius), method)
    return Certificate(ABSTAIN, 0.0, method)


def _check_votes(selection: NoiseStatistics, estimation: NoiseStatistics) -> None:
    if selection.votes.shape != estimation.votes.shape or selection.votes.size < 2:
        raise ValueError(
            f"selection and estimation must count the same k >= 2 classes, got "
            f"{selection.votes.shape} and {estimation.votes.shape}"
        )


def _cohen(
    selection: NoiseStatistics, estimation: NoiseStatistics, sigma: float, alpha: float
) -> Certificate:
    top = int(np.argmax(selection.votes))
    p_lower = _clopper_pearson_lower(estimation.votes[top], estimation.num, alpha)
    # "not >=": a NaN bound (scipy's quantile failing) abstains, as a bound below 1/2 does.
    if not p_lower >= 0.5:
        return Certificate(ABSTAIN, 0.0, "cohen")
    return Certificate(top, float(_gaussian_radius(p_lower, 1.0 - p_lower, sigma)), "cohen")


def cohen_certificate(
    selection: NoiseStatistics, estimation: NoiseStatistics, sigma: float, alpha: float
) -> Certificate:
    """Cohen et al.'s CERTIFY: abstain unless ``pA_lower >= 1/2`` (also when it is NaN)."""
    sigma, alpha = checks.check_sigma(sigma), checks.check_alpha(alpha)
    _check_votes(selection, estimation)
    return _cohen(selection, estimation, sigma, alpha)


def _multi_bounds(
    selection_votes: np.ndarray, votes: np.ndarray, num: int, alpha: float
) -> tuple[int, float, float]:
    membership = class_buckets(selection_votes)
    counts = membership.astype(np.int64) @ votes
    level = alpha / len(membership)
    p_a = _clopper_pearson_lower(counts[0], num, level)
    p_b = np.max(_clopper_pearson_upper(counts[1:], num, level))  # NaN if any is NaN
    return int(np.flatnonzero(membership[0])[0]), float(p_a), float(p_b)


def multi_bounds(
    selection_votes: np.ndarray, votes: np.ndarray, num: int, alpha: float
) -> tuple[int, float, float]:
    """``(A, pA_lower, pB_upper)``, simultaneous at level ``1 - alpha``: buckets from the
    selection votes ``[k]``, Clopper–Pearson at ``alpha / #buckets`` on the bucket counts
    of the estimation ``votes: [k]`` (``num`` samples)."""
    alpha = checks.check_alpha(alpha)
    votes = np.asarray(votes)
    selection_votes = np.asarray(selection_votes)
    if votes.shape != selection_votes.shape or votes.ndim != 1:
        raise ValueError(
            f"selection_votes and votes must be vectors [k] of the same k, got shapes "
            f"{selection_votes.shape} and {votes.shape}"
        )
    num = checks.check_count(num, "num")
    if not (np.issubdtype(votes.dtype, np.integer) and votes.min() >= 0 and votes.sum() <= num):
        raise ValueError(f"votes must be counts >= 0 summing to at most num = {num}, got {votes}")
    return _multi_bounds(selection_votes, votes, num, alpha)


def _multi(
    selection: NoiseStatistics, estimation: NoiseStatistics, sigma: float, alpha: float
) -> Certificate:
    top, p_a, p_b = _multi_bounds(selection.votes, estimation.votes, estimation.num, alpha)
    return _result(top, float(_gaussian_radius(p_a, p_b, sigma)), "multi")


def multi_certificate(
    selection: NoiseStatistics, estimation: NoiseStatistics, sigma: float, alpha: float
) -> Certificate:
    """``R_multi``: bucketed Clopper–Pearson bounds on ``pA`` and the runner-up."""
    sigma, alpha = checks.check_sigma(sigma), checks.check_alpha(alpha)
    _check_votes(selection, estimation)
    return _multi(selection, estimation, sigma, alpha)


def _std(directions: np.ndarray, cov: np.ndarray) -> np.ndarray:
    """Standard deviation of ``directions @ score``: ``[r, k]``, ``[k, k]`` -> ``[r]``."""
    return np.sqrt(np.maximum(np.einsum("ri,ij,rj->r", directions, cov, directions), 0.0))


@dataclasses.dataclass(frozen=True)
class SoftBounds:
    """Bounds on a soft-smoothed classifier ``g = E map(f(x + noise))``.

    ``p_a_lower <= g_A`` and ``p_b_upper >= max_{c != A} g_c`` hold together with
    probability ``>= 1 - (1 - split) alpha``; ``margin_lower <= g_A - g_c`` for every
    ``c != A`` with probability ``>= 1 - split alpha``. NaN statistics give NaN bounds.
    """

    top: int
    p_a_lower: float
    p_b_upper: float
    margin_lower: float


def _soft_bounds(
    selection_mean: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    num: int,
    alpha: float,
    split: float,
) -> SoftBounds:
    membership = class_buckets(selection_mean)
    sums = membership.astype(np.float64)
    half = _bernstein_halfwidth(_std(sums, cov), num, (1.0 - split) * alpha / len(sums))
    bucket_mean = sums @ mean
    differences = sums[:1] - sums[1:]
    level = split * alpha / len(differences)
    lower = differences @ mean - _bernstein_halfwidth(_std(differences, cov), num, level, 2.0)
    # np.clip, np.max and np.min all propagate NaN.
    return SoftBounds(
        top=int(np.flatnonzero(membership[0])[0]),
        p_a_lower=float(np.clip(bucket_mean[0] - half[0], 0.0, 1.0)),
        p_b_upper=float(np.clip(np.max(bucket_mean[1:] + half[1:]), 0.0, 1.0)),
        margin_lower=float(np.min(lower)),
    )


def soft_bounds(
    selection_mean: np.ndarray,
    mean: np.ndarray,
    cov: np.ndarray,
    num: int,
    alpha: float,
    split: float,
) -> SoftBounds:
    """Empirical-Bernstein bounds from ``num >= 2`` estimation samples of scores in the
    simplex with sample ``mean: [k]`` and covariance ``cov: [k, k]``; buckets and the top
    class from ``selection_mean: [k]``. Bucket sums lie in ``[0, 1]``, differences
    ``f_A - f_S`` in ``[-1, 1]``."""
    alpha = checks.check_alpha(alpha)
    split = checks.check_probability(split, "split")
    num = checks.check_count(num, "num", minimum=2)
    mean, cov = np.asarray(mean, np.float64), np.asarray(cov, np.float64)
    selection_mean = np.asarray(selection_mean, np.float64)
    k = mean.shape[-1] if mean.ndim == 1 else -1
    if selection_mean.shape != (k,) or cov.shape != (k, k) or k < 2:
        raise ValueError(
            f"selection_mean and mean must be [k] (k >= 2) and cov [k, k], got shapes "
            f"{selection_mean.shape}, {mean.shape} and {cov.shape}"
        )
    return _soft_bounds(selection_mean, mean, cov, num, alpha, split)


def _soft(
    selection: NoiseStatistics,
    estimation: NoiseStatistics,
    index: int,
    name: str,
    smoothed: float,
    sigma: float,
    alpha: float,
    split: float,
) -> Certificate:
    if estimation.num < 2:  # no variance estimate, no empirical-Bernstein bound
        return Certificate(ABSTAIN, 0.0, name)
    bounds = _soft_bounds(
        selection.mean[index],
        estimation.mean[index],
        estimation.cov[index],
        estimation.num,
        alpha,
        split,
    )
    gaussian = float(_gaussian_radius(bounds.p_a_lower, bounds.p_b_upper, sigma))
    margin = float(_margin_radius(bounds.margin_lower, smoothed))
    if margin > gaussian:
        return _result(bounds.top, margin, f"{name} margin")
    return _result(bounds.top, gaussian, f"{name} gaussian")


def soft_certificate(
    selection: NoiseStatistics,
    estimation: NoiseStatistics,
    index: int,
    name: str,
    smoothed: float,
    sigma: float,
    alpha: float,
    split: float,
) -> Certificate:
    """The better of the Gaussian and the margin radius of soft map ``index`` (module
    docstring); ``smoothed`` is the smoothed Lipschitz constant ``L~`` of its scores."""
    sigma, alpha = checks.check_sigma(sigma), checks.check_alpha(alpha)
    split = checks.check_probability(split, "split")
    if not (smoothed > 0 and math.isfinite(smoothed)):
        raise ValueError(f"smoothed must be a positive finite number, got {smoothed!r}")
    _check_votes(selection, estimation)
    count = selection.mean.shape[0]
    if not (0 <= index < count and estimation.mean.shape[0] == count):
        raise ValueError(
            f"index must pick one of the {count} soft maps of both statistics, got {index} "
            f"(estimation holds {estimation.mean.shape[0]})"
        )
    return _soft(selection, estimation, index, name, float(smoothed), sigma, alpha, split)


def plug_in(selection: NoiseStatistics, num: int) -> NoiseStatistics:
    """What ``num`` estimation samples would show if they had the selection frequencies
    (rounded down, so the counts never add up to more than ``num``)."""
    votes = np.floor(selection.votes * (num / selection.num)).astype(np.int64)
    return NoiseStatistics(num, votes, selection.mean, selection.cov)


def choose(
    candidates: Sequence[Candidate], selection: NoiseStatistics, estimation: NoiseStatistics
) -> Certificate:
    """Run the candidate whose plug-in radius on the selection samples is largest (the
    first on ties, or when all abstain) on the estimation samples."""
    if len(candidates) == 1:
        return candidates[0](selection, estimation)
    projected = plug_in(selection, estimation.num)
    scores = []
    for candidate in candidates:
        guess = candidate(selection, projected)
        scores.append(-math.inf if guess.abstained else guess.radius)
    return candidates[int(np.argmax(scores))](selection, estimation)


def certificate(
    selection: NoiseStatistics,
    estimation: NoiseStatistics,
    *,
    method: str,
    sigma: float,
    alpha: float,
    maps: Sequence[SimplexMap] = (),
    lipschitz: float | None = None,
    split: float = 0.5,
) -> Certificate:
    """Certify from the statistics of the selection and the estimation samples.

    Args:
      selection, estimation: ``sample_statistics`` of independent noise draws, the soft
        maps ``maps`` in the same order in both.
      method: one of ``METHODS`` (module docstring).
      sigma: the noise level the statistics were drawn with (input scale).
      alpha: the certificate holds with probability ``>= 1 - alpha``; at least
        ``checks.MIN_ALPHA``.
      maps: the soft simplex maps (``lipschitz`` only).
      lipschitz: L2 Lipschitz constant of the logits ``x -> f(params, x)`` (``lipschitz``
        only); the score ``map(f)`` is then ``lipschitz * map.lipschitz``-Lipschitz.
      split: share of ``alpha`` given to the margin bounds of the soft maps.

    Returns:
      ``Certificate(prediction, radius, method)``; an abstention (``ABSTAIN``, radius 0)
      whenever no bound supports a positive radius, NaN bounds included.
    """
    sigma, alpha = check_certificate_arguments(method, sigma, alpha, maps, lipschitz, split)
    _check_votes(selection, estimation)
    if method == "lipschitz":
        for stats, name in [(selection, "selection"), (estimation, "estimation")]:
            if stats.mean.shape[0] != len(maps):
                raise ValueError(
                    f"{name} statistics hold {stats.mean.shape[0]} soft maps, expected {len(maps)}"
                )
    return _certificate(selection, estimation, method, sigma, alpha, tuple(maps), lipschitz, split)


def _certificate(
    selection: NoiseStatistics,
    estimation: NoiseStatistics,
    method: str,
    sigma: float,
    alpha: float,
    maps: tuple[SimplexMap, ...],
    lipschitz: float | None,
    split: float,
) -> Certificate:
    """``certificate`` of checked arguments."""

    def cohen(sel, est):
        return _cohen(sel, est, sigma, alpha)

    def multi(sel, est):
        return _multi(sel, est, sigma, alpha)

    candidates: list[Candidate] = {"cohen": [cohen], "multi": [multi]}.get(method, [cohen, multi])
    if method == "lipschitz":
        candidates += _soft_candidates(maps, lipschitz, sigma, alpha, split)
    return choose(candidates, selection, estimation)


def check_certificate_arguments(
    method: str,
    sigma: float,
    alpha: float,
    maps: Sequence[SimplexMap] = (),
    lipschitz: float | None = None,
    split: float = 0.5,
) -> tuple[float, float]:
    """Validate the arguments of ``certificate`` (before any sampling); ``(sigma, alpha)``."""
    if method not in METHODS:
        raise ValueError(f"method must be one of {METHODS}, got {method!r}")
    sigma, alpha = checks.check_sigma(sigma), checks.check_alpha(alpha)
    if method == "lipschitz":
        if lipschitz is None or not (lipschitz > 0 and math.isfinite(lipschitz)):
            raise ValueError(
                f"method 'lipschitz' needs the Lipschitz constant of the logits, a positive "
                f"number, got lipschitz={lipschitz!r}"
            )
        if not maps or not all(isinstance(m, SimplexMap) for m in maps):
            raise ValueError(f"method 'lipschitz' needs one or more SimplexMap, got {maps!r}")
        if not 0 < split < 1:
            raise ValueError(f"split must be in (0, 1), got {split!r}")
    return sigma, alpha


def _soft_candidates(maps, lipschitz, sigma, alpha, split) -> list[Candidate]:
    def make(index: int, simplex_map: SimplexMap) -> Candidate:
        smoothed = _smoothed_lipschitz(lipschitz * simplex_map.lipschitz, 1.0, sigma)

        def candidate(sel, est):
            return _soft(sel, est, index, str(simplex_map), smoothed, sigma, alpha, split)

        return candidate

    return [make(i, m) for i, m in enumerate(maps)]
