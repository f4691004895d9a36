"""argparse value types shared by the packages' command lines."""

from __future__ import annotations

import argparse
import math
import sys
from collections.abc import Callable


def int_at_least(minimum: int) -> Callable[[str], int]:
    """An argparse ``type`` accepting integers ``>= minimum``."""

    def parse(text: str) -> int:
        try:
            value = int(text)
        except ValueError:
            raise argparse.ArgumentTypeError(f"expected an integer, got {text!r}") from None
        if value < minimum:
            raise argparse.ArgumentTypeError(f"expected an integer >= {minimum}, got {value}")
        return value

    return parse


def positive_float(text: str) -> float:
    """An argparse ``type`` accepting finite numbers ``> 0``."""
    try:
        value = float(text)
    except ValueError:
        raise argparse.ArgumentTypeError(f"expected a number, got {text!r}") from None
    if not (value > 0 and math.isfinite(value)):
        raise argparse.ArgumentTypeError(f"expected a positive finite number, got {text!r}")
    return value


def run_subcommand(
    prog: str, commands: dict[str, Callable[[list[str]], int]], argv: list[str] | None = None
) -> int:
    """Dispatch ``prog COMMAND [options]`` to ``commands[COMMAND](options)``.

    Returns the command's exit status, or 2 after a usage line when the command
    is missing or unknown.
    """

    argv = list(sys.argv[1:] if argv is None else argv)
    if not argv or argv[0] not in commands:
        names = ", ".join(commands)
        print(f"usage: {prog} {{{names}}} [options]; -h after a command for help", file=sys.stderr)
        return 2
    command, *rest = argv
    return commands[command](rest)
