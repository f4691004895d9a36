"""Configuration dataclasses as command lines: fields, checks, JSON and subcommands.

Every command of the library is a frozen dataclass of options plus a function that
runs it. This module turns such a dataclass into a command line in one place:

- ``option(default, minimum=..., choices=..., ...)`` declares a field with its
  constraints; ``check_config(config)`` (called from ``__post_init__``) checks them
  all with one wording (``batch_size must be an integer >= 1, got 0``);
- the help text of a flag is the field's entry in the class docstring's
  ``Attributes:`` section, followed by its default;
- ``run_command`` parses the flags, builds the config (a ``ValueError`` from the
  config becomes an argparse usage error, exit status 2), runs the command, turns
  ``UsageError`` (a bad run directory, a missing data set) into a usage error too,
  Ctrl-C into exit status 130 with a resume hint, and lets every other exception
  through with its traceback: an error deep inside training is a bug, not a usage
  error.

It imports only the standard library, so ``metrics`` (which must not load the
training stack) builds its command line with it too.
"""

from __future__ import annotations

import argparse
import dataclasses
import math
import re
import sys
import types
import typing
from collections.abc import Callable, Sequence
from typing import Any

__all__ = [
    "UsageError",
    "check_config",
    "config_from_dict",
    "config_to_dict",
    "dispatch",
    "field_help",
    "option",
    "run_command",
]


class UsageError(ValueError):
    """A request the user can fix (a run directory of another run, a missing data set);
    command lines report it as a usage error instead of a traceback."""


def option(
    default: Any = dataclasses.MISSING,
    *,
    minimum: float | None = None,
    maximum: float | None = None,
    positive: bool = False,
    below: float | None = None,
    choices: Sequence[Any] | None = None,
    even: bool = False,
    nonempty: bool = False,
    flag: str | None = None,
    identity: bool = True,
    cli: bool = True,
) -> Any:
    """A dataclass field with the checks ``check_config`` applies.

    Args:
      default: the default value (none: a required field, a required flag).
      minimum, maximum: inclusive bounds (for tuples: of every element).
      positive: the value must be a finite number ``> 0``.
      below: exclusive upper bound.
      choices: the allowed values (of every element for tuples).
      even: an even integer.
      nonempty: a tuple with at least one element.
      flag: the command-line flag, default ``--field-name``.
      identity: part of what identifies a training run (saved in ``config.json`` and
        compared when a run directory is reused); ``False`` for settings that change
        how a run is read or reported but not what is trained (a data directory).
      cli: exposed as a flag.
    """
    metadata = {
        "minimum": minimum,
        "maximum": maximum,
        "positive": positive,
        "below": below,
        "choices": None if choices is None else tuple(choices),
        "even": even,
        "nonempty": nonempty,
        "flag": flag,
        "identity": identity,
        "cli": cli,
    }
    return dataclasses.field(default=default, metadata=metadata)


def _hints(cls: type) -> dict[str, Any]:
    return typing.get_type_hints(cls)


def _unwrap(hint: Any) -> tuple[Any, bool, bool]:
    """``(element type, is_tuple, is_optional)`` of a field's annotation."""
    optional = False
    origin = typing.get_origin(hint)
    if origin in (typing.Union, types.UnionType):
        args = [a for a in typing.get_args(hint) if a is not type(None)]
        optional = len(args) < len(typing.get_args(hint))
        hint = args[0] if len(args) == 1 else hint
        origin = typing.get_origin(hint)
    if origin is tuple:
        return typing.get_args(hint)[0], True, optional
    return hint, False, optional


def _describe(kind: Any, meta: dict[str, Any]) -> str:
    """The expectation for one value, e.g. ``an integer >= 1``."""
    if meta.get("choices") is not None:
        return f"one of {list(meta['choices'])}"
    noun = {int: "an integer", float: "a finite number", str: "a string", bool: "true or false"}
    text = noun.get(kind, f"a {getattr(kind, '__name__', kind)}")
    if meta.get("even"):
        text = "an even integer"
    bounds = []
    if meta.get("positive"):
        bounds.append("> 0")
    if meta.get("minimum") is not None:
        bounds.append(f">= {meta['minimum']:g}")
    if meta.get("below") is not None:
        bounds.append(f"< {meta['below']:g}")
    if meta.get("maximum") is not None:
        bounds.append(f"<= {meta['maximum']:g}")
    return text + (" " + " and ".join(bounds) if bounds else "")


