"""The image classification job: Swin-MANO (or its Swin / ViT baselines) on an image data set.

``training.train_and_evaluate(ClassifyJobConfig(...), run_dir)`` trains and leaves in
``run_dir`` the configuration, checkpoints, ``metrics.jsonl``, ``loss_curve.png``
(loss and accuracy) and ``results.json`` (test accuracy, parameters, training
time, peak memory). ``evaluate_classifier_run`` reloads a run.
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax.numpy as jnp
import optax

import training
from mano_jax.models import CLASSIFIER_PRESETS
from miles_cli import check_config, option
from training import harness, runs
from training.datasets import ImageData, load_images

EVAL_BATCH = 100


@dataclasses.dataclass(frozen=True)
class ClassifyJobConfig:
    """One classification run (``training.train_and_evaluate`` runs it).

    Attributes:
      model: classifier: mano (Swin-MANO), swin or vit.
      preset: a preset of that model (tiny, swin-t, ...).
      dataset: digits (offline) or a TFDS image data set name.
      image_size: images are resized to image_size x image_size.
      test_split: TFDS split to evaluate on.
      batch_size: examples per step.
      num_steps: optimizer steps.
      learning_rate: peak learning rate (AdamW, warm-up, cosine decay).
      weight_decay: AdamW's decoupled weight decay.
      seed: parameter initialisation and batch order.
      eval_every: steps between test evaluations (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end).
      data_dir: TFDS data directory (default: TFDS's own).
      download: let TFDS download and prepare the data set.
    """

    task: str = option("classify", choices=("classify",), cli=False)
    model: str = option("mano", choices=tuple(CLASSIFIER_PRESETS))
    preset: str = option("tiny")
    dataset: str = option("digits")
    image_size: int = option(32, minimum=8)
    test_split: str = option("test")
    batch_size: int = option(50, minimum=1)
    num_steps: int = option(600, minimum=1, flag="--steps")
    learning_rate: float = option(2e-3, positive=True)
    weight_decay: float = option(0.05, minimum=0)
    seed: int = option(0, minimum=0)
    eval_every: int = option(200, minimum=0)
    checkpoint_every: int = option(200, minimum=0)
    data_dir: str | None = option(None, identity=False)
    download: bool = option(False, identity=False)

    def __post_init__(self) -> None:
        check_config(self)
        if self.preset not in CLASSIFIER_PRESETS[self.model]:
            raise ValueError(
                f"preset of model {self.model!r} must be one of "
                f"{sorted(CLASSIFIER_PRESETS[self.model])}, got {self.preset!r}"
            )

    def model_config(self, num_classes: int):
        return dataclasses.replace(
            CLASSIFIER_PRESETS[self.model][self.preset], num_classes=num_classes
        )

    def default_run_dir(self) -> str:
        return f"runs/{self.dataset}-{self.model}-{self.preset}"

    def data(self) -> ImageData:
        return load_images(
            self.dataset,
            self.image_size,
            data_dir=self.data_dir,
            download=self.download,
            test_split=self.test_split,
        )

    def build(self, run_dir: Path) -> harness.Experiment:
        """Data, classifier, AdamW state and cross-entropy loss."""
        del run_dir
        data = self.data()
        model = self.model_config(data.num_classes).make()
        sample = jnp.zeros((1, self.image_size, self.image_size, data.channels))
        optimizer, state = runs.init_state(self, model, sample)
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=classification_loss(model),
            train_data=training.make_loader(data.train, self.batch_size, seed=self.seed),
            eval_data=training.make_eval_loader(data.test, EVAL_BATCH),
            desc=f"{self.dataset} {self.model}/{self.preset}",
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """The last evaluation (at the final step) is the test result."""
        del experiment, run_dir
        final = [r for r in result.history if r["split"] == "eval"][-1]
        return harness.Report(
            fields={
                "task": "classify",
                "model": self.model,
                "preset": self.preset,
                "dataset": self.dataset,
                "test_accuracy": final["accuracy"],
                "test_loss": final["loss"],
            },
            title=f"{self.dataset}: {self.model}/{self.preset}",
            curves=("loss", "accuracy"),
            log_scale=False,
        )


def classification_loss(model):
    """``loss_fn(params, batch, rng) -> (cross-entropy, {"accuracy"})`` on
    ``batch = {"image": [B, S, S, C], "label": [B]}``."""

    def loss_fn(params, batch, rng):
        del rng
        logits = model.apply(params, batch["image"])
        loss = optax.softmax_cross_entropy_with_integer_labels(logits, batch["label"]).mean()
        return loss, {"accuracy": jnp.mean(jnp.argmax(logits, -1) == batch["label"])}

    return loss_fn


def evaluate_classifier_run(
    run_dir: str | os.PathLike, *, data_dir: str | None = None
) -> dict[str, Any]:
    """Reload ``run_dir`` and return its test accuracy."""
    config, experiment, state = harness.restore(ClassifyJobConfig, run_dir, data_dir=data_dir)
    _, eval_step = training.make_train_step(experiment.loss_fn, optax.identity())
    metrics = training.evaluate(eval_step, state.params, experiment.eval_data)
    return {
        "model": config.model,
        "preset": config.preset,
        "dataset": config.dataset,
        "test_accuracy": metrics["accuracy"],
        "test_loss": metrics["loss"],
        "step": int(state.step),
    }
