"""Optimizer configs, loaders, sharding helpers, train state and plots."""

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

import training


@pytest.mark.parametrize("name", training.optim.OPTIMIZERS)
@pytest.mark.parametrize("schedule", training.optim.SCHEDULES)
def test_every_optimizer_and_schedule_takes_a_step(name, schedule):
    config = training.OptimizerConfig(
        name=name, schedule=schedule, weight_decay=1e-4, warmup_steps=2, clip_grad_norm=1.0
    )
    opt = training.make_optimizer(config, num_steps=10)
    params = {"w": jnp.ones(3)}
    updates, _ = opt.update({"w": jnp.ones(3)}, opt.init(params), params)
    assert np.all(np.isfinite(updates["w"]))


def test_schedules_follow_their_definition():
    step = training.make_schedule(
        training.OptimizerConfig(learning_rate=1.0, schedule="step", decay_every=10), 100
    )
    assert [float(step(t)) for t in (0, 9, 10, 25)] == [1.0, 1.0, 0.5, 0.25]
    cosine = training.make_schedule(
        training.OptimizerConfig(learning_rate=2.0, schedule="cosine", final_fraction=0.1), 100
    )
    assert float(cosine(0)) == pytest.approx(2.0)
    assert float(cosine(50)) == pytest.approx(2.0 * (0.1 + 0.9 * 0.5))
    assert float(cosine(100)) == pytest.approx(0.2)
    warm = training.make_schedule(
        training.OptimizerConfig(learning_rate=1.0, schedule="warmup_cosine", warmup_steps=4), 20
    )
    assert float(warm(2)) == pytest.approx(0.5)
    assert float(warm(4)) == pytest.approx(1.0)


def test_coupled_weight_decay_is_l2_on_the_gradient():
    opt = training.make_optimizer(
        training.OptimizerConfig(name="sgd", learning_rate=0.1, momentum=0.0, weight_decay=0.5), 1
    )
    params = {"w": jnp.array([2.0])}
    updates, _ = opt.update({"w": jnp.array([1.0])}, opt.init(params), params)
    assert float(updates["w"][0]) == pytest.approx(-0.1 * (1.0 + 0.5 * 2.0))


