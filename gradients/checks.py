"""Argument checks shared by the wrappers (run at trace time, on shapes only)."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp

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
