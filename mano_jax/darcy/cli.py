"""``data`` command: generate a Darcy-flow dataset into the TFDS data directory."""

from __future__ import annotations

import argparse
from collections.abc import Sequence

from mano_jax.darcy.builder import (
    DEFAULT_HIGH,
    DEFAULT_LOW,
    DEFAULT_SEED,
    DEFAULT_TEST_SIZE,
    DEFAULT_TRAIN_SIZE,
    SUPPORTED_RESOLUTIONS,
    DarcyFlow,
    darcy_config,
    default_data_dir,
)
from training.cli import int_at_least, positive_float

__all__ = ["build_parser", "data_command"]


def build_parser(prog: str | None = None) -> argparse.ArgumentParser:
    """Argument parser of the ``data`` command."""
    parser = argparse.ArgumentParser(
        prog=prog,
        description=(
            "Generate the Darcy-flow benchmark (coefficient a -> solution u of "
            "-div(a grad u) = 1) as a TFDS array_record dataset."
        ),
    )
    parser.add_argument(
        "--resolution",
        type=int,
        choices=SUPPORTED_RESOLUTIONS,
        default=85,
        help="grid nodes per side of the stored arrays (default: %(default)s)",
    )
    parser.add_argument(
        "--train-size",
        type=int_at_least(1),
        default=DEFAULT_TRAIN_SIZE,
        help="training examples (default: %(default)s)",
    )
    parser.add_argument(
        "--test-size",
        type=int_at_least(1),
        default=DEFAULT_TEST_SIZE,
        help="test examples (default: %(default)s)",
    )
    parser.add_argument(
        "--seed",
        type=int_at_least(0),
        default=DEFAULT_SEED,
        help="root seed (default: %(default)s)",
    )
    parser.add_argument(
        "--high",
        type=positive_float,
        default=DEFAULT_HIGH,
        help="coefficient where the random field is >= 0 (default: %(default)s)",
    )
    parser.add_argument(
        "--low",
        type=positive_float,
        default=DEFAULT_LOW,
        help="coefficient where the random field is < 0 (default: %(default)s)",
    )
    parser.add_argument(
        "--solve-resolution",
        type=int_at_least(3),
        default=None,
        help="grid the problem is solved on before subsampling (default: 421 for 85, 141, "
        "211; else 2 * resolution - 1)",
    )
    parser.add_argument(
        "--data-dir",
        default=None,
        help="TFDS data directory (default: $MILES_JAX_DATA_DIR or "
        "~/.cache/miles_jax/tensorflow_datasets)",
    )
    parser.add_argument(
        "--workers",
        type=int_at_least(1),
        default=None,
        help="generation processes (default: number of CPUs)",
    )
    return parser


def data_command(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parses ``argv``, generates (or finds) the dataset, prints its location and sizes.

    Returns:
      ``0`` on success; bad arguments exit through ``argparse`` with status 2.
    """
    parser = build_parser(prog)
    args = parser.parse_args(argv)
    try:
        config = darcy_config(
            args.resolution,
            train_size=args.train_size,
            test_size=args.test_size,
            seed=args.seed,
            high=args.high,
            low=args.low,
            solve_resolution=args.solve_resolution,
        )
    except ValueError as error:
        parser.error(str(error))
    data_dir = args.data_dir if args.data_dir is not None else default_data_dir()
    builder = DarcyFlow(config=config, data_dir=data_dir, num_workers=args.workers)
    builder.download_and_prepare()
    splits = builder.info.splits
    print(f"darcy_flow/{config.name}: {builder.data_dir}")
    print(f"  {config.description}")
    for name in ("train", "test"):
        print(
            f"  {name}: {splits[name].num_examples} examples of a, u [{config.resolution}, "
            f"{config.resolution}] float32"
        )
    return 0
