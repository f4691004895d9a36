"""Start a multi-process run on this machine: ``python -m training.launch -- COMMAND ...``.

Starts ``--processes`` copies of ``COMMAND``, each with ``JAX_COORDINATOR_ADDRESS``
(a free port on 127.0.0.1), ``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` set, and
with ``--devices-per-process`` simulated CPU devices each; every command of the
library calls ``training.initialize_distributed()``, which reads them. Output lines
are prefixed with the process index. When one process fails, the others are
stopped (a run whose processes cannot all take part cannot go on) and the launcher
exits with the failed process's status; ``--timeout`` bounds the whole run.

This is for testing the multi-host code paths on one machine. On a real cluster
the scheduler starts the processes; see ``training.distributed`` for the variables
``jax.distributed`` reads there.

Example::

    python -m training.launch --processes 2 --devices-per-process 2 -- \\
        python -m mano_jax train --preset darcy-tiny --num-steps 20
"""

from __future__ import annotations

import argparse
import contextlib
import os
import signal
import socket
import subprocess
import sys
import threading
import time
from collections.abc import Sequence

from training.distributed import COORDINATOR_ENV, NUM_PROCESSES_ENV, PROCESS_ID_ENV, TIMEOUT_ENV

DEVICE_COUNT_FLAG = "--xla_force_host_platform_device_count"
TIMED_OUT = 124
STOP_GRACE_S = 5.0


def free_port() -> int:
    """A TCP port on 127.0.0.1 that nothing listens on right now."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind(("127.0.0.1", 0))
        return s.getsockname()[1]


def process_env(
    index: int,
    processes: int,
    port: int,
    devices_per_process: int | None,
    init_timeout_s: float | None,
    base: dict[str, str] | None = None,
) -> dict[str, str]:
    """The environment of process ``index``: ``base`` (default ``os.environ``) plus the
    variables of the run. With ``processes == 1`` no coordinator is set (a plain
    single-process run, possibly with simulated devices)."""
    env = dict(os.environ if base is None else base)
    if processes > 1:
        env[COORDINATOR_ENV] = f"127.0.0.1:{port}"
        env[NUM_PROCESSES_ENV] = str(processes)
        env[PROCESS_ID_ENV] = str(index)
    if init_timeout_s is not None:
        env[TIMEOUT_ENV] = f"{init_timeout_s:g}"
    if devices_per_process is not None:
        flags = [f for f in env.get("XLA_FLAGS", "").split() if not f.startswith(DEVICE_COUNT_FLAG)]
        env["XLA_FLAGS"] = " ".join([*flags, f"{DEVICE_COUNT_FLAG}={devices_per_process}"])
        env["JAX_PLATFORMS"] = "cpu"
    env["PYTHONUNBUFFERED"] = "1"
    return env


def _relay(stream, prefix: str, out) -> None:
    for line in iter(stream.readline, ""):
        out.write(prefix + line)
        out.flush()
    stream.close()


def _stop(procs: list[subprocess.Popen]) -> None:
    """SIGTERM every process group still running, SIGKILL after a grace period."""
    for sig in (signal.SIGTERM, signal.SIGKILL):
        alive = [p for p in procs if p.poll() is None]
        for p in alive:
            with contextlib.suppress(ProcessLookupError):
                os.killpg(p.pid, sig)
        deadline = time.monotonic() + STOP_GRACE_S
        while any(p.poll() is None for p in alive) and time.monotonic() < deadline:
            time.sleep(0.05)


def launch(
    command: Sequence[str],
    *,
    processes: int = 2,
    devices_per_process: int | None = None,
    port: int | None = None,
    timeout_s: float | None = None,
    init_timeout_s: float | None = None,
    stdout=None,
    stderr=None,
) -> int:
    """Run ``command`` as ``processes`` local processes of one run; returns an exit status.

    0 when every process succeeded; otherwise the status of the first process that
    failed (negative: killed by that signal), after the others were stopped; 124
    when ``timeout_s`` ran out (all stopped). Output goes to ``stdout``/``stderr``
    (default the launcher's), each line prefixed with ``[i] ``.
    """
    if not command:
        raise ValueError("command must name a program to run, got nothing")
    if not isinstance(processes, int) or processes < 1:
        raise ValueError(f"processes must be an integer >= 1, got {processes!r}")
    if devices_per_process is not None and devices_per_process < 1:
        raise ValueError(f"devices_per_process must be >= 1, got {devices_per_process}")
    if timeout_s is not None and not timeout_s > 0:
        raise ValueError(f"timeout_s must be > 0, got {timeout_s}")
    stdout = sys.stdout if stdout is None else stdout
    stderr = sys.stderr if stderr is None else stderr
    port = free_port() if port is None else port
    procs, relays = [], []
    for index in range(processes):
        env = process_env(index, processes, port, devices_per_process, init_timeout_s)
        proc = subprocess.Popen(
            list(command),
            env=env,
            stdout=subprocess.PIPE,
            stderr=subprocess.PIPE,
            text=True,
            start_new_session=True,  # its own process group, stopped as a whole
        )
        procs.append(proc)
        for stream, out in ((proc.stdout, stdout), (proc.stderr, stderr)):
            relay = threading.Thread(target=_relay, args=(stream, f"[{index}] ", out), daemon=True)
            relay.start()
            relays.append(relay)
    deadline = None if timeout_s is None else time.monotonic() + timeout_s
    status = 0
    try:
        while True:
            codes = [p.poll() for p in procs]
            failed = [(i, c) for i, c in enumerate(codes) if c not in (None, 0)]
            if failed:
                index, status = failed[0]
                stderr.write(
                    f"[launch] process {index} exited with status {status}; stopping the others\n"
                )
                break
            if all(c == 0 for c in codes):
                break
            if deadline is not None and time.monotonic() > deadline:
                stderr.write(f"[launch] timeout after {timeout_s:g} s; stopping every process\n")
                status = TIMED_OUT
                break
            time.sleep(0.05)
    finally:
        _stop(procs)
        for relay in relays:
            relay.join(timeout=STOP_GRACE_S)
    return status


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if "--" in argv:
        split = argv.index("--")
        argv, command = argv[:split], argv[split + 1 :]
    else:
        command = []
    parser = argparse.ArgumentParser(
        prog="python -m training.launch",
        description="Run COMMAND as several local processes of one jax.distributed run.",
        usage="%(prog)s [options] -- COMMAND [ARG ...]",
    )
    parser.add_argument("--processes", type=int, default=2, help="processes (default 2)")
    parser.add_argument(
        "--devices-per-process",
        type=int,
        default=None,
        help="simulated CPU devices per process (default: leave the platform alone)",
    )
    parser.add_argument("--port", type=int, default=None, help="coordinator port (default: free)")
    parser.add_argument("--timeout", type=float, default=None, help="seconds for the whole run")
    parser.add_argument(
        "--init-timeout",
        type=float,
        default=None,
        help="seconds to wait for the coordinator and the other processes (default 300)",
    )
    args = parser.parse_args(argv)
    if not command:
        parser.error("give the command to run after --, e.g. -- python -m mano_jax train")
    try:
        status = launch(
            command,
            processes=args.processes,
            devices_per_process=args.devices_per_process,
            port=args.port,
            timeout_s=args.timeout,
            init_timeout_s=args.init_timeout,
        )
    except ValueError as error:
        parser.error(str(error))
    return 128 - status if status < 0 else status  # the shell's convention for signals


if __name__ == "__main__":
    sys.exit(main())
