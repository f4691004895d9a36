"""``fit``: the training loop shared by every package.

The loop never waits for a step to finish: each step's metrics are added to a
window of sums kept on the device (fused into the jitted step, see
``training.TrainStep``), together with the first step whose metrics were not
finite. The host fetches the window only when it writes a training record
(every ``log_every`` steps), and fetches the non-finite flag alone before an
evaluation or a checkpoint, so JAX's asynchronous dispatch keeps the device busy
while the host prepares the next batches.
"""

from __future__ import annotations

import dataclasses
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from training.checkpoint import Checkpointer
from training.data import MaskedBatch
from training.distributed import check_processes_agree, is_primary
from training.metrics_log import MetricsLog, read_metrics
from training.sharding import (
    FSDP,
    REPLICATED,
    data_mesh,
    place_state,
    replicate,
    shard_batch,
    state_shardings,
)
from training.state import TrainState
from training.step import NO_BAD_STEP, EvalStep, TrainStep, Window, accumulate, new_window

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"


class NonFiniteLossError(FloatingPointError):
    """A training metric (the loss, the gradient norm or a loss-function metric)
    became NaN or infinite; ``step`` is the first step at which it did and
    ``metrics`` are that step's metrics."""

    def __init__(self, step: int, metrics: dict[str, float]):
        self.step = step
        self.metrics = metrics
        super().__init__(
            f"non-finite training metrics at step {step}: {metrics}; the run stopped and "
            "the last checkpoint (if any) was left as it was"
        )


@dataclasses.dataclass
class FitResult:
    """The final state, the records written to the metrics log, and the wall-clock
    seconds this call took (compilation included; a resumed run counts its own part)."""

    state: TrainState
    history: list[dict[str, Any]]
    seconds: float


def _batch_size(batch: Any) -> int:
    return int(np.shape(jax.tree.leaves(batch)[0])[0]) * jax.process_count()


def _feed(batch: Any, mesh: Mesh) -> Any:
    """``batch`` ready for a jitted step on ``mesh``.

    On one device in one process the host arrays go to the step as they are: jit
    transfers them in its compiled dispatch path, several times faster per step
    than a separate ``device_put``, which matters when steps are short.
    Otherwise ``shard_batch`` places them.
    """
    if mesh.devices.size == 1 and jax.process_count() == 1:
        leaves, treedef = jax.tree.flatten(batch)
        leaves = [x if isinstance(x, jax.Array) else np.asarray(x) for x in leaves]
        if any(x.ndim == 0 for x in leaves):
            return shard_batch(batch, mesh)  # raises the error about the batch axis
        return jax.tree.unflatten(treedef, leaves)
    return shard_batch(batch, mesh)


@jax.jit
def _count(mask: jax.Array) -> jax.Array:
    return jnp.sum(mask, dtype=jnp.int32)


