"""Run directories shared by the training jobs: configuration, results, reloading."""

from __future__ import annotations

import functools
import json
import os
import resource
from pathlib import Path
from typing import Any

import jax
import numpy as np

from miles_cli import UsageError
from training.checkpoint import Checkpointer
from training.distributed import is_primary, wait_for_all
from training.loop import CHECKPOINT_DIR, FitResult
from training.optim import OptimizerConfig, make_optimizer
from training.plots import plot_curves
from training.state import TrainState

CONFIG_FILE = "config.json"
LOSS_CURVE_FILE = "loss_curve.png"
RESULTS_FILE = "results.json"


@functools.partial(jax.jit, static_argnums=0)
def init_variables(model: Any, key: jax.Array, *inputs: jax.Array) -> Any:
    """``model.init(key, *inputs)``, compiled once per model configuration and input shapes
    (Flax modules compare by their fields): the stages of a pipeline, and a run restored
    for evaluation, initialise the same model without compiling its initialisation again."""
    return model.init(key, *inputs)


def init_state(
    config: Any,
    model: Any,
    sample: Any,
    *,
    optimizer: str = "adamw",
    max_warmup: int = 100,
    final_fraction: float = 0.01,
):
    """``(optimizer, train state)`` of a job config with ``learning_rate``, ``num_steps``,
    ``seed`` (and optionally ``weight_decay``): warm-up over a tenth of the run (at most
    ``max_warmup`` steps), cosine decay to ``final_fraction`` of the peak rate,
    parameters initialised on ``sample`` from ``config.seed``."""
    transform = make_optimizer(
        OptimizerConfig(
            name=optimizer,
            learning_rate=config.learning_rate,
            weight_decay=getattr(config, "weight_decay", 0.0),
            schedule="warmup_cosine",
            warmup_steps=min(max_warmup, config.num_steps // 10),
            final_fraction=final_fraction,
        ),
        config.num_steps,
    )
    key = jax.random.key(config.seed)
    params = init_variables(model, key, sample)
    return transform, TrainState.create(params, transform, jax.random.fold_in(key, 1))


def prepare_run_dir(run_dir: str | os.PathLike, config: dict[str, Any]) -> Path:
    """Create ``run_dir`` for ``config``, or accept it if it holds the same run.

    Raises:
      UsageError: the directory holds a different run (so its checkpoints must
        not be resumed with this configuration).
    """
    run_dir = Path(run_dir)
    path = run_dir / CONFIG_FILE
    if path.exists():
        saved = json.loads(path.read_text())
        if saved != config:
            diff = {k: (saved.get(k), v) for k, v in config.items() if saved.get(k) != v}
            diff.update({k: (v, None) for k, v in saved.items() if k not in config})
            raise UsageError(
                f"run directory {run_dir} holds a different run (saved vs requested: {diff}); "
                "choose another --run-dir or delete it"
            )
    elif is_primary():
        run_dir.mkdir(parents=True, exist_ok=True)
        path.write_text(json.dumps(config, indent=2) + "\n")
    wait_for_all("prepare_run_dir")  # the directory exists for every process from here on
    return run_dir


def load_run_config(run_dir: str | os.PathLike) -> dict[str, Any]:
    """The configuration saved in ``run_dir``; a clear error if there is no run there."""
    path = Path(run_dir) / CONFIG_FILE
    if not path.exists():
        raise UsageError(f"run directory {run_dir} does not exist or holds no {CONFIG_FILE}")
    return json.loads(path.read_text())


def restore_state(run_dir: str | os.PathLike, template: TrainState):
    """The latest checkpointed train state of ``run_dir``, shaped like ``template``."""
    ckpt = Checkpointer(Path(run_dir) / CHECKPOINT_DIR)
    try:
        if ckpt.latest_step() is None:
            raise UsageError(f"run directory {run_dir} holds no checkpoint yet")
        try:
            return ckpt.restore(template)
        except (ValueError, KeyError, TypeError) as error:
            raise UsageError(
                f"the checkpoint in {run_dir} does not match the model in its {CONFIG_FILE}: "
                f"{error}"
            ) from error
    finally:
        ckpt.close()


def finish_run(
    run_dir: str | os.PathLike,
    result: FitResult,
    fields: dict[str, Any],
    *,
    title: str,
    metrics: tuple[str, ...] = ("loss",),
    log_scale: bool = True,
) -> dict[str, Any]:
    """Write ``results.json`` (``fields`` plus parameter count, steps, training seconds
    and peak memory) and ``loss_curve.png`` for a finished ``fit``; returns the results.
    In a multi-process run process 0 alone writes them (its own peak memory)."""
    results = {
        **fields,
        "parameters": count_params(result.state.params),
        "steps": int(result.state.step),
        "train_seconds": result.seconds,
        "peak_memory_mb": peak_memory_mb(),
    }
    write_results(run_dir, results)
    plot_curves(
        result.history,
        Path(run_dir) / LOSS_CURVE_FILE,
        metrics=metrics,
        log_scale=log_scale,
        title=title,
    )
    return results


def write_results(run_dir: str | os.PathLike, results: dict[str, Any]) -> None:
    """``results.json`` in ``run_dir`` (written by process 0 alone in a multi-process run)."""
    if is_primary():
        (Path(run_dir) / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")


def count_params(params: Any) -> int:
    return int(sum(np.size(x) for x in jax.tree.leaves(params)))


def peak_memory_mb() -> float:
    """This process's peak resident memory so far, in MiB (Linux ``ru_maxrss`` is KiB)."""
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 1024
