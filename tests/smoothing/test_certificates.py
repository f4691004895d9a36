"""Certificates on fixed counts against independent computations, their Monte-Carlo
coverage on multinomial counts and simulated soft scores, and the bucketing."""

import math

import numpy as np
import pytest
from scipy import stats
from statsmodels.stats.proportion import proportion_confint

import smoothing
from smoothing import NoiseStatistics, certificates
from smoothing.certificates import plug_in
from smoothing.intervals import _clopper_pearson_lower

SIGMA = 0.5


def slack(alpha: float, draws: int) -> float:
    """Monte-Carlo slack: 3 binomial standard deviations of a failure frequency."""
    return 3 * math.sqrt(alpha * (1 - alpha) / draws)


def votes(counts) -> NoiseStatistics:
    return NoiseStatistics.from_votes(counts)


def cohen_reference(selection, estimation, sigma, alpha):
    """Cohen et al.'s code path: argmax of the selection counts, statsmodels' two-sided
    interval at 2 alpha, abstain below 1/2, radius sigma * norm.ppf."""
    top = int(np.argmax(selection))
    n = int(np.sum(estimation))
    p_lower = proportion_confint(estimation[top], n, alpha=2 * alpha, method="beta")[0]
    return (-1, 0.0) if p_lower < 0.5 else (top, sigma * stats.norm.ppf(p_lower))


@pytest.mark.parametrize(
    "selection,estimation,alpha",
    [
        ([90, 10], [9000, 1000], 0.001),
        ([3, 97], [1200, 98800], 0.001),
        ([40, 35, 25], [520, 300, 180], 0.01),
        ([60, 40], [5100, 4900], 0.001),  # pA_lower < 1/2: abstain
        ([100, 0, 0], [100_000, 0, 0], 0.001),  # unanimous: the largest radius n allows
        ([10, 0], [10, 0], 0.001),  # n = 10: 0.5012 > 1/2, a radius of 0.003 sigma
    ],
)
def test_cohen_equals_reference(selection, estimation, alpha):
    cert = smoothing.cohen_certificate(votes(selection), votes(estimation), SIGMA, alpha)
    top, radius = cohen_reference(np.array(selection), np.array(estimation), SIGMA, alpha)
    assert cert.prediction == top
    assert cert.radius == pytest.approx(radius, rel=1e-10, abs=1e-14)


def test_n10_certificate_is_tiny_and_predict_abstains():
    cert = smoothing.cohen_certificate(votes([10, 0]), votes([10, 0]), 1.0, 0.001)
    assert 0 < cert.radius < 0.003
    assert smoothing.predict_from_votes([10, 0], 0.001) == smoothing.ABSTAIN
    assert smoothing.predict_from_votes([11, 0], 0.001) == 0


@pytest.mark.parametrize("counts", [[60, 40, 0], [520, 480], [30, 70], [7, 2, 1], [5, 5, 0]])
def test_predict_from_votes_is_cohens_binomial_test(counts):
    alpha = 0.05
    top = int(np.argmax(counts))
    second = sorted(counts)[-2]
    p_value = stats.binomtest(counts[top], counts[top] + second, 0.5).pvalue
    expected = -1 if p_value > alpha else top
    assert smoothing.predict_from_votes(counts, alpha) == expected


def test_buckets_follow_the_rule():
    # A = 0, B = 1 (20); rest 30 > 20: split off class 2; rest 20 is not > 20: lump.
    membership = smoothing.class_buckets([50, 20, 10, 8, 7, 5])
    assert membership.tolist() == [
        [1, 0, 0, 0, 0, 0],
        [0, 1, 0, 0, 0, 0],
        [0, 0, 1, 0, 0, 0],
        [0, 0, 0, 1, 1, 1],
    ]
    # Two classes: A and B only; ties go to the lower index; unsorted input.
    assert smoothing.class_buckets([3, 3]).tolist() == [[1, 0], [0, 1]]
    membership = smoothing.class_buckets([1, 0, 7, 2])
    assert membership[0].tolist() == [0, 0, 1, 0] and membership[1].tolist() == [0, 0, 0, 1]
    # Everything on A: the empty rest is one lumped bucket.
    assert smoothing.class_buckets([9, 0, 0, 0]).tolist() == [
        [1, 0, 0, 0],
        [0, 1, 0, 0],
        [0, 0, 1, 1],
    ]
    # Each class in exactly one bucket.
    masses = np.random.default_rng(0).dirichlet(np.ones(12) * 0.3)
    assert np.all(smoothing.class_buckets(masses).sum(0) == 1)
    with pytest.raises(ValueError, match="k >= 2"):
        smoothing.class_buckets([5])


def test_multi_equals_independent_computation():
    selection = [50, 20, 10, 8, 7, 5]  # buckets {0} {1} {2} {3, 4, 5}
    estimation = np.array([600, 150, 100, 70, 50, 30])
    alpha, n, level = 0.001, 1000, 0.001 / 4
    p_a = proportion_confint(600, n, alpha=2 * level, method="beta")[0]
    p_b = max(proportion_confint(c, n, alpha=2 * level, method="beta")[1] for c in (150, 100, 150))
    expected = SIGMA / 2 * (stats.norm.ppf(p_a) - stats.norm.ppf(p_b))
    cert = smoothing.multi_certificate(votes(selection), votes(estimation), SIGMA, alpha)
    assert cert.prediction == 0
    assert cert.radius == pytest.approx(expected, rel=1e-10)


