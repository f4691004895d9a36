"""fit: learning, logging, checkpoints, resume after a kill, non-finite stops, 8 devices."""

import functools
import importlib.util
import json
import os
import signal
import subprocess
import sys
import threading
import time
from pathlib import Path

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
from jax import lax
from run_files import checkpoint_steps, saved_params

import training

JOB = Path(__file__).with_name("regression_job.py")
_spec = importlib.util.spec_from_file_location("regression_job", JOB)
regression_job = importlib.util.module_from_spec(_spec)
_spec.loader.exec_module(regression_job)


def _linear_problem(n=128, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d).astype(np.float32)
    return x, (x @ w).astype(np.float32)


def _linear_loss(params, batch, rng):
    err = batch["x"] @ params["w"] - batch["y"]
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


@functools.cache
def _steps(lr):
    optimizer = training.make_optimizer(training.OptimizerConfig(name="adam", learning_rate=lr), 60)
    return optimizer, *training.make_train_step(_linear_loss, optimizer)


def _setup(lr=0.05):
    """A fresh state (``fit`` donates its buffers) with train and eval steps shared per ``lr``."""
    optimizer, train_step, eval_step = _steps(lr)
    state = training.TrainState.create({"w": jnp.zeros(6)}, optimizer, rng=0)
    return state, train_step, eval_step


def test_fit_learns_and_logs(tmp_path):
    x, y = _linear_problem()
    state, train_step, eval_step = _setup()
    result = training.fit(
        state,
        train_step,
        training.make_loader(training.ArraySource(x=x, y=y), 16),
        num_steps=60,
        workdir=tmp_path,
        eval_step=eval_step,
        eval_data=training.make_loader(
            training.ArraySource(x=x, y=y), 50, shuffle=False, num_epochs=1
        ),
        eval_every=20,
        checkpoint_every=20,
        keep_checkpoints=2,
        log_every=5,
        progress=False,
    )
    assert int(result.state.step) == 60
    records = training.read_metrics(tmp_path / "metrics.jsonl")
    assert records == result.history
    train = [r for r in records if r["split"] == "train"]
    evals = [r for r in records if r["split"] == "eval"]
    assert [r["step"] for r in train] == list(range(5, 61, 5))
    assert [r["step"] for r in evals] == [20, 40, 60]
    assert train[-1]["loss"] < 0.05 * train[0]["loss"]
    assert all(r["examples_per_sec"] > 0 for r in train)
    # The eval metric is the example-weighted mean over 50 + 50 + 28 examples.
    w = np.asarray(result.state.params["w"])
    assert evals[-1]["loss"] == pytest.approx(float(np.mean((x @ w - y) ** 2)), rel=1e-4)
    assert checkpoint_steps(tmp_path) == [40, 60]


def test_train_record_is_the_window_mean_of_each_step():
    """The records of the on-device window equal the means of the per-step metrics
    (computed here one step at a time, outside ``fit``), and any ``(state, batch) ->
    (state, metrics)`` callable trains like a ``TrainStep``."""
    x, y = _linear_problem()
    batches = [{"x": x[i : i + 16], "y": y[i : i + 16]} for i in range(0, 96, 16)]
    state, train_step, _ = _setup()
    per_step = []
    for batch in batches:
        state, metrics = train_step(state, batch)
        per_step.append(jax.device_get(metrics))
    for step_fn in (train_step, lambda s, b: train_step(s, b)):
        fresh, *_ = _setup()
        result = training.fit(fresh, step_fn, batches, num_steps=6, log_every=4, progress=False)
        chex.assert_trees_all_close(result.state.params, state.params, rtol=1e-6)
        assert [r["step"] for r in result.history] == [4, 6]
        for record, window in zip(result.history, [per_step[:4], per_step[4:]], strict=True):
            for name in ("loss", "mae", "grad_norm"):
                expected = np.mean([float(m[name]) for m in window])
                assert record[name] == pytest.approx(expected, rel=1e-6)


def test_eval_step_and_train_step_match_manual_update():
    x, y = _linear_problem()
    state, train_step, eval_step = _setup(lr=0.1)
    batch = {"x": x[:16], "y": y[:16]}
    grads = jax.grad(lambda p: _linear_loss(p, batch, None)[0])(state.params)
    # Adam's first step moves every coordinate by lr * sign(grad).
    expected = {"w": -0.1 * np.sign(np.asarray(grads["w"]))}
    new_state, metrics = train_step(state, batch)
    chex.assert_trees_all_close(new_state.params, expected, rtol=1e-5, atol=1e-7)
    assert int(new_state.step) == 1
    assert set(metrics) == {"loss", "mae", "grad_norm"}
    np.testing.assert_allclose(metrics["grad_norm"], np.linalg.norm(grads["w"]), rtol=1e-5)
    assert float(eval_step(new_state.params, batch)["loss"]) == pytest.approx(
        float(_linear_loss(new_state.params, batch, None)[0]), rel=1e-6
    )


