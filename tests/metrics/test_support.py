"""Blockwise precision / recall / density / coverage against ``prdc`` (an independent
implementation) and the dense float64 reference ``metrics.precision_recall_reference``,
and the behaviours the metrics must show."""

import warnings

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from prdc import compute_prdc
from prdc.prdc import compute_nearest_neighbour_distances, compute_pairwise_distance
from scipy.spatial.distance import cdist
from threadpoolctl import threadpool_limits

import metrics
from metrics.knn import Blocks, kth_neighbour_radii


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """numpy's and scikit-learn's BLAS / OpenMP worker threads keep spinning after a call
    and compete with XLA on a small machine: the references here run single-threaded."""
    with threadpool_limits(1):
        yield


METRICS = ("precision", "recall", "density", "coverage")


def integer_grid_sets(seed=0, n=160, m=120, d=4):
    """Points on a small integer grid: every distance is exact in float32 and float64, so
    ties (distance == radius) and duplicates are plentiful and prdc's decisions are exact.
    A few generated points are copies of reference points."""
    rng = np.random.default_rng(seed)
    x = rng.integers(-2, 3, size=(n, d)).astype(np.float32)
    y = rng.integers(-2, 3, size=(m, d)).astype(np.float32)
    y[:10] = x[5:15]
    return x, y


def quietly_prdc(x, y, k, capsys):
    result = compute_prdc(x, y, k)
    capsys.readouterr()  # prdc prints the set sizes
    return result


def assert_same_counts(ours, reference, n, m, k):
    """Equal to within a quarter of the smallest step a single decision moves a metric."""
    step = 1 / (k * max(n, m))
    for name in METRICS:
        assert abs(getattr(ours, name) - reference[name]) < step / 4, name


@pytest.mark.parametrize("k", [1, 3, 5])
def test_identical_to_prdc_with_ties_and_duplicates(k, capsys):
    x, y = integer_grid_sets()
    with warnings.catch_warnings(record=True) as caught:
        warnings.simplefilter("always")
        ours = metrics.precision_recall(x, y, k=k, block_size=64)
    assert_same_counts(ours, quietly_prdc(x, y, k, capsys), len(x), len(y), k)
    np.testing.assert_array_equal(ours.reference_radii, compute_nearest_neighbour_distances(x, k))
    np.testing.assert_array_equal(ours.generated_radii, compute_nearest_neighbour_distances(y, k))
    zero_radii = bool((ours.reference_radii == 0).any() or (ours.generated_radii == 0).any())
    assert zero_radii == (k == 1)  # the grid has duplicated points, but no point 3 copies
    assert zero_radii == any("zero k-NN radius" in str(w.message) for w in caught)


@pytest.mark.parametrize("k", [5, 10])
def test_identical_to_prdc_on_a_2d_integer_grid_far_from_the_origin(k, capsys):
    """Integer points of a 2-D grid whose mean is far from the origin (the reference's
    offset is removed from both sets): exact distance ties everywhere. The offset is
    rounded, so the shifted points stay integers and the ties stay ties: every decision
    is prdc's, as is the dense float64 reference's."""
    rng = np.random.default_rng(k)
    x = rng.integers(0, 12, size=(300, 2)).astype(np.float32)
    y = rng.integers(2, 15, size=(250, 2)).astype(np.float32)
    assert np.sum(x.mean(0) ** 2) > np.sum(x.var(0))  # the offset is removed
    reference = quietly_prdc(x, y, k, capsys)
    with warnings.catch_warnings():
        warnings.simplefilter("ignore")  # duplicates: some zero radii
        ours = metrics.precision_recall(x, y, k=k)
    assert_same_counts(ours, reference, len(x), len(y), k)  # float32 metrics, same decisions
    dense = metrics.precision_recall_reference(x, y, k)
    for name in METRICS:
        assert getattr(dense, name) == pytest.approx(reference[name], abs=1e-12), name
    np.testing.assert_array_equal(ours.reference_radii, compute_nearest_neighbour_distances(x, k))


