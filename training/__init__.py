"""Shared training machinery: train state, jitted steps, ``fit``, sharding, checkpoints, data."""

from training.checkpoint import Checkpointer
from training.data import ArraySource, MaskedBatch, make_eval_loader, make_loader
from training.distributed import (
    check_processes_agree,
    initialize_distributed,
    is_primary,
    wait_for_all,
)
from training.harness import Experiment, Report, restore, train, train_and_evaluate
from training.loop import FitResult, NonFiniteLossError, evaluate, fit
from training.metrics_log import MetricsLog, read_metrics
from training.optim import OptimizerConfig, make_optimizer, make_schedule
from training.plots import plot_curves, plot_image_grid, plot_lines
from training.sharding import (
    PARAM_SHARDINGS,
    data_mesh,
    place_state,
    replicate,
    shard_batch,
    state_shardings,
)
from training.state import TrainState
from training.step import TrainStep, make_eval_step, make_train_step

__all__ = [
    "PARAM_SHARDINGS",
    "ArraySource",
    "Experiment",
    "Report",
    "Checkpointer",
    "FitResult",
    "MaskedBatch",
    "MetricsLog",
    "NonFiniteLossError",
    "OptimizerConfig",
    "TrainState",
    "TrainStep",
    "check_processes_agree",
    "data_mesh",
    "evaluate",
    "fit",
    "initialize_distributed",
    "is_primary",
    "make_eval_loader",
    "make_eval_step",
    "make_loader",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "place_state",
    "plot_curves",
    "plot_image_grid",
    "plot_lines",
    "read_metrics",
    "replicate",
    "restore",
    "shard_batch",
    "state_shardings",
    "train",
    "train_and_evaluate",
    "wait_for_all",
]
