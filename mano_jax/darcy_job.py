"""The Darcy operator-learning job: data, normalisers, ``fit``, evaluation, figures.

``training.train_and_evaluate(DarcyJobConfig(...), run_dir)`` generates (or
reuses) the Darcy data set, trains the configured operator (progress bar,
checkpoints, resume), and leaves in ``run_dir``::

    config.json        the job configuration (a rerun must match it to resume)
    normalizers.npz    the pointwise Gaussian normalisers of a and u
    checkpoints/       orbax checkpoints (train state + data position)
    metrics.jsonl      training and evaluation records
    loss_curve.png     training loss and test relative L2 against steps
    samples.png        four test samples: coefficient, truth, prediction, error
    results.json       test relative L2, parameters, training time, peak memory

``evaluate_darcy_run(run_dir, resolution)`` reloads a run and measures its test
error at any supported resolution (zero-shot when it differs from training).
"""

from __future__ import annotations

import dataclasses
import os
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from scipy.interpolate import RegularGridInterpolator

import training
from mano_jax import darcy
from mano_jax.fno import FNO_PRESETS
from mano_jax.models import OPERATOR_PRESETS
from miles_cli import check_config, option
from training import harness, runs

MODEL_PRESETS: dict[str, dict[str, Any]] = {**OPERATOR_PRESETS, "fno": FNO_PRESETS}
NORMALIZERS_FILE = "normalizers.npz"
EVAL_BATCH = 20


@dataclasses.dataclass(frozen=True)
class DarcyJobConfig:
    """One Darcy training run (``training.train_and_evaluate`` runs it).

    Attributes:
      model: operator: mano, fno, swin (window attention) or vit (global attention).
      preset: a preset of that model (darcy-tiny, darcy-paper, ...).
      resolution: grid nodes per side, for training and testing.
      train_size: generated training examples.
      test_size: generated test examples.
      data_seed: seed of the generated data set.
      batch_size: examples per step.
      num_steps: optimizer steps.
      learning_rate: peak learning rate (AdamW, short warm-up, cosine decay).
      weight_decay: AdamW's decoupled weight decay.
      seed: parameter initialisation and step randomness.
      eval_every: steps between test evaluations (0: only at the end).
      checkpoint_every: steps between checkpoints (0: only at the end).
      data_dir: TFDS data directory (default: $MILES_JAX_DATA_DIR or
        ~/.cache/miles_jax/tensorflow_datasets).
    """

    task: str = option("darcy", choices=("darcy",), cli=False)
    model: str = option("mano", choices=tuple(MODEL_PRESETS))
    preset: str = option("darcy-tiny")
    resolution: int = option(32, choices=darcy.SUPPORTED_RESOLUTIONS)
    train_size: int = option(1000, minimum=1)
    test_size: int = option(200, minimum=1)
    data_seed: int = option(0, minimum=0)
    batch_size: int = option(20, minimum=1)
    num_steps: int = option(1200, minimum=1, flag="--steps")
    learning_rate: float = option(3e-3, positive=True)
    weight_decay: float = option(1e-4, minimum=0)
    seed: int = option(0, minimum=0)
    eval_every: int = option(500, minimum=0)
    checkpoint_every: int = option(250, minimum=0)
    data_dir: str | None = option(None, identity=False)

    def __post_init__(self) -> None:
        check_config(self)
        if self.preset not in MODEL_PRESETS[self.model]:
            raise ValueError(
                f"preset of model {self.model!r} must be one of "
                f"{sorted(MODEL_PRESETS[self.model])}, got {self.preset!r}"
            )
        if self.batch_size > self.train_size:
            raise ValueError(
                f"batch_size must be <= train_size ({self.train_size}), got {self.batch_size}"
            )

    def model_config(self):
        return MODEL_PRESETS[self.model][self.preset]

    def default_run_dir(self) -> str:
        return f"runs/darcy-{self.model}-{self.preset}-r{self.resolution}"

    def build(self, run_dir: Path) -> harness.Experiment:
        """Data, normalisers (saved to ``run_dir``), operator, AdamW state and loss."""
        a_train, u_train = load_split(self, "train")
        a_test, u_test = load_split(self, "test")
        a_norm = darcy.UnitGaussianNormalizer.fit(a_train)
        u_norm = darcy.UnitGaussianNormalizer.fit(u_train)
        _save_normalizers(Path(run_dir) / NORMALIZERS_FILE, a_norm, u_norm)
        model = self.model_config().make()
        sample = jnp.zeros((1, self.resolution, self.resolution, 1))
        optimizer, state = runs.init_state(self, model, sample)
        predict = make_predict(model, a_norm, u_norm)

        def loss_fn(params, batch, rng):
            del rng
            return darcy.relative_l2(predict(params, batch["a"]), batch["u"])

        return harness.Experiment(
            model=model,
            state=state,
            optimizer=optimizer,
            loss_fn=loss_fn,
            train_data=training.make_loader(
                training.ArraySource(a=a_train, u=u_train), self.batch_size, seed=self.seed
            ),
            eval_data=training.make_eval_loader(
                training.ArraySource(a=a_test, u=u_test), EVAL_BATCH
            ),
            desc=f"darcy {self.model}/{self.preset} r{self.resolution}",
            extras={"predict": predict, "test": (a_test, u_test)},
        )

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """Test relative L2 of the final parameters and ``samples.png``."""
        a_test, u_test = experiment.extras["test"]
        params = jax.device_get(result.state.params)
        test_l2, preds = evaluate_operator(experiment.extras["predict"], params, a_test, u_test)
        plot_samples(a_test, u_test, preds, Path(run_dir) / "samples.png")
        return harness.Report(
            fields={
                "task": "darcy",
                "model": self.model,
                "preset": self.preset,
                "resolution": self.resolution,
                "test_relative_l2": test_l2,
            },
            title=f"Darcy r{self.resolution}: {self.model}/{self.preset} (relative L2)",
        )