def evaluate(
    eval_step: EvalStep,
    params: Any,
    eval_data: Iterable[Any],
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Example-weighted means of ``eval_step`` metrics over one pass of ``eval_data``.

    A ``MaskedBatch`` (from ``training.make_eval_loader``) is evaluated with
    ``eval_step(params, batch, mask)`` and weighs as many examples as its mask
    has true entries; any other batch is evaluated with ``eval_step(params,
    batch)`` and weighs its size. With the eval step of ``make_train_step`` the
    result is the mean of every metric over exactly the real examples.

    The batches are dispatched without waiting for their results; the metrics
    come to the host once, at the end, and are summed there in float64.
    """
    mesh = data_mesh() if mesh is None else mesh
    pending: list[tuple[dict[str, jax.Array], jax.Array | int]] = []
    for item in eval_data:
        if isinstance(item, MaskedBatch):
            batch, mask = _feed((item.batch, item.mask), mesh)
            pending.append((eval_step(params, batch, mask), _count(mask)))
        else:
            pending.append((eval_step(params, _feed(item, mesh)), _batch_size(item)))
    if not pending:
        raise ValueError("eval_data yielded no batches")
    totals: dict[str, float] = {}
    count = 0
    for metrics, n in jax.device_get(pending):
        n = int(n)
        if n == 0:
            continue
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + float(value) * n
        count += n
    if count == 0:
        raise ValueError("eval_data holds no example with a true mask")
    return {name: total / count for name, total in totals.items()}


_accumulate = jax.jit(accumulate, donate_argnums=0)


def _advance(
    train_step: TrainStep, state: TrainState, batch: Any, window: Window
) -> tuple[TrainState, Window]:
    """One step with its metrics added to ``window``, dispatched without waiting."""
    if isinstance(train_step, TrainStep):
        return train_step.accumulate(state, batch, window)
    state, metrics = train_step(state, batch)
    return state, _accumulate(window, metrics, state.step)


def _raise_if_non_finite(window: Window) -> None:
    """Fetch the window's non-finite flag (waiting for the steps dispatched so far)."""
    first_bad = int(jax.device_get(window["first_bad"]))
    if first_bad != NO_BAD_STEP:
        bad = jax.device_get(window["bad_metrics"])
        raise NonFiniteLossError(first_bad, {k: float(v) for k, v in bad.items()})


def fit(
    state: TrainState,
    train_step: TrainStep,
    train_data: Iterable[Any],
    *,
    num_steps: int,
    workdir: str | os.PathLike | None = None,
    eval_step: EvalStep | None = None,
    eval_data: Iterable[Any] | None = None,
    eval_every: int = 0,
    checkpoint_every: int = 0,
    keep_checkpoints: int = 3,
    log_every: int = 10,
    mesh: Mesh | None = None,
    param_sharding: str = REPLICATED,
    progress: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train ``state`` with ``train_step`` for ``num_steps`` steps in total.

    Args:
      state: the initial train state (ignored in favour of the latest
        checkpoint when ``workdir`` holds one).
      train_step, eval_step: from ``training.make_train_step`` (any
        ``train_step(state, batch) -> (state, metrics)`` works too, at the cost
        of a second dispatch per step for the metric sums).
      train_data: an iterable of batches; a grain ``IterDataset`` (see
        ``training.make_loader``) makes the data position checkpointable, so a
        resumed run sees exactly the batches an uninterrupted run would.
      num_steps: total number of optimizer steps, counting steps already done
        in a resumed run.
      workdir: where ``metrics.jsonl`` and ``checkpoints/`` go; ``None`` keeps
        nothing on disk.
      eval_data: an iterable re-iterated at every evaluation (e.g.
        ``training.make_eval_loader``).
      eval_every: evaluate every this many steps (and at the end); 0 only at
        the end.
      checkpoint_every: save every this many steps (and at the end); 0 only at
        the end. Needs ``workdir``.
      keep_checkpoints: how many recent checkpoints to keep.
      log_every: steps per training record (mean of every metric over the
        window, examples per second). The metrics stay on the device between
        records: this is also how often the host waits for the device.
      mesh: device mesh for data parallelism (default: all devices, of every
        process, on one ``data`` axis). Batches are split over it.
      param_sharding: ``"replicated"`` (every device holds the whole state) or
        ``"fsdp"`` (parameters and optimizer state split over the ``data`` axis,
        see ``training.sharding.state_shardings``; needs a ``TrainStep``). The
        loss trajectory is the same either way, up to float rounding.

    Multi-process runs: every process calls ``fit`` with the same arguments and
    its own share of each batch (``make_loader``); the processes check that
    their batches have the same shapes, and process 0 alone writes the metrics
    log (checkpoints are written by all, as orbax requires).
      progress: show a tqdm bar with the loss and examples/s.

    Raises:
      NonFiniteLossError: a training metric is NaN/inf. The step records it on
        the device; the host sees it at the next record, evaluation or
        checkpoint, so the loop may run (and discard) up to ``log_every - 1``
        further steps first. The error names the first non-finite step, and no
        evaluation or checkpoint happens at or after it: the last checkpoint
        written is the last good one.
    """
    for name, value, low in [
        ("num_steps", num_steps, 1),
        ("log_every", log_every, 1),
        ("eval_every", eval_every, 0),
        ("checkpoint_every", checkpoint_every, 0),
    ]:
        if not isinstance(value, int) or value < low:
            raise ValueError(f"{name} must be an int >= {low}, got {value!r}")
    if (eval_step is None) != (eval_data is None):
        raise ValueError("eval_step and eval_data must be given together")
    if checkpoint_every and workdir is None:
        raise ValueError("checkpoint_every needs a workdir to write checkpoints to")

    mesh = data_mesh() if mesh is None else mesh
    state = place_state(state, mesh, param_sharding)
    if param_sharding == FSDP:
        if not isinstance(train_step, TrainStep):
            raise ValueError(
                "param_sharding='fsdp' needs a training.TrainStep (make_train_step), got "
                f"{type(train_step).__name__}"
            )
        train_step = train_step.with_state_shardings(state_shardings(state, mesh, FSDP))
    data_iter = iter(train_data)
    checkpointable = hasattr(data_iter, "get_state")
    log = ckpt = None
    if workdir is not None:
        workdir = Path(workdir)
        log = MetricsLog(workdir / METRICS_FILE)
        ckpt = Checkpointer(workdir / CHECKPOINT_DIR, keep=keep_checkpoints)
    history: list[dict[str, Any]] = []
    if ckpt is not None and ckpt.latest_step() is not None:
        state = ckpt.restore(state, data_iter if checkpointable else None)
        if is_primary():
            log.truncate_after(int(jax.device_get(state.step)))
        history = [r for r in read_metrics(log.path) if r["step"] <= int(state.step)]

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        if log is not None and is_primary():
            log.append(entry)

    def run_eval(step: int) -> None:
        metrics = evaluate(eval_step, state.params, eval_data, mesh)
        record({"step": step, "split": "eval", **metrics})
        if not bar.disable:
            bar.write(f"step {step}: " + ", ".join(f"eval_{k}={v:.4g}" for k, v in metrics.items()))

    start = int(jax.device_get(state.step))
    clock = time.perf_counter()
    bar = tqdm(
        total=num_steps,
        initial=start,
        desc=desc,
        disable=not progress or not is_primary(),  # one bar per run, not per process
        dynamic_ncols=True,
    )
    metric_shapes = window = None
    window_steps = window_examples = 0
    window_start = time.perf_counter()
    try:
        for step in range(start + 1, num_steps + 1):
            try:
                batch = next(data_iter)
            except StopIteration:
                raise ValueError(f"train_data ran out of batches at step {step}") from None
            window_examples += _batch_size(batch)
            if metric_shapes is None and jax.process_count() > 1:
                shapes = [list(np.shape(x)) for x in jax.tree.leaves(batch)]
                check_processes_agree(shapes, "shapes of their training batches")
            batch = _feed(batch, mesh)
            if window is None:
                if metric_shapes is None:
                    metric_shapes = jax.eval_shape(train_step, state, batch)[1]
                window = replicate(new_window(metric_shapes), mesh)
            state, window = _advance(train_step, state, batch, window)
            window_steps += 1
            bar.update(1)
            evaluating = eval_step is not None and (
                step == num_steps or (eval_every and step % eval_every == 0)
            )
            saving = ckpt is not None and (
                step == num_steps or (checkpoint_every and step % checkpoint_every == 0)
            )
            if step % log_every == 0 or step == num_steps:
                _raise_if_non_finite(window)
                sums = jax.device_get(window["sums"])
                elapsed = time.perf_counter() - window_start
                means = {k: float(v) / window_steps for k, v in sums.items()}
                rate = window_examples / max(elapsed, 1e-9)
                record({"step": step, "split": "train", **means, "examples_per_sec": rate})
                bar.set_postfix(loss=f"{means['loss']:.4g}", ex_per_s=f"{rate:.0f}")
                window, window_steps, window_examples = None, 0, 0
                window_start = time.perf_counter()
            elif evaluating or saving:
                _raise_if_non_finite(window)
            paused = time.perf_counter()
            if evaluating:
                run_eval(step)
            if saving:
                ckpt.save(state, data_iter if checkpointable else None)
            window_start += time.perf_counter() - paused
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()
    return FitResult(state=state, history=history, seconds=time.perf_counter() - clock)
