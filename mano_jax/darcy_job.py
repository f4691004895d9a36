"""The Darcy operator-learning job: data, normalisers, ``fit``, evaluation, figures.

``train_darcy(config, run_dir)`` generates (or reuses) the Darcy data set, trains
the configured operator with ``training.fit`` (progress bar, checkpoints,
resume), and leaves in ``run_dir``::

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
from training import runs

MODEL_PRESETS: dict[str, dict[str, Any]] = {**OPERATOR_PRESETS, "fno": FNO_PRESETS}
NORMALIZERS_FILE = "normalizers.npz"


@dataclasses.dataclass(frozen=True)
class DarcyJobConfig:
    """One Darcy training run.

    Attributes:
      model: a key of ``MODEL_PRESETS`` (``mano``, ``fno``, ``swin``, ``vit``).
      preset: a preset name of that model.
      resolution: training and test resolution (a ``darcy.SUPPORTED_RESOLUTIONS``).
      train_size, test_size, data_seed: the data set (see ``darcy.darcy_config``).
      batch_size: examples per step.
      num_steps: optimizer steps.
      learning_rate, weight_decay: AdamW with a short warm-up and cosine decay.
      seed: parameter initialisation and step randomness.
      eval_every, checkpoint_every: in steps.
    """

    task: str = "darcy"
    model: str = "mano"
    preset: str = "darcy-tiny"
    resolution: int = 32
    train_size: int = 1000
    test_size: int = 200
    data_seed: int = 0
    batch_size: int = 20
    num_steps: int = 1200
    learning_rate: float = 3e-3
    weight_decay: float = 1e-4
    seed: int = 0
    eval_every: int = 500
    checkpoint_every: int = 250

    def __post_init__(self) -> None:
        runs.check_job_config(self, MODEL_PRESETS, "darcy")
        _check_resolution(self.resolution)
        for name in ("train_size", "test_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if self.batch_size > self.train_size:
            raise ValueError(
                f"batch_size must be <= train_size ({self.train_size}), got {self.batch_size}"
            )

    def model_config(self):
        return MODEL_PRESETS[self.model][self.preset]


def _check_resolution(resolution: int) -> None:
    if resolution not in darcy.SUPPORTED_RESOLUTIONS:
        raise ValueError(
            f"resolution must be one of {list(darcy.SUPPORTED_RESOLUTIONS)}, got {resolution}"
        )


def load_split(config: DarcyJobConfig, split: str, resolution: int | None = None, **kw):
    """``(a, u)``: ``[n, s, s]`` float32 arrays of ``split`` at ``resolution``."""
    source = darcy.load_darcy(
        config.resolution if resolution is None else resolution,
        split,
        train_size=config.train_size,
        test_size=config.test_size,
        seed=config.data_seed,
        **kw,
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
    np.savez(path, a_mean=a_norm.mean, a_std=a_norm.std, u_mean=u_norm.mean, u_std=u_norm.std)


def load_normalizers(run_dir: str | os.PathLike):
    with np.load(Path(run_dir) / NORMALIZERS_FILE) as f:
        return (
            darcy.UnitGaussianNormalizer(mean=f["a_mean"], std=f["a_std"]),
            darcy.UnitGaussianNormalizer(mean=f["u_mean"], std=f["u_std"]),
        )


def build(config: DarcyJobConfig):
    """``(model, optimizer, initial train state)`` of ``config``."""
    model = config.model_config().make()
    sample = jnp.zeros((1, config.resolution, config.resolution, 1))
    return model, *runs.init_state(config, model, sample)


def evaluate_operator(predict, params, a: np.ndarray, u: np.ndarray, batch_size: int = 20):
    """Relative L2 over ``(a, u)`` and the predictions ``[n, s, s]``."""
    jitted = jax.jit(predict)
    preds = np.concatenate(
        [np.asarray(jitted(params, a[i : i + batch_size])) for i in range(0, len(a), batch_size)]
    )
    return float(darcy.relative_l2(preds, u)), preds


def train_darcy(
    config: DarcyJobConfig,
    run_dir: str | os.PathLike,
    *,
    data_dir: str | None = None,
    progress: bool = True,
) -> dict[str, Any]:
    """Train ``config`` into ``run_dir`` (resuming it if it holds the same run).

    Returns the contents of ``results.json``.
    """
    run_dir = runs.prepare_run_dir(run_dir, dataclasses.asdict(config))
    a_train, u_train = load_split(config, "train", data_dir=data_dir)
    a_test, u_test = load_split(config, "test", data_dir=data_dir)
    a_norm = darcy.UnitGaussianNormalizer.fit(a_train)
    u_norm = darcy.UnitGaussianNormalizer.fit(u_train)
    _save_normalizers(run_dir / NORMALIZERS_FILE, a_norm, u_norm)

    model, optimizer, state = build(config)
    predict = make_predict(model, a_norm, u_norm)

    def loss_fn(params, batch, rng):
        del rng
        return darcy.relative_l2(predict(params, batch["a"]), batch["u"])

    train_step, eval_step = training.make_train_step(loss_fn, optimizer)
    train_data = training.make_loader(
        training.ArraySource(a=a_train, u=u_train), config.batch_size, seed=config.seed
    )
    test_data = training.make_eval_loader(training.ArraySource(a=a_test, u=u_test), 20)
    result = training.fit(
        state,
        train_step,
        train_data,
        num_steps=config.num_steps,
        workdir=run_dir,
        eval_step=eval_step,
        eval_data=test_data,
        eval_every=config.eval_every,
        checkpoint_every=config.checkpoint_every,
        log_every=10,
        progress=progress,
        desc=f"darcy {config.model}/{config.preset} r{config.resolution}",
    )
    params = jax.device_get(result.state.params)
    test_l2, preds = evaluate_operator(predict, params, a_test, u_test)
    fields = {
        "task": "darcy",
        "model": config.model,
        "preset": config.preset,
        "resolution": config.resolution,
        "test_relative_l2": test_l2,
    }
    results = runs.finish_run(
        run_dir,
        result,
        fields,
        title=f"Darcy r{config.resolution}: {config.model}/{config.preset} (relative L2)",
    )
    plot_samples(a_test, u_test, preds, run_dir / "samples.png")
    return results


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
    saved = runs.load_run_config(run_dir)
    if saved.get("task") != "darcy":
        raise ValueError(f"run directory {run_dir} holds a {saved.get('task')!r} run, not darcy")
    config = DarcyJobConfig(**saved)
    resolution = config.resolution if resolution is None else resolution
    _check_resolution(resolution)
    model, _, template = build(config)
    state = runs.restore_state(run_dir, template)
    a_norm, u_norm = load_normalizers(run_dir)
    a_test, u_test = load_split(config, "test", resolution, data_dir=data_dir)
    test_l2, _ = evaluate_operator(
        make_predict(model, a_norm, u_norm), state.params, a_test, u_test
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