def _check_resolution(resolution: int) -> None:
    if resolution not in darcy.SUPPORTED_RESOLUTIONS:
        raise ValueError(
            f"resolution must be one of {list(darcy.SUPPORTED_RESOLUTIONS)}, got {resolution}"
        )


def load_split(config: DarcyJobConfig, split: str, resolution: int | None = None):
    """``(a, u)``: ``[n, s, s]`` float32 arrays of ``split`` at ``resolution``."""
    source = darcy.load_darcy(
        config.resolution if resolution is None else resolution,
        split,
        train_size=config.train_size,
        test_size=config.test_size,
        seed=config.data_seed,
        data_dir=config.data_dir,
    )
    items = [source[i] for i in range(len(source))]
    return np.stack([x["a"] for x in items]), np.stack([x["u"] for x in items])


def resample_normalizer(
    normalizer: darcy.UnitGaussianNormalizer, size: int
) -> darcy.UnitGaussianNormalizer:
    """The pointwise statistics interpolated (bilinear) onto an ``[size, size]`` node grid.

    Both grids span the unit square with nodes on its boundary, so nodes shared
    by the two grids keep their values.
    """
    s = normalizer.mean.shape[-1]
    if s == size:
        return normalizer
    src = np.linspace(0.0, 1.0, s)
    dst = np.stack(np.meshgrid(*(np.linspace(0.0, 1.0, size),) * 2, indexing="ij"), axis=-1)

    def interp(field):
        return RegularGridInterpolator((src, src), np.asarray(field))(dst).astype(np.float32)

    return dataclasses.replace(normalizer, mean=interp(normalizer.mean), std=interp(normalizer.std))


def make_predict(model, a_norm, u_norm):
    """``predict(params, a: [B, s, s]) -> u: [B, s, s]`` in physical units, at any ``s``."""

    def predict(params, a):
        an, un = (resample_normalizer(n, a.shape[-1]) for n in (a_norm, u_norm))
        return un.decode(model.apply(params, an.encode(a)[..., None])[..., 0])

    return predict


def _save_normalizers(path: Path, a_norm, u_norm) -> None:
    if training.is_primary():
        np.savez(
            path, a_mean=a_norm.mean, a_std=a_norm.std, u_mean=u_norm.mean, u_std=u_norm.std
        )


def load_normalizers(run_dir: str | os.PathLike):
    with np.load(Path(run_dir) / NORMALIZERS_FILE) as f:
        return (
            darcy.UnitGaussianNormalizer(mean=f["a_mean"], std=f["a_std"]),
            darcy.UnitGaussianNormalizer(mean=f["u_mean"], std=f["u_std"]),
        )


def evaluate_operator(predict, params, a: np.ndarray, u: np.ndarray, batch_size: int = EVAL_BATCH):
    """Relative L2 over ``(a, u)`` and the predictions ``[n, s, s]``."""
    jitted = jax.jit(predict)
    preds = np.concatenate(
        [np.asarray(jitted(params, a[i : i + batch_size])) for i in range(0, len(a), batch_size)]
    )
    return float(darcy.relative_l2(preds, u)), preds


def evaluate_darcy_run(
    run_dir: str | os.PathLike,
    resolution: int | None = None,
    *,
    data_dir: str | None = None,
) -> dict[str, Any]:
    """Reload ``run_dir`` and return its test relative L2 at ``resolution``.

    ``resolution`` defaults to the training resolution; another one is the
    zero-shot super/sub-resolution test of operator learning (the normalisers
    are interpolated onto the new grid).
    """
    config, experiment, state = harness.restore(DarcyJobConfig, run_dir, data_dir=data_dir)
    resolution = config.resolution if resolution is None else resolution
    _check_resolution(resolution)
    a_norm, u_norm = load_normalizers(run_dir)
    a_test, u_test = load_split(config, "test", resolution)
    test_l2, _ = evaluate_operator(
        make_predict(experiment.model, a_norm, u_norm), state.params, a_test, u_test
    )
    return {
        "model": config.model,
        "preset": config.preset,
        "train_resolution": config.resolution,
        "test_resolution": resolution,
        "test_relative_l2": test_l2,
        "step": int(state.step),
    }


def plot_samples(a, u, preds, path, count: int = 4) -> Path:
    """Grid of ``count`` test samples: coefficient, truth, prediction, absolute error."""
    rows = [[a[i], u[i], preds[i], np.abs(preds[i] - u[i])] for i in range(min(count, len(a)))]
    return training.plot_image_grid(
        rows, path, column_titles=["coefficient a", "solution u", "prediction", "|error|"]
    )
