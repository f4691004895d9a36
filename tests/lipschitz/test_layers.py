"""Spectral rescaling and the 1-Lipschitz layers: exact operator norms <= 1, T = 1 is AOL,
activations and downsampling, the network, the regulariser."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import lipschitz
from lipschitz.exact import circular_exact, conv_matrix, dense_exact
from lipschitz.rescaling import (
    adjoint_kernel,
    aol_conv,
    aol_dense,
    spectral_rescale_conv,
    spectral_rescale_dense,
)

TS = (1, 2, 3, 6)


@functools.partial(jax.jit, static_argnames=("iters",))
def _dense_norm(w, iters):
    return dense_exact(spectral_rescale_dense(w, iters))


@functools.partial(jax.jit, static_argnames=("n",))
def _conv_norms(kernel, n):
    """Exact norms of the SR conv for each T: zero padding at n (explicit matrix) and
    circular at n and 2n (FFT + SVD); ``[len(TS), 3]``."""
    rows = []
    for t in TS:
        w = spectral_rescale_conv(kernel, t)
        rows.append(
            [dense_exact(conv_matrix(w, n, "zero")), circular_exact(w, n), circular_exact(w, 2 * n)]
        )
    return jnp.asarray(rows)


@pytest.mark.parametrize("shape", [(6, 9), (12, 8)])
def test_sr_dense_has_norm_at_most_one_and_tightens(shape):
    rng = np.random.default_rng(sum(shape))
    w = jnp.asarray(rng.normal(size=shape) * 3.0, jnp.float32)
    norms = [float(_dense_norm(w, t)) for t in TS]
    assert max(norms) <= 1 + 1e-5, norms
    assert norms[-1] > norms[0] and norms[-1] > 0.95, norms


@pytest.mark.parametrize("shape", [(3, 2, 3), (2, 4, 5), (2, 3, 2)])
def test_sr_conv_has_norm_at_most_one(shape):
    c_out, c_in, k = shape
    kernel = jnp.asarray(np.random.default_rng(k).normal(size=(c_out, c_in, k, k)), jnp.float32)
    norms = np.asarray(_conv_norms(kernel, max(k, 4)))
    assert np.all(norms <= 1 + 1e-5), norms
    assert norms[-1].max() > norms[0].max(), norms


def test_t1_is_aol():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        w = jnp.asarray(rng.normal(size=(5, 8)))
        np.testing.assert_allclose(spectral_rescale_dense(w, 1), aol_dense(w.T).T, rtol=1e-12)
        kernel = jnp.asarray(rng.normal(size=(4, 3, 3, 3)))
        expected = adjoint_kernel(aol_conv(adjoint_kernel(kernel)))
        np.testing.assert_allclose(spectral_rescale_conv(kernel, 1), expected, rtol=1e-10)
        # AOL itself (input side) is 1-Lipschitz too.
        assert float(dense_exact(aol_dense(w))) <= 1 + 1e-12
        assert float(dense_exact(conv_matrix(aol_conv(kernel), 4, "zero"))) <= 1 + 1e-12


def test_max_min_and_space_to_depth():
    rng = np.random.default_rng(1)
    x = jnp.asarray(rng.normal(size=(2, 4, 4, 6)), jnp.float32)
    y = jnp.asarray(rng.normal(size=(2, 4, 4, 6)), jnp.float32)
    mm = lipschitz.max_min
    assert float(jnp.linalg.norm(mm(x) - mm(y))) <= float(jnp.linalg.norm(x - y)) + 1e-6
    np.testing.assert_allclose(jnp.sort(mm(x), -1), jnp.sort(x, -1))
    s = lipschitz.space_to_depth(x)
    assert s.shape == (2, 2, 2, 24)
    np.testing.assert_allclose(jnp.sort(s.ravel()), jnp.sort(x.ravel()))
    with pytest.raises(ValueError, match="even size"):
        mm(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="divisible by 2"):
        lipschitz.space_to_depth(jnp.ones((1, 3, 4, 1)))


def test_layers_are_one_lipschitz_and_reject_bad_settings():
    key = jax.random.PRNGKey(0)
    x = jax.random.normal(key, (1, 6, 6, 3))
    conv = lipschitz.SRConv(4, kernel_size=3, iters=2)
    params = jax.jit(conv.init)(key, x)
    assert params["params"]["weight"].shape == (4, 3, 3, 3)
    w = spectral_rescale_conv(params["params"]["weight"], 2)
    y = jax.jit(conv.apply)(params, x)
    np.testing.assert_allclose(y, lipschitz.conv2d(x, w), rtol=1e-5, atol=1e-6)
    assert float(dense_exact(conv_matrix(w, 6, "zero"))) <= 1 + 1e-5
    with pytest.raises(ValueError, match="iters must be an int >= 1"):
        lipschitz.SRDense(5, iters=0).init(key, jnp.ones((2, 7)))
    with pytest.raises(ValueError, match="padding must be one of"):
        lipschitz.SRConv(4, padding="same").init(key, x)


def test_penalty_drives_layers_under_one():
    rng = np.random.default_rng(2)
    weights = [
        jnp.asarray(rng.normal(size=(3, 2, 3, 3)), jnp.float32),
        jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
    ]
    penalty = jax.jit(functools.partial(lipschitz.lipschitz_penalty, padding="zero", iters=3))
    manual = sum(
        max(float(lipschitz.spectral_norm_bound(w, padding=p, iters=3)) - 1, 0)
        for w, p in zip(weights, ["zero", None], strict=True)
    )
    np.testing.assert_allclose(penalty(weights), manual, rtol=1e-5)
    step = jax.jit(lambda ws: jax.tree.map(lambda w, g: w - 0.05 * g, ws, jax.grad(penalty)(ws)))
    for _ in range(200):
        weights = step(weights)
    assert float(penalty(weights)) < 1e-2
    assert float(dense_exact(weights[1])) <= 1.01