def _certify_expected(probabilities, method, n=100_000, n0=100, alpha=0.001):
    """A certificate on the expected counts of ``probabilities``."""
    p = np.asarray(probabilities)
    return smoothing.certificate(
        votes(np.rint(p * n0).astype(int)),
        votes(np.rint(p * n).astype(int)),
        method=method,
        sigma=SIGMA,
        alpha=alpha,
    )


@pytest.mark.parametrize(
    "p",
    [
        [0.6] + [0.05] * 8,  # runner-up mass split over 8 classes
        [0.45, 0.15, 0.15, 0.15, 0.1],  # Cohen abstains (pA < 1/2), R_multi certifies
        [0.9, 0.03, 0.03, 0.02, 0.02],
    ],
)
def test_multi_beats_cohen_when_the_runner_up_mass_is_split(p):
    cohen, multi = _certify_expected(p, "cohen"), _certify_expected(p, "multi")
    assert multi.radius > cohen.radius
    combined = _certify_expected(p, "combined")
    assert combined.method == "multi" and combined.radius == multi.radius


@pytest.mark.parametrize(
    "p",
    [
        [0.7, 0.3],
        [0.999, 0.001],
        # The classes besides A and B hold less mass than the Bonferroni correction costs.
        [0.6, 0.3999, 0.0001],
    ],
)
def test_multi_loses_to_cohen_with_two_classes(p):
    cohen, multi = _certify_expected(p, "cohen"), _certify_expected(p, "multi")
    assert multi.radius < cohen.radius
    combined = _certify_expected(p, "combined")
    assert combined.method == "cohen" and combined.radius == cohen.radius


def test_multi_never_beats_cohen_with_two_classes():
    n = 1000
    for count in range(500, n + 1, 7):
        cohen = smoothing.cohen_certificate(votes([1, 0]), votes([count, n - count]), 1.0, 0.01)
        multi = smoothing.multi_certificate(votes([1, 0]), votes([count, n - count]), 1.0, 0.01)
        assert multi.radius <= cohen.radius


def true_radius(p, top, sigma):
    """The Gaussian radius from the exact probabilities; negative when ``top`` is not the
    smoothed prediction."""
    others = np.delete(p, top).max()
    return sigma / 2 * (stats.norm.ppf(p[top]) - stats.norm.ppf(others))


COUNT_CASES = {
    "two classes": [0.7, 0.3],
    "two classes, near tie": [0.52, 0.48],
    "ten classes": [0.5, 0.1, 0.1, 0.1, 0.05, 0.05, 0.04, 0.03, 0.02, 0.01],
    "five classes, near tie": [0.3, 0.29, 0.2, 0.11, 0.1],
}


@pytest.mark.parametrize("p", COUNT_CASES.values(), ids=COUNT_CASES.keys())
def test_count_certificates_cover(p):
    """Draw selection and estimation counts from known probabilities: Cohen's bound, the
    joint R_multi bounds and the combined certificate each fail at most alpha of the time."""
    alpha, n0, n, draws = 0.1, 20, 200, 1500
    p = np.asarray(p)
    rng = np.random.default_rng(7)
    selections = rng.multinomial(n0, p, size=draws)
    estimations = rng.multinomial(n, p, size=draws)
    failures = {"cohen": 0, "multi": 0, "combined": 0}
    for sel, est in zip(selections, estimations, strict=True):
        cohen = smoothing.cohen_certificate(votes(sel), votes(est), SIGMA, alpha)
        # Cohen's claim is pA >= pA_lower, i.e. its radius is at most sigma Phi^-1(pA).
        if not cohen.abstained and cohen.radius > SIGMA * stats.norm.ppf(p[cohen.prediction]):
            failures["cohen"] += 1
        top, p_a, p_b = smoothing.multi_bounds(sel, est, n, alpha)
        if p_a > p[top] or p_b < np.delete(p, top).max():
            failures["multi"] += 1
        combined = smoothing.certificate(
            votes(sel), votes(est), method="combined", sigma=SIGMA, alpha=alpha
        )
        if not combined.abstained and combined.radius > true_radius(p, combined.prediction, SIGMA):
            failures["combined"] += 1
    for name, count in failures.items():
        assert count / draws <= alpha + slack(alpha, draws), name


SOFT_CASES = {
    "four classes": [8.0, 2.0, 1.0, 1.0],
    "four classes, near tie": [3.0, 2.9, 1.0, 0.5],
    "two classes": [5.0, 3.0],
}


