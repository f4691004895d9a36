"""The command-line builder: checks, flags, help from docstrings, exit statuses."""

import dataclasses
import subprocess
import sys

import pytest

from miles_cli import (
    UsageError,
    check_config,
    config_from_dict,
    config_to_dict,
    dispatch,
    field_help,
    option,
    run_command,
)


@dataclasses.dataclass(frozen=True)
class Options:
    """Options of a test command.

    Attributes:
      name: what to call it.
      steps: how many steps;
        a continuation line.
      rate, decay: two numbers
        sharing one entry.
      widths: even sizes.
      mode: one of a few.
      fast: go fast.
      cache: not part of the identity.
    """

    name: str = option()
    steps: int = option(10, minimum=1, flag="--num")
    rate: float = option(0.5, positive=True, below=1)
    decay: float = option(0.0, minimum=0)
    widths: tuple[int, ...] = option((2, 4), even=True, nonempty=True)
    mode: str = option("a", choices=("a", "b"))
    fast: bool = option(False)
    cache: str | None = option(None, identity=False)

    def __post_init__(self) -> None:
        check_config(self)


@pytest.mark.parametrize(
    "kwargs,message",
    [
        ({"steps": 0}, "steps must be an integer >= 1, got 0"),
        ({"steps": 2.5}, "steps must be an integer >= 1, got 2.5"),
        ({"steps": True}, "steps must be an integer >= 1, got True"),
        ({"rate": 1.0}, "rate must be a finite number > 0 and < 1, got 1.0"),
        ({"rate": float("nan")}, "rate must be a finite number > 0 and < 1, got nan"),
        ({"decay": float("inf")}, "decay must be a finite number >= 0, got inf"),
        ({"widths": (2, 3)}, "widths must be a non-empty sequence of values, each an even"),
        ({"widths": ()}, "widths must be a non-empty sequence of values, each an even"),
        ({"widths": 4}, "widths must be a non-empty sequence of values, each an even"),
        ({"mode": "c"}, "mode must be one of ['a', 'b'], got 'c'"),
        ({"fast": 1}, "fast must be true or false, got 1"),
    ],
)
def test_check_config_names_field_expectation_and_value(kwargs, message):
    with pytest.raises(ValueError) as error:
        Options(name="x", **kwargs)
    assert message in str(error.value)


def test_lists_become_tuples_and_json_round_trips():
    config = Options(name="x", widths=[2, 6], cache="/tmp")
    assert config.widths == (2, 6)
    saved = config_to_dict(config)
    assert saved["widths"] == [2, 6] and saved["cache"] == "/tmp"
    assert "cache" not in config_to_dict(config, identity_only=True)
    assert config_from_dict(Options, saved) == config
    assert config_from_dict(Options, {"name": "x"}, cache="/c").cache == "/c"
    with pytest.raises(UsageError, match=r"no fields \['bogus'\]"):
        config_from_dict(Options, {"name": "x", "bogus": 1})


def test_help_comes_from_the_docstring():
    docs = field_help(Options)
    assert docs["name"] == "what to call it."
    assert docs["steps"] == "how many steps; a continuation line."
    assert docs["rate"] == docs["decay"] == "two numbers sharing one entry."

    @dataclasses.dataclass(frozen=True)
    class More(Options):
        """More options.

        Attributes:
          steps: redefined.
          extra: a new field.
        """

        extra: int = option(1)

    docs = field_help(More)
    assert docs["steps"] == "redefined." and docs["extra"] == "a new field."
    assert docs["name"] == "what to call it."


def _run(argv, run=None, **kwargs):
    seen = {}

    def record(config, **extras):
        seen.update(config=config, **extras)
        return "done"

    status = run_command(
        Options, run or record, argv, prog="test", description="test command", **kwargs
    )
    return status, seen


def test_flags_defaults_and_extras(capsys):
    status, seen = _run(
        ["--name", "n", "--num", "3", "--widths", "2", "8", "--fast", "--no-progress"],
        run_dir=lambda config: f"runs/{config.name}",
        progress=True,
    )
    assert status == 0 and capsys.readouterr().out == "done\n"
    assert seen["config"] == Options(name="n", steps=3, widths=(2, 8), fast=True)
    assert seen["run_dir"] == "runs/n" and seen["progress"] is False
    _, seen = _run(["--name", "n", "--run-dir", "elsewhere"], run_dir="runs/default")
    assert seen["run_dir"] == "elsewhere" and seen["config"].steps == 10
    with pytest.raises(SystemExit) as exit_info:
        _run(["--help"])
    assert exit_info.value.code == 0
    text = capsys.readouterr().out
    assert "how many steps; a continuation line (default: 10)" in " ".join(text.split())
    assert "--num NUM" in text and "{a,b}" in text


@pytest.mark.parametrize(
    "argv,message",
    [
        (["--num", "1"], "the following arguments are required: --name"),
        (["--name", "n", "--num", "0"], "argument --num: steps must be an integer >= 1, got 0"),
        (["--name", "n", "--num", "x"], "argument --num: invalid int value: 'x'"),
        (["--name", "n", "--mode", "z"], "argument --mode: invalid choice: 'z'"),
    ],
)
def test_bad_options_are_usage_errors(argv, message, capsys):
    with pytest.raises(SystemExit) as exit_info:
        _run(argv)
    assert exit_info.value.code == 2
    err = capsys.readouterr().err
    assert message in err and "Traceback" not in err


def test_usage_error_interrupt_and_bugs(capsys):
    def refuse(config):
        raise UsageError("run directory x holds a different run")

    with pytest.raises(SystemExit) as exit_info:
        _run(["--name", "n"], run=refuse)
    assert exit_info.value.code == 2
    assert "holds a different run" in capsys.readouterr().err

    def interrupted(config, run_dir):
        raise KeyboardInterrupt

    status, _ = _run(["--name", "n"], run=interrupted, run_dir="runs/r")
    assert status == 130
    assert "run the same command again to resume from runs/r" in capsys.readouterr().err

    def bug(config):
        raise ValueError("shapes (3,) and (4,) do not match")

    # An error inside the work is a bug: it propagates with its traceback.
    with pytest.raises(ValueError, match="do not match"):
        _run(["--name", "n"], run=bug)


def test_dispatch(capsys):
    commands = {"go": lambda argv: len(argv)}
    assert dispatch("prog", commands, ["go", "a", "b"]) == 2
    assert dispatch("prog", commands, []) == 2
    assert dispatch("prog", commands, ["stop"]) == 2
    assert "usage: prog {go}" in capsys.readouterr().err
    assert dispatch("prog", commands, ["-h"]) == 0
    assert "usage: prog {go}" in capsys.readouterr().out


def test_imports_nothing_heavy():
    code = (
        "import sys, miles_cli; heavy = {'jax', 'numpy', 'training', 'orbax', 'grain'};"
        "print(sorted(heavy & set(sys.modules)))"
    )
    out = subprocess.run([sys.executable, "-c", code], capture_output=True, text=True, check=True)
    assert out.stdout.strip() == "[]"
