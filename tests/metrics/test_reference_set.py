"""``ReferenceSet`` (one reference pass for many generated sets) and the bootstrap
intervals, against ``precision_recall``, the dense float64 reference, an independent
numpy bootstrap on the same resample indices, and a Monte-Carlo coverage check."""

import collections

import jax
import numpy as np
import pytest
from scipy.spatial.distance import cdist

import metrics
from metrics import support

METRICS = ("precision", "recall", "density", "coverage")


def ten_generated_sets(rng, x):
    """Ten sets of 120 points with duplicates of every kind: copies of reference points
    (of one that is itself duplicated in the reference, too), duplicates within a set,
    and rows shared between the sets."""
    shared = x[60:63] + 0.5
    sets = []
    for i in range(10):
        y = (x[rng.integers(0, len(x), 120)] + rng.normal(size=(120, x.shape[1]))).astype(x.dtype)
        y[:4] = x[4 * i : 4 * i + 4]
        y[10:12] = x[5]
        y[30] = y[31]
        y[40:43] = shared
        sets.append(y)
    return sets


@pytest.mark.filterwarnings("ignore:.*zero k-NN radius")
def test_ten_generated_sets_cost_one_reference_pass(monkeypatch):
    rng = np.random.default_rng(12)
    # Far from the origin (the reference's shift is used) and with duplicates, whose
    # distance only their shared ids make exactly 0 (the formula leaves noise).
    x = (rng.normal(size=(150, 8)) + 40).astype(np.float32)
    x[20:22] = x[5]
    sets = ten_generated_sets(rng, x)
    runs = collections.Counter()
    real_program = support._program

    def counting_program(core, mesh, **settings):
        program = real_program(core, mesh, **settings)

        def run(*args):
            runs[core.__name__] += 1
            return program(*args)

        return run

    monkeypatch.setattr(support, "_program", counting_program)
    reference = metrics.ReferenceSet(x, k=1)
    results = [reference.compare(y, strict=False) for y in sets]
    assert runs == {"_prepare": 1, "_compare": 10}
    monkeypatch.undo()
    for y, result in zip(sets, results, strict=True):
        direct = metrics.precision_recall(x, y, k=1, strict=False)
        for a, b in zip(result, direct, strict=True):
            np.testing.assert_array_equal(a, b)
        # Duplicates (zero radius, k = 1) count inside each other's balls under "<=".
        dense = metrics.precision_recall_reference(x, y, 1, strict=False)
        for name in METRICS:
            assert abs(getattr(result, name) - getattr(dense, name)) < 1e-6, name
        np.testing.assert_allclose(result.reference_radii, dense.reference_radii, atol=1e-4)


def dense_decisions(x, y, k):
    """Per-point decisions straight from the definitions, float64 full matrices."""
    dense = metrics.precision_recall_reference(x, y, k)
    d = cdist(x.astype(np.float64), y.astype(np.float64))  # [N, M]
    counts = (d < dense.reference_radii[:, None]).sum(axis=0)
    in_generated_balls = (d < dense.generated_radii[None, :]).any(axis=1)
    covered = d.min(axis=1) < dense.reference_radii
    return counts, in_generated_balls, covered


# The bootstrap tests share their shapes (one compilation of each program).
N = M = 150
D, K = 8, 5


def gaussian_sets(rng):
    """x ~ N(0, I_8), y ~ N(0.6, I_8), float32."""
    x = rng.normal(size=(N, D)).astype(np.float32)
    return x, (rng.normal(size=(M, D)) + 0.6).astype(np.float32)


def test_bootstrap_against_numpy_on_the_same_resample_indices():
    x, y = gaussian_sets(np.random.default_rng(13))
    key, k, num, confidence = jax.random.key(3), K, 200, 0.9
    ours = metrics.bootstrap_intervals(key, x, y, k=k, num_resamples=num, confidence=confidence)
    assert ours.estimate.summary() == metrics.precision_recall(x, y, k=k).summary()
    counts, in_generated_balls, covered = dense_decisions(x, y, k)
    # The documented draws: resample b of n rows takes randint(fold_in(key, b), (n,), 0, n),
    # the reference rows with the first half of split(key), the generated rows the second.
    key_reference, key_generated = jax.random.split(key)

    def indices(key, n):
        draws = [jax.random.randint(jax.random.fold_in(key, b), (n,), 0, n) for b in range(num)]
        return np.stack([np.asarray(d) for d in draws])

    on_generated, on_reference = indices(key_generated, len(y)), indices(key_reference, len(x))
    expected = {
        "precision": (counts[on_generated] > 0).mean(axis=1),
        "density": counts[on_generated].mean(axis=1) / k,
        "recall": in_generated_balls[on_reference].mean(axis=1),
        "coverage": covered[on_reference].mean(axis=1),
    }
    for name in METRICS:
        np.testing.assert_allclose(ours.resampled[name], expected[name], rtol=1e-6, atol=1e-7)
        percentiles = np.percentile(expected[name], [5, 95])
        np.testing.assert_allclose(ours.intervals[name], percentiles, rtol=1e-6, atol=1e-7)
    summary = ours.summary()["precision"]
    assert summary["low"] <= summary["value"] <= summary["high"]


def test_bootstrap_intervals_cover_the_conditional_truth():
    """Monte Carlo: a fixed reference from N(0, I_8), 100 generated sets drawn afresh from
    N(0.6, I_8). Given the reference's balls, precision's truth is the probability that
    a fresh generated point lands in some ball, density's the expected number of balls
    it lands in, / k: both from 50k further points. The 90% intervals must cover them
    about 90% of the time (the percentile bootstrap of a mean of 150 points runs a
    little under; too narrow or too wide intervals would land far from 0.9)."""
    rng, draws = np.random.default_rng(14), 100
    x, _ = gaussian_sets(rng)
    reference = metrics.ReferenceSet(x, k=K)
    radii = reference.compare(gaussian_sets(rng)[1]).reference_radii
    inside = cdist(rng.normal(size=(50_000, D)) + 0.6, x) < radii[None, :]
    truth = {"precision": inside.any(axis=1).mean(), "density": inside.sum(axis=1).mean() / K}
    covered = collections.Counter()
    for draw in range(draws):
        _, y = gaussian_sets(rng)
        result = reference.bootstrap(jax.random.key(draw), y, num_resamples=200, confidence=0.9)
        for name, value in truth.items():
            low, high = result.intervals[name]
            covered[name] += low <= value <= high
    for name in truth:
        assert 0.75 <= covered[name] / draws <= 0.97, (name, covered[name])


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"num_resamples": 0}, "num_resamples must be an integer >= 1, got 0"),
        ({"num_resamples": 2.0}, "num_resamples must be an integer"),
        ({"confidence": 1.0}, r"confidence must be in \(0, 1\), got 1.0"),
    ],
)
def test_bootstrap_value_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        metrics.bootstrap_intervals(jax.random.key(0), np.ones((10, 3)), np.ones((10, 3)), **kwargs)


def test_reference_set_value_errors():
    with pytest.raises(ValueError, match="mesh must be None or a 1-D jax.sharding.Mesh, got 4"):
        metrics.ReferenceSet(np.ones((10, 3)), mesh=4)
    reference = metrics.ReferenceSet(gaussian_sets(np.random.default_rng(15))[0], k=K)
    with pytest.raises(ValueError, match=f"feature dimension {D}, got 4"):
        reference.compare(np.ones((10, 4)))
    with pytest.raises(ValueError, match=r"generated needs at least k \+ 1 = 6 points, got 2"):
        reference.compare(np.ones((2, D)))
