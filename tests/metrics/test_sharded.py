"""``precision_recall`` / ``ReferenceSet`` on every device of a mesh against one device.

``sharded_worker.py`` computes each case both ways in one process: with 8 simulated
devices (a subprocess; this process keeps its one device), and as 2 processes x 2
devices joined by ``jax.distributed`` (``training.launch``). The claim checked: the
results are bitwise those of one device, in every process; and they take the dense
float64 reference's decisions.
"""

import os
import subprocess
import sys
import threading
from pathlib import Path

import multiprocess
import numpy as np
import pytest

import metrics

WORKER = str(Path(__file__).with_name("sharded_worker.py"))
FIELDS = metrics.PRDC._fields
CASES = {"uneven": 3, "tiny": 3}  # name: k (sharded_worker.CASES)


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both runs, started together: 8 devices in one process (every case), and 2
    processes x 2 devices (the first case)."""
    eight, two = tmp_path_factory.mktemp("eight"), tmp_path_factory.mktemp("two")
    outcome = {}

    def two_processes():
        argv = ["python", WORKER, str(two), "--quick"]
        outcome["two"] = multiprocess.run_local(argv, timeout=240)

    thread = threading.Thread(target=two_processes)
    thread.start()
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = {**os.environ, "XLA_FLAGS": flags, "JAX_PLATFORMS": "cpu"}
    command = [sys.executable, WORKER, str(eight)]
    outcome["eight"] = subprocess.run(command, env=env, capture_output=True, text=True, timeout=240)
    thread.join()
    return {"eight_dir": eight, "two_dir": two, **outcome}


def load(path):
    with np.load(path) as f:
        return dict(f)


def assert_bitwise_equal(a, b, what):
    assert a.dtype == b.dtype and a.shape == b.shape, what
    assert a.tobytes() == b.tobytes(), what


def test_eight_devices_give_bitwise_the_one_device_results(runs):
    assert runs["eight"].returncode == 0, runs["eight"].stderr[-3000:]
    assert "1 processes, 8 devices" in runs["eight"].stdout
    results = load(runs["eight_dir"] / "process_0.npz")
    for name in CASES:
        for strict in (True, False):
            for field in FIELDS:
                key = f"{name}/{strict}/{{}}/{field}"
                one, mesh = results[key.format("one")], results[key.format("mesh")]
                assert_bitwise_equal(one, mesh, (name, strict, field))


def test_sharded_results_take_the_dense_reference_decisions(runs):
    """An independent check of what both agree on: the float64 full-matrix reference."""
    results = load(runs["eight_dir"] / "process_0.npz")
    for name, k in CASES.items():
        x, y = results[f"{name}/x"], results[f"{name}/y"]
        assert (results[f"{name}/True/mesh/reference_radii"] == 0).any()  # duplicates
        for strict in (True, False):
            dense = metrics.precision_recall_reference(x, y, k, strict=strict)
            for field in ("precision", "recall", "density", "coverage"):
                ours = results[f"{name}/{strict}/mesh/{field}"]
                assert abs(ours - getattr(dense, field)) < 1e-6, (name, strict, field)
            radii = results[f"{name}/{strict}/mesh/reference_radii"]
            np.testing.assert_allclose(radii, dense.reference_radii, rtol=1e-5, atol=1e-6)


def test_two_processes_give_bitwise_the_one_device_results(runs):
    run = runs["two"]
    assert run.returncode == 0, run.output[-3000:]
    for index in (0, 1):
        assert f"[{index}] 2 processes, 4 devices" in run.stdout
    first, second = (load(runs["two_dir"] / f"process_{i}.npz") for i in (0, 1))
    assert first.keys() == second.keys()
    for field in FIELDS:
        one = first[f"uneven/True/one/{field}"]
        for results in (first, second):  # every process holds the full results
            assert_bitwise_equal(one, results[f"uneven/True/mesh/{field}"], field)
