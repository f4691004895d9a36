"""Train the 1-Lipschitz classifier on digits and certify it: ``python -m lipschitz train``.

``training.train_and_evaluate(TrainConfig(...), run_dir)`` trains ``LipschitzConvNet`` on
scikit-learn's digits (offline, ``training.datasets.load_digits``) and leaves in
``run_dir``: ``config.json``, ``checkpoints/``, ``metrics.jsonl``, ``loss_curve.png``,
``certified_accuracy.png`` and ``results.json`` (clean and certified test accuracy at
``config.radii``, parameters, time).

Loss: cross-entropy on ``temperature * (logits - offset * onehot(y))``: the true logit
must beat the others by ``offset`` before the loss lets go, which pushes margins (and
so certified radii ``margin / sqrt 2``) up; ``temperature`` sets how hard.
Radii are L2 norms in the model's input units: images in ``[-1, 1]`` at
``image_size x image_size``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import jax.numpy as jnp
import numpy as np
import optax

import training
from lipschitz.certify import certified_accuracy, certified_radii
from lipschitz.layers import LipschitzConvNet
from miles_cli import check_config, option
from training import harness, runs
from training.datasets import load_digits

RESULTS_PLOT = "certified_accuracy.png"


@dataclasses.dataclass(frozen=True)
class TrainConfig:
    """One certified-training run on the digits (``training.train_and_evaluate`` runs it).

    Attributes:
      image_size: digits are resized to image_size x image_size.
      widths: channels per stage (even: MaxMin pairs).
      blocks: residual blocks per stage.
      hidden: width of the dense layer (even).
      iters: Gram steps T of every spectral rescaling (1 = AOL).
      kernel_size: convolution kernel size.
      batch_size: examples per step.
      num_steps: optimizer steps (Adam with warm-up and cosine decay).
      learning_rate: peak learning rate.
      seed: parameter initialisation and batch order.
      offset: logit offset of the true class in the loss.
      temperature: scale of the shifted logits in the loss.
      radii: L2 radii at which certified accuracy is reported (input units).
      eval_every: steps between test evaluations (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end).
    """

    image_size: int = option(16, minimum=4)
    widths: tuple[int, ...] = option((16, 32), minimum=2, even=True, nonempty=True)
    blocks: int = option(1, minimum=1)
    hidden: int = option(64, minimum=2, even=True)
    iters: int = option(2, minimum=1)
    kernel_size: int = option(3, minimum=1)
    batch_size: int = option(64, minimum=1)
    num_steps: int = option(1500, minimum=1, flag="--steps")
    learning_rate: float = option(3e-3, positive=True)
    offset: float = option(1.0, minimum=0)
    temperature: float = option(4.0, positive=True)
    radii: tuple[float, ...] = option((0.1, 0.25, 0.5, 1.0), positive=True, nonempty=True)
    seed: int = option(0, minimum=0)
    eval_every: int = option(500, minimum=0)
    checkpoint_every: int = option(500, minimum=0)

    def __post_init__(self) -> None:
        check_config(self)
        stride = 2 ** (len(self.widths) - 1)
        if self.image_size % stride:
            raise ValueError(
                f"image_size must be divisible by {stride} (one 2x2 downsampling per stage "
                f"after the first), got {self.image_size}"
            )
        if self.kernel_size > self.image_size:
            raise ValueError(
                f"kernel_size must be <= image_size {self.image_size}, got {self.kernel_size}"
            )

    def model(self) -> LipschitzConvNet:
        return LipschitzConvNet(
            num_classes=10,
            widths=self.widths,
            blocks=self.blocks,
            hidden=self.hidden,
            iters=self.iters,
            kernel_size=self.kernel_size,
        )

    def loss_fn(self, model: LipschitzConvNet):
        """``loss_fn(params, batch, rng) -> (loss, metrics)`` (module docstring)."""
        return margin_loss(model, self)

    def build(self, run_dir: Path) -> harness.Experiment:
        """Digits, ``LipschitzConvNet``, Adam state and ``self.loss_fn``."""
        del run_dir
        data = load_digits(self.image_size, seed=0)
        model = self.model()
        sample = jnp.zeros((1, self.image_size, self.image_size, 1))
        optimizer, state = runs.init_state(self, model, sample, optimizer="adam", max_warmup=50)
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=self.loss_fn(model),
            train_data=training.make_loader(data.train, self.batch_size, seed=self.seed),
            eval_data=training.make_eval_loader(data.test),
            desc=f"digits {self.image_size}x{self.image_size} SR T={self.iters}",
            extras={"test": image_arrays(data.test)},
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """Clean and certified accuracy of the final network on the test split, and
        ``certified_accuracy.png``."""
        images, labels = experiment.extras["test"]
        logits = predict(experiment.model, result.state.params, images)
        curve_radii = np.linspace(0.0, max(self.radii) * 1.5, 61)
        curve = np.asarray(certified_accuracy(logits, labels, curve_radii))
        at_radii = np.asarray(certified_accuracy(logits, labels, np.asarray(self.radii)))
        clean = float(np.mean(np.argmax(logits, -1) == labels))
        training.plot_lines(
            {"certified (margin / sqrt 2)": (curve_radii, curve)},
            Path(run_dir) / RESULTS_PLOT,
            xlabel="L2 radius (input units)",
            ylabel="test accuracy",
            ylim=(0, 1),
            points=dict(zip(self.radii, at_radii, strict=True)),
            title=f"digits {self.image_size}x{self.image_size}: clean {clean:.3f}",
        )
        return harness.Report(
            fields={
                "task": "certified-digits",
                "image_size": self.image_size,
                "iters": self.iters,
                "test_examples": len(labels),
                "clean_accuracy": clean,
                "certified_accuracy": {
                    f"{r:g}": float(a) for r, a in zip(self.radii, at_radii, strict=True)
                },
                "median_certified_radius": float(np.median(certified_radii(logits, labels))),
            },
            title=f"digits: LipschitzConvNet, SR T={self.iters}",
            curves=("loss", "accuracy", metric_name(self.radii[len(self.radii) // 2])),
            log_scale=False,
        )


def metric_name(radius: float) -> str:
    return f"certified@{radius:g}"


def margin_loss(model: LipschitzConvNet, config: TrainConfig):
    """Cross-entropy of the offset, tempered logits (module docstring), with accuracy and
    certified accuracy at ``config.radii`` as metrics."""
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
        metrics.update({metric_name(r): certified[i] for i, r in enumerate(config.radii)})
        return loss, metrics

    return loss_fn


def predict(model: LipschitzConvNet, params, images: np.ndarray, batch_size: int = 512):
    """Logits of ``images: [b, s, s, 1]`` -> ``[b, 10]`` (numpy)."""
    apply = jax.jit(model.apply)
    out = [
        np.asarray(apply(params, images[i : i + batch_size]))
        for i in range(0, len(images), batch_size)
    ]
    return np.concatenate(out)


def image_arrays(source, count: int | None = None) -> tuple[np.ndarray, np.ndarray]:
    """``(images [n, s, s, 1], labels [n])`` of the first ``count`` examples (all by
    default, at most all) of an image source."""
    items = [source[i] for i in range(len(source) if count is None else min(count, len(source)))]
    return np.stack([x["image"] for x in items]), np.array([x["label"] for x in items])
