"""Multi-process runs: joining a ``jax.distributed`` job and checking that its processes agree.

A run on several hosts starts one process per host (or per accelerator group) and
every process calls ``initialize_distributed()`` before anything else touches JAX.
The processes find each other in one of two ways:

- the environment variables ``JAX_COORDINATOR_ADDRESS`` (``host:port`` of process 0),
  ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` (what ``python -m training.launch``
  sets for local runs, and what a job script sets by hand on any cluster);
- a cluster that ``jax.distributed`` detects by itself: SLURM (``SLURM_JOB_ID``,
  ``SLURM_NTASKS``, ``SLURM_PROCID``, ``SLURM_STEP_NODELIST``), Open MPI
  (``OMPI_MCA_orte_hnp_uri``), Cloud TPU VMs and GKE TPU pods (``TPU_WORKER_ID``,
  ``TPU_WORKER_HOSTNAMES``), Kubernetes indexed jobs (``JOB_COMPLETION_INDEX``).

On the CPU, collectives between processes go through gloo, which must be chosen
before JAX creates its CPU backend; ``initialize_distributed`` does it.
"""

from __future__ import annotations

import hashlib
import json
import os
import socket
import sys
import time
from collections.abc import Callable
from typing import Any, TypeVar

import jax
import numpy as np

COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"
NUM_PROCESSES_ENV = "JAX_NUM_PROCESSES"
PROCESS_ID_ENV = "JAX_PROCESS_ID"
TIMEOUT_ENV = "MILES_DISTRIBUTED_TIMEOUT"
DEFAULT_TIMEOUT_S = 300
T = TypeVar("T")


def _env_int(name: str, value: str | None) -> int:
    if value is None:
        raise ValueError(
            f"{COORDINATOR_ENV} is set, so {name} must be set too (an integer), but it is not"
        )
    try:
        return int(value)
    except ValueError:
        raise ValueError(f"{name} must be an integer, got {value!r}") from None


def _split_address(address: str) -> tuple[str, int]:
    host, _, port = address.rpartition(":")
    if not host or not port.isdigit() or not 0 < int(port) < 65536:
        raise ValueError(f"{COORDINATOR_ENV} must be 'host:port', got {address!r}")
    return host.strip("[]"), int(port)


def _detected_cluster() -> str | None:
    """The name of the cluster environment ``jax.distributed`` would detect, if any."""
    from jax._src.clusters import ClusterEnv  # jax's own detection; no public name for it

    for cluster in ClusterEnv._cluster_types:
        if not cluster.opt_in_only_method and cluster.is_env_present():
            return cluster.__name__
    return None


def _wait_for_coordinator(host: str, port: int, timeout_s: float) -> None:
    """Return once ``host:port`` accepts a TCP connection; ``TimeoutError`` after ``timeout_s``.

    ``jax.distributed`` aborts the whole process (no Python exception) when the
    coordinator cannot be reached, so the other processes check first.
    """
    deadline = time.monotonic() + timeout_s
    while True:
        try:
            with socket.create_connection((host, port), timeout=1.0):
                return
        except OSError as error:
            if time.monotonic() >= deadline:
                raise TimeoutError(
                    f"could not reach the coordinator {host}:{port} ({COORDINATOR_ENV}) within "
                    f"{timeout_s:g} s: {error}; is process 0 running, and is the address right?"
                ) from None
            time.sleep(0.2)


