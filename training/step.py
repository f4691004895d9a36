"""Jitted train and eval steps from a loss function and an optimizer."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import chex
import jax
import jax.numpy as jnp
import optax

from training.state import PyTree, TrainState

Metrics = dict[str, jax.Array]
LossFn = Callable[[PyTree, Any, jax.Array | None], jax.Array | tuple[jax.Array, Metrics]]
EvalStep = Callable[..., Metrics]
Window = dict[str, Any]

NO_BAD_STEP = -1


def _loss_and_metrics(loss_fn: LossFn, params: PyTree, batch: Any, rng: jax.Array | None):
    out = loss_fn(params, batch, rng)
    loss, metrics = out if isinstance(out, tuple) else (out, {})
    chex.assert_shape(loss, ())
    return loss, metrics


def _accumulator_dtype(x: jax.Array | jax.ShapeDtypeStruct) -> jnp.dtype:
    return jnp.promote_types(x.dtype, jnp.float32)


def new_window(metrics: Metrics) -> Window:
    """A zero window for metrics shaped like ``metrics`` (arrays or ``ShapeDtypeStruct``).

    A window holds, on device, the sums of every metric over the steps since the
    last fetch (``sums``), the first step whose metrics were not all finite
    (``first_bad``, ``NO_BAD_STEP`` if none) and that step's metrics
    (``bad_metrics``).
    """

    def zeros():
        return {
            name: jnp.zeros(jnp.shape(value), _accumulator_dtype(value))
            for name, value in metrics.items()
        }

    return {
        "sums": zeros(),
        "first_bad": jnp.asarray(NO_BAD_STEP, jnp.int32),
        "bad_metrics": zeros(),
    }


def accumulate(window: Window, metrics: Metrics, step: jax.Array) -> Window:
    """Add ``metrics`` of step ``step`` to ``window``; a pure function, usable under jit.

    The first step at which any metric is NaN or infinite is recorded in
    ``first_bad`` together with its metrics; later steps never overwrite it.
    """
    metrics = {name: jnp.asarray(value) for name, value in metrics.items()}
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(v)) for v in metrics.values()]))
    first = (window["first_bad"] == NO_BAD_STEP) & ~finite
    sums = {
        name: window["sums"][name] + metrics[name].astype(window["sums"][name].dtype)
        for name in window["sums"]
    }
    bad = {
        name: jnp.where(first, metrics[name].astype(old.dtype), old)
        for name, old in window["bad_metrics"].items()
    }
    first_bad = jnp.where(first, jnp.asarray(step, jnp.int32), window["first_bad"])
    return {"sums": sums, "first_bad": first_bad, "bad_metrics": bad}


class TrainStep:
    """A jitted optimizer step: ``train_step(state, batch) -> (state, metrics)``.

    ``metrics`` holds ``loss``, ``grad_norm`` (global L2 norm of the gradients)
    and the loss function's own metrics; the input state's buffers are donated.

    ``train_step.accumulate(state, batch, window) -> (state, window)`` is the same
    update fused with ``training.step.accumulate``: the step's metrics are added
    to the on-device ``window`` and a non-finite step is recorded there, so a
    training loop needs no host round trip per step (``training.fit`` uses it;
    ``training.step.new_window`` makes a zero window).

    ``state_shardings`` (a ``TrainState`` of ``NamedSharding``, see
    ``training.sharding.state_shardings``) pins the gradients to the parameters'
    sharding and the new state to the old one's, so a sharded state stays sharded
    (XLA then reduce-scatters the gradients instead of all-reducing them).
    """

    def __init__(
        self,
        loss_fn: LossFn,
        optimizer: optax.GradientTransformation,
        state_shardings: TrainState | None = None,
    ):
        self.loss_fn = loss_fn
        self.optimizer = optimizer
        self.state_shardings = state_shardings
        self._step = jax.jit(self._update, donate_argnums=0)
        self._accumulate = jax.jit(self._update_and_accumulate, donate_argnums=(0, 2))

    def _update(self, state: TrainState, batch: Any) -> tuple[TrainState, Metrics]:
        def objective(params):
            return _loss_and_metrics(self.loss_fn, params, batch, state.step_key())

        (loss, metrics), grads = jax.value_and_grad(objective, has_aux=True)(state.params)
        if self.state_shardings is not None:
            grads = jax.lax.with_sharding_constraint(grads, self.state_shardings.params)
        updates, opt_state = self.optimizer.update(grads, state.opt_state, state.params)
        params = optax.apply_updates(state.params, updates)
        new_state = state.replace(step=state.step + 1, params=params, opt_state=opt_state)
        if self.state_shardings is not None:
            new_state = jax.lax.with_sharding_constraint(new_state, self.state_shardings)
        return new_state, {**metrics, "loss": loss, "grad_norm": optax.global_norm(grads)}

    def _update_and_accumulate(
        self, state: TrainState, batch: Any, window: Window
    ) -> tuple[TrainState, Window]:
        new_state, metrics = self._update(state, batch)
        return new_state, accumulate(window, metrics, new_state.step)

    def with_state_shardings(self, state_shardings: TrainState) -> TrainStep:
        """The same step, keeping the state in ``state_shardings``."""
        return TrainStep(self.loss_fn, self.optimizer, state_shardings)

    def __call__(self, state: TrainState, batch: Any) -> tuple[TrainState, Metrics]:
        return self._step(state, batch)

    def accumulate(
        self, state: TrainState, batch: Any, window: Window
    ) -> tuple[TrainState, Window]:
        return self._accumulate(state, batch, window)


def make_eval_step(loss_fn: LossFn) -> EvalStep:
    """A jitted ``eval_step(params, batch, mask=None) -> metrics``.

    Every metric (``loss`` and the loss function's own) is computed for each
    example on its own (``loss_fn`` on a batch of one, under ``jax.vmap``, with
    ``rng=None``) and averaged over the examples where ``mask`` is true (all of
    them when ``mask`` is ``None``). The loss function never sees the mask, and
    masked-out examples, whatever they produce (even NaN), do not contribute:
    they are dropped with ``jnp.where``, not multiplied by zero. With no true
    entry in ``mask`` the means are NaN.

    The result is independent of how the examples are batched, so the
    example-weighted mean over batches (``training.evaluate``) is the mean over
    the whole set.

    Args:
      params: the parameters ``loss_fn`` takes.
      batch: a pytree whose leaves share the leading axis ``[batch, ...]``.
      mask: ``bool[batch]`` or ``None``.
    """

    def per_example(params, example):
        one = jax.tree.map(lambda x: x[None], example)
        loss, metrics = _loss_and_metrics(loss_fn, params, one, None)
        return {**metrics, "loss": jnp.asarray(loss)}

    def eval_step(params: PyTree, batch: Any, mask: jax.Array | None = None) -> Metrics:
        values = jax.vmap(per_example, in_axes=(None, 0))(params, batch)
        size = jax.tree.leaves(batch)[0].shape[0]
        if mask is None:
            return {name: jnp.mean(v, axis=0) for name, v in values.items()}
        chex.assert_shape(mask, (size,))
        chex.assert_type(mask, bool)
        count = jnp.sum(mask)

        def masked_mean(v):
            keep = mask.reshape((size,) + (1,) * (v.ndim - 1))
            total = jnp.sum(jnp.where(keep, v, jnp.zeros_like(v)), axis=0)
            return total / count.astype(total.dtype)

        return {name: masked_mean(v) for name, v in values.items()}

    return jax.jit(eval_step)


def make_train_step(
    loss_fn: LossFn, optimizer: optax.GradientTransformation
) -> tuple[TrainStep, EvalStep]:
    """Build ``(train_step, eval_step)``, both jitted.

    Args:
      loss_fn: ``loss_fn(params, batch, rng) -> loss`` or ``-> (loss, metrics)``
        with ``loss`` a scalar and ``metrics`` a dict of scalars, each the mean
        over the batch. ``rng`` is a new-style PRNG key during training and
        ``None`` during evaluation (so models can switch dropout off).
      optimizer: any optax gradient transformation.

    Returns:
      ``train_step(state, batch) -> (state, metrics)``: one optimizer update (a
      ``TrainStep``; see there for the fused on-device accumulation ``fit``
      uses). ``metrics`` holds ``loss``, ``grad_norm`` and the loss function's
      own metrics.
      ``eval_step(params, batch, mask=None) -> metrics``: the loss and metrics
      with ``rng=None``, averaged over the examples where ``mask`` is true (see
      ``make_eval_step``).

    Both run unchanged on one device or on a mesh: place the state with
    ``training.replicate`` and the batch with ``training.shard_batch`` and jit
    propagates the shardings (gradients are all-reduced by XLA).
    """
    return TrainStep(loss_fn, optimizer), make_eval_step(loss_fn)