def _nan_loader(bad_row):
    x, y = _linear_problem(n=20)
    x[bad_row, 0] = np.nan  # with batch 2 and no shuffling, step bad_row // 2 + 1 sees it
    return training.make_loader(training.ArraySource(x=x, y=y), 2, shuffle=False)


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    state, train_step, _ = _setup()
    with pytest.raises(training.NonFiniteLossError, match="step 4"):
        training.fit(
            state,
            train_step,
            _nan_loader(6),
            num_steps=10,
            workdir=tmp_path,
            checkpoint_every=3,
            progress=False,
        )
    ckpt = training.Checkpointer(tmp_path / "checkpoints")
    assert ckpt.all_steps() == [3]
    template, *_ = _setup()
    restored = ckpt.restore(template)
    assert int(restored.step) == 3
    assert np.all(np.isfinite(restored.params["w"]))


@pytest.mark.parametrize(
    ("bad_step", "checkpoint_every", "log_every", "eval_every"),
    [(6, 3, 100, 0), (2, 0, 5, 0), (7, 4, 10, 3)],
    ids=["seen-at-its-own-checkpoint-step", "seen-at-a-record", "seen-at-a-later-checkpoint"],
)
def test_non_finite_error_names_the_first_bad_step(
    tmp_path, bad_step, checkpoint_every, log_every, eval_every
):
    """The steps after the first bad one are non-finite too (the parameters are NaN):
    the error names the first, and nothing is logged, evaluated or saved at or after it."""
    state, train_step, eval_step = _setup()
    x, y = _linear_problem(n=8)
    with pytest.raises(training.NonFiniteLossError, match=f"step {bad_step}:") as error:
        training.fit(
            state,
            train_step,
            _nan_loader(2 * bad_step - 2),
            num_steps=12,
            workdir=tmp_path,
            eval_step=eval_step,
            eval_data=training.make_eval_loader(training.ArraySource(x=x, y=y), 4),
            eval_every=eval_every,
            checkpoint_every=checkpoint_every,
            log_every=log_every,
            progress=False,
        )
    assert error.value.step == bad_step
    assert np.isnan(error.value.metrics["loss"])
    records = training.read_metrics(tmp_path / "metrics.jsonl")
    if eval_every:
        assert [r["step"] for r in records if r["split"] == "eval"] == list(
            range(eval_every, bad_step, eval_every)
        )
    assert all(r["step"] < bad_step and np.isfinite(r["loss"]) for r in records)
    expected = list(range(checkpoint_every, bad_step, checkpoint_every)) if checkpoint_every else []
    assert checkpoint_steps(tmp_path) == expected


def test_fit_does_not_wait_for_each_step():
    """Between two records the host only dispatches: it asks for batch 10 long before
    the device has finished the ten slow steps (a synchronous loop asks for each batch
    only once the previous step is done, at about 8/9 of the run)."""
    a = jnp.asarray(np.random.default_rng(0).normal(size=(256, 256)).astype(np.float32) / 16)

    def slow_loss(params, batch, rng):
        m = lax.fori_loop(0, 30, lambda i, m: jnp.tanh(m @ a), batch["x"] * params["w"])
        return jnp.mean(m**2)

    asked = []

    def batches():
        while True:
            asked.append(time.perf_counter())
            yield {"x": np.ones((256, 256), np.float32)}

    optimizer = optax.adam(1e-3)
    train_step, _ = training.make_train_step(slow_loss, optimizer)
    state = training.TrainState.create({"w": jnp.ones(256)}, optimizer, rng=0)
    training.fit(state, train_step, batches(), num_steps=10, log_every=10, progress=False)
    end = time.perf_counter()
    # From batch 2 on (step 1 includes the compilation).
    ratio = (asked[9] - asked[1]) / (end - asked[1])
    assert ratio < 0.5, ratio


def test_fit_argument_errors(tmp_path):
    state, train_step, eval_step = _setup()
    data = [{"x": np.zeros((2, 6), np.float32), "y": np.zeros(2, np.float32)}]
    with pytest.raises(ValueError, match="num_steps"):
        training.fit(state, train_step, data, num_steps=0)
    with pytest.raises(ValueError, match="checkpoint_every needs a workdir"):
        training.fit(state, train_step, data, num_steps=1, checkpoint_every=1)
    with pytest.raises(ValueError, match="eval_step and eval_data"):
        training.fit(state, train_step, data, num_steps=1, eval_step=eval_step)
    with pytest.raises(ValueError, match="ran out of batches at step 2"):
        training.fit(state, train_step, data, num_steps=3, progress=False)


def _start_job(workdir, out, *extra, env=None):
    cmd = [sys.executable, str(JOB), str(workdir), str(out), *extra]
    return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)


def _kill_at_first_checkpoint(proc, workdir, outcome):
    deadline = time.monotonic() + 240
    while not checkpoint_steps(workdir) and proc.poll() is None and time.monotonic() < deadline:
        time.sleep(0.02)
    alive = proc.poll() is None
    if alive:
        os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    outcome["killed"] = alive
    outcome["steps_at_kill"] = checkpoint_steps(workdir)
    outcome["stderr"] = proc.stderr.read().decode()[-3000:]