def test_identical_to_prdc_on_continuous_float32(capsys):
    rng = np.random.default_rng(1)
    # The shapes and k of the large-offset test below: one compilation for both.
    x = rng.normal(size=(200, 16)).astype(np.float32)
    y = (1.2 * rng.normal(size=(150, 16)) + 0.3).astype(np.float32)
    k = 3
    # Precondition: no decision is within 1e-5 (relative) of a tie. The float32 distances
    # are within eps * (|a|^2 + |b|^2) / d^2 < 1e-6 of the exact ones here, so both
    # implementations must take every decision alike.
    dense = metrics.precision_recall_reference(x, y, k)
    d, r_x, r_y = cdist(x, y), dense.reference_radii, dense.generated_radii
    assert np.min(np.abs(d - r_x[:, None]) / r_x[:, None]) > 1e-5
    assert np.min(np.abs(d - r_y[None, :]) / r_y[None, :]) > 1e-5
    ours = metrics.precision_recall(x, y, k=k, block_size=64)
    assert_same_counts(ours, quietly_prdc(x, y, k, capsys), len(x), len(y), k)
    for name in METRICS:
        assert abs(getattr(ours, name) - getattr(dense, name)) < 1e-6
    np.testing.assert_allclose(ours.reference_radii, r_x, rtol=1e-5)
    np.testing.assert_allclose(ours.realism, dense.realism, rtol=1e-5)


def test_identical_to_prdc_in_float64(capsys):
    rng = np.random.default_rng(2)
    x, y = rng.normal(size=(400, 16)), rng.normal(size=(330, 16)) * 0.9
    with jax.enable_x64(True):
        ours = metrics.precision_recall(x, y, k=5, block_size=128)
    assert ours.reference_radii.dtype == np.float64
    reference = quietly_prdc(x, y, 5, capsys)
    for name in METRICS:
        assert getattr(ours, name) == pytest.approx(reference[name], abs=1e-12), name


def test_prdc_rounding_takes_prdc_decisions_at_float32_ties(capsys):
    """In d = 768, distances concentrate and prdc's own float32 distances hit exact ties
    with radii; only prdc's rounding (float64 squares rounded to float32) reproduces them."""
    rng = np.random.default_rng(0)
    x = rng.normal(size=(700, 768)).astype(np.float32)
    y = rng.normal(size=(600, 768)).astype(np.float32)
    k = 3
    r_x = compute_nearest_neighbour_distances(x, k)
    assert np.sum(compute_pairwise_distance(x, y) == r_x[:, None]) >= 1  # a tie exists
    reference = quietly_prdc(x, y, k, capsys)
    rounded = metrics.precision_recall(x, y, k=k, prdc_rounding=True)
    assert_same_counts(rounded, reference, len(x), len(y), k)
    np.testing.assert_array_equal(rounded.reference_radii, r_x)
    # Plain float32 may take the few tied decisions the other way (documented).
    plain = metrics.precision_recall(x, y, k=k)
    for name in METRICS:
        assert abs(getattr(plain, name) - reference[name]) <= 3 / (k * len(y)), name


def test_a_large_common_offset_does_not_cost_precision():
    rng = np.random.default_rng(11)
    x = (rng.normal(size=(200, 16)) + 300).astype(np.float32)
    y = (1.1 * rng.normal(size=(150, 16)) + 300.2).astype(np.float32)
    dense = metrics.precision_recall_reference(x, y, 3)
    d, r_x = cdist(x, y), dense.reference_radii
    assert np.min(np.abs(d - r_x[:, None]) / r_x[:, None]) > 1e-5  # well-posed decisions
    # Without the shift, float32 cancellation is of the order of the margins themselves.
    raw = kth_neighbour_radii(Blocks.of(jnp.asarray(x), 64), 3)
    assert np.max(np.abs(np.asarray(raw) / r_x - 1)) > 1e-4
    ours = metrics.precision_recall(x, y, k=3)
    for name in METRICS:
        assert abs(getattr(ours, name) - getattr(dense, name)) < 1e-6, name
    np.testing.assert_allclose(ours.reference_radii, r_x, rtol=1e-6)


