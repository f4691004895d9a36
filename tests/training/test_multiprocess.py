"""Multi-process runs on this machine: 2 processes x 2 CPU devices joined by
``jax.distributed`` on 127.0.0.1 (gloo collectives), started by ``training.launch``.

Three runs start together with the first test of the module: the scenario of
``multiprocess_worker.py`` (2 processes), the same regression job as one process
with 4 devices, and a 2-process run that the test kills (one process, SIGKILL)
after its first checkpoint and then resumes. Each is bounded in time.
"""

import json
import os
import signal
import sys
import threading
import time
from pathlib import Path

import multiprocess
import numpy as np
import pytest
from run_files import checkpoint_steps, saved_params

import training
from training import launch

WORKER = str(Path(__file__).with_name("multiprocess_worker.py"))
STEPS = 20  # regression_job.STEPS


def _kill_one_after_a_checkpoint(workdir, outcome):
    """Run the slowed 2-process job, SIGKILL process 1 once a checkpoint exists, then
    resume the run (2 processes again)."""
    result = {}
    cmd = ["python", WORKER, "fit", str(workdir), f"{workdir}.npz"]

    def run():
        result["run"] = multiprocess.run_local([*cmd, "--sleep", "0.01"])

    runner = threading.Thread(target=run)
    runner.start()
    pid_file = Path(f"{workdir}.pid1")
    deadline = time.monotonic() + 240
    while runner.is_alive() and not (checkpoint_steps(workdir) and pid_file.exists()):
        if time.monotonic() > deadline:
            break
        time.sleep(0.02)
    outcome["killed"] = runner.is_alive() and pid_file.exists()
    if outcome["killed"]:
        os.kill(int(pid_file.read_text()), signal.SIGKILL)
    outcome["steps_at_kill"] = checkpoint_steps(workdir)
    runner.join()
    outcome["run"] = result["run"]
    outcome["finished_before_resuming"] = Path(f"{workdir}.npz").exists()
    outcome["resumed"] = multiprocess.run_local(cmd)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    root = tmp_path_factory.mktemp("multiprocess")
    results, killed = {}, {}

    def scenario():
        results["scenario"] = multiprocess.run_local(["python", WORKER, "scenario", str(root)])

    def four_devices():
        cmd = ["python", WORKER, "fit", str(root / "four"), str(root / "four.npz")]
        results["four"] = multiprocess.run_local(cmd, processes=1, devices_per_process=4)

    threads = [
        threading.Thread(target=scenario),
        threading.Thread(target=four_devices),
        threading.Thread(target=_kill_one_after_a_checkpoint, args=(root / "killed", killed)),
    ]
    for thread in threads:
        thread.start()
    for thread in threads:
        thread.join()
    for name, run in results.items():
        assert run.returncode == 0, (name, run.output[-4000:])
    processes = [json.loads((root / f"process{p}.json").read_text()) for p in range(2)]
    return {"root": root, "processes": processes, "killed": killed}


def test_two_processes_follow_the_single_process_four_device_trajectory(runs):
    root = runs["root"]
    for record in runs["processes"]:
        assert (record["processes"], record["devices"]) == (2, 4)
    with np.load(root / "four.npz") as f:
        assert (int(f["devices"]), int(f["processes"])) == (4, 1)
    with np.load(root / "fit.npz") as f:
        assert (int(f["devices"]), int(f["processes"])) == (4, 2)
    two = training.read_metrics(root / "fit" / "metrics.jsonl")
    one = training.read_metrics(root / "four" / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in two] == [(r["step"], r["split"]) for r in one]
    assert len(two) == STEPS + 2  # a record per step and 2 evaluations
    np.testing.assert_allclose(
        [r["loss"] for r in two], [r["loss"] for r in one], rtol=2e-5, atol=1e-6
    )
    for a, b in zip(saved_params(root / "fit.npz"), saved_params(root / "four.npz"), strict=True):
        np.testing.assert_allclose(a, b, rtol=1e-4, atol=1e-5)


def test_each_process_reads_its_own_half_of_every_global_batch(runs):
    single = iter(training.make_loader(training.ArraySource(i=np.arange(40)), 8, seed=5))
    first, second = (record["batches"] for record in runs["processes"])
    for step in range(6):
        expected = next(single)["i"].tolist()
        # process 0 holds rows 0-3 of the single-process batch, process 1 rows 4-7
        assert first[step] + second[step] == expected


def test_process_zero_alone_writes_logs_results_and_plots(runs):
    root = runs["root"]
    zero, one = ({Path(p).relative_to(root) for p in r["opened"]} for r in runs["processes"])
    for name in ("config.json", "metrics.jsonl", "results.json", "loss_curve.png"):
        assert Path("harness", name) in zero
    assert Path("fit", "metrics.jsonl") in zero and Path("fit.npz") in zero
    # Process 1 writes only its own part of each checkpoint (orbax and grain name it).
    assert one, "the audit saw no file of process 1"
    for path in one:
        assert path.parts[1] == "checkpoints" and "process_1" in path.name, path
    assert all("process_1" not in p.name for p in zero)