@pytest.fixture(scope="module", autouse=True)
def jobs(tmp_path_factory):
    """Two subprocess runs of the regression job, started together: one on 8 devices,
    and one slowed down and killed (SIGKILL) as soon as its first checkpoint exists.
    Autouse: they start with the first test of this module and run alongside it."""
    root = tmp_path_factory.mktemp("jobs")
    env = {
        **os.environ,
        "XLA_FLAGS": "--xla_force_host_platform_device_count=8",
        "JAX_PLATFORMS": "cpu",
    }
    eight = _start_job(
        root / "d8", root / "d8.npz", "--param-sharding", "replicated", "fsdp", env=env
    )
    killed = _start_job(root / "killed", root / "killed.npz", "--sleep", "0.01")
    outcome = {}
    killer = threading.Thread(
        target=_kill_at_first_checkpoint, args=(killed, root / "killed", outcome)
    )
    killer.start()
    yield {"root": root, "eight": eight, "killer": killer, "killed": outcome}
    for proc in (eight, killed):
        if proc.poll() is None:
            proc.kill()
            proc.wait()
    killer.join()


@pytest.fixture(scope="module")
def straight(jobs):
    """The uninterrupted run, in this process (1 device)."""
    return regression_job.run(jobs["root"] / "straight")


def test_resume_after_kill_matches_uninterrupted_run(jobs, straight):
    jobs["killer"].join()
    outcome = jobs["killed"]
    assert outcome["killed"], outcome["stderr"]
    assert outcome["steps_at_kill"], outcome
    assert max(outcome["steps_at_kill"]) < regression_job.STEPS, outcome
    assert not (jobs["root"] / "killed.npz").exists()

    resumed = regression_job.run(jobs["root"] / "killed")
    chex.assert_trees_all_equal(
        jax.device_get(resumed.state.params), jax.device_get(straight.state.params)
    )
    records = training.read_metrics(jobs["root"] / "killed" / "metrics.jsonl")
    assert records == resumed.history
    # The resumed log has each step once and the same losses as the straight run.
    key = [(r["step"], r["split"]) for r in records]
    assert key == [(r["step"], r["split"]) for r in straight.history]
    np.testing.assert_array_equal(
        [r["loss"] for r in records], [r["loss"] for r in straight.history]
    )


def _losses(workdir):
    records = training.read_metrics(workdir / "metrics.jsonl")
    return [(r["step"], r["split"]) for r in records], [r["loss"] for r in records]


def test_eight_devices_follow_the_one_device_trajectory(jobs, straight):
    proc = jobs["eight"]
    assert proc.wait(timeout=300) == 0, proc.stderr.read().decode()[-3000:]
    with np.load(jobs["root"] / "d8-replicated.npz") as f:
        assert int(f["devices"]) == 8
        np.testing.assert_array_equal(f["fraction"], 1.0)
    key, losses = _losses(jobs["root"] / "d8" / "replicated")
    assert key == [(r["step"], r["split"]) for r in straight.history]
    assert len(key) == 22  # 20 train + 2 eval records
    np.testing.assert_allclose(losses, [r["loss"] for r in straight.history], rtol=2e-5, atol=1e-6)
    ours = jax.tree.leaves(jax.device_get(straight.state.params))
    for a, b in zip(ours, saved_params(jobs["root"] / "d8-replicated.npz"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_fully_sharded_state_follows_the_replicated_trajectory(jobs):
    """FSDP on 8 devices: each device holds an eighth of every parameter with an axis
    that 8 divides (here all but the output bias), and training is unchanged."""
    assert jobs["eight"].wait(timeout=300) == 0
    with np.load(jobs["root"] / "d8-fsdp.npz") as f:
        shapes = [f[f"arr_{i}"].shape for i in range(4)]
        fraction = f["fraction"]
    expected = [1.0 if all(n % 8 for n in shape) else 1 / 8 for shape in shapes]
    np.testing.assert_array_equal(fraction, expected)
    assert sorted(fraction)[:3] == [1 / 8] * 3
    key, losses = _losses(jobs["root"] / "d8" / "fsdp")
    replicated_key, replicated = _losses(jobs["root"] / "d8" / "replicated")
    assert key == replicated_key
    np.testing.assert_allclose(losses, replicated, rtol=2e-5, atol=1e-6)
    for a, b in zip(
        saved_params(jobs["root"] / "d8-fsdp.npz"),
        saved_params(jobs["root"] / "d8-replicated.npz"),
        strict=True,
    ):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_metrics_log_truncates_on_resume(tmp_path):
    log = training.MetricsLog(tmp_path / "m.jsonl")
    for step in range(1, 6):
        log.append({"step": step, "loss": float(step)})
    log.truncate_after(3)
    assert [r["step"] for r in training.read_metrics(log.path)] == [1, 2, 3]
    assert json.loads((tmp_path / "m.jsonl").read_text().splitlines()[-1])["step"] == 3
