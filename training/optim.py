"""Optimizers and learning-rate schedules built from plain configs."""

from __future__ import annotations

import dataclasses

import optax

OPTIMIZERS = ("adam", "adamw", "sgd", "lamb")
SCHEDULES = ("constant", "cosine", "warmup_cosine", "step")


@dataclasses.dataclass(frozen=True)
class OptimizerConfig:
    """What optimizer to build.

    Attributes:
      name: one of ``OPTIMIZERS``.
      learning_rate: peak learning rate.
      weight_decay: decoupled weight decay (``adamw``, ``lamb``) or L2 added to
        the gradient (``adam``, ``sgd``, as in ``torch.optim.Adam``).
      schedule: one of ``SCHEDULES``.
      warmup_steps: linear warm-up length (``warmup_cosine``).
      decay_every: step-decay period in steps (``step``).
      decay_factor: multiplicative decay at each period (``step``).
      final_fraction: final learning rate as a fraction of the peak (cosine).
      momentum: SGD momentum.
      clip_grad_norm: clip the global gradient norm to this value if set.
    """

    name: str = "adamw"
    learning_rate: float = 1e-3
    weight_decay: float = 0.0
    schedule: str = "constant"
    warmup_steps: int = 0
    decay_every: int = 1000
    decay_factor: float = 0.5
    final_fraction: float = 0.0
    momentum: float = 0.9
    clip_grad_norm: float | None = None


def make_schedule(config: OptimizerConfig, num_steps: int) -> optax.Schedule:
    """The learning-rate schedule of ``config`` over ``num_steps`` steps."""
    lr = config.learning_rate
    if config.schedule == "constant":
        return optax.constant_schedule(lr)
    if config.schedule == "cosine":
        return optax.cosine_decay_schedule(lr, max(num_steps, 1), alpha=config.final_fraction)
    if config.schedule == "warmup_cosine":
        return optax.warmup_cosine_decay_schedule(
            0.0,
            lr,
            warmup_steps=config.warmup_steps,
            decay_steps=max(num_steps, config.warmup_steps + 1),
            end_value=lr * config.final_fraction,
        )
    if config.schedule == "step":
        return optax.exponential_decay(
            lr, transition_steps=config.decay_every, decay_rate=config.decay_factor, staircase=True
        )
    raise ValueError(f"schedule must be one of {SCHEDULES}, got {config.schedule!r}")


def make_optimizer(config: OptimizerConfig, num_steps: int) -> optax.GradientTransformation:
    """An optax optimizer from ``config`` for a run of ``num_steps`` steps."""
    if config.name not in OPTIMIZERS:
        raise ValueError(f"optimizer name must be one of {OPTIMIZERS}, got {config.name!r}")
    if not config.learning_rate > 0:
        raise ValueError(f"learning_rate must be > 0, got {config.learning_rate}")
    if config.weight_decay < 0:
        raise ValueError(f"weight_decay must be >= 0, got {config.weight_decay}")
    if num_steps < 1:
        raise ValueError(f"num_steps must be >= 1, got {num_steps}")
    schedule = make_schedule(config, num_steps)
    if config.name == "adamw":
        opt = optax.adamw(schedule, weight_decay=config.weight_decay)
    elif config.name == "lamb":
        opt = optax.lamb(schedule, weight_decay=config.weight_decay)
    else:
        base = (
            optax.adam(schedule)
            if config.name == "adam"
            else optax.sgd(schedule, momentum=config.momentum or None)
        )
        decay = [optax.add_decayed_weights(config.weight_decay)] if config.weight_decay else []
        opt = optax.chain(*decay, base)
    if config.clip_grad_norm is not None:
        opt = optax.chain(optax.clip_by_global_norm(config.clip_grad_norm), opt)
    return opt
