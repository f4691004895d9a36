"""Command line: ``python -m mano_jax {data,train} ...``.

``python -m mano_jax train`` with no arguments is the library's main job:
generate (or reuse) the 32x32 Darcy data set and train the default operator on
it, writing everything under ``runs/``.
"""

from __future__ import annotations

import argparse
import dataclasses
import functools
import sys
from collections.abc import Sequence

from mano_jax.darcy.cli import data_command
from mano_jax.darcy_job import MODEL_PRESETS, DarcyJobConfig, train_darcy
from training.cli import int_at_least, positive_float

_DEFAULTS = DarcyJobConfig()


def _train_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="python -m mano_jax train",
        description="Train an operator on Darcy flow (coefficient a -> solution u).",
    )
    parser.add_argument("--model", choices=sorted(MODEL_PRESETS), default=_DEFAULTS.model)
    parser.add_argument(
        "--preset", default=_DEFAULTS.preset, help="model preset (default: %(default)s)"
    )
    parser.add_argument("--resolution", type=int, default=_DEFAULTS.resolution)
    for name in ("train_size", "test_size", "batch_size", "num_steps"):
        flag = "--" + name.replace("_", "-").replace("num-", "")
        parser.add_argument(flag, dest=name, type=int_at_least(1), default=getattr(_DEFAULTS, name))
    parser.add_argument("--data-seed", type=int_at_least(0), default=_DEFAULTS.data_seed)
    parser.add_argument("--seed", type=int_at_least(0), default=_DEFAULTS.seed)
    parser.add_argument("--learning-rate", type=positive_float, default=_DEFAULTS.learning_rate)
    parser.add_argument("--eval-every", type=int_at_least(1), default=_DEFAULTS.eval_every)
    parser.add_argument(
        "--checkpoint-every", type=int_at_least(1), default=_DEFAULTS.checkpoint_every
    )
    parser.add_argument(
        "--run-dir",
        default=None,
        help="where checkpoints, metrics and figures go (default: runs/darcy-<model>-<preset>"
        "-r<resolution>); an existing run directory of the same run is resumed",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="TFDS data directory (default: $MILES_JAX_DATA_DIR or "
        "~/.cache/miles_jax/tensorflow_datasets)",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def train_command(argv: Sequence[str]) -> int:
    parser = _train_parser()
    args = vars(parser.parse_args(argv))
    run_dir = args.pop("run_dir")
    data_dir = args.pop("data_dir")
    progress = not args.pop("no_progress")
    fields = {f.name for f in dataclasses.fields(DarcyJobConfig)}
    try:
        config = DarcyJobConfig(**{k: v for k, v in args.items() if k in fields})
        if run_dir is None:
            run_dir = f"runs/darcy-{config.model}-{config.preset}-r{config.resolution}"
        results = train_darcy(config, run_dir, data_dir=data_dir, progress=progress)
    except ValueError as error:
        parser.error(str(error))
    print(
        f"{config.model}/{config.preset} at {config.resolution}x{config.resolution}: "
        f"test relative L2 {results['test_relative_l2']:.4f} "
        f"({results['parameters']:,} parameters); run directory {run_dir}"
    )
    return 0


COMMANDS = {
    "data": functools.partial(data_command, prog="python -m mano_jax data"),
    "train": train_command,
}


def main(argv: Sequence[str] | None = None) -> int:
    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in COMMANDS:
        names = ", ".join(COMMANDS)
        print(
            f"usage: python -m mano_jax {{{names}}} [options]; -h after a command for help",
            file=sys.stderr,
        )
        return 2
    command, *rest = argv
    return COMMANDS[command](rest)


if __name__ == "__main__":
    sys.exit(main())
