"""Train the 1-Lipschitz classifier on digits and certify it: ``python -m lipschitz train``.

``train_certified(config, run_dir)`` trains ``LipschitzConvNet`` on scikit-learn's digits
(offline, ``mano_jax.images.load_digits``) with ``training.fit`` (progress bar,
checkpoints, resume) and leaves in ``run_dir``: ``config.json``, ``checkpoints/``,
``metrics.jsonl``, ``loss_curve.png``, ``certified_accuracy.png`` and ``results.json``
(clean and certified test accuracy at ``config.radii``, parameters, time).

Loss: cross-entropy on ``temperature * (logits - offset * onehot(y))``: the true logit
must beat the others by ``offset`` before the loss lets go, which pushes margins (and
so certified radii ``margin / sqrt 2``) up; ``temperature`` sets how hard.
Radii are L2 norms in the model's input units: images in ``[-1, 1]`` at
``image_size x image_size``.
"""

from __future__ import annotations

import dataclasses
import math
import os
from collections.abc import Callable
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
import optax

import training
from lipschitz.certify import certified_accuracy, certified_radii
from lipschitz.layers import LipschitzConvNet
from mano_jax.images import ImageData, load_digits
from training import runs

RESULTS_PLOT = "certified_accuracy.png"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One certified-training run.

    Attributes:
      image_size: digits are resized to ``image_size x image_size`` (multiple of 4).
      widths, blocks, hidden, iters, kernel_size: ``LipschitzConvNet``; ``iters`` is the
        ``T`` of every spectral rescaling (1 = AOL).
      batch_size, num_steps, learning_rate, seed: Adam with warm-up and cosine decay.
      offset, temperature: the loss (module docstring).
      radii: L2 radii at which certified accuracy is reported.
      eval_every, checkpoint_every: in steps.
    """

    image_size: int = 16
    widths: tuple[int, ...] = (16, 32)
    blocks: int = 1
    hidden: int = 64
    iters: int = 2
    kernel_size: int = 3
    batch_size: int = 64
    num_steps: int = 1500
    learning_rate: float = 3e-3
    offset: float = 1.0
    temperature: float = 4.0
    radii: tuple[float, ...] = (0.1, 0.25, 0.5, 1.0)
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 500

    def __post_init__(self) -> None:
        object.__setattr__(self, "widths", tuple(self.widths))
        object.__setattr__(self, "radii", tuple(float(r) for r in self.radii))
        stride = 2 ** (len(self.widths) - 1)
        if self.image_size < 4 or self.image_size % stride:
            raise ValueError(
                f"image_size must be >= 4 and divisible by {stride} (one 2x2 downsampling per "
                f"stage after the first), got {self.image_size}"
            )
        if not self.widths or any(w < 2 or w % 2 for w in self.widths):
            raise ValueError(f"widths must be even and >= 2 (MaxMin pairs), got {self.widths}")
        if self.hidden < 2 or self.hidden % 2:
            raise ValueError(f"hidden must be even and >= 2, got {self.hidden}")
        for name in ("blocks", "iters", "kernel_size", "batch_size", "num_steps"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.kernel_size > self.image_size:
            raise ValueError(
                f"kernel_size must be <= image_size {self.image_size}, got {self.kernel_size}"
            )
        for name in ("learning_rate", "temperature"):
            if not (getattr(self, name) > 0 and math.isfinite(getattr(self, name))):
                raise ValueError(f"{name} must be a positive number, got {getattr(self, name)}")
        if not (self.offset >= 0 and math.isfinite(self.offset)):
            raise ValueError(f"offset must be >= 0, got {self.offset}")
        if not self.radii or any(not (r > 0 and math.isfinite(r)) for r in self.radii):
            raise ValueError(f"radii must be positive numbers, got {self.radii}")
        for name in ("eval_every", "checkpoint_every"):
            if getattr(self, name) < 0:
                raise ValueError(f"{name} must be >= 0, got {getattr(self, name)}")

    def model(self) -> LipschitzConvNet:
        return LipschitzConvNet(
            num_classes=10,
            widths=self.widths,
            blocks=self.blocks,
            hidden=self.hidden,
            iters=self.iters,
            kernel_size=self.kernel_size,
        )

    def as_json(self) -> dict[str, Any]:
        """The configuration as it is saved in ``config.json`` (tuples as lists)."""
        return {
            k: list(v) if isinstance(v, tuple) else v for k, v in dataclasses.asdict(self).items()
        }


def _metric_name(radius: float) -> str:
    return f"certified@{radius:g}"


def make_loss_fn(model: LipschitzConvNet, config: TrainConfig):
    """``loss_fn(params, batch, rng) -> (loss, metrics)`` for ``training.make_train_step``."""
    radii = jnp.asarray(config.radii)

    def loss_fn(params, batch, rng):
        del rng
        logits = model.apply(params, batch["image"])
        labels = batch["label"]
        shifted = logits - config.offset * jax.nn.one_hot(labels, logits.shape[-1])
        loss = optax.softmax_cross_entropy_with_integer_labels(
            config.temperature * shifted, labels
        ).mean()
        certified = certified_accuracy(logits, labels, radii)
        metrics = {"accuracy": jnp.mean(jnp.argmax(logits, -1) == labels)}
        metrics.update({_metric_name(r): certified[i] for i, r in enumerate(config.radii)})
        return loss, metrics

    return loss_fn


def build(config: TrainConfig):
    """``(model, optimizer, initial train state)``."""
    model = config.model()
    optimizer = training.make_optimizer(
        training.OptimizerConfig(
            name="adam",
            learning_rate=config.learning_rate,
            schedule="warmup_cosine",
            warmup_steps=min(50, config.num_steps // 10),
            final_fraction=0.01,
        ),
        config.num_steps,
    )
    key = jax.random.PRNGKey(config.seed)
    sample = jnp.zeros((1, config.image_size, config.image_size, 1))
    params = jax.jit(model.init)(key, sample)
    return (
        model,
        optimizer,
        training.TrainState.create(params, optimizer, jax.random.fold_in(key, 1)),
    )


def predict(model: LipschitzConvNet, params, images: np.ndarray, batch_size: int = 512):
    """Logits of ``images: [b, s, s, 1]`` -> ``[b, 10]`` (numpy)."""
    apply = jax.jit(model.apply)
    out = [
        np.asarray(apply(params, images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def _test_arrays(data: ImageData) -> tuple[np.ndarray, np.ndarray]:
    items = [data.test[i] for i in range(len(data.test))]
    return np.stack([x["image"] for x in items]), np.array([x["label"] for x in items])


def _plot_certified(radii: np.ndarray, accuracy: np.ndarray, marks: dict, path: Path, title: str):
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5, 3.6))
    ax.plot(radii, accuracy, label="certified (margin / sqrt 2)")
    ax.scatter(list(marks), list(marks.values()), zorder=3)
    ax.set_xlabel("L2 radius (input units)")
    ax.set_ylabel("test accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def fit_digits(
    config: TrainConfig,
    run_dir: Path,
    make_loss: Callable[[LipschitzConvNet, TrainConfig], Any],
    *,
    progress: bool,
    desc: str,
):
    """Train ``build(config)`` on the digits with ``make_loss(model, config)`` into
    ``run_dir`` (resuming it); returns ``(model, data, fit result)``."""
    data = load_digits(config.image_size, seed=0)
    model, optimizer, state = build(config)
    train_step, eval_step = training.make_train_step(make_loss(model, config), optimizer)
    result = training.fit(
        state,
        train_step,
        training.make_loader(data.train, config.batch_size, seed=config.seed),
        num_steps=config.num_steps,
        workdir=run_dir,
        eval_step=eval_step,
        eval_data=training.make_eval_loader(data.test),
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        log_every=10,
        progress=progress,
        desc=desc,
    )
    return model, data, result


def train_certified(
    config: TrainConfig, run_dir: str | os.PathLike, *, progress: bool = True
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (resuming it if it holds the same run), certify the
    final model on the test split, and return what is written to ``results.json``."""
    run_dir = runs.prepare_run_dir(run_dir, config.as_json())
    model, data, result = fit_digits(
        config,
        run_dir,
        make_loss_fn,
        progress=progress,
        desc=f"digits {config.image_size}x{config.image_size} SR T={config.iters}",
    )
    images, labels = _test_arrays(data)
    logits = predict(model, result.state.params, images)
    curve_radii = np.linspace(0.0, max(config.radii) * 1.5, 61)
    curve = np.asarray(certified_accuracy(logits, labels, curve_radii))
    at_radii = np.asarray(certified_accuracy(logits, labels, np.asarray(config.radii)))
    certified = {f"{r:g}": float(a) for r, a in zip(config.radii, at_radii, strict=True)}
    fields = {
        "task": "certified-digits",
        "image_size": config.image_size,
        "iters": config.iters,
        "test_examples": len(labels),
        "clean_accuracy": float(np.mean(np.argmax(logits, -1) == labels)),
        "certified_accuracy": certified,
        "median_certified_radius": float(np.median(certified_radii(logits, labels))),
    }
    results = runs.finish_run(
        run_dir,
        result,
        fields,
        metrics=("loss", "accuracy", _metric_name(config.radii[len(config.radii) // 2])),
        log_scale=False,
        title=f"digits: LipschitzConvNet, SR T={config.iters}",
    )
    _plot_certified(
        curve_radii,
        curve,
        dict(zip(config.radii, at_radii, strict=True)),
        run_dir / RESULTS_PLOT,
        f"digits {config.image_size}x{config.image_size}: clean {results['clean_accuracy']:.3f}",
    )
    return results
