"""Command line: ``python -m lipschitz train [options]``.

Trains the 1-Lipschitz ``LipschitzConvNet`` (spectral-rescaling layers, MaxMin) on
scikit-learn's digits (offline), then reports clean and certified test accuracy at
several L2 radii; about a minute on two CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from lipschitz.train_job import TrainConfig, train_certified
from training.cli import int_at_least, positive_float, run_subcommand

DEFAULT_RUN_DIR = "runs/lipschitz-digits"


def _even_int(text: str) -> int:
    value = int_at_least(2)(text)
    if value % 2:
        raise argparse.ArgumentTypeError(f"expected an even integer (MaxMin pairs), got {value}")
    return value


def _train_parser() -> argparse.ArgumentParser:
    defaults = TrainConfig()
    parser = argparse.ArgumentParser(
        prog="python -m lipschitz train",
        description="Train a 1-Lipschitz convolutional classifier (spectral-rescaling layers) "
        "on the digits data set and certify its L2 robustness from the logit margins.",
    )
    group = parser.add_argument_group("model")
    group.add_argument("--image-size", type=int_at_least(4), help=f"default {defaults.image_size}")
    group.add_argument(
        "--widths", type=_even_int, nargs="+", help=f"channels per stage, default {defaults.widths}"
    )
    group.add_argument("--blocks", type=int_at_least(1), help=f"default {defaults.blocks}")
    group.add_argument("--hidden", type=_even_int, help=f"default {defaults.hidden}")
    group.add_argument(
        "--iters",
        type=int_at_least(1),
        help=f"Gram steps T of the spectral rescaling (1 = AOL), default {defaults.iters}",
    )
    group.add_argument(
        "--kernel-size", type=int_at_least(1), help=f"default {defaults.kernel_size}"
    )
    group = parser.add_argument_group("training")
    group.add_argument(
        "--steps", dest="num_steps", type=int_at_least(1), help=f"default {defaults.num_steps}"
    )
    group.add_argument("--batch-size", type=int_at_least(1), help=f"default {defaults.batch_size}")
    group.add_argument(
        "--learning-rate", type=positive_float, help=f"default {defaults.learning_rate}"
    )
    group.add_argument(
        "--offset",
        type=float,
        help=f"logit offset of the true class in the loss, default {defaults.offset}",
    )
    group.add_argument("--temperature", type=positive_float, help=f"default {defaults.temperature}")
    group.add_argument("--seed", type=int_at_least(0), help=f"default {defaults.seed}")
    group.add_argument("--eval-every", type=int_at_least(1), help=f"default {defaults.eval_every}")
    group.add_argument(
        "--checkpoint-every", type=int_at_least(1), help=f"default {defaults.checkpoint_every}"
    )
    parser.add_argument(
        "--radii",
        type=positive_float,
        nargs="+",
        help=f"L2 radii to certify (input units), default {' '.join(map(str, defaults.radii))}",
    )
    parser.add_argument(
        "--run-dir",
        default=DEFAULT_RUN_DIR,
        help=f"where checkpoints, metrics, figures and results.json go (default "
        f"{DEFAULT_RUN_DIR}); a directory holding the same run is resumed",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bar")
    return parser


def train_command(argv: Sequence[str]) -> int:
    parser = _train_parser()
    args = vars(parser.parse_args(argv))
    fields = {f.name for f in dataclasses.fields(TrainConfig)}
    given = {k: v for k, v in args.items() if k in fields and v is not None}
    try:
        config = TrainConfig(**given)
        results = train_certified(config, args["run_dir"], progress=not args["no_progress"])
    except ValueError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; run the same command again to resume from the last checkpoint in "
            f"{args['run_dir']}",
            file=sys.stderr,
        )
        return 130
    certified = ", ".join(f"r={r}: {a:.3f}" for r, a in results["certified_accuracy"].items())
    print(
        f"clean accuracy {results['clean_accuracy']:.3f}; certified accuracy {certified} "
        f"({results['parameters']:,} parameters, {results['train_seconds']:.0f} s); "
        f"run directory {args['run_dir']}"
    )
    return 0


COMMANDS = {"train": train_command}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("python -m lipschitz", COMMANDS, None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
