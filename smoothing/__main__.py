"""Command line: ``python -m smoothing certify [options]``.

Trains (or loads from ``--run-dir``) a noise-augmented 1-Lipschitz classifier on
scikit-learn's digits (offline), then certifies its Gaussian-smoothed version on the test
images with Cohen et al.'s certificate, ``R_multi`` and the Lipschitz-aware certificate,
all from the same noise samples; a few minutes on two CPU cores with the defaults.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Sequence

from lipschitz.train_job import TrainConfig
from smoothing.certify_job import CERTIFICATES, LABELS, CertifySettings, run_certify
from training.cli import int_at_least, positive_float, run_subcommand

DEFAULT_RUN_DIR = "runs/smoothing-digits"
DEFAULT_TRAIN = TrainConfig(image_size=8, widths=(16, 32), hidden=64, num_steps=1000)
DEFAULT_TRAIN_SIGMA = 0.25


def _even_int(text: str) -> int:
    value = int_at_least(2)(text)
    if value % 2:
        raise argparse.ArgumentTypeError(f"expected an even integer (MaxMin pairs), got {value}")
    return value


def _probability(text: str) -> float:
    value = positive_float(text)
    if value >= 1:
        raise argparse.ArgumentTypeError(f"expected a number in (0, 1), got {text!r}")
    return value


def _non_negative_float(text: str) -> float:
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not 0 <= value < float("inf"):
        raise argparse.ArgumentTypeError(f"expected a finite number >= 0, got {text!r}")
    return value


def _certify_parser() -> argparse.ArgumentParser:
    settings, train = CertifySettings(), DEFAULT_TRAIN
    parser = argparse.ArgumentParser(
        prog="python -m smoothing certify",
        description="Train (or load) a noise-augmented 1-Lipschitz classifier on digits and "
        "certify its Gaussian-smoothed version: Cohen et al., R_multi and the "
        "Lipschitz-aware certificate on the same noise samples. sigma and the radii are "
        "on the model's input scale (pixels in [-1, 1]).",
    )
    group = parser.add_argument_group("certification")
    group.add_argument(
        "--sigma", type=positive_float, help=f"smoothing noise, default {settings.sigma}"
    )
    group.add_argument(
        "--n0", type=int_at_least(1), help=f"selection samples, default {settings.n0}"
    )
    group.add_argument(
        "--n",
        type=int_at_least(1),
        help=f"estimation samples, default {settings.n} (the paper: 100000)",
    )
    group.add_argument(
        "--alpha", type=_probability, help=f"failure probability, default {settings.alpha}"
    )
    group.add_argument(
        "--examples",
        type=int_at_least(1),
        help=f"test images to certify (of 297), default {settings.examples}",
    )
    group.add_argument(
        "--sample-batch",
        dest="batch_size",
        type=int_at_least(1),
        help=f"noisy copies per forward pass (memory budget), default {settings.batch_size}",
    )
    group.add_argument(
        "--split",
        type=_probability,
        help=f"share of alpha for the Lipschitz margin bounds, default {settings.split}",
    )
    group.add_argument(
        "--radii",
        type=_non_negative_float,
        nargs="+",
        help=f"radii reported in certify.json, default {' '.join(map(str, settings.radii))}",
    )
    group.add_argument("--seed", type=int_at_least(0), help=f"noise seed, default {settings.seed}")
    group = parser.add_argument_group("base classifier (a different one needs another --run-dir)")
    group.add_argument(
        "--train-sigma",
        type=_non_negative_float,
        default=DEFAULT_TRAIN_SIGMA,
        help=f"noise added to the training images, default {DEFAULT_TRAIN_SIGMA}",
    )
    group.add_argument("--image-size", type=int_at_least(4), help=f"default {train.image_size}")
    group.add_argument(
        "--widths", type=_even_int, nargs="+", help=f"channels per stage, default {train.widths}"
    )
    group.add_argument("--hidden", type=_even_int, help=f"default {train.hidden}")
    group.add_argument(
        "--steps", dest="num_steps", type=int_at_least(1), help=f"default {train.num_steps}"
    )
    group.add_argument(
        "--train-batch", dest="train_batch_size", type=int_at_least(1),
        help=f"default {train.batch_size}",
    )  # fmt: skip
    group.add_argument(
        "--learning-rate", type=positive_float, help=f"default {train.learning_rate}"
    )
    parser.add_argument(
        "--run-dir",
        default=DEFAULT_RUN_DIR,
        help=f"where the checkpoints, TSVs, plot and certify.json go (default "
        f"{DEFAULT_RUN_DIR}); a directory holding the same base classifier is reused",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def certify_command(argv: Sequence[str]) -> int:
    parser = _certify_parser()
    args = vars(parser.parse_args(argv))
    certify_fields = {"sigma", "n0", "n", "alpha", "examples", "batch_size", "split", "radii"}
    certify_fields.add("seed")
    given = {k: v for k, v in args.items() if k in certify_fields and v is not None}
    train_fields = {"image_size", "widths", "hidden", "num_steps", "learning_rate"}
    train_given = {k: v for k, v in args.items() if k in train_fields and v is not None}
    if args["train_batch_size"] is not None:
        train_given["batch_size"] = args["train_batch_size"]
    try:
        settings = CertifySettings(**given)
        train = TrainConfig(**{**DEFAULT_TRAIN.as_json(), **train_given})
        results = run_certify(
            train, args["train_sigma"], settings, args["run_dir"], progress=not args["no_progress"]
        )
    except ValueError as error:
        parser.error(str(error))
    lines = [
        f"{results['examples']} test images, sigma {settings.sigma:g}, n0 {settings.n0}, "
        f"n {settings.n}, alpha {settings.alpha:g}; base classifier clean accuracy "
        f"{results['clean_accuracy']:.3f}; certified accuracy at radius "
        + " / ".join(f"{r:g}" for r in settings.radii)
        + ":"
    ]
    for name in CERTIFICATES:
        accuracy = results["certified_accuracy"][name].values()
        lines.append(f"  {LABELS[name]:>16}: " + " / ".join(f"{a:.3f}" for a in accuracy))
    lines.append(
        f"{results['forward_passes_per_second']:,.0f} noisy forward passes per second; "
        f"run directory {args['run_dir']}"
    )
    print("\n".join(lines))
    return 0


COMMANDS = {"certify": certify_command}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("python -m smoothing", COMMANDS, None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
