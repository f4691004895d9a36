"""fit: learning, logging, checkpoints, resume after a kill, non-finite stops, 8 devices."""

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import pytest

import training

JOB = Path(__file__).with_name("regression_job.py")


def _linear_problem(n=128, d=6, seed=0):
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    w = rng.normal(size=d).astype(np.float32)
    return x, (x @ w).astype(np.float32)


def _linear_loss(params, batch, rng):
    err = batch["x"] @ params["w"] - batch["y"]
    return jnp.mean(err**2), {"mae": jnp.mean(jnp.abs(err))}


def _setup(lr=0.05, num_steps=60):
    optimizer = training.make_optimizer(
        training.OptimizerConfig(name="adam", learning_rate=lr), num_steps
    )
    state = training.TrainState.create({"w": jnp.zeros(6)}, optimizer, rng=0)
    return state, *training.make_train_step(_linear_loss, optimizer)


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
        checkpoint_every=10,
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
    assert sorted(int(p.name) for p in (tmp_path / "checkpoints").iterdir()) == [50, 60]


def test_eval_step_and_train_step_match_manual_update():
    x, y = _linear_problem()
    state, train_step, eval_step = _setup(lr=0.1)
    batch = {"x": x[:16], "y": y[:16]}
    grads = jax.grad(lambda p: _linear_loss(p, batch, None)[0])(state.params)
    # Adam's first step moves every coordinate by lr * sign(grad).
    expected = -0.1 * np.sign(np.asarray(grads["w"]))
    new_state, metrics = train_step(state, batch)
    np.testing.assert_allclose(new_state.params["w"], expected, rtol=1e-5, atol=1e-7)
    assert int(new_state.step) == 1
    assert set(metrics) == {"loss", "mae", "grad_norm"}
    np.testing.assert_allclose(metrics["grad_norm"], np.linalg.norm(grads["w"]), rtol=1e-5)
    assert float(eval_step(new_state.params, batch)["loss"]) == pytest.approx(
        float(_linear_loss(new_state.params, batch, None)[0]), rel=1e-6
    )


def test_non_finite_loss_stops_and_keeps_last_checkpoint(tmp_path):
    x, y = _linear_problem(n=20)
    x[6, 0] = np.nan  # with batch 2 and no shuffling, step 4 sees it
    state, train_step, _ = _setup()
    loader = training.make_loader(training.ArraySource(x=x, y=y), 2, shuffle=False)
    with pytest.raises(training.NonFiniteLossError, match="step 4"):
        training.fit(
            state,
            train_step,
            loader,
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


def _run_job(workdir, out, *extra, env=None, wait=True):
    cmd = [sys.executable, str(JOB), str(workdir), str(out), *extra]
    if not wait:
        return subprocess.Popen(cmd, env=env, stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
    proc = subprocess.run(cmd, env=env, capture_output=True, text=True, timeout=300)
    assert proc.returncode == 0, proc.stderr[-3000:]
    return proc


def _leaves(path):
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(len(f.files) - 1)]


def _saved_steps(workdir):
    root = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []


def test_resume_after_kill_matches_uninterrupted_run(tmp_path):
    _run_job(tmp_path / "straight", tmp_path / "straight.npz")

    # A slowed-down run, killed (SIGKILL) as soon as its first checkpoint exists.
    proc = _run_job(tmp_path / "killed", tmp_path / "killed.npz", "--sleep", "0.01", wait=False)
    deadline = time.monotonic() + 240
    while not _saved_steps(tmp_path / "killed") and time.monotonic() < deadline:
        assert proc.poll() is None, proc.stderr.read().decode()[-3000:]
        time.sleep(0.05)
    os.kill(proc.pid, signal.SIGKILL)
    proc.wait()
    steps_at_kill = _saved_steps(tmp_path / "killed")
    assert steps_at_kill and max(steps_at_kill) < 40, steps_at_kill
    assert not (tmp_path / "killed.npz").exists()

    _run_job(tmp_path / "killed", tmp_path / "killed.npz")
    for a, b in zip(
        _leaves(tmp_path / "straight.npz"), _leaves(tmp_path / "killed.npz"), strict=True
    ):
        np.testing.assert_array_equal(a, b)
    records = training.read_metrics(tmp_path / "killed" / "metrics.jsonl")
    straight = training.read_metrics(tmp_path / "straight" / "metrics.jsonl")
    # The resumed log has each step once and the same losses as the straight run.
    key = [(r["step"], r["split"]) for r in records]
    assert key == [(r["step"], r["split"]) for r in straight]
    np.testing.assert_array_equal([r["loss"] for r in records], [r["loss"] for r in straight])


def test_eight_devices_follow_the_one_device_trajectory(tmp_path):
    runs = {}
    for n in (1, 8):
        env = {
            **os.environ,
            "XLA_FLAGS": f"--xla_force_host_platform_device_count={n}",
            "JAX_PLATFORMS": "cpu",
        }
        _run_job(tmp_path / f"d{n}", tmp_path / f"d{n}.npz", "--steps", "20", env=env)
        with np.load(tmp_path / f"d{n}.npz") as f:
            assert int(f["devices"]) == n
        runs[n] = training.read_metrics(tmp_path / f"d{n}" / "metrics.jsonl")
    losses = {n: np.array([r["loss"] for r in recs]) for n, recs in runs.items()}
    assert losses[1].shape == losses[8].shape == (22,)  # 20 train + 2 eval records
    np.testing.assert_allclose(losses[8], losses[1], rtol=2e-5, atol=1e-6)
    for a, b in zip(_leaves(tmp_path / "d1.npz"), _leaves(tmp_path / "d8.npz"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_metrics_log_truncates_on_resume(tmp_path):
    log = training.MetricsLog(tmp_path / "m.jsonl")
    for step in range(1, 6):
        log.append({"step": step, "loss": float(step)})
    log.truncate_after(3)
    assert [r["step"] for r in training.read_metrics(log.path)] == [1, 2, 3]
    assert json.loads((tmp_path / "m.jsonl").read_text().splitlines()[-1])["step"] == 3
