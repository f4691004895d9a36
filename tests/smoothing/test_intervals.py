"""Clopper–Pearson against statsmodels, the empirical-Bernstein half-width against its
formula, and both intervals' coverage by Monte Carlo."""

import math

import numpy as np
import pytest
from statsmodels.stats.proportion import proportion_confint

import smoothing
from smoothing.intervals import bernstein_halfwidth, clopper_pearson_lower, clopper_pearson_upper

# Monte-Carlo slack: 3 binomial standard deviations of the failure frequency.
DRAWS = 4000


def slack(alpha: float, draws: int = DRAWS) -> float:
    return 3 * math.sqrt(alpha * (1 - alpha) / draws)


@pytest.mark.parametrize("alpha", [0.001, 0.05, 0.3])
@pytest.mark.parametrize("n", [1, 7, 100, 100_000])
def test_clopper_pearson_equals_statsmodels(n, alpha):
    counts = np.unique(np.linspace(0, n, 12).astype(int))
    lower, upper = smoothing.clopper_pearson(counts, n, alpha)
    ref_lower, ref_upper = proportion_confint(counts, n, alpha=alpha, method="beta")
    np.testing.assert_allclose(lower, ref_lower, rtol=1e-12, atol=1e-15)
    np.testing.assert_allclose(upper, ref_upper, rtol=1e-12, atol=1e-15)
    # Scalars too, and the one-sided bounds are the two-sided ones at twice alpha.
    low, up = smoothing.clopper_pearson(int(counts[1]), n, alpha)
    assert low == pytest.approx(ref_lower[1], rel=1e-12, abs=1e-15)
    assert up == pytest.approx(ref_upper[1], rel=1e-12, abs=1e-15)
    if alpha < 0.5:
        np.testing.assert_allclose(clopper_pearson_lower(counts, n, alpha / 2), lower)
        np.testing.assert_allclose(clopper_pearson_upper(counts, n, alpha / 2), upper)


def test_clopper_pearson_edges():
    lower, upper = smoothing.clopper_pearson(np.array([0, 10]), 10, 0.01)
    assert lower[0] == 0 and upper[1] == 1
    # All n successes: the one-sided lower bound is alpha ** (1 / n).
    assert clopper_pearson_lower(10, 10, 0.001) == pytest.approx(0.001**0.1, rel=1e-12)


def test_bernstein_halfwidth_formula():
    std, n, delta = np.array([0.0, 0.1, 0.5]), 1000, 0.01
    log_term = math.log(2 / delta)
    expected = std * math.sqrt(2 * log_term / n) + 7 * log_term / (3 * (n - 1))
    np.testing.assert_allclose(bernstein_halfwidth(std, n, delta), expected, rtol=1e-14)
    # A range of width b scales the second term.
    expected_b = std * math.sqrt(2 * log_term / n) + 7 * 2.0 * log_term / (3 * (n - 1))
    np.testing.assert_allclose(bernstein_halfwidth(std, n, delta, 2.0), expected_b, rtol=1e-14)


@pytest.mark.parametrize("p", [0.02, 0.5, 0.97])
def test_clopper_pearson_coverage(p):
    """Each one-sided bound at alpha fails at most alpha of the time (plus slack)."""
    alpha, n = 0.1, 60
    counts = np.random.default_rng(0).binomial(n, p, size=DRAWS)
    lower_fails = np.mean(clopper_pearson_lower(counts, n, alpha) > p)
    upper_fails = np.mean(clopper_pearson_upper(counts, n, alpha) < p)
    assert lower_fails <= alpha + slack(alpha)
    assert upper_fails <= alpha + slack(alpha)
    # Not vacuous: a bound that fails with frequency near alpha for a mid probability.
    if p == 0.5:
        assert lower_fails > alpha / 4


@pytest.mark.parametrize(
    "draw,mean",
    [
        (lambda rng, size: rng.beta(0.5, 0.5, size), 0.5),  # U-shaped: large variance
        (lambda rng, size: rng.beta(40, 2, size), 40 / 42),  # near 1: small variance
        (lambda rng, size: rng.binomial(1, 0.1, size).astype(float), 0.1),
    ],
)
def test_empirical_bernstein_coverage(draw, mean):
    """The empirical-Bernstein bounds on variables in [0, 1] fail at most delta of the time."""
    delta, n = 0.1, 200
    samples = draw(np.random.default_rng(1), (DRAWS, n))
    half = bernstein_halfwidth(samples.std(axis=1, ddof=1), n, delta)
    sample_mean = samples.mean(axis=1)
    assert np.mean(sample_mean - half > mean) <= delta + slack(delta)
    assert np.mean(sample_mean + half < mean) <= delta + slack(delta)
    # Not vacuous: the half-width is well below the width of [0, 1].
    assert np.median(half) < 0.35


def test_empirical_bernstein_beats_hoeffding_at_small_variance():
    """The point of Bernstein: with small variance it is tighter than Hoeffding's
    ``sqrt(ln(1 / delta) / (2 n))``."""
    n, delta = 100_000, 1e-4
    assert bernstein_halfwidth(0.01, n, delta) < math.sqrt(math.log(1 / delta) / (2 * n)) / 5


@pytest.mark.parametrize(
    "call,match",
    [
        (lambda: smoothing.clopper_pearson(3, 10, 0.0), "alpha must be a number in"),
        (lambda: smoothing.clopper_pearson(3, 10, 1.0), "alpha must be a number in"),
        (lambda: smoothing.clopper_pearson(3, 0, 0.1), "n must be >= 1"),
        (lambda: smoothing.clopper_pearson(11, 10, 0.1), r"count must be in \[0, n\]"),
        (lambda: smoothing.clopper_pearson(2.5, 10, 0.1), "must be integers"),
        (lambda: bernstein_halfwidth(0.1, 1, 0.1), "n must be an integer >= 2"),
        (lambda: bernstein_halfwidth(0.1, 10, 1.5), "delta must be a number in"),
        (lambda: bernstein_halfwidth(-0.1, 10, 0.1), "std must be >= 0"),
        (lambda: bernstein_halfwidth(0.1, 10, 0.1, 0.0), "value_range must be > 0"),
    ],
)
def test_bad_arguments(call, match):
    with pytest.raises(ValueError, match=match):
        call()
