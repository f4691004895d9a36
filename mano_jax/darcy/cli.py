"""``data`` command: generate a Darcy-flow dataset into the TFDS data directory."""

from __future__ import annotations

import dataclasses
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
from mano_jax.darcy.solver import solve_stride
from miles_cli import check_config, option, run_command

__all__ = ["DataOptions", "data_command"]


@dataclasses.dataclass(frozen=True)
class DataOptions:
    """What to generate.

    Attributes:
      resolution: grid nodes per side of the stored arrays.
      train_size: training examples.
      test_size: test examples.
      seed: root seed.
      high: coefficient where the random field is >= 0.
      low: coefficient where the random field is < 0.
      solve_resolution: grid the problem is solved on before subsampling (default: 421
        for 85, 141, 211; else 2 * resolution - 1).
      data_dir: TFDS data directory (default: $MILES_JAX_DATA_DIR or
        ~/.cache/miles_jax/tensorflow_datasets).
      workers: generation processes (default: number of CPUs).
    """

    resolution: int = option(85, choices=SUPPORTED_RESOLUTIONS)
    train_size: int = option(DEFAULT_TRAIN_SIZE, minimum=1)
    test_size: int = option(DEFAULT_TEST_SIZE, minimum=1)
    seed: int = option(DEFAULT_SEED, minimum=0)
    high: float = option(DEFAULT_HIGH, positive=True)
    low: float = option(DEFAULT_LOW, positive=True)
    solve_resolution: int | None = option(None, minimum=3)
    data_dir: str | None = option(None)
    workers: int | None = option(None, minimum=1)

    def __post_init__(self) -> None:
        check_config(self)
        if self.solve_resolution is not None:
            solve_stride(self.resolution, self.solve_resolution)


def generate(options: DataOptions) -> str:
    """Generate (or find) the data set; a summary of its location and sizes."""
    config = darcy_config(
        options.resolution,
        train_size=options.train_size,
        test_size=options.test_size,
        seed=options.seed,
        high=options.high,
        low=options.low,
        solve_resolution=options.solve_resolution,
    )
    data_dir = options.data_dir if options.data_dir is not None else default_data_dir()
    builder = DarcyFlow(config=config, data_dir=data_dir, num_workers=options.workers)
    builder.download_and_prepare()
    splits = builder.info.splits
    lines = [f"darcy_flow/{config.name}: {builder.data_dir}", f"  {config.description}"]
    for name in ("train", "test"):
        lines.append(
            f"  {name}: {splits[name].num_examples} examples of a, u "
            f"[{config.resolution}, {config.resolution}] float32"
        )
    return "\n".join(lines)


def data_command(argv: Sequence[str] | None = None, prog: str | None = None) -> int:
    """Parse ``argv``, generate (or find) the data set, print its location and sizes;
    returns 0, or exits with status 2 on bad arguments."""
    return run_command(
        DataOptions,
        generate,
        argv,
        prog=prog or "python -m mano_jax data",
        description="Generate the Darcy-flow benchmark (coefficient a -> solution u of "
        "-div(a grad u) = 1) as a TFDS array_record dataset.",
    )