@pytest.mark.parametrize(
    ("kwargs", "match"),
    [
        ({"name": "adagrad"}, "optimizer name"),
        ({"learning_rate": 0.0}, "learning_rate"),
        ({"weight_decay": -1.0}, "weight_decay"),
        ({"schedule": "linear"}, "schedule"),
    ],
)
def test_optimizer_config_errors(kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.make_optimizer(training.OptimizerConfig(**kwargs), 10)


def _ids(batches):
    return [int(i) for b in batches for i in np.asarray(b["i"])]


def test_loader_epochs_are_permutations_and_reshuffled():
    source = training.ArraySource(i=np.arange(12))
    it = iter(training.make_loader(source, 4, seed=1))
    epochs = [_ids(next(it) for _ in range(3)) for _ in range(2)]
    assert sorted(epochs[0]) == sorted(epochs[1]) == list(range(12))
    assert epochs[0] != epochs[1]
    again = iter(training.make_loader(source, 4, seed=1))
    assert _ids(next(again) for _ in range(3)) == epochs[0]


def test_loader_finite_epoch_keeps_remainder_and_state_restores():
    source = training.ArraySource(i=np.arange(10), x=np.ones((10, 2)))
    assert _ids(training.make_loader(source, 4, shuffle=False, num_epochs=1)) == list(range(10))
    loader = training.make_loader(source, 3, seed=5)
    it = iter(loader)
    next(it)
    saved = it.get_state()
    expected = _ids([next(it), next(it)])
    resumed = iter(loader)
    resumed.set_state(saved)
    assert _ids([next(resumed), next(resumed)]) == expected


@pytest.mark.parametrize(("n", "batch_size"), [(13, 4), (200, 20), (3, 8)])
def test_eval_loader_pads_the_last_batch_and_masks_it(n, batch_size):
    batches = list(training.make_eval_loader(training.ArraySource(i=np.arange(n)), batch_size))
    size = min(batch_size, n)
    assert all(isinstance(b, training.MaskedBatch) for b in batches)
    assert {len(b.batch["i"]) for b in batches} == {len(b.mask) for b in batches} == {size}
    assert len(batches) == -(-n // size)
    ids = np.concatenate([b.batch["i"] for b in batches])
    mask = np.concatenate([b.mask for b in batches])
    assert mask.dtype == bool
    np.testing.assert_array_equal(ids[mask], np.arange(n))
    assert set(ids[~mask]) <= set(range(n))  # padding copies real examples


@pytest.mark.parametrize("n", [1, 7, 13, 64])
@pytest.mark.parametrize(("process_count", "multiple"), [(1, 1), (2, 2), (3, 1), (8, 2)])
def test_eval_indices_cover_every_example_once_in_equal_batches(n, process_count, multiple):
    plans = [
        training.data.eval_indices(n, 8, p, process_count, multiple) for p in range(process_count)
    ]
    assert len({len(indices) for indices, _, _ in plans}) == 1  # same number of batches
    batch = plans[0][2]
    smallest = min(-(-8 // process_count), -(-n // process_count))
    assert batch == -(-smallest // multiple) * multiple
    assert len(plans[0][0]) % batch == 0
    real = sorted(i for indices, num_real, _ in plans for i in indices[:num_real])
    assert real == list(range(n))
    assert all(0 <= i < n for indices, _, _ in plans for i in indices)


def test_eval_loader_rejects_bad_batch_size():
    with pytest.raises(ValueError, match="batch_size must be an int >= 1, got 0"):
        training.make_eval_loader(training.ArraySource(i=np.arange(3)), 0)
    with pytest.raises(ValueError, match="empty"):
        training.make_eval_loader([], 4)


def test_loader_takes_a_key_as_seed():
    source = training.ArraySource(i=np.arange(12))
    by_key = _ids(training.make_loader(source, 4, seed=jax.random.key(7), num_epochs=1))
    by_int = _ids(training.make_loader(source, 4, seed=7, num_epochs=1))
    assert by_key == by_int
    other = _ids(training.make_loader(source, 4, seed=jax.random.key(8), num_epochs=1))
    assert sorted(other) == list(range(12)) and other != by_key
    for bad in (-1, 2**32, "7"):
        with pytest.raises(ValueError, match="seed must be an int in"):
            training.make_loader(source, 4, seed=bad)


@pytest.mark.parametrize(
    ("args", "kwargs", "match"),
    [
        ((training.ArraySource(i=np.arange(3)), 0), {}, "batch_size"),
        (
            (training.ArraySource(i=np.arange(3)), 4),
            {"num_epochs": 1, "drop_remainder": True},
            "larger than",
        ),
        ((training.ArraySource(i=np.arange(3)), 1), {"num_epochs": 0}, "num_epochs"),
        (([], 1), {}, "empty"),
    ],
)
def test_loader_errors(args, kwargs, match):
    with pytest.raises(ValueError, match=match):
        training.make_loader(*args, **kwargs)


def test_array_source_errors():
    with pytest.raises(ValueError, match="same length"):
        training.ArraySource(a=np.zeros(3), b=np.zeros(4))


def test_shard_batch_places_and_replicates():
    mesh = training.data_mesh()
    batch = {"x": np.arange(8.0).reshape(4, 2)}
    placed = training.shard_batch(batch, mesh)
    np.testing.assert_array_equal(placed["x"], batch["x"])
    with pytest.raises(ValueError, match="leading batch axis"):
        training.shard_batch({"x": np.float32(1.0)}, mesh)
    state = training.replicate({"w": jnp.ones(3)}, mesh)
    assert state["w"].sharding.is_fully_replicated


def test_train_state_keys_differ_per_step_and_accept_every_key_form():
    opt = optax.sgd(0.1)
    params = {"w": jnp.zeros(2)}
    states = [
        training.TrainState.create(params, opt, rng)
        for rng in (jax.random.key(3), 3, jax.random.PRNGKey(3))
    ]
    for state in states:
        assert state.rng.dtype == jnp.uint32
        np.testing.assert_array_equal(state.rng, jax.random.key_data(jax.random.key(3)))
    k0 = states[0].step_key()
    assert jnp.issubdtype(k0.dtype, jax.dtypes.prng_key)
    # The key of step t is fold_in(base key, t), computed here with the public API.
    expected = jax.random.fold_in(jax.random.key(3), 5)
    k5 = states[1].replace(step=jnp.asarray(5, jnp.int32)).step_key()
    np.testing.assert_array_equal(jax.random.key_data(k5), jax.random.key_data(expected))
    assert not np.array_equal(jax.random.key_data(k0), jax.random.key_data(k5))
    rbg = training.TrainState.create(params, opt, jax.random.key(3, impl="rbg"))
    assert rbg.key_impl == "rbg" and rbg.step_key().shape == ()
    for bad, match in [(3.0, "int seed"), (jax.random.split(jax.random.key(0)), "shape")]:
        with pytest.raises(ValueError, match=match):
            training.TrainState.create(params, opt, bad)


def test_initialize_distributed_is_a_no_op_without_a_coordinator(monkeypatch):
    monkeypatch.delenv("JAX_COORDINATOR_ADDRESS", raising=False)
    assert training.initialize_distributed() is False


def test_plots_write_pngs(tmp_path):
    records = [{"step": s, "split": "train", "loss": 1.0 / s} for s in range(1, 6)]
    records.append({"step": 5, "split": "eval", "loss": 0.3})
    curve = training.plot_curves(records, tmp_path / "curve.png")
    grid = training.plot_image_grid(
        [[np.random.default_rng(i).random((8, 8)) for i in range(3)] for _ in range(2)],
        tmp_path / "grid.png",
        column_titles=["a", "b", "c"],
    )
    for path in (curve, grid):
        assert path.read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    with pytest.raises(ValueError, match="records is empty"):
        training.plot_curves([], tmp_path / "x.png")
    with pytest.raises(ValueError, match="column_titles"):
        training.plot_image_grid([[np.zeros((2, 2))]], tmp_path / "x.png", column_titles=["a", "b"])
