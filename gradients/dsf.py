"""Diagonal state feedback (DSF): an RNN layer whose BPTT is replaced by a fixed feedback.

Paper: "Fast Training of Recurrent Neural Networks with Stationary State Feedbacks"
(arXiv 2503.23104). For ``h_t = cell(params, h_{t-1}, x_t)`` and a loss with gradient
``e_t`` at every state, BPTT runs ``delta_t = e_t + J_{t+1}^T delta_{t+1}`` with the
time-varying Jacobians ``J_{t+1} = dh_{t+1}/dh_t``, one step after another. DSF uses a
fixed ``A`` instead (``feedback.py``):

    delta_t = e_t + A^T delta_{t+1}     (diagonal A: a parallel scan, O(d T))

and then takes ONE VJP of the cell, vmapped over all ``t``, at
``(x_t, stop_gradient(h_{t-1}))`` against ``delta_t``: the parameter gradient (summed
over ``t``) and the input gradients ``dl/dx_t`` (for the layers below) come out of it.
The forward pass is an ordinary ``lax.scan``.

Gradient with respect to ``h0``: ``J_1^T delta_1``, the first step's exact Jacobian
applied to the estimated ``delta`` at the first state (what BPTT would do with that
``delta``): a learned or carried initial state still gets a gradient. With
``feedback="exact"`` it is BPTT's.
"""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import numpy as np

from gradients.checks import check_leading_axis, check_maps_state
from gradients.feedback import (
    MATRIX_KINDS,
    channels,
    feedback_matrix,
    feedback_recurrence,
    split_channels,
)

PyTree = Any
FEEDBACKS = ("diagonal", "zero", "exact", "gaussian", "orthogonal")


def _scan(cell_fn: Callable, params: PyTree, h0: PyTree, xs: PyTree) -> PyTree:
    def step(h, x):
        h = cell_fn(params, h, x)
        return h, h

    return jax.lax.scan(step, h0, xs)[1]


def _check_inputs(cell_fn: Callable, params: PyTree, h0: PyTree, xs: PyTree) -> None:
    check_leading_axis(xs, "xs", "time")
    first = jax.tree.map(lambda x: x[0], xs)
    check_maps_state(cell_fn, (params, h0, first), h0, "cell_fn", "the next state")
    leaves = jax.tree.leaves(h0)
    if any(jnp.ndim(h) < 1 for h in leaves) or len({jnp.shape(h)[:-1] for h in leaves}) != 1:
        raise ValueError(
            f"h0 leaves must be [..., channels] with the same leading axes, got shapes "
            f"{[jnp.shape(h) for h in leaves]}"
        )