def test_non_strict_and_realism_match_dense_reference():
    x, y = integer_grid_sets(seed=3)
    for strict in (True, False):
        with pytest.warns(UserWarning, match="zero k-NN radius"):
            ours = metrics.precision_recall(x, y, k=1, strict=strict, block_size=64)
        dense = metrics.precision_recall_reference(x, y, 1, strict=strict)
        for name in METRICS:
            assert abs(getattr(ours, name) - getattr(dense, name)) < 1e-6, (strict, name)
        np.testing.assert_allclose(ours.realism, dense.realism, rtol=1e-6)
    # '<=' puts duplicates inside zero-radius balls: no metric can go down.
    strict_dense = metrics.precision_recall_reference(x, y, 1)
    assert all(getattr(ours, n) >= getattr(strict_dense, n) for n in METRICS)


def test_results_do_not_depend_on_the_block_size():
    x, y = integer_grid_sets(seed=4)
    results = [metrics.precision_recall(x, y, k=3, block_size=b) for b in (7, 64, 4096)]
    for other in results[1:]:
        for a, b in zip(results[0], other, strict=True):
            np.testing.assert_array_equal(a, b)
    rng = np.random.default_rng(5)
    x, y = rng.normal(size=x.shape), rng.normal(size=y.shape)
    small, whole = (metrics.precision_recall(x, y, k=3, block_size=b) for b in (7, 4096))
    assert small.summary() == whole.summary()
    np.testing.assert_allclose(small.reference_radii, whole.reference_radii, rtol=1e-6)
    # realism = r / distance: a float32 distance between near points carries the formula's
    # cancellation (about eps |a|^2 / |a - b|^2 relative), in whichever block it falls.
    np.testing.assert_allclose(small.realism, whole.realism, rtol=1e-4)


def test_kth_neighbour_radii_against_a_sort():
    x = np.random.default_rng(6).normal(size=(50, 3)).astype(np.float32)
    exact = np.sort(np.linalg.norm(x[:, None] - x[None], axis=-1), axis=1)
    for k in (1, 49):
        radii = jax.jit(lambda p, k=k: kth_neighbour_radii(Blocks.of(p, 16), k))(x)
        np.testing.assert_allclose(radii, exact[:, k], rtol=1e-5, atol=1e-6)


def test_identical_sets_and_duplicates():
    x = np.random.default_rng(7).normal(size=(60, 5)).astype(np.float32)
    doubled = np.concatenate([x, x])
    # Every point of `doubled` has a duplicate at distance exactly 0 (radius 0 when k = 1).
    with pytest.warns(UserWarning, match="120 reference and 120 generated points"):
        strict = metrics.precision_recall(doubled, doubled, k=1)
    assert strict.summary() == dict.fromkeys(METRICS, 0.0)
    with pytest.warns(UserWarning, match="hold only their duplicates"):
        loose = metrics.precision_recall(doubled, doubled, k=1, strict=False)
    assert loose.summary() == {"precision": 1, "recall": 1, "density": 2, "coverage": 1}
    same = metrics.precision_recall(x, x, k=3)
    assert same.precision == same.recall == same.coverage == 1.0


def gaussian_modes(rng, modes, per_mode, spread):
    centres = rng.normal(size=(modes, 16)) * 6
    points = centres[:, None, :] + spread * rng.normal(size=(modes, per_mode, 16))
    return centres, points.reshape(-1, 16)


def test_mode_collapse_has_high_precision_and_low_recall():
    rng = np.random.default_rng(8)
    centres, reference = gaussian_modes(rng, modes=10, per_mode=40, spread=1.0)
    collapsed = centres[:2, None, :] + 0.3 * rng.normal(size=(2, 200, 16))
    result = metrics.precision_recall(reference, collapsed.reshape(-1, 16), k=5)
    assert result.precision > 0.95
    assert result.recall < 0.25
    assert result.coverage < 0.25


def test_outliers_lower_precision_but_not_recall():
    rng = np.random.default_rng(9)
    centres, reference = gaussian_modes(rng, modes=10, per_mode=40, spread=1.0)
    covering = (centres[:, None, :] + rng.normal(size=(10, 40, 16))).reshape(-1, 16)
    outliers = rng.normal(size=(100, 16)) * 6 + 40  # far from everything else
    clean = metrics.precision_recall(reference, covering, k=5)
    noisy = metrics.precision_recall(reference, np.concatenate([covering, outliers]), k=5)
    assert clean.recall > 0.85 and clean.precision > 0.85
    # The outliers fall in no reference ball and their own balls hold no reference point.
    assert noisy.precision == pytest.approx(clean.precision * 400 / 500)
    assert noisy.recall == clean.recall
    assert noisy.coverage == clean.coverage
    assert np.all(noisy.realism[400:] < 1)


