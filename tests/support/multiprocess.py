"""Run a test program as several local processes of one ``jax.distributed`` run.

``run_local(argv)`` starts ``argv`` through ``training.launch`` (2 processes with 2
simulated CPU devices each by default), bounded in time, and returns the launcher's
exit status with the processes' output; each process's lines start with ``[i] ``.
The programs call ``training.initialize_distributed()`` first.
"""

from __future__ import annotations

import dataclasses
import io
import sys

from training.launch import launch


@dataclasses.dataclass
class LocalRun:
    returncode: int
    stdout: str
    stderr: str

    @property
    def output(self) -> str:
        return self.stdout + self.stderr


def run_local(
    argv: list[str],
    *,
    processes: int = 2,
    devices_per_process: int = 2,
    timeout: float = 180,
    init_timeout: float = 60,
) -> LocalRun:
    """Run ``argv`` (``python`` is this interpreter when ``argv[0] == "python"``)."""
    if argv[0] == "python":
        argv = [sys.executable, *argv[1:]]
    out, err = io.StringIO(), io.StringIO()
    status = launch(
        argv,
        processes=processes,
        devices_per_process=devices_per_process,
        timeout_s=timeout,
        init_timeout_s=init_timeout,
        stdout=out,
        stderr=err,
    )
    return LocalRun(status, out.getvalue(), err.getvalue())