def dsf_rnn(
    cell_fn: Callable,
    feedback: str | jax.Array = "diagonal",
    *,
    key: jax.Array | None = None,
) -> Callable[[PyTree, PyTree, PyTree], PyTree]:
    """Wrap a recurrent cell so that its backward pass is stationary state feedback.

    Args:
      cell_fn: ``cell_fn(params, h_prev, x_t) -> h_t``; the state may be an array
        ``[..., d]`` or a pytree of them (``(h, c)``), leading axes (batch) shared.
      feedback: ``"diagonal"`` (``A = diag(linspace(0, 1, d))``, default), ``"zero"``
        (truncated BPTT: no gradient through the recurrence), ``"exact"`` (BPTT by
        ordinary autodiff of the ``lax.scan``), ``"gaussian"`` / ``"orthogonal"``
        (fixed dense matrices, ``feedback.feedback_matrix``), or an explicit array:
        ``[d]`` (diagonal) or ``[d, d]`` (dense), with ``d`` the total channels of
        the state (a pytree state's leaves concatenated, ``feedback.channels``).
      key: ``jax.random`` key of the ``"gaussian"`` / ``"orthogonal"`` matrix (the same
        key gives the same fixed matrix at every call).

    Returns:
      ``run(params, h0, xs) -> hs``: ``xs`` a pytree of ``[T, ...]`` (time-major, as
      ``lax.scan``), ``hs`` the states ``h_1 .. h_T`` with leaves ``[T, *h.shape]``.
      Differentiable in ``params``, ``h0`` and ``xs``; usable under ``jax.jit``.
    """
    if not callable(cell_fn):
        raise ValueError(f"cell_fn must be callable, got {cell_fn!r}")
    if isinstance(feedback, str):
        if feedback not in FEEDBACKS:
            raise ValueError(f"feedback must be one of {FEEDBACKS} or an array, got {feedback!r}")
        if feedback in ("gaussian", "orthogonal") and key is None:
            raise ValueError(f"key must be a jax.random key for feedback={feedback!r}, got None")
    else:
        feedback = jnp.asarray(feedback)
        if feedback.ndim not in (1, 2) or (
            feedback.ndim == 2 and feedback.shape[0] != feedback.shape[1]
        ):
            raise ValueError(
                f"feedback array must be [d] (diagonal) or [d, d], got shape {feedback.shape}"
            )

    def matrix(size: int) -> jax.Array | None:
        if isinstance(feedback, str):
            return feedback_matrix(key, feedback, size) if feedback in MATRIX_KINDS else None
        return feedback

    @jax.custom_vjp
    def run_dsf(params, h0, xs):
        return _scan(cell_fn, params, h0, xs)

    def fwd(params, h0, xs):
        hs = _scan(cell_fn, params, h0, xs)
        return hs, (params, h0, xs, hs)

    def bwd(saved, e):
        params, h0, xs, hs = saved
        flat_e = channels(e)
        delta = split_channels(feedback_recurrence(flat_e, matrix(flat_e.shape[-1])), e)
        chex.assert_trees_all_equal_shapes(delta, hs)
        # Every step at once on the stored states: h_{t-1} enters as a constant.
        h_prev = jax.tree.map(lambda a, h: jnp.concatenate([a[None], h[:-1]]), h0, hs)
        _, vjp = jax.vjp(
            lambda p, x: jax.vmap(cell_fn, in_axes=(None, 0, 0))(p, h_prev, x), params, xs
        )
        d_params, d_xs = vjp(delta)
        first_x = jax.tree.map(lambda x: x[0], xs)
        _, vjp_h0 = jax.vjp(lambda h: cell_fn(params, h, first_x), h0)
        (d_h0,) = vjp_h0(jax.tree.map(lambda a: a[0], delta))
        return d_params, d_h0, d_xs

    run_dsf.defvjp(fwd, bwd)

    def run(params: PyTree, h0: PyTree, xs: PyTree) -> PyTree:
        _check_inputs(cell_fn, params, h0, xs)
        if isinstance(feedback, str) and feedback == "exact":
            return _scan(cell_fn, params, h0, xs)
        size = sum(jnp.shape(h)[-1] for h in jax.tree.leaves(h0))
        if not isinstance(feedback, str) and feedback.shape[0] != size:
            raise ValueError(
                f"feedback array must have {size} channels (the state's), got shape "
                f"{feedback.shape}"
            )
        return run_dsf(params, h0, xs)

    return run


# ----------------------------------------------------------------------------------------
# Slow references: plain Python loops over time, for tests and for checking runs.


def _loop(cell_fn: Callable, params: PyTree, h0: PyTree, xs: PyTree, truncate: bool) -> list:
    """``[h_0, h_1, ..., h_T]``, one ``cell_fn`` call per step."""
    states = [h0]
    for t in range(jax.tree.leaves(xs)[0].shape[0]):
        h = states[-1]
        h = jax.lax.stop_gradient(h) if truncate and t else h
        states.append(cell_fn(params, h, jax.tree.map(lambda x, t=t: x[t], xs)))
    return states


def _stack_states(states: list) -> PyTree:
    return jax.tree.map(lambda *a: jnp.stack(a), *states)


def rnn_reference(
    cell_fn: Callable, params: PyTree, h0: PyTree, xs: PyTree, *, truncate: bool = False
) -> PyTree:
    """The recurrence ``h_t = cell_fn(params, h_{t-1}, x_t)`` as a plain Python loop.

    Args / returns as ``dsf_rnn``'s ``run``: ``xs`` leaves ``[T, ...]``, ``hs`` the
    states ``h_1 .. h_T`` with leaves ``[T, *h.shape]``. Autodiff of the loop is BPTT
    (``feedback="exact"``); ``truncate=True`` stops the gradient through every state
    carried from one step to the next (``h_1 .. h_{T-1}``; ``h0`` keeps its gradient
    through the first step): fully truncated BPTT, ``feedback="zero"``.
    """
    return _stack_states(_loop(cell_fn, params, h0, xs, truncate)[1:])