@pytest.mark.slow
def test_published_gaussian_check():
    """prdc's README: two samples of 10k points from N(0, I_1000), k = 5, give precision
    0.477, recall 0.471, density 1.056, coverage 0.974. Over 5 seeds at this size
    (benchmarks/metrics_prdc.py) ours gave 0.476 +- 0.010, 0.481 +- 0.008, 0.98 +- 0.038,
    0.968 +- 0.004 (mean +- std): the tolerances are 3 standard deviations of the
    difference of two independent samples, 3 * sqrt(2) * std."""
    kx, ky = jax.random.split(jax.random.key(0))
    x = jax.random.normal(kx, (10_000, 1000))
    y = jax.random.normal(ky, (10_000, 1000))
    result = metrics.precision_recall(x, y, k=5)
    assert result.precision == pytest.approx(0.477, abs=0.042)
    assert result.recall == pytest.approx(0.471, abs=0.034)
    assert result.density == pytest.approx(1.056, abs=0.16)
    assert result.coverage == pytest.approx(0.974, abs=0.018)


@jax.jit
def _jitted_metrics(a, b):
    """``support_metrics`` inside ``jax.jit`` (no duplicate ids)."""
    return metrics.support_metrics(a, b, k=3, block_size=64)


def test_support_metrics_is_a_pure_jittable_function():
    """Under ``jax.jit``, on sets without duplicates (so ids change nothing), the same
    decisions as ``precision_recall`` (whose compilation for this shape the block-size
    test shares)."""
    rng = np.random.default_rng(10)
    x = rng.normal(size=(160, 4)).astype(np.float32)
    y = rng.normal(size=(120, 4)).astype(np.float32)
    ours = _jitted_metrics(x, y)
    expected = metrics.precision_recall(x, y, k=3, block_size=64)
    assert_same_counts(ours, expected.summary(), 160, 120, 3)
    np.testing.assert_allclose(ours.reference_radii, expected.reference_radii, rtol=1e-6)


@pytest.mark.parametrize(
    "reference,generated,kwargs,message",
    [
        (np.ones((10, 3)), np.ones((10, 4)), {}, "feature dimension 3, got 4"),
        (
            np.ones((5, 3)),
            np.ones((10, 3)),
            {},
            r"reference needs at least k \+ 1 = 6 points, got 5",
        ),
        (np.ones((10, 3)), np.ones((2, 3)), {"k": 2}, "generated needs at least k . 1 = 3"),
        (np.ones(10), np.ones((10, 3)), {}, "reference must be a 2-D array"),
        (np.ones((10, 3)), np.ones((10, 3)), {"k": 0}, "k must be an integer >= 1, got 0"),
        (np.ones((10, 3)), np.ones((10, 3)), {"k": 2.5}, "k must be an integer"),
        (np.ones((10, 3)), np.ones((10, 3)), {"block_size": 0}, "block_size must be"),
        (np.array([["a"] * 3] * 10), np.ones((10, 3)), {}, "must hold real numbers"),
    ],
)
def test_value_errors(reference, generated, kwargs, message):
    with pytest.raises(ValueError, match=message):
        metrics.precision_recall(reference, generated, **kwargs)


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf])
def test_non_finite_rows_are_rejected(bad):
    y = np.ones((10, 3))
    y[[2, 7], 1] = bad
    with pytest.raises(
        ValueError, match=r"generated must be finite, .* 2 rows \(first: \[2, 7\]\)"
    ):
        metrics.precision_recall(np.ones((10, 3)), y)


def test_support_metrics_non_finite_raises_eagerly_and_is_nan_under_jit():
    x, y = integer_grid_sets(seed=10)
    y[3, 1] = np.nan
    with pytest.raises(ValueError, match=r"generated must be finite, .* 1 rows \(first: \[3\]\)"):
        metrics.support_metrics(jnp.asarray(x), jnp.asarray(y), k=3)
    for bad in (np.nan, np.inf):
        y[3, 1] = bad
        result = _jitted_metrics(x, y)
        for name, value in result._asdict().items():
            assert np.isnan(np.asarray(value)).all(), (bad, name)
