"""The synthetic laws' true conditionals and the baselines against direct computations."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import jit
from scipy.stats import multivariate_normal

from quantization import LAWS, MixtureDensityNetwork, kmeans_quantizer, mixture_nll
from quantization.baselines import nearest_targets
from quantization.laws import mixture_weights

X = np.array([[-1.0], [0.0], [0.5]], np.float32)


def test_laws_sample_their_stated_conditionals():
    key = jax.random.key(0)
    mix = LAWS["mixture"].conditional(key, X, 20_000)[..., 0]  # [3, m]
    for row, x, weights in zip(mix, X[:, 0], mixture_weights(X), strict=True):
        means = np.array([-2 + x, 1.5 * x**2, 2 - x])
        component = np.argmin(np.abs(row[:, None] - means), axis=1)
        np.testing.assert_allclose(np.bincount(component, minlength=3) / 20_000, weights, atol=0.01)
        assert np.std(row - means[component]) == pytest.approx(0.15, rel=0.05)
    ring = LAWS["ring"].conditional(key, X, 20_000)
    np.testing.assert_allclose(np.linalg.norm(ring, axis=-1).mean(1), 1 + 0.5 * X[:, 0], atol=5e-3)
    np.testing.assert_allclose(ring.mean(1), 0, atol=0.03)
    hetero = LAWS["heteroscedastic"].conditional(key, X, 20_000)[..., 0]
    np.testing.assert_allclose(hetero.mean(1), np.sin(np.pi * X[:, 0]), atol=0.02)
    np.testing.assert_allclose(hetero.std(1), 0.1 + 0.4 * np.abs(X[:, 0]), rtol=0.03)
    # Stratified draws: component shares exact to 1 / count, the angles evenly spread.
    mix = LAWS["mixture"].conditional(key, X, 400, stratified=True)[..., 0]
    for row, x, weights in zip(mix, X[:, 0], mixture_weights(X), strict=True):
        means = np.array([-2 + x, 1.5 * x**2, 2 - x])
        component = np.argmin(np.abs(row[:, None] - means), axis=1)
        np.testing.assert_allclose(np.bincount(component, minlength=3) / 400, weights, atol=3e-3)
    ring = LAWS["ring"].conditional(key, X, 400, stratified=True)
    angles = np.sort(np.arctan2(ring[..., 1], ring[..., 0]), axis=1)
    assert np.abs(np.diff(angles, axis=1)).max() < 2 * (2 * np.pi / 400)
    x, y = LAWS["ring"].sample(key, 500)
    assert x.shape == (500, 1) and y.shape == (500, 2) and -1 <= x.min() < x.max() <= 1
    with pytest.raises(ValueError, match=r"x must be \[batch, 1\], got shape \(3,\)"):
        LAWS["ring"].conditional(key, X[:, 0], 5)


def test_mixture_nll_against_scipy():
    rng = np.random.default_rng(0)
    means, y = rng.normal(size=(4, 3, 2)), rng.normal(size=(4, 2))
    log_scales, logits = rng.normal(size=(4, 3)) * 0.3, rng.normal(size=(4, 3))
    weights = np.exp(logits) / np.exp(logits).sum(-1, keepdims=True)
    want = -np.mean([
        np.log(sum(w[k] * multivariate_normal(m[k], np.exp(2 * s[k])).pdf(t) for k in range(3)))
        for m, s, w, t in zip(means, log_scales, weights, y, strict=True)
    ])  # fmt: skip
    got = mixture_nll(*(jnp.asarray(a, jnp.float32) for a in (means, log_scales, logits, y)))
    assert float(got) == pytest.approx(want, rel=1e-5)
    model = MixtureDensityNetwork(num_points=3, dim_y=2, hidden=(8,))
    params = jit(model.init)(jax.random.key(0), X)
    points, weights = jit(model.predict)(params, X)
    assert points.shape == (3, 3, 2)
    np.testing.assert_allclose(weights.sum(-1), 1, atol=1e-6)


def test_nearest_targets_and_kmeans():
    rng = np.random.default_rng(1)
    x_train, y_train = rng.uniform(-1, 1, size=(300, 1)), rng.normal(size=(300, 2))
    near = nearest_targets(x_train, y_train, X, 10)
    for row, x in zip(near, X, strict=True):
        order = np.argsort(np.abs(x_train[:, 0] - x[0]))[:10]
        assert sorted(map(tuple, row)) == sorted(map(tuple, y_train[order]))
    # Two tight, unequal clusters: k-means finds their centres and shares.
    blobs = np.concatenate([np.full((30, 1), -1.0), np.full((10, 1), 2.0)])[None]
    points, weights = kmeans_quantizer(blobs + 1e-3 * rng.normal(size=blobs.shape), 2)
    order = np.argsort(points[0, :, 0])
    np.testing.assert_allclose(points[0, order, 0], [-1, 2], atol=1e-2)
    np.testing.assert_allclose(weights[0, order], [0.75, 0.25])
    with pytest.raises(ValueError, match="count must be in"):
        nearest_targets(x_train, y_train, X, 301)
    with pytest.raises(ValueError, match=r"samples must be \[batch, m >= num_points = 5"):
        kmeans_quantizer(blobs[:, :4], 5)
