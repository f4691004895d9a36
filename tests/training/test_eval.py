"""evaluate with padded, masked batches: exact means over any set size, one compilation."""

import jax.numpy as jnp
import numpy as np
import optax
import pytest

import training

TRACES = []
W = np.array([0.5, -1.0, 2.0], np.float32)


def _loss(params, batch, rng):
    """Batch means of the squared error and of the relative error (NaN for a zero target)."""
    TRACES.append(batch["x"].shape)
    err = batch["x"] @ params["w"] - batch["y"]
    return jnp.mean(err**2), {"rel": jnp.mean(jnp.abs(err) / jnp.abs(batch["y"]))}


@pytest.fixture(scope="module")
def eval_step():
    TRACES.clear()
    return training.make_train_step(_loss, optax.sgd(0.1))[1]


def _data(n, seed):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, 3)).astype(np.float32)
    y = rng.normal(size=n).astype(np.float32) + 3.0
    return x, y


def _reference(x, y):
    """float64 means over the examples, written out with numpy."""
    err = x.astype(np.float64) @ W.astype(np.float64) - y
    return {"loss": np.mean(err**2), "rel": np.mean(np.abs(err) / np.abs(y))}


def test_prime_sized_sets_give_the_exact_mean_with_one_compilation(eval_step):
    params = {"w": jnp.asarray(W)}
    for n, seed in [(13, 0), (7, 1), (4, 2)]:
        x, y = _data(n, seed)
        loader = training.make_eval_loader(training.ArraySource(x=x, y=y), 4)
        metrics = training.evaluate(eval_step, params, loader)
        expected = _reference(x, y)
        assert set(metrics) == set(expected)
        for name, value in expected.items():
            assert metrics[name] == pytest.approx(value, rel=1e-5)
    # One trace (hence one compilation) of the loss, on a batch of one example.
    assert TRACES == [(1, 3)]


def test_masked_out_examples_never_contribute_even_nan(eval_step):
    params = {"w": jnp.asarray(W)}
    x, y = _data(4, 3)
    y[1] = 0.0  # relative error inf
    x[3] = np.nan  # every metric NaN
    mask = np.array([True, False, True, False])
    batch = {"x": x, "y": y}
    metrics = eval_step(params, batch, mask)
    expected = _reference(x[mask], y[mask])
    for name, value in expected.items():
        assert float(metrics[name]) == pytest.approx(value, rel=1e-5)
    assert np.isnan(float(eval_step(params, batch)["rel"]))


def test_masked_and_plain_batches_weigh_examples_alike(eval_step):
    """A plain ragged pass (batches of 4 and 1, the old way) and a masked pass agree."""
    params = {"w": jnp.asarray(W)}
    x, y = _data(5, 4)
    source = training.ArraySource(x=x, y=y)
    plain = training.make_loader(source, 4, shuffle=False, num_epochs=1)
    masked = training.make_eval_loader(source, 4)
    a = training.evaluate(eval_step, params, plain)
    b = training.evaluate(eval_step, params, masked)
    assert a == pytest.approx(b, rel=1e-6)
    assert a == pytest.approx(_reference(x, y), rel=1e-5)


def test_evaluate_errors(eval_step):
    params = {"w": jnp.asarray(W)}
    with pytest.raises(ValueError, match="no batches"):
        training.evaluate(eval_step, params, [])
    x, y = _data(4, 5)
    empty = [training.MaskedBatch({"x": x, "y": y}, np.zeros(4, bool))]
    with pytest.raises(ValueError, match="no example with a true mask"):
        training.evaluate(eval_step, params, empty)
