"""Command line: ``python -m gradients train-lm [options]``.

Trains the same word-level RNN language model (offline corpus: Python's documentation
topics) with BPTT, diagonal state feedback and truncated BPTT, same seeds and steps,
and writes their perplexity curves to one PNG; a few minutes on two CPU cores with the
defaults.
"""

from __future__ import annotations

import argparse
import dataclasses
import sys
from collections.abc import Sequence

from gradients.cells import CELLS
from gradients.lm_job import METHODS, PLOT, LMConfig, train_lm
from training.cli import int_at_least, positive_float, run_subcommand

DEFAULT_RUN_DIR = "runs/gradients-lm"


def _train_lm_parser() -> argparse.ArgumentParser:
    defaults = LMConfig()
    parser = argparse.ArgumentParser(
        prog="python -m gradients train-lm",
        description="Compare BPTT, diagonal state feedback (DSF) and truncated BPTT on a "
        "word-level language model of Python's documentation topics (offline).",
    )
    parser.add_argument(
        "--methods",
        nargs="+",
        choices=tuple(METHODS),
        help=f"default {' '.join(defaults.methods)}",
    )
    group = parser.add_argument_group("model")
    group.add_argument("--cell", choices=tuple(CELLS), help=f"default {defaults.cell}")
    group.add_argument("--width", type=int_at_least(1), help=f"default {defaults.width}")
    group.add_argument("--layers", type=int_at_least(1), help=f"default {defaults.layers}")
    group.add_argument("--vocab-size", type=int_at_least(2), help=f"default {defaults.vocab_size}")
    group = parser.add_argument_group("training")
    group.add_argument(
        "--seq-len", type=int_at_least(1), help=f"BPTT window, default {defaults.seq_len}"
    )
    group.add_argument("--batch-size", type=int_at_least(1), help=f"default {defaults.batch_size}")
    group.add_argument(
        "--steps", dest="num_steps", type=int_at_least(1), help=f"default {defaults.num_steps}"
    )
    group.add_argument(
        "--learning-rate", type=positive_float, help=f"default {defaults.learning_rate}"
    )
    group.add_argument("--weight-decay", type=float, help=f"default {defaults.weight_decay}")
    group.add_argument("--seed", type=int_at_least(0), help=f"default {defaults.seed}")
    group.add_argument("--eval-every", type=int_at_least(0), help=f"default {defaults.eval_every}")
    parser.add_argument(
        "--run-dir",
        default=DEFAULT_RUN_DIR,
        help=f"where the runs, {PLOT} and results.json go (default {DEFAULT_RUN_DIR}); a "
        "directory holding the same run is resumed",
    )
    parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    return parser


def train_lm_command(argv: Sequence[str]) -> int:
    parser = _train_lm_parser()
    args = vars(parser.parse_args(argv))
    fields = {f.name for f in dataclasses.fields(LMConfig)}
    given = {k: v for k, v in args.items() if k in fields and v is not None}
    try:
        config = LMConfig(**given)
        results = train_lm(config, args["run_dir"], progress=not args["no_progress"])
    except ValueError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        print(
            f"\ninterrupted; run the same command again to resume in {args['run_dir']}",
            file=sys.stderr,
        )
        return 130
    lines = [
        f"  {name:9s} valid perplexity {m['valid_perplexity']:8.2f}  "
        f"train {m['train_perplexity']:8.2f}  {m['ms_per_step']:.0f} ms/step"
        for name, m in results["methods"].items()
    ]
    print(
        f"{results['steps']} steps, {results['parameters']:,} parameters:\n"
        + "\n".join(lines)
        + f"\nrun directory {args['run_dir']} ({PLOT}, results.json)"
    )
    return 0


COMMANDS = {"train-lm": train_lm_command}


def main(argv: Sequence[str] | None = None) -> int:
    return run_subcommand("python -m gradients", COMMANDS, None if argv is None else list(argv))


if __name__ == "__main__":
    sys.exit(main())
