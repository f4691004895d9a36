"""Jitted train and eval steps from a loss function and an optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import jax
import jax.numpy as jnp
import optax

from training.state import PyTree, TrainState

Metrics = dict[str, jax.Array]
LossFn = Callable[[PyTree, Any, jax.Array | None], jax.Array | tuple[jax.Array, Metrics]]
TrainStep = Callable[[TrainState, Any], tuple[TrainState, Metrics]]
EvalStep = Callable[[PyTree, Any], Metrics]


def _loss_and_metrics(loss_fn: LossFn, params: PyTree, batch: Any, rng: jax.Array | None):
    out = loss_fn(params, batch, rng)
    loss, metrics = out if isinstance(out, tuple) else (out, {})
    return loss, metrics


def make_train_step(
    loss_fn: LossFn, optimizer: optax.GradientTransformation
) -> tuple[TrainStep, EvalStep]:
    """Build ``(train_step, eval_step)``, both jitted.

    Args:
      loss_fn: ``loss_fn(params, batch, rng) -> loss`` or ``-> (loss, metrics)``
        with ``loss`` a scalar and ``metrics`` a dict of scalars. ``rng`` is a
        PRNG key during training and ``None`` during evaluation (so models can
        switch dropout off).
      optimizer: any optax gradient transformation.

    Returns:
      ``train_step(state, batch) -> (state, metrics)``: one optimizer update; the
      input state's buffers are donated. ``metrics`` holds ``loss``,
      ``grad_norm`` and the loss function's own metrics.
      ``eval_step(params, batch) -> metrics``: the loss and metrics with
      ``rng=None``.

    Both run unchanged on one device or on a mesh: place the state with
    ``training.replicate`` and the batch with ``training.shard_batch`` and jit
    propagates the shardings (gradients are all-reduced by XLA).
    """

    def train_step(state: TrainState, batch: Any) -> tuple[TrainState, Metrics]:
        def objective(params):
            return _loss_and_metrics(loss_fn, params, batch, state.step_key())

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        updates, opt_state = optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        return new_state, {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}

    def eval_step(params: PyTree, batch: Any) -> Metrics:
        loss, metrics = _loss_and_metrics(loss_fn, params, batch, None)
        return {**metrics, "loss": jnp.asarray(loss)}

    return jax.jit(train_step, donate_argnums=0), jax.jit(eval_step)
