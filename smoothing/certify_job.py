"""Train a noise-augmented 1-Lipschitz classifier on digits and certify its smoothed version:
``python -m smoothing certify``.

The base classifier is ``lipschitz.LipschitzConvNet`` (spectral-rescaling layers, MaxMin),
1-Lipschitz in L2 from the input image to the logits whatever its weights, trained with
``training.fit`` on scikit-learn's digits (offline, pixels in ``[-1, 1]``) with Gaussian
noise of ``train_sigma`` added to every training batch, and the loss of
``lipschitz.train_job`` (cross-entropy with a logit offset), on the shared harness
(``training.train_and_evaluate(CertifyJobConfig(...), run_dir)``). ``run_dir`` keeps the
checkpoints, so a second run with the same model settings loads the trained network;
the certification settings are not part of the run's identity.

Every test example gets one set of selection and estimation samples, and the three
certificates are computed from the very same samples: Cohen et al.'s, ``R_multi`` and the
Lipschitz-aware one (``L = 1`` for the logits, so ``softmax(z / t)`` scores are
``1 / (2 t)``-Lipschitz and ``sparsemax(z / t)`` ones ``1 / t``-Lipschitz). The examples
are sampled ``certify_batch`` at a time, over all devices (``sample_certification_batch``);
example ``i`` draws its noise from ``fold_in(key(noise_seed), i)`` whatever the grouping
and the devices. Written to ``run_dir``: ``certify_<method>.tsv`` (Cohen's columns ``idx
label predict radius correct time``, ``predict`` -1 for an abstention, ``time`` as Cohen's
``h:mm:ss.ffffff``: the example's share of its group's sampling time plus the
certificate's own),
``certified_accuracy.png`` (certified accuracy against radius, one curve per certificate,
and the unsmoothed network's own margin certificate for reference) and ``results.json``
(settings, certified accuracy at ``radii``, timings).
"""

from __future__ import annotations

import dataclasses
import datetime
import time
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import jax
import jax.numpy as jnp
import numpy as np
from tqdm.auto import tqdm

import training
from lipschitz.certify import certified_radii
from lipschitz.train_job import TrainConfig, margin_loss
from miles_cli import config_to_dict, option
from smoothing.certificates import certificate, check_certificate_arguments
from smoothing.simplex import SimplexMap
from smoothing.smoothed import DEFAULT_MAPS, sample_certification_batch
from training import harness, runs

CERTIFICATES = ("cohen", "multi", "lipschitz")
LABELS = {
    "cohen": "Cohen et al.",
    "multi": "R_multi",
    "combined": "Cohen or R_multi",
    "lipschitz": "Lipschitz-aware",
    "base": "base network, no smoothing",
}
RESULTS_FILE = runs.RESULTS_FILE
PLOT_FILE = "certified_accuracy.png"
TSV_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


