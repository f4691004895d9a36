"""Non-finite weights never give a finite bound: every public bound, exact norm, power
iteration, rescaling, the penalty and the layers raise a ValueError naming the argument
on concrete NaN / inf weights, and return NaN under ``jax.jit``. Zero weights, the case
the guards exist for, still give 0."""

import chex
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from threadpoolctl import threadpool_limits

import lipschitz


@pytest.fixture(autouse=True, scope="module")
def _one_blas_thread():
    """LAPACK (the SVDs) runs on OpenBLAS, whose worker threads compete with XLA's on a
    small machine: one thread for this module."""
    with threadpool_limits(1):
        yield


KEY = jax.random.key(0)
N = 5


def _weights(bad):
    """A dense ``[4, 3]`` matrix and an HWIO ``[3, 3, 2, 3]`` kernel, one entry ``bad``."""
    dense = jnp.ones((4, 3)).at[1, 2].set(bad)
    kernel = jnp.ones((3, 3, 2, 3)).at[0, 1, 1, 2].set(bad)
    return dense, kernel


# name -> (which weight, function of it). The kernel functions use the default HWIO layout.
DENSE = {
    "spectral_norm_bound": lambda w: lipschitz.spectral_norm_bound(w),
    "exact_spectral_norm": lambda w: lipschitz.exact_spectral_norm(w),
    "gram_iteration": lambda w: lipschitz.gram_iteration(w, 3),
    "gram_row_bounds": lambda w: lipschitz.gram_row_bounds(w, 2),
    "dense_exact": lambda w: lipschitz.dense_exact(w),
    "dense_power_iteration": lambda w: lipschitz.dense_power_iteration(KEY, w, 5),
    "spectral_rescale_dense": lambda w: lipschitz.spectral_rescale_dense(w, 1),
    "aol_dense": lambda w: lipschitz.aol_dense(w),
}
KERNEL = {
    **{
        f"spectral_norm_bound {padding} {method}": (
            lambda k, m=method, p=padding: lipschitz.spectral_norm_bound(k, m, p, N)
        )
        for padding in ("circular", "zero")
        for method in lipschitz.METHODS
    },
    "exact_spectral_norm circular": lambda k: lipschitz.exact_spectral_norm(k, "circular", N),
    "exact_spectral_norm zero": lambda k: lipschitz.exact_spectral_norm(k, "zero", N),
    "circular_gram_bound": lambda k: lipschitz.circular_gram_bound(k, N, 4),
    "spatial_gram_bound": lambda k: lipschitz.spatial_gram_bound(k, 2),
    "spatial_gram_row_bounds": lambda k: lipschitz.spatial_gram_row_bounds(k, 2),
    "singla2021_bound": lambda k: lipschitz.singla2021_bound(k),
    "araujo2021_bound": lambda k: lipschitz.araujo2021_bound(k),
    "circular_exact": lambda k: lipschitz.circular_exact(k, N),
    "zero_padding_exact": lambda k: lipschitz.zero_padding_exact(k, N),
    "conv_power_iteration": lambda k: lipschitz.conv_power_iteration(KEY, k, N, "zero", 5),
    "spectral_rescale_conv": lambda k: lipschitz.spectral_rescale_conv(k, 2),
    "aol_conv": lambda k: lipschitz.aol_conv(k),
}


@jax.jit
def _everything(dense, kernel):
    """Every function of ``DENSE`` and ``KERNEL`` and the penalty, in one compiled program."""
    out = {name: fn(dense) for name, fn in DENSE.items()}
    out.update({name: fn(kernel) for name, fn in KERNEL.items()})
    out["lipschitz_penalty"] = lipschitz.lipschitz_penalty([dense, kernel], padding="zero")
    return out


@pytest.mark.parametrize("bad", [np.nan, np.inf, -np.inf], ids=["nan", "inf", "-inf"])
def test_non_finite_weights_give_nan_under_jit(bad):
    out = _everything(*_weights(bad))
    assert set(out) == set(DENSE) | set(KERNEL) | {"lipschitz_penalty"}
    for name, value in out.items():
        assert np.isnan(np.asarray(value)).all(), (name, value)


