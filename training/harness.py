"""One harness for every training job: ``train_and_evaluate(config, workdir)``.

A job is a frozen config dataclass (its fields checked with ``miles_cli.option``)
with two methods:

- ``config.build(run_dir) -> Experiment``: the model, initial state, optimizer,
  loss and data of the run;
- ``config.report(experiment, result, run_dir) -> Report``: the evaluation of the
  trained state (figures written to ``run_dir``) and the fields of ``results.json``;

and three integer fields, ``num_steps``, ``eval_every`` and ``checkpoint_every`` (and
optionally ``param_sharding``, see ``training.fit``).
``train_and_evaluate`` does the rest the same way for every job: joining a
multi-process run (``training.initialize_distributed``; every process must be given
the same configuration, which is checked), the run directory
(``config.json``, refusing a different run), ``fit`` (progress bar, metrics log,
checkpoints, resume after a kill), ``results.json`` and ``loss_curve.png``.
``restore`` reloads a finished or interrupted run for evaluation.
"""

from __future__ import annotations

import dataclasses
import os
from collections.abc import Iterable
from pathlib import Path
from typing import Any, Protocol

import optax

from miles_cli import config_from_dict, config_to_dict
from training import runs
from training.distributed import check_processes_agree, initialize_distributed
from training.loop import FitResult, fit
from training.sharding import REPLICATED
from training.state import TrainState
from training.step import LossFn, make_train_step


@dataclasses.dataclass
class Experiment:
    """What a job builds: everything ``fit`` needs, plus the model for ``report``.

    Attributes:
      model: the Flax module (or any object the job's ``report`` uses).
      state: the initial train state.
      optimizer: the optax transformation ``state`` was created with.
      loss_fn: ``loss_fn(params, batch, rng) -> loss | (loss, metrics)``.
      train_data: an endless iterable of batches (``training.make_loader``).
      eval_data: a re-iterable evaluation pass (``training.make_eval_loader``), or
        ``None`` to evaluate nothing during training.
      desc: the progress bar's label.
      log_every: steps per training record.
      extras: anything else ``report`` needs (test arrays, normalisers).
      progress: set by ``train_and_evaluate``: whether ``report`` may show progress
        bars for long evaluations.
    """

    model: Any
    state: TrainState
    optimizer: optax.GradientTransformation
    loss_fn: LossFn
    train_data: Iterable[Any]
    eval_data: Iterable[Any] | None = None
    desc: str = "train"
    log_every: int = 10
    extras: dict[str, Any] = dataclasses.field(default_factory=dict)
    progress: bool = True


@dataclasses.dataclass
class Report:
    """The outcome of a run: ``results.json`` fields and how to draw ``loss_curve.png``.

    Attributes:
      fields: job-specific results (the harness adds parameters, steps, training
        seconds and peak memory).
      title: the loss curve's title.
      curves: one panel per logged metric.
      log_scale: logarithmic y axes.
    """

    fields: dict[str, Any]
    title: str
    curves: tuple[str, ...] = ("loss",)
    log_scale: bool = True


class Job(Protocol):
    """The interface ``train_and_evaluate`` expects of a config."""

    num_steps: int
    eval_every: int
    checkpoint_every: int

    def build(self, run_dir: Path) -> Experiment: ...

    def report(self, experiment: Experiment, result: FitResult, run_dir: Path) -> Report: ...


def train(
    config: Job, workdir: str | os.PathLike, *, progress: bool = True
) -> tuple[Path, Experiment, FitResult]:
    """The training half of ``train_and_evaluate``: ``(run_dir, experiment, fit result)``
    (a finished run is loaded from its last checkpoint, not trained again)."""
    initialize_distributed()
    check_processes_agree(
        {"config": config_to_dict(config), "workdir": str(workdir)}, "configuration of the run"
    )
    run_dir = runs.prepare_run_dir(workdir, config_to_dict(config, identity_only=True))
    experiment = config.build(run_dir)
    experiment.progress = progress
    train_step, eval_step = make_train_step(experiment.loss_fn, experiment.optimizer)
    evaluating = experiment.eval_data is not None
    result = fit(
        experiment.state,
        train_step,
        experiment.train_data,
        num_steps=config.num_steps,
        workdir=run_dir,
        eval_step=eval_step if evaluating else None,
        eval_data=experiment.eval_data,
        eval_every=config.eval_every if evaluating else 0,
        checkpoint_every=config.checkpoint_every,
        log_every=experiment.log_every,
        param_sharding=getattr(config, "param_sharding", REPLICATED),
        progress=progress,
        desc=experiment.desc,
    )
    return run_dir, experiment, result


def train_and_evaluate(
    config: Job, workdir: str | os.PathLike, *, progress: bool = True
) -> dict[str, Any]:
    """Train ``config`` into ``workdir`` (resuming it if it holds the same run), then
    evaluate; returns what is written to ``results.json``.

    Raises:
      miles_cli.UsageError: ``workdir`` holds a different run.
      training.NonFiniteLossError: training diverged (the last good checkpoint stays).
    """
    run_dir, experiment, result = train(config, workdir, progress=progress)
    report = config.report(experiment, result, run_dir)
    return runs.finish_run(
        run_dir,
        result,
        report.fields,
        title=report.title,
        metrics=report.curves,
        log_scale=report.log_scale,
    )


def restore(
    config_type: type, workdir: str | os.PathLike, **overrides: Any
) -> tuple[Any, Experiment, TrainState]:
    """Reload the run in ``workdir``: ``(config, experiment, latest train state)``.

    ``overrides`` set fields that do not identify the run (a data directory).

    Raises:
      miles_cli.UsageError: no run of ``config_type`` there, or no checkpoint yet.
    """
    config = config_from_dict(config_type, runs.load_run_config(workdir), **overrides)
    experiment = config.build(Path(workdir))
    return config, experiment, runs.restore_state(workdir, experiment.state)