@pytest.mark.parametrize("concentration", SOFT_CASES.values(), ids=SOFT_CASES.keys())
def test_soft_bounds_cover(concentration):
    """Simulated soft scores (Dirichlet vectors, known mean): the empirical-Bernstein
    Gaussian bounds fail at most (1 - split) alpha of the time, the margin bound at most
    split alpha, together at most alpha."""
    alpha, split, n0, n, draws = 0.2, 0.5, 30, 400, 1500
    concentration = np.asarray(concentration)
    mean = concentration / concentration.sum()
    rng = np.random.default_rng(3)
    gaussian_fail = margin_fail = either = 0
    margins = []
    for _ in range(draws):
        selection = rng.dirichlet(concentration, n0).mean(0)
        scores = rng.dirichlet(concentration, n)
        b = smoothing.soft_bounds(
            selection, scores.mean(0), np.cov(scores, rowvar=False), n, alpha, split
        )
        others = np.delete(mean, b.top)
        g = b.p_a_lower > mean[b.top] or b.p_b_upper < others.max()
        m = b.margin_lower > (mean[b.top] - others).min()
        gaussian_fail, margin_fail, either = gaussian_fail + g, margin_fail + m, either + (g or m)
        margins.append((mean[b.top] - others).min() - b.margin_lower)
    assert gaussian_fail / draws <= (1 - split) * alpha + slack((1 - split) * alpha, draws)
    assert margin_fail / draws <= split * alpha + slack(split * alpha, draws)
    assert either / draws <= alpha + slack(alpha, draws)
    # Not vacuous: the margin bound is typically within 0.25 of the true margin.
    assert np.median(margins) < 0.25


def test_plug_in_scales_the_selection():
    projected = plug_in(votes([30, 70]), 1000)
    assert projected.num == 1000 and projected.votes.tolist() == [300, 700]


def test_certificate_argument_errors():
    sel, est = votes([60, 40]), votes([600, 400])
    with pytest.raises(ValueError, match="method must be one of"):
        smoothing.certificate(sel, est, method="best", sigma=1.0, alpha=0.01)
    with pytest.raises(ValueError, match="sigma must be a positive"):
        smoothing.certificate(sel, est, method="cohen", sigma=0.0, alpha=0.01)
    with pytest.raises(ValueError, match="alpha must be a number in"):
        smoothing.certificate(sel, est, method="cohen", sigma=1.0, alpha=1.5)
    with pytest.raises(ValueError, match="needs the Lipschitz constant"):
        smoothing.certificate(sel, est, method="lipschitz", sigma=1.0, alpha=0.01)
    with pytest.raises(ValueError, match="statistics hold 0 soft maps, expected 7"):
        smoothing.certificate(
            sel,
            est,
            method="lipschitz",
            sigma=1.0,
            alpha=0.01,
            lipschitz=1.0,
            maps=smoothing.DEFAULT_MAPS,
        )
    with pytest.raises(ValueError, match="same k >= 2 classes"):
        smoothing.certificate(sel, votes([5, 3, 2]), method="cohen", sigma=1.0, alpha=0.01)


def test_a_nan_bound_abstains_instead_of_certifying():
    """Where scipy's beta quantile returns NaN (9 successes of 10 at level 1e-300), Cohen's
    certificate and the combined one abstain: ``not pA_lower >= 1/2``, not ``pA_lower <
    1/2``. The inner functions are called directly: the public ones refuse such an alpha."""
    alpha = 1e-300
    assert np.isnan(stats.beta.ppf(alpha, 9, 2))  # the precondition: scipy gives no bound
    sel, est = votes([9, 1]), votes([9, 1])
    assert certificates._cohen(sel, est, SIGMA, alpha).abstained
    for method in ("cohen", "multi", "combined"):
        cert = certificates._certificate(sel, est, method, SIGMA, alpha, (), None, 0.5)
        assert cert.abstained and cert.radius == 0.0, method


def test_alpha_below_what_scipy_resolves_is_refused():
    sel, est = votes([90, 10]), votes([9000, 1000])
    below = smoothing.MIN_ALPHA / 10
    for call in (
        lambda: smoothing.cohen_certificate(sel, est, SIGMA, below),
        lambda: smoothing.certificate(sel, est, method="combined", sigma=SIGMA, alpha=below),
        lambda: smoothing.clopper_pearson_lower(5, 10, below),
        lambda: smoothing.predict_from_votes([9, 1], below),
    ):
        with pytest.raises(ValueError, match=r"alpha must be >= MIN_ALPHA = 1e-60 .*got 1e-61"):
            call()
    # At MIN_ALPHA and at the Bonferroni levels below it that the certificates use, the
    # bounds are resolved: each one-sided bound sits at its level (scipy's CDF of it).
    for count, n in [(1, 5), (2, 5), (9, 10), (3, 1000), (99_990, 100_000)]:
        for level in (smoothing.MIN_ALPHA, smoothing.MIN_ALPHA / 1000):
            lower = _clopper_pearson_lower(count, n, level)
            assert stats.beta.cdf(lower, count, n - count + 1) / level == pytest.approx(1, 1e-3)
    cert = smoothing.cohen_certificate(votes([10, 0]), votes([10_000, 0]), SIGMA, 1e-60)
    assert cert.prediction == 0 and cert.radius > 0
