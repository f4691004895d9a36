"""Spectral rescaling and the 1-Lipschitz layers: exact operator norms <= 1, T = 1 is AOL,
activations and downsampling, the network, the regulariser."""

import functools

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import lipschitz
from lipschitz.exact import circular_exact, conv_matrix, dense_exact
from lipschitz.rescaling import (
    aol_conv,
    aol_dense,
    spectral_rescale_conv,
    spectral_rescale_dense,
)


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """LAPACK (the SVDs) runs on OpenBLAS, whose worker threads compete with XLA's on a
    small machine: one thread for this module."""
    with threadpool_limits(1):
        yield


TS = (1, 2, 3, 6)


@jax.jit
def _dense_norms(w):
    """Exact norms of the SR dense layer for each T: ``[len(TS)]``."""
    return jnp.stack([dense_exact(spectral_rescale_dense(w, t)) for t in TS])


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
    norms = np.asarray(_dense_norms(w)).tolist()
    assert max(norms) <= 1 + 1e-5, norms
    assert norms[-1] > norms[0] and norms[-1] > 0.95, norms


@pytest.mark.parametrize("shape", [(3, 2, 3), (2, 4, 5), (2, 3, 2)])
def test_sr_conv_has_norm_at_most_one(shape):
    c_out, c_in, k = shape
    kernel = jnp.asarray(np.random.default_rng(k).normal(size=(k, k, c_in, c_out)), jnp.float32)
    norms = np.asarray(_conv_norms(kernel, max(k, 4)))
    assert np.all(norms <= 1 + 1e-5), norms
    assert norms[-1].max() > norms[0].max(), norms


def _adjoint(hwio):
    """The kernel of the adjoint convolution (up to placement): swap the channel axes and
    flip the spatial ones. ``[k, k, c_in, c_out]`` -> ``[k, k, c_out, c_in]``."""
    return jnp.flip(jnp.swapaxes(hwio, 2, 3), axis=(0, 1))


@jax.jit
def _sr_and_aol(w, kernel):
    """SR at T = 1 and AOL of the adjoint, transposed back, for a dense matrix and a kernel;
    and the norms of AOL itself (input side)."""
    return (
        (spectral_rescale_dense(w, 1), aol_dense(w.T).T),
        (spectral_rescale_conv(kernel, 1), _adjoint(aol_conv(_adjoint(kernel)))),
        (dense_exact(aol_dense(w)), dense_exact(conv_matrix(aol_conv(kernel), 4, "zero"))),
    )


def test_t1_is_aol():
    rng = np.random.default_rng(0)
    with jax.enable_x64(True):
        w = jnp.asarray(rng.normal(size=(5, 8)))
        kernel = jnp.asarray(rng.normal(size=(3, 3, 3, 4)))
        dense, conv, aol_norms = _sr_and_aol(w, kernel)
        chex.assert_trees_all_close(*dense, rtol=1e-12)
        chex.assert_trees_all_close(*conv, rtol=1e-10)
        # AOL itself (input side) is 1-Lipschitz too.
        assert np.all(np.asarray(aol_norms) <= 1 + 1e-12), aol_norms


def test_max_min_and_space_to_depth():
    rng = np.random.default_rng(1)
    x = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
    y = rng.normal(size=(2, 4, 4, 6)).astype(np.float32)
    mm_x, mm_y, s = jax.jit(
        lambda x, y: (lipschitz.max_min(x), lipschitz.max_min(y), lipschitz.space_to_depth(x))
    )(x, y)
    mm_x, mm_y, s = np.asarray(mm_x), np.asarray(mm_y), np.asarray(s)
    assert np.linalg.norm(mm_x - mm_y) <= np.linalg.norm(x - y) + 1e-6
    np.testing.assert_array_equal(np.sort(mm_x, -1), np.sort(x, -1))
    assert s.shape == (2, 2, 2, 24)
    np.testing.assert_array_equal(np.sort(s.ravel()), np.sort(x.ravel()))
    # Output pixel (0, 0) holds the 2x2 input block at (0, 0), row-major, channels last.
    np.testing.assert_array_equal(
        s[0, 0, 0], np.concatenate([x[0, 0, 0], x[0, 0, 1], x[0, 1, 0], x[0, 1, 1]])
    )
    with pytest.raises(ValueError, match="even size"):
        lipschitz.max_min(jnp.ones((2, 3)))
    with pytest.raises(ValueError, match="divisible by 2"):
        lipschitz.space_to_depth(jnp.ones((1, 3, 4, 1)))


def test_layers_are_one_lipschitz_and_reject_bad_settings():
    key = jax.random.key(0)
    x = jax.random.normal(key, (1, 6, 6, 3))
    conv = lipschitz.SRConv(4, kernel_size=3, iters=2)
    params = jax.jit(conv.init)(key, x)
    assert params["params"]["kernel"].shape == (3, 3, 3, 4)  # HWIO, as nn.Conv
    w = spectral_rescale_conv(params["params"]["kernel"], 2)
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
        jnp.asarray(rng.normal(size=(3, 3, 2, 3)), jnp.float32),
        jnp.asarray(rng.normal(size=(4, 6)), jnp.float32),
    ]
    penalty_fn = functools.partial(lipschitz.lipschitz_penalty, padding="zero", iters=3)
    penalty = jax.jit(penalty_fn)
    # Both layers start well above 1 (their exact norms), so the penalty is positive.
    assert float(dense_exact(weights[1])) > 2 and float(penalty(weights)) > 1
    step = jax.jit(lambda ws: jax.tree.map(lambda w, g: w - 0.05 * g, ws, jax.grad(penalty_fn)(ws)))
    for _ in range(200):
        weights = step(weights)
    assert float(penalty(weights)) < 1e-2
    assert float(dense_exact(weights[1])) <= 1.01


@pytest.mark.parametrize(
    "build,message",
    [
        (lambda: lipschitz.SRDense(features=-1), "features must be an int >= 1, got -1"),
        (lambda: lipschitz.SRDense(features=4, iters=0), "iters"),
        (lambda: lipschitz.SRConv(features=4, kernel_size=0), "kernel_size must be an int >= 1"),
        (lambda: lipschitz.SRConv(features=4, padding="reflect"), "padding must be one of"),
        (lambda: lipschitz.LipschitzConvNet(widths=(3,)), "widths must be even ints >= 2"),
        (lambda: lipschitz.LipschitzConvNet(hidden=5), "hidden must be an even int >= 2"),
        (lambda: lipschitz.LipschitzConvNet(num_classes=0), "num_classes must be an int >= 1"),
    ],
)
def test_constructors_validate_their_sizes(build, message):
    with pytest.raises(ValueError, match=message):
        build()
