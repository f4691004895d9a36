"""The image classification job: Swin-MANO (or its Swin / ViT baselines) on an image data set.

``train_classifier(config, run_dir)`` trains with ``training.fit`` and leaves in
``run_dir`` the configuration, checkpoints, ``metrics.jsonl``, ``loss_curve.png``
(loss and accuracy) and ``results.json`` (test accuracy, parameters, training
time, peak memory). ``evaluate_classifier_run`` reloads a run.
"""

from __future__ import annotations

import dataclasses
import os
from typing import Any

import jax.numpy as jnp
import optax

import training
from mano_jax.images import ImageData, load_images
from mano_jax.models import CLASSIFIER_PRESETS
from training import runs


@dataclasses.dataclass(frozen=True)
class ClassifyJobConfig:
    """One classification run.

    Attributes:
      model: a key of ``CLASSIFIER_PRESETS`` (``mano``, ``swin``, ``vit``).
      preset: a preset of that model (``tiny``, ``swin-t``, ...).
      dataset: ``digits`` (offline) or a TFDS image data set name.
      image_size: images are resized to ``image_size x image_size``.
      batch_size, num_steps, learning_rate, weight_decay, seed: AdamW with
        warm-up and cosine decay.
      eval_every, checkpoint_every: in steps.
    """

    task: str = "classify"
    model: str = "mano"
    preset: str = "tiny"
    dataset: str = "digits"
    image_size: int = 32
    test_split: str = "test"
    batch_size: int = 50
    num_steps: int = 600
    learning_rate: float = 2e-3
    weight_decay: float = 0.05
    seed: int = 0
    eval_every: int = 200
    checkpoint_every: int = 200

    def __post_init__(self) -> None:
        runs.check_job_config(self, CLASSIFIER_PRESETS, "classify")

    def model_config(self, num_classes: int):
        return dataclasses.replace(
            CLASSIFIER_PRESETS[self.model][self.preset], num_classes=num_classes
        )


def _data(config: ClassifyJobConfig, data_dir: str | None, download: bool) -> ImageData:
    return load_images(
        config.dataset,
        config.image_size,
        data_dir=data_dir,
        download=download,
        test_split=config.test_split,
    )


def build(config: ClassifyJobConfig, data: ImageData):
    """``(model, optimizer, initial train state)``."""
    model = config.model_config(data.num_classes).make()
    sample = jnp.zeros((1, config.image_size, config.image_size, data.channels))
    return model, *runs.init_state(config, model, sample)


def _loss_fn(model):
    def loss_fn(params, batch, rng):
        del rng
        logits = model.apply(params, batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

    return loss_fn


def _test_loader(data: ImageData):
    return training.make_eval_loader(data.test, 100)


def train_classifier(
    config: ClassifyJobConfig,
    run_dir: str | os.PathLike,
    *,
    data_dir: str | None = None,
    download: bool = False,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (resuming it); returns ``results.json``."""
    data = _data(config, data_dir, download)
    run_dir = runs.prepare_run_dir(run_dir, dataclasses.asdict(config))
    model, optimizer, state = build(config, data)
    train_step, eval_step = training.make_train_step(_loss_fn(model), optimizer)
    result = training.fit(
        state,
        train_step,
        training.make_loader(data.train, config.batch_size, seed=config.seed),
        num_steps=config.num_steps,
        workdir=run_dir,
        eval_step=eval_step,
        eval_data=_test_loader(data),
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        log_every=10,
        progress=progress,
        desc=f"{config.dataset} {config.model}/{config.preset}",
    )
    final = [r for r in result.history if r["split"] == "eval"][-1]
    fields = {
        "task": "classify",
        "model": config.model,
        "preset": config.preset,
        "dataset": config.dataset,
        "test_accuracy": final["accuracy"],
        "test_loss": final["loss"],
    }
    return runs.finish_run(
        run_dir,
        result,
        fields,
        metrics=("loss", "accuracy"),
        log_scale=False,
        title=f"{config.dataset}: {config.model}/{config.preset}",
    )


def evaluate_classifier_run(
    run_dir: str | os.PathLike, *, data_dir: str | None = None
) -> dict[str, Any]:
    """Reload ``run_dir`` and return its test accuracy."""
    saved = runs.load_run_config(run_dir)
    if saved.get("task") != "classify":
        raise ValueError(f"run directory {run_dir} holds a {saved.get('task')!r} run, not classify")
    config = ClassifyJobConfig(**saved)
    data = _data(config, data_dir, download=False)
    model, _, template = build(config, data)
    state = runs.restore_state(run_dir, template)
    _, eval_step = training.make_train_step(_loss_fn(model), optax.identity())
    metrics = training.evaluate(eval_step, state.params, _test_loader(data))
    return {
        "model": config.model,
        "preset": config.preset,
        "dataset": config.dataset,
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "step": int(state.step),
    }
