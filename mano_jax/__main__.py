"""Command line: ``python -m mano_jax {data,train,eval} ...``.

``python -m mano_jax train`` with no arguments is the library's main job:
generate (or reuse) the 32x32 Darcy data set and train the ``darcy-tiny`` MANO
operator on it, writing everything under ``runs/``. ``--data FILE`` trains on the
user's own fields (``.npz`` or ``.mat``, see ``mano_jax.field_data``);
``--task classify`` trains an image classifier instead.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Sequence

from mano_jax import darcy
from mano_jax.classify_job import ClassifyJobConfig, evaluate_classifier_run
from mano_jax.darcy.cli import data_command
from mano_jax.darcy_job import TRANSFERS, DarcyJobConfig, evaluate_darcy_run
from miles_cli import UsageError, check_config, dispatch, option, run_command
from training import runs
from training.harness import train_and_evaluate

TASKS = {"darcy": DarcyJobConfig, "classify": ClassifyJobConfig}
DESCRIPTIONS = {
    "darcy": "Train an operator on Darcy flow (coefficient a -> solution u); "
    "--task classify trains an image classifier.",
    "classify": "Train an image classifier (Swin-MANO, Swin or ViT) on digits or a TFDS "
    "image data set.",
}


def _summary(config, results: dict, run_dir: str) -> str:
    if config.task == "darcy":
        figure = (
            f"test relative L2 {results['test_relative_l2']:.4f}, "
            f"relative MSE {results['test_relative_mse']:.4g}"
        )
    else:
        figure = f"test accuracy {results['test_accuracy']:.4f}"
    return (
        f"{config.task} {config.model}/{config.preset}: {figure} "
        f"({results['parameters']:,} parameters, {results['train_seconds']:.0f} s); "
        f"run directory {run_dir}"
    )


def train_command(argv: Sequence[str]) -> int:
    """``train [--task darcy|classify] [options of the task]``."""
    pre = argparse.ArgumentParser(add_help=False)
    pre.add_argument("--task", choices=sorted(TASKS), default="darcy")
    known, rest = pre.parse_known_args(argv)

    def run(config, run_dir: str, progress: bool) -> str:
        results = train_and_evaluate(config, run_dir, progress=progress)
        return _summary(config, results, run_dir)

    return run_command(
        TASKS[known.task],
        run,
        rest,
        prog=f"python -m mano_jax train --task {known.task}",
        description=DESCRIPTIONS[known.task],
        run_dir=lambda config: config.default_run_dir(),
        progress=True,
    )


@dataclasses.dataclass(frozen=True)
class EvalOptions:
    """How to evaluate a trained run.

    Attributes:
      resolution: Darcy test resolution (default: the trained one; another one is a
        zero-shot test).
      data_dir: TFDS data directory (default: the one of the task).
      transfer: how a Darcy model meets another resolution: resample (on the training
        grid, interpolated), native (as trained), fixed-levels or scaled-window (windows
        scaled with the grid); see mano_jax.darcy_job.evaluate_darcy_run.
    """

    resolution: int | None = option(None, choices=darcy.SUPPORTED_RESOLUTIONS)
    data_dir: str | None = option(None)
    transfer: str = option("resample", choices=TRANSFERS)

    def __post_init__(self) -> None:
        check_config(self)


def eval_command(argv: Sequence[str]) -> int:
    """``eval --run-dir DIR [--resolution S]``: reload a run, print its test results."""

    def run(options: EvalOptions, run_dir: str) -> str:
        if runs.load_run_config(run_dir).get("task") == "darcy":
            results = evaluate_darcy_run(
                run_dir, options.resolution, data_dir=options.data_dir, transfer=options.transfer
            )
        elif options.resolution is not None:
            raise UsageError("--resolution only applies to Darcy runs")
        else:
            results = evaluate_classifier_run(run_dir, data_dir=options.data_dir)
        return json.dumps(results, indent=2)

    return run_command(
        EvalOptions,
        run,
        argv,
        prog="python -m mano_jax eval",
        description="Reload a run and evaluate it on its test split; Darcy runs can be "
        "evaluated zero-shot at another resolution.",
        run_dir=True,
    )


COMMANDS = {
    "data": functools.partial(data_command, prog="python -m mano_jax data"),
    "train": train_command,
    "eval": eval_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("python -m mano_jax", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
