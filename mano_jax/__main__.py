"""Command line: ``python -m mano_jax {data,train,eval} ...``.

``python -m mano_jax train`` with no arguments is the library's main job:
generate (or reuse) the 32x32 Darcy data set and train the ``darcy-tiny`` MANO
operator on it, writing everything under ``runs/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import json
import sys
from collections.abc import Sequence

from mano_jax.classify_job import ClassifyJobConfig, evaluate_classifier_run, train_classifier
from mano_jax.darcy.cli import data_command
from mano_jax.darcy_job import DarcyJobConfig, evaluate_darcy_run, train_darcy
from training import runs
from training.cli import int_at_least, positive_float, run_subcommand

TASKS = {"darcy": DarcyJobConfig, "classify": ClassifyJobConfig}
DATA_DIR_HELP = (
    "TFDS data directory (default: $MILES_JAX_DATA_DIR or ~/.cache/miles_jax/tensorflow_datasets "
    "for Darcy, TFDS's own default for image data sets)"
)


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mano_jax train",
        description="Train an operator on Darcy flow (coefficient a -> solution u), or an "
        "image classifier. Unset options take the task's defaults.",
    )
    parser.add_argument("--task", choices=sorted(TASKS), default="darcy")
    parser.add_argument("--model", help="mano (default), fno (darcy only), swin or vit")
    parser.add_argument("--preset", help="darcy: darcy-tiny, darcy-paper; classify: tiny, ...")
    group = parser.add_argument_group("darcy")
    group.add_argument("--resolution", type=int)
    group.add_argument("--train-size", type=int_at_least(1))
    group.add_argument("--test-size", type=int_at_least(1))
    group.add_argument("--data-seed", type=int_at_least(0))
    group = parser.add_argument_group("classify")
    group.add_argument("--dataset", help="digits (offline, default) or a TFDS image data set")
    group.add_argument("--image-size", type=int_at_least(8))
    group.add_argument("--test-split", help="TFDS split to evaluate on (default: test)")
    group.add_argument(
        "--download", action="store_true", help="let TFDS download and prepare the data set"
    )
    group = parser.add_argument_group("training")
    group.add_argument("--steps", dest="num_steps", type=int_at_least(1))
    group.add_argument("--batch-size", type=int_at_least(1))
    group.add_argument("--learning-rate", type=positive_float)
    group.add_argument("--seed", type=int_at_least(0))
    group.add_argument("--eval-every", type=int_at_least(1))
    group.add_argument("--checkpoint-every", type=int_at_least(1))
    parser.add_argument(
        "--run-dir",
        help="where checkpoints, metrics and figures go (default: runs/<task>-<model>-<preset>"
        "...); an existing run directory of the same run is resumed",
    )
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def _default_run_dir(config) -> str:
    if config.task == "darcy":
        return f"runs/darcy-{config.model}-{config.preset}-r{config.resolution}"
    return f"runs/{config.dataset}-{config.model}-{config.preset}"


def train_command(argv: Sequence[str]) -> int:
    parser = _train_parser()
    args = vars(parser.parse_args(argv))
    config_type = TASKS[args["task"]]
    fields = {f.name for f in dataclasses.fields(config_type)}
    given = {k: v for k, v in args.items() if v is not None and v is not False}
    foreign = sorted(
        k
        for k in given
        if k not in fields and k not in ("run_dir", "data_dir", "no_progress", "download")
    )
    if foreign:
        flags = ", ".join("--" + k.replace("_", "-") for k in foreign)
        parser.error(f"{flags} do(es) not apply to --task {args['task']}")
    if args["download"] and args["task"] != "classify":
        parser.error("--download only applies to --task classify")
    try:
        config = config_type(**{k: v for k, v in given.items() if k in fields})
        run_dir = args["run_dir"] or _default_run_dir(config)
        progress = not args["no_progress"]
        if config.task == "darcy":
            results = train_darcy(config, run_dir, data_dir=args["data_dir"], progress=progress)
            summary = f"test relative L2 {results['test_relative_l2']:.4f}"
        else:
            results = train_classifier(
                config,
                run_dir,
                data_dir=args["data_dir"],
                download=args["download"],
                progress=progress,
            )
            summary = f"test accuracy {results['test_accuracy']:.4f}"
    except ValueError as error:
        parser.error(str(error))
    print(
        f"{config.task} {config.model}/{config.preset}: {summary} "
        f"({results['parameters']:,} parameters, {results['train_seconds']:.0f} s); "
        f"run directory {run_dir}"
    )
    return 0


def eval_command(argv: Sequence[str]) -> int:
    parser = argparse.ArgumentParser(
        prog="python -m mano_jax eval",
        description="Reload a run and evaluate it on its test split; Darcy runs can be "
        "evaluated zero-shot at another resolution.",
    )
    parser.add_argument("--run", required=True, help="run directory written by train")
    parser.add_argument("--resolution", type=int, help="Darcy test resolution (default: trained)")
    parser.add_argument("--data-dir", help=DATA_DIR_HELP)
    args = parser.parse_args(argv)
    try:
        if runs.load_run_config(args.run).get("task") == "darcy":
            results = evaluate_darcy_run(args.run, args.resolution, data_dir=args.data_dir)
        else:
            if args.resolution is not None:
                parser.error("--resolution only applies to Darcy runs")
            results = evaluate_classifier_run(args.run, data_dir=args.data_dir)
    except ValueError as error:
        parser.error(str(error))
    print(json.dumps(results, indent=2))
    return 0


COMMANDS = {
    "data": functools.partial(data_command, prog="python -m mano_jax data"),
    "train": train_command,
    "eval": eval_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("python -m mano_jax", COMMANDS, None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
