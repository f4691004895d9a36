"""Pre-processing against scikit-learn's PCA, and the truncation's properties."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from sklearn.decomposition import PCA
from threadpoolctl import threadpool_limits

from metrics.preprocess import l2_normalise, pca_project, preprocess, truncate_to_equal_size


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """numpy's and scikit-learn's BLAS / OpenMP worker threads keep spinning after a call
    and compete with XLA on a small machine: the references here run single-threaded."""
    with threadpool_limits(1):
        yield


def correlated(rng, n, d):
    return rng.normal(size=(n, d)) @ rng.normal(size=(d, d)) + 3.0


@pytest.mark.parametrize("n,m,d", [(150, 120, 20), (12, 9, 40)])  # n + m >= d and n + m < d
def test_pca_matches_scikit_learn(n, m, d):
    rng = np.random.default_rng(0)
    reference, generated = correlated(rng, n, d), correlated(rng, m, d)
    for share in (0.5, 0.9, 1.0):
        ours_ref, ours_gen = pca_project(jnp.asarray(reference), jnp.asarray(generated), share)
        sk = PCA(n_components=share if share < 1 else None, svd_solver="full")
        sk.fit(np.concatenate([reference, generated]))
        want_ref, want_gen = sk.transform(reference), sk.transform(generated)
        if share == 1.0:  # all components that carry variance
            kept = int(np.sum(sk.explained_variance_ratio_ > 1e-6))
            want_ref, want_gen = want_ref[:, :kept], want_gen[:, :kept]
        assert ours_ref.shape == want_ref.shape, share
        signs = np.sign(np.sum(np.asarray(ours_ref) * want_ref, axis=0))  # axes: up to sign
        scale = np.abs(want_ref).max()
        np.testing.assert_allclose(ours_ref * signs, want_ref, atol=2e-4 * scale)
        np.testing.assert_allclose(ours_gen * signs, want_gen, atol=2e-4 * scale)


def test_l2_normalise_keeps_zero_rows():
    points = jnp.array([[3.0, 4.0], [0.0, 0.0]])
    np.testing.assert_allclose(l2_normalise(points), [[0.6, 0.8], [0.0, 0.0]])


def test_truncation_picks_distinct_rows_reproducibly():
    reference, generated = jnp.arange(50.0)[:, None], jnp.arange(30.0)[:, None] + 100
    a_ref, a_gen = truncate_to_equal_size(jax.random.key(0), reference, generated)
    b_ref, _ = truncate_to_equal_size(jax.random.PRNGKey(0), reference, generated)  # legacy
    c_ref, _ = truncate_to_equal_size(1, reference, generated)  # an int seed
    assert a_ref.shape == (30, 1) and a_gen is generated
    values = np.asarray(a_ref).ravel()
    assert len(set(values)) == 30 and np.all(np.diff(values) > 0)  # distinct, in order
    np.testing.assert_array_equal(a_ref, b_ref)
    assert not np.array_equal(a_ref, c_ref)


def test_preprocess_chains_the_steps():
    rng = np.random.default_rng(1)
    reference, generated = correlated(rng, 40, 10), correlated(rng, 25, 10)
    ref, gen = preprocess(reference, generated, explained_variance=None, key=jax.random.key(0))
    assert ref.shape == gen.shape == (25, 10)
    np.testing.assert_allclose(jnp.linalg.norm(ref, axis=1), 1, rtol=1e-6)
    ref, gen = preprocess(reference, generated, equal_size=False, explained_variance=0.9)
    assert ref.shape[0] == 40 and gen.shape[0] == 25 and ref.shape[1] == gen.shape[1] < 10


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({}, "needs a jax.random key"),
        (
            {"equal_size": False, "explained_variance": 0.0},
            r"explained_variance must be in \(0, 1\]",
        ),
        ({"equal_size": False, "explained_variance": 1.5}, "explained_variance must be"),
    ],
)
def test_preprocess_errors(kwargs, message):
    with pytest.raises(ValueError, match=message):
        preprocess(np.ones((5, 3)), np.ones((4, 3)), **kwargs)


def test_preprocess_rejects_mismatched_features():
    with pytest.raises(ValueError, match=r"same features, got shapes \(5, 3\) and \(4, 2\)"):
        preprocess(np.ones((5, 3)), np.ones((4, 2)), equal_size=False)