def initialize_distributed(
    *,
    coordinator_address: str | None = None,
    num_processes: int | None = None,
    process_id: int | None = None,
    timeout_s: float | None = None,
) -> bool:
    """Join a multi-process run when one is configured; returns whether one was joined.

    Arguments default to the environment variables ``JAX_COORDINATOR_ADDRESS``,
    ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID``; without a coordinator address,
    a cluster that ``jax.distributed`` detects (module docstring) is joined the
    way it detects; with neither, this is a single-process run and nothing
    happens. Calling it again in a process that already joined does nothing.
    Once joined, an uncaught exception ends the process at once with status 1
    (after printing its traceback), so that the launcher or the cluster stops
    the others instead of every process waiting for the failed one.

    Args:
      coordinator_address: ``host:port`` of process 0.
      num_processes: how many processes the run has.
      process_id: this process's index in ``[0, num_processes)``.
      timeout_s: how long to wait for the coordinator and the other processes
        (default ``MILES_DISTRIBUTED_TIMEOUT`` or 300 s). A process other than 0
        that cannot reach the coordinator in time raises ``TimeoutError`` naming
        the address; if the coordinator is reachable but a process never joins,
        ``jax.distributed`` ends every process after the timeout.

    Raises:
      ValueError: a variable is missing or malformed.
      TimeoutError: the coordinator did not answer within ``timeout_s``.
    """
    if jax.distributed.is_initialized():
        return True
    address = coordinator_address or os.environ.get(COORDINATOR_ENV)
    if timeout_s is None:
        timeout_s = float(os.environ.get(TIMEOUT_ENV, DEFAULT_TIMEOUT_S))
    if not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0 seconds, got {timeout_s}")
    if address is None:
        if _detected_cluster() is None:
            return False
        _use_cpu_collectives()
        jax.distributed.initialize(initialization_timeout=int(np.ceil(timeout_s)))
        _exit_at_once_on_error()
        return True

    host, port = _split_address(address)
    if num_processes is None:
        num_processes = _env_int(NUM_PROCESSES_ENV, os.environ.get(NUM_PROCESSES_ENV))
    if process_id is None:
        process_id = _env_int(PROCESS_ID_ENV, os.environ.get(PROCESS_ID_ENV))
    if num_processes < 1:
        raise ValueError(f"num_processes ({NUM_PROCESSES_ENV}) must be >= 1, got {num_processes}")
    if not 0 <= process_id < num_processes:
        raise ValueError(
            f"process_id ({PROCESS_ID_ENV}) must be in [0, {num_processes}), got {process_id}"
        )
    _use_cpu_collectives()
    start = time.monotonic()
    if process_id != 0:
        _wait_for_coordinator(host, port, timeout_s)
    remaining = max(1, int(np.ceil(timeout_s - (time.monotonic() - start))))
    jax.distributed.initialize(
        coordinator_address=f"{host}:{port}" if ":" not in host else f"[{host}]:{port}",
        num_processes=num_processes,
        process_id=process_id,
        initialization_timeout=remaining,
    )
    _exit_at_once_on_error()
    return True


def _exit_at_once_on_error() -> None:
    """Make an uncaught exception end this process immediately (status 1).

    Otherwise the process would wait at exit in ``jax.distributed``'s shutdown
    barrier for processes that are themselves waiting for it in a collective,
    and the run would hang until a timeout instead of failing where it failed.
    """
    previous = sys.excepthook

    def hook(kind, value, traceback):
        previous(kind, value, traceback)
        sys.stdout.flush()
        sys.stderr.flush()
        os._exit(1)

    sys.excepthook = hook


def _use_cpu_collectives() -> None:
    """Let CPU devices of different processes talk (gloo), unless the user chose otherwise."""
    if jax.config.jax_cpu_collectives_implementation in (None, "", "none"):
        jax.config.update("jax_cpu_collectives_implementation", "gloo")


def is_primary() -> bool:
    """Whether this process writes the run's shared files (logs, plots, results): process 0."""
    return jax.process_index() == 0


def wait_for_all(name: str) -> None:
    """A barrier: return once every process has reached the call with this ``name``."""
    if jax.process_count() > 1:
        from jax.experimental import multihost_utils

        multihost_utils.sync_global_devices(name)


def primary_first(fn: Callable[..., T], *args: Any, **kwargs: Any) -> T:
    """``fn(*args, **kwargs)`` on process 0, then on the others once it has returned.

    For preparing shared files (a generated data set): process 0 writes them,
    and the others, started after it, find them ready and only read. In a
    single-process run it is a plain call.
    """
    if is_primary():
        result = fn(*args, **kwargs)
    wait_for_all(f"primary_first {getattr(fn, '__qualname__', fn)}")
    if not is_primary():
        result = fn(*args, **kwargs)
    return result


def check_processes_agree(value: Any, what: str) -> None:
    """Raise ``ValueError`` on every process unless all processes pass the same ``value``.

    ``value`` is anything JSON can write (a configuration, batch shapes); only a
    digest travels between processes. ``what`` names it in the error. A no-op in
    single-process runs.
    """
    if jax.process_count() == 1:
        return
    from jax.experimental import multihost_utils

    text = json.dumps(value, sort_keys=True, default=repr)
    digest = np.frombuffer(hashlib.sha256(text.encode()).digest()[:8], np.int32)
    digests = np.asarray(multihost_utils.process_allgather(digest))
    differing = [p for p in range(len(digests)) if not np.array_equal(digests[p], digests[0])]
    if differing:
        raise ValueError(
            f"the processes disagree on the {what}: process(es) {differing} differ from "
            f"process 0 (this is process {jax.process_index()}, with {text[:500]}); every "
            "process of a run must be started with the same settings"
        )