def dsf_rnn_reference(
    cell_fn: Callable,
    feedback: str | jax.Array = "diagonal",
    *,
    key: jax.Array | None = None,
) -> Callable[[PyTree, PyTree, PyTree], PyTree]:
    """``dsf_rnn(cell_fn, feedback, key=key)`` written out step by step, for checking runs.

    The same ``run(params, h0, xs) -> hs``. Forward: ``rnn_reference``. Backward, for
    the loss's gradients ``e_t`` at the states, on the state channels concatenated
    (``d`` channels, the leaves of a pytree state in ``jax.tree.leaves`` order):

    1. ``delta_{T-1} = e_{T-1}``, ``delta_t = e_t + A^T delta_{t+1}`` by a Python loop
       backwards over ``t`` (``A = 0`` for ``"zero"``, ``diag(a)`` for a vector ``a``,
       the matrix of ``feedback_matrix(key, feedback, d)`` or the array given);
    2. for each ``t``, the VJP of ``cell_fn`` at ``(params, h_{t-1}, x_t)`` with
       ``h_{t-1}`` held fixed, against ``delta_t``: summed over ``t`` for ``params``, one
       per step for ``xs``, and for ``h0`` the first step's VJP in ``h``.

    ``feedback="exact"`` is plain autodiff of the loop (BPTT). ``O(T)`` sequential VJPs
    and ``O(T d^2)`` feedback products: for tests only.
    """
    if isinstance(feedback, str) and feedback == "exact":
        return lambda params, h0, xs: rnn_reference(cell_fn, params, h0, xs)

    def matrix(size: int) -> jax.Array | None:
        if not isinstance(feedback, str):
            a = jnp.asarray(feedback)
        elif feedback == "zero":
            return None
        else:
            a = feedback_matrix(key, feedback, size)
        return jnp.diag(a) if a.ndim == 1 else a

    @jax.custom_vjp
    def run(params, h0, xs):
        return rnn_reference(cell_fn, params, h0, xs)

    def fwd(params, h0, xs):
        return run(params, h0, xs), (params, h0, xs)

    def bwd(saved, e):
        params, h0, xs = saved
        states = _loop(cell_fn, params, h0, xs, truncate=False)
        leaves, treedef = jax.tree.flatten(e)
        flat_e = jnp.concatenate(leaves, axis=-1)  # [T, ..., d]
        num_steps, size = flat_e.shape[0], flat_e.shape[-1]
        a = matrix(size)
        deltas = [None] * num_steps
        following = jnp.zeros_like(flat_e[0])
        for t in range(num_steps - 1, -1, -1):
            # Row vectors: (A^T delta^T)^T = delta A.
            following = deltas[t] = flat_e[t] + (0 if a is None else following @ a)
        cuts = np.cumsum([leaf.shape[-1] for leaf in leaves])[:-1]

        def unflatten(delta):
            parts = jnp.split(delta, cuts, axis=-1)
            return jax.tree.unflatten(
                treedef, [p.astype(leaf.dtype) for p, leaf in zip(parts, leaves, strict=True)]
            )

        d_params, d_xs = None, []
        for t in range(num_steps):
            x_t = jax.tree.map(lambda x, t=t: x[t], xs)
            _, vjp = jax.vjp(lambda p, x, t=t: cell_fn(p, states[t], x), params, x_t)
            d_p, d_x = vjp(unflatten(deltas[t]))
            d_params = d_p if d_params is None else jax.tree.map(jnp.add, d_params, d_p)
            d_xs.append(d_x)
        x_0 = jax.tree.map(lambda x: x[0], xs)
        (d_h0,) = jax.vjp(lambda h: cell_fn(params, h, x_0), h0)[1](unflatten(deltas[0]))
        return d_params, d_h0, _stack_states(d_xs)

    run.defvjp(fwd, bwd)
    return run