@dataclasses.dataclass(frozen=True)
class CertifyJobConfig(TrainConfig):
    """A noise-augmented base classifier and how its smoothed version is certified.

    The fields of ``lipschitz.train_job.TrainConfig`` describe the base classifier
    (smaller defaults: 8x8 digits, 1000 steps) and, with ``train_sigma``, identify the
    trained run; the certification fields do not, so one trained classifier is
    certified under many settings.

    Attributes:
      train_sigma: Gaussian noise added to the training images.
      radii: radii at which certified accuracy is reported.
      sigma: smoothing noise, on the model's input scale (pixels in [-1, 1]).
      n0: selection samples.
      n: estimation samples (the paper: 100000).
      alpha: failure probability.
      examples: test images to certify (the first of the fixed test split of 297).
      sample_batch: noisy copies per forward pass of one device (memory budget).
      certify_batch: test images sampled together (one ``sample_certification_batch``
        call; the results do not depend on it).
      split: share of alpha for the margin bounds of the Lipschitz-aware certificate.
      maps: soft simplex maps the Lipschitz-aware certificate chooses from.
      noise_seed: noise seed (example i uses fold_in(key(noise_seed), i)).
    """

    image_size: int = option(8, minimum=4)
    num_steps: int = option(1000, minimum=1, flag="--steps")
    radii: tuple[float, ...] = option(
        (0.0, 0.25, 0.5, 0.75, 1.0), minimum=0, nonempty=True, identity=False
    )
    train_sigma: float = option(0.25, minimum=0)
    sigma: float = option(0.25, positive=True, identity=False)
    n0: int = option(100, minimum=1, identity=False)
    n: int = option(5000, minimum=1, identity=False)
    alpha: float = option(0.001, positive=True, below=1, identity=False)
    examples: int = option(297, minimum=1, identity=False)
    sample_batch: int = option(1000, minimum=1, identity=False)
    certify_batch: int = option(64, minimum=1, identity=False)
    split: float = option(0.5, positive=True, below=1, identity=False)
    maps: tuple[SimplexMap, ...] = option(DEFAULT_MAPS, cli=False, identity=False)
    noise_seed: int = option(0, minimum=0, identity=False)

    def __post_init__(self) -> None:
        super().__post_init__()
        check_certificate_arguments("lipschitz", self.sigma, self.alpha, self.maps, 1.0, self.split)

    def loss_fn(self, model):
        """``lipschitz.train_job``'s loss on inputs with ``N(0, train_sigma^2)`` noise
        during training (``rng`` given); clean inputs in evaluation (``rng = None``)."""
        loss_fn = margin_loss(model, self)

        def noisy(params, batch, rng):
            if rng is not None:
                image = batch["image"]
                noise = self.train_sigma * jax.random.normal(rng, image.shape)
                batch = {**batch, "image": image + noise}
            return loss_fn(params, batch, None)

        return noisy

    def report(self, experiment: harness.Experiment, result, run_dir: Path) -> harness.Report:
        """Certify the first ``examples`` test images; TSVs, plot and results."""
        images, labels = (a[: self.examples] for a in experiment.extras["test"])
        fields = certify_run(
            self,
            experiment.model,
            result.state.params,
            images,
            labels,
            run_dir,
            progress=experiment.progress,
        )
        return harness.Report(
            fields=fields,
            title=f"noise-augmented LipschitzConvNet, sigma {self.train_sigma:g}",
            curves=("loss", "accuracy"),
            log_scale=False,
        )


def certified_accuracy(records: list[dict[str, Any]], radii) -> np.ndarray:
    """Fraction of examples predicted correctly with certified radius ``>= r`` (Cohen et
    al.'s analysis), for each ``r`` in ``radii``."""
    correct = np.array([r["correct"] for r in records], bool)
    radius = np.array([r["radius"] for r in records])
    return np.array([np.mean(correct & (radius >= r)) for r in radii])


def base_certified_accuracy(logits: np.ndarray, labels: np.ndarray, radii) -> np.ndarray:
    """The unsmoothed 1-Lipschitz network's own certificate, for reference: correct with
    logit margin ``/ sqrt 2 >= r`` (``lipschitz.certify``)."""
    radius = np.asarray(certified_radii(jnp.asarray(logits), jnp.asarray(labels)))
    correct = logits.argmax(-1) == labels
    return np.array([np.mean(correct & (radius >= r)) for r in radii])


def _write_tsv(path: Path, records: list[dict[str, Any]]) -> None:
    with open(path, "w") as out:
        out.write(TSV_HEADER)
        for r in records:
            out.write(
                f"{r['idx']}\t{r['label']}\t{r['predict']}\t{r['radius']:.6g}\t"
                f"{int(r['correct'])}\t{datetime.timedelta(seconds=r['time'])}\n"
            )


