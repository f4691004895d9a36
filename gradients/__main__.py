"""Command line: ``python -m gradients train-lm [options]``.

Trains the same word-level RNN language model (offline corpus: Python's documentation
topics) with BPTT, diagonal state feedback and truncated BPTT, same seeds and steps,
and writes their perplexity curves to one PNG; a few minutes on two CPU cores with the
defaults.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from gradients.lm_job import PLOT, CompareConfig, train_lm
from miles_cli import dispatch, run_command

DEFAULT_RUN_DIR = "runs/gradients-lm"


def compare(config: CompareConfig, run_dir: str, progress: bool) -> str:
    results = train_lm(config, run_dir, progress=progress)
    lines = [
        f"  {name:9s} valid perplexity {m['valid_perplexity']:8.2f}  "
        f"train {m['train_perplexity']:8.2f}  {m['ms_per_step']:.0f} ms/step"
        for name, m in results["methods"].items()
    ]
    return (
        f"{results['steps']} steps, {results['parameters']:,} parameters:\n"
        + "\n".join(lines)
        + f"\nrun directory {run_dir} ({PLOT}, results.json)"
    )


def train_lm_command(argv: Sequence[str]) -> int:
    return run_command(
        CompareConfig,
        compare,
        argv,
        prog="python -m gradients train-lm",
        description="Compare BPTT, diagonal state feedback (DSF) and truncated BPTT on a "
        "word-level language model of Python's documentation topics (offline).",
        run_dir=DEFAULT_RUN_DIR,
        progress=True,
    )


COMMANDS = {"train-lm": train_lm_command}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("python -m gradients", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
