"""Argument checks shared by the wrappers (run at trace time, on shapes only) and the
constructors (sizes): each ``ValueError`` names the argument, what it must be and what
it got."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np

PyTree = Any


def _signature(tree: PyTree) -> tuple[Any, list[tuple[tuple[int, ...], Any]]]:
    leaves, treedef = jax.tree.flatten(tree)
    return treedef, [(tuple(jnp.shape(x)), jnp.result_type(x)) for x in leaves]


def check_leading_axis(tree: PyTree, name: str, axis_name: str) -> int:
    """The common leading-axis length (``>= 1``) of ``tree``'s leaves; ``ValueError`` if
    they disagree or any leaf is a scalar."""
    sizes = {jnp.shape(x)[0] if jnp.ndim(x) else -1 for x in jax.tree.leaves(tree)}
    if len(sizes) != 1 or min(sizes) < 1:
        raise ValueError(
            f"{name} leaves must share one leading ({axis_name}) axis of length >= 1, got "
            f"leading sizes {sorted(sizes)}"
        )
    return sizes.pop()


def check_maps_state(fn: Callable, args: tuple, state: PyTree, name: str, what: str) -> None:
    """``fn(*args)`` must return a pytree with ``state``'s structure, shapes and dtypes."""
    out = jax.eval_shape(fn, *args)
    if _signature(out) != _signature(state):
        raise ValueError(
            f"{name} must return {what} with the state's shapes and dtypes "
            f"{_signature(state)[1]}, got {_signature(out)[1]}"
        )


def check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    """``value`` must be an int (not a bool) ``>= minimum``; returns it as an int."""
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not is_int or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def check_positive(value: Any, name: str) -> float:
    """``value`` must be a finite real number ``> 0``; returns it as a float."""
    real = isinstance(value, int | float | np.integer | np.floating) and not isinstance(
        value, bool | np.bool_
    )
    if not (real and 0 < value < np.inf):
        raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    return float(value)