def _valid(value: Any, kind: Any, meta: dict[str, Any]) -> bool:
    if meta.get("choices") is not None:
        return value in meta["choices"]
    if kind is bool:
        return isinstance(value, bool)
    if kind is int:
        if isinstance(value, bool) or not isinstance(value, int):
            return False
    elif kind is float:
        if isinstance(value, bool) or not isinstance(value, int | float):
            return False
        if not math.isfinite(value):
            return False
    elif kind is str:
        return isinstance(value, str)
    else:
        return True
    if meta.get("even") and value % 2:
        return False
    if meta.get("positive") and not value > 0:
        return False
    if meta.get("minimum") is not None and not value >= meta["minimum"]:
        return False
    if meta.get("below") is not None and not value < meta["below"]:
        return False
    return not (meta.get("maximum") is not None and not value <= meta["maximum"])


def check_config(config: Any) -> None:
    """Check every field of the dataclass instance ``config`` against its annotation and
    its ``option`` constraints; lists given for tuple fields become tuples.

    Raises:
      ValueError: ``"<field> must be <expectation>, got <value>"`` for the first
        field that fails.
    """
    hints = _hints(type(config))
    for f in dataclasses.fields(config):
        value = getattr(config, f.name)
        kind, is_tuple, optional = _unwrap(hints[f.name])
        meta = dict(f.metadata)
        if value is None and optional:
            continue
        if is_tuple:
            if isinstance(value, list):
                value = tuple(value)
                object.__setattr__(config, f.name, value)
            empty = meta.get("nonempty") and not value
            if (
                not isinstance(value, tuple)
                or empty
                or not all(_valid(v, kind, meta) for v in value)
            ):
                sequence = "a non-empty sequence" if meta.get("nonempty") else "a sequence"
                raise ValueError(
                    f"{f.name} must be {sequence} of values, each {_describe(kind, meta)}, "
                    f"got {value!r}"
                )
        elif not _valid(value, kind, meta):
            raise ValueError(f"{f.name} must be {_describe(kind, meta)}, got {value!r}")


def config_to_dict(config: Any, *, identity_only: bool = False) -> dict[str, Any]:
    """The fields of ``config`` as JSON-ready values (tuples as lists, other objects as
    their ``str``); with ``identity_only``, only the fields that identify a run."""

    def plain(value: Any) -> Any:
        if isinstance(value, tuple | list):
            return [plain(v) for v in value]
        if value is None or isinstance(value, bool | int | float | str):
            return value
        return str(value)

    return {
        f.name: plain(getattr(config, f.name))
        for f in dataclasses.fields(config)
        if not identity_only or f.metadata.get("identity", True)
    }


def config_from_dict(cls: type, values: dict[str, Any], **overrides: Any) -> Any:
    """``cls(**values, **overrides)``, with a clear error for unknown keys."""
    names = {f.name for f in dataclasses.fields(cls)}
    unknown = sorted(set(values) - names)
    if unknown:
        raise UsageError(f"{cls.__name__} has no fields {unknown}; known: {sorted(names)}")
    return cls(**{**values, **overrides})


_ATTRIBUTE = re.compile(r"^(\s*)([a-z_][a-z0-9_]*(?:,\s*[a-z_][a-z0-9_]*)*):\s*(.*)$")


def field_help(cls: type) -> dict[str, str]:
    """Each field's description from the ``Attributes:`` section of ``cls.__doc__``
    (``name: text`` entries, ``a, b: text`` shared, continuation lines indented); a
    subclass inherits the entries of its dataclass bases and may redefine them."""
    out: dict[str, str] = {}
    for base in reversed(cls.__mro__[1:]):
        out.update(field_help(base) if dataclasses.is_dataclass(base) else {})
    lines = (cls.__doc__ or "").splitlines()
    try:
        start = next(i for i, line in enumerate(lines) if line.strip() == "Attributes:")
    except StopIteration:
        return out
    names: list[str] = []
    indent = None
    for line in lines[start + 1 :]:
        if not line.strip():
            if names:
                break
            continue
        match = _ATTRIBUTE.match(line)
        current = len(line) - len(line.lstrip())
        if match and (indent is None or current == indent):
            indent = current
            names = [n.strip() for n in match.group(2).split(",")]
            for name in names:
                out[name] = match.group(3).strip()
        elif names and indent is not None and current > indent:
            for name in names:
                out[name] += " " + line.strip()
        else:
            break
    return out


def _flag(f: dataclasses.Field) -> str:
    return f.metadata.get("flag") or "--" + f.name.replace("_", "-")


