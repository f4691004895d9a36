"""Argument checks for the constructors of mano_jax: each ``ValueError`` names the
argument, what it must be and what it got."""

from __future__ import annotations

from collections.abc import Iterable
from typing import Any

import numpy as np


def is_int(value: Any) -> bool:
    """A Python or NumPy integer, not a bool."""
    return isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` must be an int ``>= minimum``."""
    if not is_int(value) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_optional_int(value: Any, name: str, *, minimum: int = 1) -> int | None:
    """``value`` must be ``None`` or an int ``>= minimum``."""
    if value is None:
        return None
    if not is_int(value) or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be None or {what}, got {value!r}")
    return int(value)


def check_positive(value: Any, name: str) -> float:
    """``value`` must be a finite real number ``> 0``."""
    real = is_int(value) or isinstance(value, float | np.floating)
    if not (real and 0 < value < np.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)


def check_choice(value: Any, name: str, choices: Iterable[Any]) -> Any:
    """``value`` must be one of ``choices``."""
    choices = tuple(choices)
    if value not in choices:
        raise ValueError(f"{name} must be one of {choices}, got {value!r}")
    return value