def test_processes_that_disagree_fail_with_clear_errors(runs):
    for record in runs["processes"]:
        errors = record["errors"]
        assert "the processes disagree on the configuration of the run" in errors["config"]
        assert "process(es) [1] differ from process 0" in errors["config"]
        assert "global batch size 6 must be a multiple of the 4 devices" in errors["batch"]
        assert "batch_size 7 must be a multiple of the 2 processes" in errors["loader"]
    assert not (runs["root"] / "other").exists()


def test_killing_one_process_stops_both_and_the_run_resumes_exactly(runs):
    root, killed = runs["root"], runs["killed"]
    assert killed["killed"], killed["run"].output[-4000:]
    assert killed["run"].returncode != 0  # the launcher stopped process 0 as well
    assert "process 1 exited with status -9; stopping the others" in killed["run"].stderr
    assert killed["steps_at_kill"] and max(killed["steps_at_kill"]) < STEPS
    assert not killed["finished_before_resuming"]

    resumed = killed["resumed"]
    assert resumed.returncode == 0, resumed.output[-4000:]
    for a, b in zip(saved_params(root / "killed.npz"), saved_params(root / "fit.npz"), strict=True):
        np.testing.assert_array_equal(a, b)
    records = training.read_metrics(root / "killed" / "metrics.jsonl")
    straight = training.read_metrics(root / "fit" / "metrics.jsonl")
    assert [(r["step"], r["split"]) for r in records] == [(r["step"], r["split"]) for r in straight]
    np.testing.assert_array_equal([r["loss"] for r in records], [r["loss"] for r in straight])


def test_a_process_that_cannot_reach_the_coordinator_fails_naming_it():
    address = f"127.0.0.1:{launch.free_port()}"
    start = time.monotonic()
    with pytest.raises(TimeoutError, match=f"could not reach the coordinator {address}"):
        training.initialize_distributed(
            coordinator_address=address, num_processes=2, process_id=1, timeout_s=1.0
        )
    assert time.monotonic() - start < 10


@pytest.mark.parametrize(
    ("env", "message"),
    [
        ({"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234"}, "JAX_NUM_PROCESSES must be set too"),
        (
            {"JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234", "JAX_NUM_PROCESSES": "two"},
            "JAX_NUM_PROCESSES must be an integer, got 'two'",
        ),
        (
            {
                "JAX_COORDINATOR_ADDRESS": "127.0.0.1:1234",
                "JAX_NUM_PROCESSES": "2",
                "JAX_PROCESS_ID": "2",
            },
            r"must be in \[0, 2\), got 2",
        ),
        ({"JAX_COORDINATOR_ADDRESS": "localhost"}, "must be 'host:port', got 'localhost'"),
    ],
)
def test_malformed_launch_variables_are_named(monkeypatch, env, message):
    for name in ("JAX_COORDINATOR_ADDRESS", "JAX_NUM_PROCESSES", "JAX_PROCESS_ID"):
        monkeypatch.delenv(name, raising=False)
    for name, value in env.items():
        monkeypatch.setenv(name, value)
    with pytest.raises(ValueError, match=message):
        training.initialize_distributed()


def test_the_launcher_stops_every_process_when_one_fails_or_time_runs_out(tmp_path):
    # Process 1 fails only once every process has printed (each leaves a mark in
    # tmp_path), so the output checked below does not depend on start-up order.
    program = (
        "import os, pathlib, sys, time\n"
        "rank = os.environ['JAX_PROCESS_ID']\n"
        "print('process', rank, 'of', os.environ['JAX_NUM_PROCESSES'], flush=True)\n"
        "marks = pathlib.Path(sys.argv[1])\n"
        "(marks / rank).touch()\n"
        "deadline = time.monotonic() + 20\n"
        "while rank == '1' and len(list(marks.iterdir())) < 3 and time.monotonic() < deadline:\n"
        "    time.sleep(0.05)\n"
        "sys.exit(3) if rank == '1' else time.sleep(120)\n"
    )
    start = time.monotonic()
    failed = multiprocess.run_local([sys.executable, "-c", program, str(tmp_path)], processes=3)
    assert failed.returncode == 3
    assert "[1] process 1 of 3" in failed.stdout and "[2] process 2 of 3" in failed.stdout
    assert "process 1 exited with status 3; stopping the others" in failed.stderr
    slow = multiprocess.run_local([sys.executable, "-c", "import time; time.sleep(120)"], timeout=1)
    assert slow.returncode == launch.TIMED_OUT and "timeout after 1 s" in slow.stderr
    assert time.monotonic() - start < 30
    exit_4 = [sys.executable, "-c", "import sys; sys.exit(4)"]
    assert launch.main(["--processes", "2", "--", *exit_4]) == 4
