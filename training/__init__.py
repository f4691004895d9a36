"""Shared training machinery: train state, jitted steps, ``fit``, sharding, checkpoints, data."""

from training.checkpoint import Checkpointer
from training.data import ArraySource, make_eval_loader, make_loader
from training.loop import FitResult, NonFiniteLossError, evaluate, fit
from training.metrics_log import MetricsLog, read_metrics
from training.optim import OptimizerConfig, make_optimizer, make_schedule
from training.plots import plot_curves, plot_image_grid
from training.sharding import data_mesh, initialize_distributed, replicate, shard_batch
from training.state import TrainState
from training.step import make_train_step

__all__ = [
    "ArraySource",
    "Checkpointer",
    "FitResult",
    "MetricsLog",
    "NonFiniteLossError",
    "OptimizerConfig",
    "TrainState",
    "data_mesh",
    "evaluate",
    "fit",
    "initialize_distributed",
    "make_eval_loader",
    "make_loader",
    "make_optimizer",
    "make_schedule",
    "make_train_step",
    "plot_curves",
    "plot_image_grid",
    "read_metrics",
    "replicate",
    "shard_batch",
]
