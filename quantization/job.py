"""Training jobs on the shared harness: conditional quantization of the synthetic laws
(``python -m quantization train``) and digit inpainting (``python -m quantization
inpaint``); ``training.train_and_evaluate(config, run_dir)`` runs either.

A synthetic run trains ``ConditionalQuantizer`` (or, with ``model="mdn"``, the mixture
density network baseline) on draws of a ``laws.LAWS`` law and judges its ``n`` weighted
points at ``test_inputs`` inputs evenly spaced in ``[-1, 1]``: the exact W2 distance to
``samples_per_input`` draws of the true conditional (stratified: ``laws``), averaged
over the inputs, beside k-means on the targets of the nearest training inputs and
k-means on fresh draws of the truth (the oracle). It leaves ``quantization.png`` (each
head's point against ``x`` with the truth dashed), ``w2.png`` (W2 against ``x``) and
``results.json``.
"""

from __future__ import annotations

import dataclasses
from pathlib import Path

import jax
import numpy as np

import training
from miles_cli import check_config, option
from quantization.baselines import (
    MixtureDensityNetwork,
    kmeans_quantizer,
    make_mdn_loss_fn,
    nearest_targets,
)
from quantization.conditional import ConditionalQuantizer, head_wins, make_loss_fn
from quantization.laws import LAWS
from quantization.wasserstein import w2_to_samples
from training import harness, runs
from training.datasets import load_digits
from training.datasets.images import DIGITS_TEST_SIZE

MODELS = ("cclvq", "mdn")
VALID_SIZE = 2000
TRUTH_KEY = 20260  # the same true-conditional draws for every run, model and seed
QUANTIZATION_PLOT = "quantization.png"
W2_PLOT = "w2.png"
GRID_PLOT = "inpainting.png"
DIGITS_TRAIN_SIZE = 1797 - DIGITS_TEST_SIZE


