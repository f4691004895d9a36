"""One process of the multi-process tests, started by ``training.launch``.

``python multiprocess_worker.py fit WORKDIR OUT.npz [--sleep S]``: the regression job
of ``regression_job.py`` (resumed if ``WORKDIR`` holds a checkpoint); process 0
saves the final parameters to ``OUT.npz``. Each process writes its pid to
``WORKDIR.pid<i>`` first, so a test can kill one of them.

``python multiprocess_worker.py scenario OUTDIR``: in one run, what the tests check
about a multi-process run, each process writing ``OUTDIR/process<i>.json``:
the example ids of its share of the first batches, the errors raised when the
processes disagree, and every file it opened for writing (an audit hook), after
training the regression job and the harness's linear job.
"""

import argparse
import json
import os
import sys
from pathlib import Path

import jax
import numpy as np

import training


def _save_params(result, out):
    if training.is_primary():
        leaves = jax.tree.leaves(jax.device_get(result.state.params))
        np.savez(out, *leaves, devices=jax.device_count(), processes=jax.process_count())


def fit(args):
    import regression_job

    Path(f"{args.workdir}.pid{jax.process_index()}").write_text(str(os.getpid()))
    result = regression_job.run(args.workdir, sleep=args.sleep)
    _save_params(result, args.out)


def _error_of(fn):
    try:
        fn()
    except ValueError as error:
        return str(error)
    return None


def scenario(args):
    import regression_job
    from test_harness import LinearJob

    out = Path(args.outdir)
    opened = []

    def audit(event, event_args):
        if event == "open" and isinstance(event_args[0], str | os.PathLike):
            mode = event_args[1] if isinstance(event_args[1], str) else ""
            if any(c in mode for c in "wax+"):
                opened.append(os.fspath(event_args[0]))

    sys.addaudithook(audit)
    result = regression_job.run(out / "fit")
    _save_params(result, out / "fit.npz")

    ids = training.ArraySource(i=np.arange(40))
    loader = iter(training.make_loader(ids, 8, seed=5))
    batches = [next(loader)["i"].tolist() for _ in range(6)]

    training.train_and_evaluate(LinearJob(), out / "harness", progress=False)
    p = jax.process_index()
    mesh = training.data_mesh()
    errors = {
        "config": _error_of(
            lambda: training.train_and_evaluate(LinearJob(seed=p), out / "other", progress=False)
        ),
        # 3 rows per process, 6 in all, for 4 devices
        "batch": _error_of(lambda: training.shard_batch({"x": np.zeros((3, 2))}, mesh)),
        "loader": _error_of(lambda: training.make_loader(ids, 7)),
    }
    record = {
        "process": p,
        "processes": jax.process_count(),
        "devices": jax.device_count(),
        "batches": batches,
        "errors": errors,
        "opened": opened,
    }
    (out / f"process{p}.json").write_text(json.dumps(record))


def main():
    training.initialize_distributed()
    parser = argparse.ArgumentParser()
    commands = parser.add_subparsers(dest="command", required=True)
    run = commands.add_parser("fit")
    run.add_argument("workdir")
    run.add_argument("out")
    run.add_argument("--sleep", type=float, default=0.0)
    both = commands.add_parser("scenario")
    both.add_argument("outdir")
    args = parser.parse_args()
    {"fit": fit, "scenario": scenario}[args.command](args)


if __name__ == "__main__":
    main()
