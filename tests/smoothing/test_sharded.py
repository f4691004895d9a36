"""The sampler sharded over devices draws the noise of the one-device run: identical counts.

``sharded_worker.py`` runs in a subprocess with 8 simulated CPU devices and as a
2-process x 2-device ``jax.distributed`` run (``training.launch``), both started together
by the module's fixture; this process (1 device) computes the same cases as reference.
"""

import importlib.util
import json
import os
import subprocess
import sys
import threading
from pathlib import Path

import multiprocess
import numpy as np
import pytest

WORKER = Path(__file__).with_name("sharded_worker.py")


def _worker_module():
    spec = importlib.util.spec_from_file_location("sharded_worker", WORKER)
    module = importlib.util.module_from_spec(spec)
    spec.loader.exec_module(module)
    return module


@pytest.fixture(scope="module")
def runs(tmp_path_factory):
    """Both runs of the worker, started at once; yields their output prefixes and handles."""
    root = tmp_path_factory.mktemp("sharded")
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count=8"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
    argv = [sys.executable, str(WORKER), str(root / "eight")]
    eight = subprocess.Popen(argv, env=env, stderr=subprocess.PIPE, text=True)
    two = {}
    launcher = threading.Thread(
        target=lambda: two.update(
            run=multiprocess.run_local(["python", str(WORKER), str(root / "two")], timeout=150)
        )
    )
    launcher.start()
    yield {"root": root, "eight": eight, "launcher": launcher, "two": two}
    if eight.poll() is None:
        eight.kill()
    eight.wait()
    launcher.join()


@pytest.fixture(scope="module")
def reference(runs):
    """The worker's cases on this process's one device (while the runs go on)."""
    worker = _worker_module()
    return worker.cases(*worker.inputs(), None)


def _assert_same(result, reference):
    for name, stats in reference.items():
        assert result["cases"][name]["votes"] == [s.votes.tolist() for s in stats], name
        expected = np.stack([s.mean for s in stats])
        mean = np.reshape(result["cases"][name]["mean"], expected.shape)
        np.testing.assert_allclose(mean, expected, rtol=0, atol=1e-6)
    n = [s.num for s in reference["estimation"]]
    assert n == [2350] * 3 and np.sum(result["cases"]["estimation"]["votes"]) == 3 * 2350


def test_eight_devices_give_the_one_device_counts(runs, reference):
    proc = runs["eight"]
    assert proc.wait(timeout=300) == 0, proc.stderr.read()[-3000:]
    result = json.loads((runs["root"] / "eight.0.json").read_text())
    assert (result["devices"], result["processes"]) == (8, 1)
    _assert_same(result, reference)


def test_two_processes_give_the_one_device_counts(runs, reference):
    runs["launcher"].join()
    run = runs["two"]["run"]
    assert run.returncode == 0, run.output[-3000:]
    for process in range(2):
        result = json.loads((runs["root"] / f"two.{process}.json").read_text())
        assert (result["devices"], result["processes"]) == (4, 2)
        _assert_same(result, reference)
