"""Command line: ``python -m lipschitz train [options]``.

Trains the 1-Lipschitz ``LipschitzConvNet`` (spectral-rescaling layers, MaxMin) on
scikit-learn's digits (offline), then reports clean and certified test accuracy at
several L2 radii; about a minute on two CPU cores with the defaults.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from lipschitz.train_job import TrainConfig
from miles_cli import dispatch, run_command
from training.harness import train_and_evaluate

DEFAULT_RUN_DIR = "runs/lipschitz-digits"


def train(config: TrainConfig, run_dir: str, progress: bool) -> str:
    results = train_and_evaluate(config, run_dir, progress=progress)
    certified = ", ".join(f"r={r}: {a:.3f}" for r, a in results["certified_accuracy"].items())
    return (
        f"clean accuracy {results['clean_accuracy']:.3f}; certified accuracy {certified} "
        f"({results['parameters']:,} parameters, {results['train_seconds']:.0f} s); "
        f"run directory {run_dir}"
    )


def train_command(argv: Sequence[str]) -> int:
    return run_command(
        TrainConfig,
        train,
        argv,
        prog="python -m lipschitz train",
        description="Train a 1-Lipschitz convolutional classifier (spectral-rescaling "
        "layers) on the digits data set and certify its L2 robustness from the logit margins.",
        run_dir=DEFAULT_RUN_DIR,
        progress=True,
    )


COMMANDS = {"train": train_command}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("python -m lipschitz", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
