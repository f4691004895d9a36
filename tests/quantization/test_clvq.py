"""CLVQ against the known optimal quantizers of N(0, 1) and Lloyd's algorithm in 2-D."""

import re

import numpy as np
import pytest
from scipy.stats import norm
from sklearn.cluster import KMeans

import quantization

STREAM = 1_000_000


@pytest.fixture(scope="module")
def normal_stream():
    return np.random.default_rng(0).normal(size=(STREAM, 1)).astype(np.float32)


def lloyd_normal(num_points: int, iterations: int = 5000) -> tuple[np.ndarray, np.ndarray]:
    """Lloyd's algorithm on N(0, 1) itself (exact cell means: the mean of a normal on
    ``[l, u]`` is ``(phi(l) - phi(u)) / (Phi(u) - Phi(l))``); ``(points, cell masses)``."""
    points = np.linspace(-1.5, 1.5, num_points)
    for _ in range(iterations):
        edges = np.concatenate([[-np.inf], (points[1:] + points[:-1]) / 2, [np.inf]])
        mass = np.diff(norm.cdf(edges))
        points = -np.diff(norm.pdf(edges)) / mass
    return points, mass


@pytest.mark.parametrize(
    "num_points,points,weights",
    [
        (2, [-0.7979, 0.7979], [0.5, 0.5]),
        (3, [-1.2240, 0.0, 1.2240], [0.2703, 0.4594, 0.2703]),
        (5, None, None),
    ],
)
def test_normal_optimal_quantizers(normal_stream, num_points, points, weights):
    lloyd_points, lloyd_mass = lloyd_normal(num_points)
    if points is None:
        # The literature's 5-point values (points; the cell masses follow from them).
        np.testing.assert_allclose(lloyd_points, [-1.7241, -0.7646, 0, 0.7646, 1.7241], atol=2e-3)
    else:
        np.testing.assert_allclose(lloyd_points, points, atol=2e-4)
        np.testing.assert_allclose(lloyd_mass, weights, atol=2e-4)
    got, got_weights = quantization.clvq(normal_stream, num_points, seed=1)
    order = np.argsort(got[:, 0])
    assert got.shape == (num_points, 1) and got_weights.shape == (num_points,)
    np.testing.assert_allclose(got[order, 0], lloyd_points, atol=0.015)
    np.testing.assert_allclose(got_weights[order], lloyd_mass, atol=5e-3)
    assert abs(float(got_weights.sum()) - 1) < 1e-6


def test_two_dimensions_against_lloyd():
    """A skewed 2-D law (no symmetry, so one optimum): CLVQ's points are a fixed point of
    Lloyd's algorithm on the same draws (they barely move and keep their cell masses),
    with the distortion of the best of several k-means runs."""
    rng = np.random.default_rng(1)
    z, e = rng.normal(size=400_000), rng.exponential(size=400_000)
    samples = np.stack([z, 0.5 * z + 0.6 * e], axis=1)
    points, weights = quantization.clvq(samples, 5)

    def cells(p):
        return np.argmin(np.sum((samples[:, None] - p[None]) ** 2, -1), 1)

    def distortion(p):
        return np.mean(np.sum((samples - p[cells(p)]) ** 2, -1))

    lloyd = points.astype(np.float64)
    for _ in range(30):
        owner = cells(lloyd)
        lloyd = np.stack([samples[owner == i].mean(0) for i in range(5)])
    assert np.linalg.norm(lloyd - points, axis=1).max() < 0.05
    np.testing.assert_allclose(weights, np.bincount(cells(lloyd), minlength=5) / 400_000, atol=0.01)
    kmeans = KMeans(5, n_init=3, random_state=0).fit(samples[:100_000]).cluster_centers_
    assert distortion(points) < 1.001 * min(distortion(kmeans), distortion(lloyd))


@pytest.mark.parametrize(
    "samples,num_points,message",
    [
        (np.zeros(5), 2, "samples must be an array [count >= 1, dim], got shape (5,)"),
        (np.full((5, 1), np.nan), 2, "samples must be finite"),
        (np.zeros((5, 1)), 0, "num_points must be an integer >= 1, got 0"),
        (np.zeros((5, 1)), 2.0, "num_points must be an integer >= 1, got 2.0"),
        (np.zeros((5, 1)), 6, "num_points must be <= the 5 samples, got 6"),
    ],
)
def test_bad_arguments(samples, num_points, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        quantization.clvq(samples, num_points)
