"""``fit``: the training loop shared by every package."""

from __future__ import annotations

import dataclasses
import math
import os
import time
from collections.abc import Iterable
from pathlib import Path
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh
from tqdm.auto import tqdm

from training.checkpoint import Checkpointer
from training.metrics_log import MetricsLog, read_metrics
from training.sharding import data_mesh, replicate, shard_batch
from training.state import TrainState
from training.step import EvalStep, TrainStep

METRICS_FILE = "metrics.jsonl"
CHECKPOINT_DIR = "checkpoints"


class NonFiniteLossError(FloatingPointError):
    """The loss or the gradient norm became NaN or infinite at ``step``."""

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


def evaluate(
    eval_step: EvalStep,
    params: Any,
    eval_data: Iterable[Any],
    mesh: Mesh | None = None,
) -> dict[str, float]:
    """Example-weighted means of ``eval_step`` metrics over one pass of ``eval_data``."""
    mesh = data_mesh() if mesh is None else mesh
    totals: dict[str, float] = {}
    count = 0
    for batch in eval_data:
        n = _batch_size(batch)
        metrics = jax.device_get(eval_step(params, shard_batch(batch, mesh)))
        for name, value in metrics.items():
            totals[name] = totals.get(name, 0.0) + float(value) * n
        count += n
    if count == 0:
        raise ValueError("eval_data yielded no batches")
    return {name: total / count for name, total in totals.items()}


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
    progress: bool = True,
    desc: str = "train",
) -> FitResult:
    """Train ``state`` with ``train_step`` for ``num_steps`` steps in total.

    Args:
      state: the initial train state (ignored in favour of the latest
        checkpoint when ``workdir`` holds one).
      train_step, eval_step: from ``training.make_train_step``.
      train_data: an iterable of batches; a grain ``IterDataset`` (see
        ``training.make_loader``) makes the data position checkpointable, so a
        resumed run sees exactly the batches an uninterrupted run would.
      num_steps: total number of optimizer steps, counting steps already done
        in a resumed run.
      workdir: where ``metrics.jsonl`` and ``checkpoints/`` go; ``None`` keeps
        nothing on disk.
      eval_data: an iterable re-iterated at every evaluation (e.g. a
        ``make_loader(..., num_epochs=1)``).
      eval_every: evaluate every this many steps (and at the end); 0 only at
        the end.
      checkpoint_every: save every this many steps (and at the end); 0 only at
        the end. Needs ``workdir``.
      keep_checkpoints: how many recent checkpoints to keep.
      log_every: steps per training record (mean loss over the window,
        examples per second).
      mesh: device mesh for data parallelism (default: all devices on one
        ``data`` axis). Parameters are replicated, batches split.
      progress: show a tqdm bar with the loss and examples/s.

    Raises:
      NonFiniteLossError: the loss or gradient norm is NaN/inf; it names the
        step, and no checkpoint is written after it.
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
    state = replicate(state, mesh)
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
        log.truncate_after(int(state.step))
        history = read_metrics(log.path)

    def record(entry: dict[str, Any]) -> None:
        history.append(entry)
        if log is not None and jax.process_index() == 0:
            log.append(entry)

    def run_eval(step: int) -> None:
        metrics = evaluate(eval_step, state.params, eval_data, mesh)
        record({"step": step, "split": "eval", **metrics})
        bar.write(f"step {step}: " + ", ".join(f"eval_{k}={v:.4g}" for k, v in metrics.items()))

    start = int(state.step)
    clock = time.perf_counter()
    bar = tqdm(total=num_steps, initial=start, desc=desc, disable=not progress, dynamic_ncols=True)
    window: dict[str, float] = {}
    window_steps = window_examples = 0
    window_start = time.perf_counter()
    try:
        for step in range(start + 1, num_steps + 1):
            try:
                batch = next(data_iter)
            except StopIteration:
                raise ValueError(f"train_data ran out of batches at step {step}") from None
            window_examples += _batch_size(batch)
            state, metrics = train_step(state, shard_batch(batch, mesh))
            metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
            if not all(math.isfinite(v) for v in metrics.values()):
                raise NonFiniteLossError(step, metrics)
            for name, value in metrics.items():
                window[name] = window.get(name, 0.0) + value
            window_steps += 1
            bar.update(1)
            if step % log_every == 0 or step == num_steps:
                elapsed = time.perf_counter() - window_start
                means = {k: v / window_steps for k, v in window.items()}
                rate = window_examples / max(elapsed, 1e-9)
                record({"step": step, "split": "train", **means, "examples_per_sec": rate})
                bar.set_postfix(loss=f"{means['loss']:.4g}", ex_per_s=f"{rate:.0f}")
                window, window_steps, window_examples = {}, 0, 0
                window_start = time.perf_counter()
            if eval_step is not None and (
                step == num_steps or (eval_every and step % eval_every == 0)
            ):
                run_eval(step)
            if ckpt is not None and (
                step == num_steps or (checkpoint_every and step % checkpoint_every == 0)
            ):
                ckpt.save(state, data_iter if checkpointable else None)
    finally:
        bar.close()
        if ckpt is not None:
            ckpt.close()
    return FitResult(state=state, history=history, seconds=time.perf_counter() - clock)
