"""Shared training machinery: train state, jitted steps, ``fit``, sharding, checkpoints, data."""

from training.checkpoint import Checkpointer
from training.data import ArraySource, MaskedBatch, make_eval_loader, make_loader
from training.harness import Experiment, Report, restore, train, train_and_evaluate
from training.loop import FitResult, NonFiniteLossError, evaluate, fit
from training.metrics_log import MetricsLog, read_metrics
from training.optim import OptimizerConfig, make_optimizer, make_schedule
from training.plots import plot_curves, plot_image_grid, plot_lines
from training.sharding import data_mesh, initialize_distributed, replicate, shard_batch
from training.state import TrainState
from training.step import TrainStep, make_eval_step, make_train_step

__all__ = [
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
    "data_mesh",
    "evaluate",
    "fit",
    "initialize_distributed",
    "make_eval_loader",
    "make_eval_step",
    "make_loader",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "plot_curves",
    "plot_image_grid",
    "plot_lines",
    "read_metrics",
    "replicate",
    "restore",
    "shard_batch",
    "train",
    "train_and_evaluate",
]