@dataclasses.dataclass(frozen=True)
class QuantizerConfig:
    """What every conditional-quantization run shares.

    Attributes:
      num_points: n, the points (heads) per input.
      hidden: widths of the network's hidden layers.
      batch_size: examples per step.
      num_steps: optimizer steps (Adam, warm-up, cosine decay).
      learning_rate: peak learning rate.
      reseed: pull heads that win nothing in a batch towards its worst-served example.
      seed: data, parameter initialisation and batch order.
      eval_every: steps between validation passes (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end).
    """

    num_points: int = option(4, minimum=1)
    hidden: tuple[int, ...] = option((64, 64), minimum=1, nonempty=True)
    batch_size: int = option(256, minimum=1)
    num_steps: int = option(2000, minimum=1, flag="--steps")
    learning_rate: float = option(3e-3, positive=True)
    reseed: bool = option(True)
    seed: int = option(0, minimum=0)
    eval_every: int = option(500, minimum=0)
    checkpoint_every: int = option(0, minimum=0)

    def __post_init__(self) -> None:
        check_config(self)

    def experiment(self, model, loss_fn, train, valid, desc, extras) -> harness.Experiment:
        """The harness experiment for ``train`` and ``valid`` pairs ``(x, y)``."""
        x, y = train
        optimizer, state = runs.init_state(self, model, x[:1], optimizer="adam")
        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=loss_fn,
            train_data=training.make_loader(
                training.ArraySource(x=x, y=y), self.batch_size, seed=self.seed
            ),
            eval_data=training.make_eval_loader(training.ArraySource(x=valid[0], y=valid[1]), 500),
            desc=desc,
            log_every=max(1, min(50, self.num_steps // 20)),
            extras={"train": train, **extras},
        )

    def common_fields(self, experiment: harness.Experiment, result) -> dict:
        """Dead heads on the training data (quantizers only) and the training cost."""
        trains = [r for r in result.history if r["split"] == "train"]
        # Median over the logging windows after the first (which holds the compilation).
        step_ms = [1e3 * self.batch_size / r["examples_per_sec"] for r in trains[1:] or trains]
        fields = {"num_points": self.num_points, "ms_per_step": float(np.median(step_ms))}
        if isinstance(experiment.model, ConditionalQuantizer):
            wins = head_wins(experiment.model, result.state.params, *experiment.extras["train"])
            fields["head_wins"] = wins.tolist()
            fields["dead_heads"] = np.flatnonzero(wins == 0).tolist()
        return fields


@dataclasses.dataclass(frozen=True)
class SyntheticConfig(QuantizerConfig):
    """Conditional quantization of a synthetic law (``training.train_and_evaluate`` runs it).

    Attributes:
      law: the conditional law (quantization.laws).
      model: cclvq (the conditional quantizer) or mdn (mixture density network).
      train_size: training draws of (X, Y).
      test_inputs: inputs in [-1, 1] where W2 is measured.
      samples_per_input: true-conditional draws per test input for W2.
      neighbours: training targets per test input for the k-means baseline.
      baselines: also score k-means on nearest-neighbour targets and on true draws, and
        the model's points with the true masses of their cells.
    """

    law: str = option("mixture", choices=tuple(LAWS))
    model: str = option("cclvq", choices=MODELS)
    train_size: int = option(20_000, minimum=2)
    test_inputs: int = option(64, minimum=1)
    samples_per_input: int = option(500, minimum=1)
    neighbours: int = option(200, minimum=1)
    baselines: bool = option(True, identity=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        for name in ("samples_per_input", "neighbours"):
            if getattr(self, name) < self.num_points:
                raise ValueError(
                    f"{name} must be >= num_points {self.num_points}, got {getattr(self, name)}"
                )
        for name in ("neighbours", "batch_size"):
            if getattr(self, name) > self.train_size:
                raise ValueError(
                    f"{name} must be <= train_size {self.train_size}, got {getattr(self, name)}"
                )

    def build(self, run_dir: Path) -> harness.Experiment:
        """Draws of the law, the model, Adam state, the loss and the test inputs."""
        del run_dir
        law = LAWS[self.law]
        k_train, k_valid = jax.random.split(jax.random.fold_in(jax.random.key(self.seed), 1))
        train = law.sample(k_train, self.train_size)
        x_test = np.linspace(-1, 1, self.test_inputs, dtype=np.float32)[:, None]
        if self.model == "cclvq":
            model = ConditionalQuantizer(self.num_points, law.dim_y, self.hidden)
            loss_fn = make_loss_fn(model, reseed=self.reseed)
        else:
            model = MixtureDensityNetwork(self.num_points, law.dim_y, self.hidden)
            loss_fn = make_mdn_loss_fn(model)
        return self.experiment(
            model,
            loss_fn,
            train,
            law.sample(k_valid, VALID_SIZE),
            f"{self.model} n={self.num_points} {self.law}",
            {"x_test": x_test},
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """W2 to the true conditional at the test inputs, the baselines, the figures."""
        law = LAWS[self.law]
        x_test = experiment.extras["x_test"]
        k_truth, k_oracle = jax.random.split(jax.random.key(TRUTH_KEY))
        truth = law.conditional(k_truth, x_test, self.samples_per_input, stratified=True)
        points, weights = jax.jit(experiment.model.predict)(result.state.params, x_test)
        points, weights = np.asarray(points), np.asarray(weights, np.float64)
        scores = {self.model: w2_to_samples(points, weights, truth)}
        if self.baselines:
            x, y = experiment.extras["train"]
            near = nearest_targets(x, y, x_test, self.neighbours)
            fresh = law.conditional(k_oracle, x_test, self.samples_per_input, stratified=True)
            for name, draws in (("knn_kmeans", near), ("oracle_kmeans", fresh)):
                scores[name] = w2_to_samples(*kmeans_quantizer(draws, self.num_points), truth)
            # The model's points with their cells' true masses: how much of its W2 is
            # the placement of the points and how much the weight head's estimate.
            owner = np.argmin(np.sum((fresh[:, :, None] - points[:, None]) ** 2, -1), -1)
            masses = np.stack([np.bincount(o, minlength=self.num_points) for o in owner])
            scores[f"{self.model}_true_masses"] = w2_to_samples(
                points, masses / self.samples_per_input, truth
            )
        plot_quantization(law, x_test, points, weights, Path(run_dir) / QUANTIZATION_PLOT)
        training.plot_lines(
            {name: (x_test[:, 0], w2) for name, w2 in scores.items()},
            Path(run_dir) / W2_PLOT,
            xlabel="x",
            ylabel="W2 to the true conditional",
            dashed=("oracle_kmeans",),
            title=f"{self.law}, n = {self.num_points}",
        )
        fields = {
            "law": self.law,
            "model": self.model,
            "w2": {name: float(np.mean(w2)) for name, w2 in scores.items()},
            "test_inputs": x_test[:, 0].tolist(),
            "w2_per_input": {name: w2.tolist() for name, w2 in scores.items()},
            **self.common_fields(experiment, result),
        }
        curves = ("loss", "distortion") if self.model == "cclvq" else ("loss",)
        return harness.Report(
            fields=fields,
            title=f"{self.model}, n = {self.num_points}, {self.law}",
            curves=curves,
            log_scale=False,
        )


def plot_quantization(law, x, points, weights, path: Path) -> None:
    """Each head's point (its ``law.coordinate``) against ``x``, heads ordered by their
    mean weight, with the truth's curves dashed."""
    order = np.argsort(-weights.mean(axis=0))
    coords = law.coordinate(points)  # [batch, n]
    curves = {
        f"head {i} (mean weight {weights[:, i].mean():.2f})": (x[:, 0], coords[:, i]) for i in order
    }
    reference = law.reference(x)
    curves.update({label: (x[:, 0], v) for label, v in reference.items()})
    training.plot_lines(
        curves,
        path,
        xlabel="x",
        ylabel=law.coordinate_name,
        dashed=tuple(reference),
        title=f"{law.name}: {points.shape[1]} points per x (truth dashed)",
    )


def flat_halves(source) -> tuple[np.ndarray, np.ndarray]:
    """``(top [N, H/2 * W], bottom [N, H/2 * W])`` of the images of a digits source."""
    images = np.stack([source[i]["image"][..., 0] for i in range(len(source))])
    half = images.shape[1] // 2
    return images[:, :half].reshape(len(images), -1), images[:, half:].reshape(len(images), -1)


@dataclasses.dataclass(frozen=True)
class InpaintingConfig(QuantizerConfig):
    """Digit inpainting: the bottom half of an 8x8 digit from its top half, as n weighted
    completions (``training.train_and_evaluate`` runs it).

    Attributes:
      num_points: n, the completions per image.
      hidden: widths of the network's hidden layers.
      batch_size: examples per step.
      num_steps: optimizer steps (Adam, warm-up, cosine decay).
      learning_rate: peak learning rate.
      examples: test images shown in the grid.
      eval_every: steps between test passes (0: only at the end).
    """

    num_points: int = option(8, minimum=1)
    hidden: tuple[int, ...] = option((256, 256), minimum=1, nonempty=True)
    batch_size: int = option(128, minimum=1)
    num_steps: int = option(2000, minimum=1, flag="--steps")
    learning_rate: float = option(1e-3, positive=True)
    examples: int = option(8, minimum=1, maximum=DIGITS_TEST_SIZE, identity=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        if self.batch_size > DIGITS_TRAIN_SIZE:
            raise ValueError(
                f"batch_size must be <= the {DIGITS_TRAIN_SIZE} training digits, got "
                f"{self.batch_size}"
            )

    def build(self, run_dir: Path) -> harness.Experiment:
        """Digits 8x8 (train and test halves), the quantizer, Adam state, the loss."""
        del run_dir
        data = load_digits(8, seed=0)
        model = ConditionalQuantizer(self.num_points, 32, self.hidden)
        return self.experiment(
            model,
            make_loss_fn(model, reseed=self.reseed),
            flat_halves(data.train),
            flat_halves(data.test),
            f"digits inpainting n={self.num_points}",
            {"test": flat_halves(data.test)},
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """Best-of-n error, the error of the heaviest completion and of the weighted mean
        of the completions, their diversity, and the grid ``inpainting.png``."""
        top, bottom = experiment.extras["test"]
        points, weights = jax.jit(experiment.model.predict)(result.state.params, top)
        points, weights = np.asarray(points), np.asarray(weights)
        errors = np.mean((points - bottom[:, None]) ** 2, axis=-1)  # [N, n], per pixel
        heaviest = np.argmax(weights, axis=-1)
        mean = np.einsum("bn,bnd->bd", weights, points)
        fields = {
            "task": "digits 8x8, bottom half from the top half",
            "test_examples": len(top),
            "best_of_n_mse": float(np.mean(errors.min(axis=-1))),
            "heaviest_mse": float(np.mean(errors[np.arange(len(top)), heaviest])),
            "weighted_mean_mse": float(np.mean((mean - bottom) ** 2)),
            "diversity_rms": float(diversity(points)),
            **self.common_fields(experiment, result),
        }
        plot_inpainting(top, bottom, points, weights, self.examples, Path(run_dir) / GRID_PLOT)
        return harness.Report(
            fields=fields,
            title=f"digits inpainting, n = {self.num_points}",
            curves=("loss", "distortion"),
            log_scale=False,
        )


def diversity(points: np.ndarray) -> float:
    """Root-mean-square pixel distance between two different completions of the same
    image, averaged over pairs and images: ``points [N, n, pixels]`` (0 for ``n = 1``)."""
    n = points.shape[1]
    if n == 1:
        return 0.0
    d2 = np.mean((points[:, :, None] - points[:, None]) ** 2, axis=-1)  # [N, n, n]
    return float(np.mean(np.sqrt(d2.sum(axis=(1, 2)) / (n * (n - 1)))))


def plot_inpainting(top, bottom, points, weights, count: int, path: Path) -> None:
    """Rows: test images; columns: the truth, then the completions by decreasing weight
    (mean weight of each rank in the column title)."""
    order = np.argsort(-weights, axis=-1)
    ranked = np.take_along_axis(points, order[..., None], axis=1)
    ranked_weights = np.take_along_axis(weights, order, axis=1)

    def image(top_half, bottom_half):
        # Flipped: the grid draws row 0 at the bottom.
        return np.concatenate([top_half, bottom_half]).reshape(8, 8)[::-1]

    rows = [
        [image(top[b], bottom[b])] + [image(top[b], p) for p in ranked[b]]
        for b in range(min(count, len(top)))
    ]
    titles = ["truth"] + [f"#{i + 1} (p {w:.2f})" for i, w in enumerate(ranked_weights.mean(0))]
    training.plot_image_grid(rows, path, column_titles=titles, cmap="gray_r")