def test_zero_weights_still_give_zero():
    """The guards replace only exact zeros: a zero weight has norm 0 and rescales to 0."""
    out = _everything(jnp.zeros((4, 3)), jnp.zeros((3, 3, 2, 3)))
    for name, value in out.items():
        np.testing.assert_array_equal(np.asarray(value), 0.0, err_msg=name)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("name", [*DENSE, *KERNEL])
def test_concrete_non_finite_weights_raise(name, bad):
    dense, kernel = _weights(bad)
    fn, weight = (DENSE[name], dense) if name in DENSE else (KERNEL[name], kernel)
    kind = "NaN" if np.isnan(bad) else "inf"
    with pytest.raises(ValueError, match=rf"(w|kernel) must be finite .*1 {kind}"):
        fn(weight)


def test_penalty_names_the_weight():
    dense, kernel = _weights(np.nan)
    with pytest.raises(ValueError, match=r"weights\[1\] must be finite"):
        lipschitz.lipschitz_penalty([jnp.ones((4, 3)), kernel])
    with pytest.raises(ValueError, match=r"weights\[0\] must be finite"):
        lipschitz.lipschitz_penalty([dense, jnp.ones((3, 3, 2, 3))], layout="HWIO")


@pytest.fixture(scope="module")
def layers():
    """A dense and a conv SR layer (the blocks of ``LipschitzConvNet``), their parameters
    and their compiled ``apply``."""
    modules = {
        "SRDense": (lipschitz.SRDense(3), jnp.ones((2, 5))),
        "SRConv": (lipschitz.SRConv(4, kernel_size=3), jnp.ones((1, 4, 4, 2))),
    }
    return {
        name: (module, x, jax.jit(module.init)(jax.random.key(1), x), jax.jit(module.apply))
        for name, (module, x) in modules.items()
    }


def _spoil(params, bad):
    """``params`` with one entry of the first weight matrix or kernel set to ``bad``."""
    leaves, treedef = jax.tree.flatten(params)
    i = next(i for i, leaf in enumerate(leaves) if leaf.ndim >= 2)
    leaves[i] = leaves[i].at[(0,) * leaves[i].ndim].set(bad)
    return jax.tree.unflatten(treedef, leaves)


@pytest.mark.parametrize("bad", [np.nan, np.inf], ids=["nan", "inf"])
@pytest.mark.parametrize("name", ["SRDense", "SRConv"])
def test_layers_with_non_finite_weights(layers, name, bad):
    module, x, params, apply = layers[name]
    spoiled = _spoil(params, bad)
    with pytest.raises(ValueError, match=r"(weight|kernel) must be finite"):
        module.apply(spoiled, x)
    assert np.isnan(np.asarray(apply(spoiled, x))).all()
    # The same program on the clean parameters is finite.
    assert np.isfinite(np.asarray(apply(params, x))).all()


def test_nan_logits_are_never_certified():
    logits = np.asarray([[2.0, 0.0], [np.nan, 0.0], [0.0, np.nan]], np.float32)
    labels = np.asarray([0, 0, 1])
    radii, accuracy = jax.jit(
        lambda z, y: (
            lipschitz.certified_radii(z, y),
            lipschitz.certified_accuracy(z, y, jnp.asarray([0.0, 1.0, 2.0])),
        )
    )(logits, labels)
    chex.assert_trees_all_close(radii, np.asarray([2.0 / np.sqrt(2.0), 0.0, 0.0], np.float32))
    chex.assert_trees_all_close(accuracy, np.asarray([1 / 3, 1 / 3, 0.0], np.float32))
    with pytest.raises(ValueError, match="lipschitz must be a positive finite number, got nan"):
        lipschitz.certified_radii(logits, labels, float("nan"))