def add_config_arguments(parser: argparse.ArgumentParser, cls: type) -> None:
    """One flag per command-line field of ``cls``; unset flags leave the config's
    default (their value is ``None``)."""
    hints, docs = _hints(cls), field_help(cls)
    for f in dataclasses.fields(cls):
        if not f.metadata.get("cli", True):
            continue
        kind, is_tuple, _ = _unwrap(hints[f.name])
        required = f.default is dataclasses.MISSING and f.default_factory is dataclasses.MISSING
        text = docs.get(f.name, "").rstrip(".")
        default = f.default if f.default is not dataclasses.MISSING else None
        if default is not None and not isinstance(default, bool):
            shown = " ".join(map(str, default)) if isinstance(default, tuple) else default
            text = f"{text} (default: {shown})".strip()
        kwargs: dict[str, Any] = {"dest": f.name, "help": text.replace("%", "%%")}
        if kind is bool and not is_tuple:
            kwargs["action"] = argparse.BooleanOptionalAction
        else:
            if kind not in (int, float, str):
                raise TypeError(f"field {f.name} of {cls.__name__} has no command-line type")
            kwargs["type"] = kind
            kwargs["metavar"] = _flag(f).lstrip("-").replace("-", "_").upper()
            if is_tuple:
                kwargs["nargs"] = "+"
            if f.metadata.get("choices") is not None:
                kwargs["choices"] = f.metadata["choices"]
                kwargs["metavar"] = "{" + ",".join(map(str, f.metadata["choices"])) + "}"
        if required:
            kwargs["required"] = True
        parser.add_argument(_flag(f), **kwargs)


def run_command(
    cls: type,
    run: Callable[..., str | None],
    argv: Sequence[str] | None,
    *,
    prog: str,
    description: str,
    run_dir: str | Callable[[Any], str] | bool | None = None,
    progress: bool = False,
) -> int:
    """Parse ``argv`` into a ``cls`` config and run ``run(config, **extras)``.

    Args:
      cls: the config dataclass; one flag per field (``add_config_arguments``).
      run: returns a summary to print, or ``None``.
      run_dir: adds ``--run-dir``, passed to ``run`` as ``run_dir``: its default (a
        string, or a function of the config), or ``True`` for a required flag.
      progress: adds ``--no-progress``, passed to ``run`` as ``progress``.

    Returns the exit status: 0 after ``run``, 130 after Ctrl-C (with a hint to rerun
    the command to resume when there is a run directory); invalid options and a
    ``UsageError`` from ``run`` exit with status 2 through argparse.
    """
    parser = argparse.ArgumentParser(prog=prog, description=description)
    add_config_arguments(parser, cls)
    if run_dir is not None:
        default = "" if run_dir is True else run_dir if isinstance(run_dir, str) else None
        parser.add_argument(
            "--run-dir",
            required=run_dir is True,
            help="the run directory: config, checkpoints, metrics, figures, results; a "
            "directory holding the same run is resumed"
            + (f" (default: {default})" if default else "")
            + (" (default: derived from the options)" if default is None else ""),
        )
    if progress:
        parser.add_argument("--no-progress", action="store_true", help="hide the progress bars")
    args = vars(parser.parse_args(argv))
    fields = {f.name: f for f in dataclasses.fields(cls)}
    given = {k: v for k, v in args.items() if k in fields and v is not None}
    try:
        config = cls(**given)
    except ValueError as error:
        name = str(error).split(" ", 1)[0]
        prefix = f"argument {_flag(fields[name])}: " if name in fields else ""
        parser.error(prefix + str(error))
    extras: dict[str, Any] = {}
    if run_dir is not None:
        extras["run_dir"] = args["run_dir"] or (run_dir(config) if callable(run_dir) else run_dir)
    if progress:
        extras["progress"] = not args["no_progress"]
    try:
        summary = run(config, **extras)
    except UsageError as error:
        parser.error(str(error))
    except KeyboardInterrupt:
        hint = ""
        if "run_dir" in extras:
            hint = f"; run the same command again to resume from {extras['run_dir']}"
        print(f"\ninterrupted{hint}", file=sys.stderr)
        return 130
    if summary:
        print(summary)
    return 0


def dispatch(
    prog: str, commands: dict[str, Callable[[list[str]], int]], argv: Sequence[str] | None = None
) -> int:
    """Run ``prog COMMAND [options]`` as ``commands[COMMAND](options)``; a usage line
    (exit status 2) for a missing or unknown command, 0 for ``-h``."""
    argv = list(sys.argv[1:] if argv is None else argv)
    usage = f"usage: {prog} {{{','.join(commands)}}} [options]; -h after a command for help"
    if argv and argv[0] in ("-h", "--help"):
        print(usage)
        return 0
    if not argv or argv[0] not in commands:
        print(usage, file=sys.stderr)
        return 2
    command, *rest = argv
    return commands[command](rest)
