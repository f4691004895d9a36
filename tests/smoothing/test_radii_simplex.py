"""Radii formulas and their limits, the smoothed Lipschitz constant against the exact
worst case (a ramp), and the simplex maps' Lipschitz constants."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import integrate, special, stats

import smoothing
from smoothing import SimplexMap


def test_gaussian_radius():
    assert smoothing.gaussian_radius(0.9, 0.1, 2.0) == pytest.approx(2 * stats.norm.ppf(0.9))
    # Cohen's radius is the case pB_upper = 1 - pA_lower.
    p = np.array([0.5, 0.7, 0.999])
    np.testing.assert_allclose(
        smoothing.gaussian_radius(p, 1 - p, 0.25), 0.25 * stats.norm.ppf(p), rtol=1e-12
    )
    assert smoothing.gaussian_radius(0.0, 0.3, 1.0) == -np.inf
    assert smoothing.gaussian_radius(0.6, 1.0, 1.0) == -np.inf


def test_smoothed_lipschitz_limits():
    sigma, r = 0.5, 1.0
    salman = r * math.sqrt(2 / math.pi) / sigma
    assert smoothing.smoothed_lipschitz(math.inf, r, sigma) == pytest.approx(salman)
    assert smoothing.smoothed_lipschitz(1e6, r, sigma) == pytest.approx(salman, rel=1e-6)
    assert smoothing.smoothed_lipschitz(2.0, r, 1e-3) == pytest.approx(2.0)
    values = [smoothing.smoothed_lipschitz(lip, r, sigma) for lip in (0.1, 1, 10, 100)]
    assert np.all(np.diff(values) > 0) and max(values) < salman
    assert smoothing.smoothed_lipschitz(3.0, r, sigma) == pytest.approx(
        3.0 * special.erf(r / (math.sqrt(2) * 3.0 * sigma))
    )


@pytest.mark.parametrize("lipschitz,sigma", [(0.5, 0.25), (1.0, 0.5), (4.0, 0.5), (2.0, 2.0)])
def test_margin_lipschitz_bound_holds_for_the_worst_case(lipschitz, sigma):
    """The score difference h = f_A - f_c is sqrt(2) L-Lipschitz with values in [-r, r];
    the steepest smoothing of such a function is that of a centred ramp. Its smoothed
    slope, integrated numerically, is sqrt(2) L erf(r / (2 L sigma)): at most
    sqrt(2) L~, the constant the margin radius uses."""
    r = 1.0
    slope = math.sqrt(2) * lipschitz

    def smoothed(t):
        def integrand(z):
            return np.clip(slope * (t + sigma * z), -r, r) * stats.norm.pdf(z)

        kinks = [(-r / slope - t) / sigma, (r / slope - t) / sigma]
        return integrate.quad(
            integrand, -12, 12, points=kinks, limit=200, epsabs=1e-13, epsrel=1e-13
        )[0]

    eps = 1e-4
    numeric = (smoothed(eps) - smoothed(-eps)) / (2 * eps)
    exact = slope * special.erf(r / (2 * lipschitz * sigma))
    assert numeric == pytest.approx(exact, rel=1e-4)
    bound = math.sqrt(2) * smoothing.smoothed_lipschitz(lipschitz, r, sigma)
    assert numeric <= bound * (1 + 1e-6)


def test_margin_radius():
    assert smoothing.margin_radius(0.5, 0.25) == pytest.approx(0.5 / (math.sqrt(2) * 0.25))
    with pytest.raises(ValueError, match="smoothed Lipschitz constant"):
        smoothing.margin_radius(0.5, 0.0)


def _sparsemax_reference(z):
    """Projection onto the simplex by bisection on the threshold tau of
    sum(max(z - tau, 0)) = 1."""
    low, high = z.min() - 1.0, z.max()
    for _ in range(200):
        tau = (low + high) / 2
        low, high = (tau, high) if np.maximum(z - tau, 0).sum() > 1 else (low, tau)
    return np.maximum(z - (low + high) / 2, 0)


def test_sparsemax_is_the_simplex_projection():
    rng = np.random.default_rng(0)
    logits = rng.normal(size=(20, 6)) * 2
    for t in (0.5, 2.0):
        out = np.asarray(SimplexMap("sparsemax", t)(jnp.asarray(logits)))
        expected = np.stack([_sparsemax_reference(z / t) for z in logits])
        np.testing.assert_allclose(out, expected, atol=1e-6)
        np.testing.assert_allclose(out.sum(-1), 1, atol=1e-6)


@pytest.mark.parametrize("kind", ["softmax", "sparsemax"])
@pytest.mark.parametrize("t", [0.5, 2.0])
def test_map_lipschitz_constants(kind, t):
    """The Jacobian's spectral norm never exceeds the stated constant, and comes close to
    it (two tied top logits)."""
    simplex_map = SimplexMap(kind, t)
    rng = np.random.default_rng(1)
    logits = jnp.asarray(rng.normal(size=(64, 5)) * 3 * t, jnp.float32)
    tied = jnp.asarray([[0.0, 0.0, -30.0 * t, -30.0 * t, -30.0 * t]])
    jacobians = jax.jit(jax.vmap(jax.jacobian(simplex_map)))(jnp.concatenate([logits, tied]))
    norms = np.linalg.norm(np.asarray(jacobians, np.float64), ord=2, axis=(1, 2))
    assert norms.max() <= simplex_map.lipschitz * (1 + 1e-5)
    assert norms[-1] == pytest.approx(simplex_map.lipschitz, rel=1e-4)


def test_simplex_map_validation():
    with pytest.raises(ValueError, match="kind must be one of"):
        SimplexMap("hardmax")
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        SimplexMap("softmax", 0.0)
    assert str(SimplexMap("softmax", 0.5)) == "softmax(t=0.5)"
