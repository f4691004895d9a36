"""Exact W2 against independent computations: 1-D quantile functions, assignments."""

import re

import numpy as np
import pytest
from scipy.optimize import linear_sum_assignment

import quantization


def w2_quantiles(x, wx, y, wy) -> float:
    """1-D W2 from the quantile functions: ``int_0^1 |F^-1(u) - G^-1(u)|^2 du`` (both
    piecewise constant, so the integral is a finite sum over merged breakpoints)."""
    ox, oy = np.argsort(x), np.argsort(y)
    x, wx, y, wy = x[ox], wx[ox], y[oy], wy[oy]
    cx, cy = np.cumsum(wx), np.cumsum(wy)
    breaks = np.unique(np.concatenate([[0.0], cx, cy]).clip(0, 1))
    mids = (breaks[1:] + breaks[:-1]) / 2
    qx = x[np.minimum(np.searchsorted(cx, mids), len(x) - 1)]
    qy = y[np.minimum(np.searchsorted(cy, mids), len(y) - 1)]
    return float(np.sqrt(np.sum(np.diff(breaks) * (qx - qy) ** 2)))


def test_one_dimension_against_quantile_functions():
    rng = np.random.default_rng(0)
    for n, m in [(1, 7), (4, 30), (9, 9)]:
        x, y = rng.normal(size=n), 2 * rng.normal(size=m) + 1
        wx, wy = rng.dirichlet(np.ones(n)), rng.dirichlet(np.ones(m))
        got = quantization.w2_distance(x[:, None], wx, y[:, None], wy)
        assert got == pytest.approx(w2_quantiles(x, wx, y, wy), rel=1e-9, abs=1e-12)


def test_uniform_weights_against_an_assignment():
    rng = np.random.default_rng(1)
    x, y = rng.normal(size=(40, 3)), rng.normal(size=(40, 3)) + 0.5
    cost = np.sum((x[:, None] - y[None]) ** 2, -1)
    rows, cols = linear_sum_assignment(cost)
    uniform = np.full(40, 1 / 40)
    got = quantization.w2_distance(x, uniform, y, uniform)
    assert got == pytest.approx(np.sqrt(cost[rows, cols].mean()), rel=1e-9)
    # A metric: zero on itself, symmetric, and a shift moves it by the shift's length.
    assert quantization.w2_distance(x, uniform, x, uniform) == pytest.approx(0, abs=1e-9)
    assert quantization.w2_distance(y, uniform, x, uniform) == pytest.approx(got, rel=1e-9)
    shift = np.array([3.0, 0.0, 4.0])
    assert quantization.w2_distance(x, uniform, x + shift, uniform) == pytest.approx(5, rel=1e-9)


def test_batched_distances_to_samples():
    rng = np.random.default_rng(2)
    points, samples = rng.normal(size=(3, 2, 1)), rng.normal(size=(3, 5, 1))
    weights = np.array([[0.5, 0.5], [1.0, 0.0], [0.25, 0.75]])
    got = quantization.w2_to_samples(points, weights, samples)
    want = [w2_quantiles(p[:, 0], w, s[:, 0], np.full(5, 0.2))
            for p, w, s in zip(points, weights, samples, strict=True)]  # fmt: skip
    np.testing.assert_allclose(got, want, rtol=1e-9)


@pytest.mark.parametrize(
    "args,message",
    [
        ((np.zeros((2, 1)), [0.5, 0.5], np.zeros((1, 2)), [1.0]), "y must have dim 1"),
        ((np.zeros(2), [0.5, 0.5], np.zeros((1, 1)), [1.0]), "x must be an array [count"),
        ((np.zeros((2, 1)), [1.5, -0.5], np.zeros((1, 1)), [1.0]), "wx must be finite and >= 0"),
        ((np.zeros((2, 1)), [0.5, 0.4], np.zeros((1, 1)), [1.0]), "wx must sum to 1"),
        ((np.zeros((2, 1)), [0.5, 0.5], np.zeros((1, 1)), [1.0, 0.0]), "wy must have shape (1,)"),
        ((np.zeros((2, 1)), [0.5, 0.5], np.full((1, 1), np.inf), [1.0]), "y must be finite"),
    ],
)
def test_bad_arguments(args, message):
    with pytest.raises(ValueError, match=re.escape(message)):
        quantization.w2_distance(*args)