def certify_test_set(
    model,
    params,
    images: np.ndarray,
    labels: np.ndarray,
    config: CertifyJobConfig,
    *,
    methods: Sequence[str] = CERTIFICATES,
    progress: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Certify ``images: [b, s, s, 1]`` with each of ``methods`` on shared samples; per
    method one record per image (``idx label predict radius correct time method``).

    The images are sampled ``config.certify_batch`` at a time (``sample_certification_batch``
    over all devices, ``training.data_mesh()``), image ``idx`` from the key
    ``fold_in(key(noise_seed), idx)``: the records do not depend on the grouping nor on the
    number of devices. An image's ``time`` is its group's sampling time divided by the
    group's size, plus its own certificate's time."""

    def logits_fn(p, xs):
        return model.apply(p, xs)

    root = jax.random.key(config.noise_seed)
    mesh = training.data_mesh()
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
    bar = tqdm(total=len(images), desc="certify", disable=not progress, dynamic_ncols=True)
    for start in range(0, len(images), config.certify_batch):
        indices = np.arange(start, min(start + config.certify_batch, len(images)))
        begin = time.perf_counter()
        samples = sample_certification_batch(
            root,
            logits_fn,
            params,
            images[indices],
            sigma=config.sigma,
            n0=config.n0,
            n=config.n,
            batch_size=config.sample_batch,
            maps=config.maps,
            indices=indices,
            mesh=mesh,
        )
        sampled = (time.perf_counter() - begin) / len(indices)
        for idx, (selection, estimation) in zip(indices, samples, strict=True):
            for name in methods:
                begin = time.perf_counter()
                cert = certificate(
                    selection,
                    estimation,
                    method=name,
                    sigma=config.sigma,
                    alpha=config.alpha,
                    maps=config.maps,
                    lipschitz=1.0,
                    split=config.split,
                )
                records[name].append(
                    {
                        "idx": int(idx),
                        "label": int(labels[idx]),
                        "predict": cert.prediction,
                        "radius": cert.radius,
                        "correct": cert.prediction == int(labels[idx]),
                        "time": sampled + time.perf_counter() - begin,
                        "method": cert.method,
                    }
                )
        bar.update(len(indices))
        bar.set_postfix(
            {name: f"{np.mean([r['correct'] for r in records[name]]):.2f}" for name in methods}
        )
    bar.close()
    return records


def _at_radii(radii, accuracy) -> dict[str, float]:
    return {f"{r:g}": float(a) for r, a in zip(radii, accuracy, strict=True)}


def certify_run(
    config: CertifyJobConfig,
    model,
    params,
    images: np.ndarray,
    labels: np.ndarray,
    run_dir: Path,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Certify ``images: [b, s, s, 1]`` with the trained ``params``, write the TSVs and
    the plot to ``run_dir``; returns the results (settings, certified accuracy at
    ``config.radii``, average certified radius, timings)."""
    count = len(labels)
    logits = np.asarray(jax.jit(model.apply)(params, images))
    start = time.perf_counter()
    records = certify_test_set(model, params, images, labels, config, progress=progress)
    seconds = time.perf_counter() - start
    for name, rows in records.items():
        if training.is_primary():
            _write_tsv(Path(run_dir) / f"certify_{name}.tsv", rows)
    curve_radii = np.linspace(0.0, max(1.5, max(config.radii)), 121)
    curves = {
        LABELS[name]: (curve_radii, certified_accuracy(rows, curve_radii))
        for name, rows in records.items()
    }
    curves[LABELS["base"]] = (curve_radii, base_certified_accuracy(logits, labels, curve_radii))
    training.plot_lines(
        curves,
        Path(run_dir) / PLOT_FILE,
        xlabel="L2 radius (input units, pixels in [-1, 1])",
        ylabel="certified accuracy",
        ylim=(0, 1),
        dashed=(LABELS["base"],),
        title=f"digits, {count} test images, sigma {config.sigma:g}, n {config.n}, "
        f"alpha {config.alpha:g}",
    )
    chosen: dict[str, int] = {}
    for row in records["lipschitz"]:
        chosen[row["method"]] = chosen.get(row["method"], 0) + 1
    identity = config_to_dict(config, identity_only=True)
    settings = {k: v for k, v in config_to_dict(config).items() if k not in identity}
    return {
        "settings": settings,
        "train_sigma": config.train_sigma,
        "examples": count,
        "clean_accuracy": float((logits.argmax(-1) == labels).mean()),
        "base_certified_accuracy": _at_radii(
            config.radii, base_certified_accuracy(logits, labels, config.radii)
        ),
        "certified_accuracy": {
            name: _at_radii(config.radii, certified_accuracy(rows, config.radii))
            for name, rows in records.items()
        },
        "average_certified_radius": {
            name: float(np.mean([r["radius"] * r["correct"] for r in rows]))
            for name, rows in records.items()
        },
        "lipschitz_chosen": dict(sorted(chosen.items())),
        "certify_seconds": seconds,
        "forward_passes_per_second": count * (config.n0 + config.n) / seconds,
    }
