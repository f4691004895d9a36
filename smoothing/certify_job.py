"""Train a noise-augmented 1-Lipschitz classifier on digits and certify its smoothed version:
``python -m smoothing certify``.

The base classifier is ``lipschitz.LipschitzConvNet`` (spectral-rescaling layers, MaxMin),
1-Lipschitz in L2 from the input image to the logits whatever its weights, trained with
``training.fit`` on scikit-learn's digits (offline, pixels in ``[-1, 1]``) with Gaussian
noise of ``train_sigma`` added to every training batch, and the loss of
``lipschitz.train_job`` (cross-entropy with a logit offset). ``run_dir`` keeps the
checkpoints, so a second run with the same model settings loads the trained network.

Every test example gets one set of selection and estimation samples, and the three
certificates are computed from the very same samples: Cohen et al.'s, ``R_multi`` and the
Lipschitz-aware one (``L = 1`` for the logits, so ``softmax(z / t)`` scores are
``1 / (2 t)``-Lipschitz and ``sparsemax(z / t)`` ones ``1 / t``-Lipschitz). Written to
``run_dir``: ``certify_<method>.tsv`` (Cohen's columns ``idx label predict radius correct
time``, ``predict`` -1 for an abstention, ``time`` as Cohen's ``h:mm:ss.ffffff``: the
example's shared sampling time plus the certificate's own),
``certified_accuracy.png`` (certified accuracy against radius, one curve per certificate,
and the unsmoothed network's own margin certificate for reference) and ``certify.json``
(settings, certified accuracy at ``radii``, timings).
"""

from __future__ import annotations

import dataclasses
import datetime
import json
import math
import os
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
from lipschitz.train_job import TrainConfig, fit_digits, make_loss_fn
from smoothing.certificates import certificate, check_certificate_arguments
from smoothing.simplex import SimplexMap
from smoothing.smoothed import DEFAULT_MAPS, sample_certification
from training import runs

CERTIFICATES = ("cohen", "multi", "lipschitz")
LABELS = {
    "cohen": "Cohen et al.",
    "multi": "R_multi",
    "combined": "Cohen or R_multi",
    "lipschitz": "Lipschitz-aware",
    "base": "base network, no smoothing",
}
RESULTS_FILE = "certify.json"
PLOT_FILE = "certified_accuracy.png"
TSV_HEADER = "idx\tlabel\tpredict\tradius\tcorrect\ttime\n"


@dataclasses.dataclass(frozen=True)
class CertifySettings:
    """How the smoothed classifier is certified (not part of the trained run's identity).

    Attributes:
      sigma: smoothing noise, on the model's input scale (pixels in ``[-1, 1]``).
      n0, n, alpha: selection samples, estimation samples, failure probability.
      examples: how many test images (the first of the fixed test split) to certify.
      batch_size: noisy copies per forward pass (memory budget).
      split: share of ``alpha`` for the margin bounds of the Lipschitz-aware certificate.
      maps: soft simplex maps the Lipschitz-aware certificate chooses from.
      radii: radii at which certified accuracy is reported.
      seed: noise seed (example ``i`` uses ``fold_in(PRNGKey(seed), i)``).
    """

    sigma: float = 0.25
    n0: int = 100
    n: int = 5000
    alpha: float = 0.001
    examples: int = 297
    batch_size: int = 1000
    split: float = 0.5
    maps: tuple[SimplexMap, ...] = DEFAULT_MAPS
    radii: tuple[float, ...] = (0.0, 0.25, 0.5, 0.75, 1.0)
    seed: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "maps", tuple(self.maps))
        object.__setattr__(self, "radii", tuple(float(r) for r in self.radii))
        check_certificate_arguments("lipschitz", self.sigma, self.alpha, self.maps, 1.0, self.split)
        for name in ("n0", "n", "examples", "batch_size"):
            if getattr(self, name) < 1:
                raise ValueError(f"{name} must be >= 1, got {getattr(self, name)}")
        if not self.radii or any(not (r >= 0 and math.isfinite(r)) for r in self.radii):
            raise ValueError(f"radii must be finite numbers >= 0, got {self.radii}")

    def as_json(self) -> dict[str, Any]:
        out = dataclasses.asdict(self)
        out["maps"] = [str(m) for m in self.maps]
        out["radii"] = list(self.radii)
        return out


def run_config(model: TrainConfig, train_sigma: float) -> dict[str, Any]:
    """What identifies a trained run in ``config.json``."""
    return {**model.as_json(), "train_sigma": train_sigma}


def noisy_loss_fn(model, config: TrainConfig, train_sigma: float):
    """``lipschitz.train_job``'s loss on inputs with ``N(0, train_sigma^2)`` noise during
    training (``rng`` given); clean inputs in evaluation (``rng = None``)."""
    loss_fn = make_loss_fn(model, config)

    def noisy(params, batch, rng):
        if rng is not None:
            image = batch["image"]
            batch = {**batch, "image": image + train_sigma * jax.random.normal(rng, image.shape)}
        return loss_fn(params, batch, None)

    return noisy


def train_base(
    config: TrainConfig, train_sigma: float, run_dir: str | os.PathLike, *, progress: bool = True
):
    """Train (or load, if ``run_dir`` holds the finished run) the base classifier;
    ``(model, params, data)``."""
    if not (train_sigma >= 0 and math.isfinite(train_sigma)):
        raise ValueError(f"train_sigma must be a finite number >= 0, got {train_sigma}")
    run_dir = runs.prepare_run_dir(run_dir, run_config(config, train_sigma))
    model, data, result = fit_digits(
        config,
        run_dir,
        lambda model, config: noisy_loss_fn(model, config, train_sigma),
        progress=progress,
        desc=f"digits {config.image_size}x{config.image_size}, noise {train_sigma:g}",
    )
    if result.history:
        training.plot_curves(
            result.history,
            run_dir / "loss_curve.png",
            metrics=("loss", "accuracy"),
            log_scale=False,
            title=f"noise-augmented LipschitzConvNet, sigma {train_sigma:g}",
        )
    return model, result.state.params, data


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


def _plot(curves: dict[str, np.ndarray], radii: np.ndarray, path: Path, title: str) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for name, accuracy in curves.items():
        style = {"linestyle": "--", "color": "gray"} if name == "base" else {}
        ax.plot(radii, accuracy, label=LABELS[name], **style)
    ax.set_xlabel("L2 radius (input units, pixels in [-1, 1])")
    ax.set_ylabel("certified accuracy")
    ax.set_ylim(0, 1)
    ax.grid(alpha=0.3)
    ax.legend()
    ax.set_title(title, fontsize=9)
    fig.tight_layout()
    fig.savefig(path, dpi=110)
    plt.close(fig)


def certify_test_set(
    model,
    params,
    images: np.ndarray,
    labels: np.ndarray,
    settings: CertifySettings,
    *,
    methods: Sequence[str] = CERTIFICATES,
    progress: bool = True,
) -> dict[str, list[dict[str, Any]]]:
    """Certify ``images`` with each of ``methods`` on shared samples; per method one record
    per image (``idx label predict radius correct time method``)."""

    def logits_fn(p, xs):
        return model.apply(p, xs)

    root = jax.random.PRNGKey(settings.seed)
    records: dict[str, list[dict[str, Any]]] = {name: [] for name in methods}
    bar = tqdm(range(len(images)), desc="certify", disable=not progress, dynamic_ncols=True)
    for idx in bar:
        start = time.perf_counter()
        selection, estimation = sample_certification(
            logits_fn,
            params,
            images[idx],
            jax.random.fold_in(root, idx),
            sigma=settings.sigma,
            n0=settings.n0,
            n=settings.n,
            batch_size=settings.batch_size,
            maps=settings.maps,
        )
        sampled = time.perf_counter() - start
        for name in methods:
            begin = time.perf_counter()
            cert = certificate(
                selection,
                estimation,
                method=name,
                sigma=settings.sigma,
                alpha=settings.alpha,
                maps=settings.maps,
                lipschitz=1.0,
                split=settings.split,
            )
            records[name].append(
                {
                    "idx": idx,
                    "label": int(labels[idx]),
                    "predict": cert.prediction,
                    "radius": cert.radius,
                    "correct": cert.prediction == int(labels[idx]),
                    "time": sampled + time.perf_counter() - begin,
                    "method": cert.method,
                }
            )
        bar.set_postfix(
            {name: f"{np.mean([r['correct'] for r in records[name]]):.2f}" for name in methods}
        )
    bar.close()
    return records


def run_certify(
    config: TrainConfig,
    train_sigma: float,
    settings: CertifySettings,
    run_dir: str | os.PathLike,
    *,
    progress: bool = True,
) -> dict[str, Any]:
    """Train or load the base classifier, certify ``settings.examples`` test images, write
    the TSVs, the plot and ``certify.json``; return what ``certify.json`` holds."""
    run_dir = Path(run_dir)
    model, params, data = train_base(config, train_sigma, run_dir, progress=progress)
    count = min(settings.examples, len(data.test))
    items = [data.test[i] for i in range(count)]
    images = np.stack([x["image"] for x in items])
    labels = np.array([x["label"] for x in items])
    logits = np.asarray(jax.jit(model.apply)(params, images))
    clean = logits.argmax(-1) == labels
    start = time.perf_counter()
    records = certify_test_set(model, params, images, labels, settings, progress=progress)
    seconds = time.perf_counter() - start
    for name, rows in records.items():
        _write_tsv(run_dir / f"certify_{name}.tsv", rows)
    curve_radii = np.linspace(0.0, max(1.5, max(settings.radii)), 121)
    curves = {name: certified_accuracy(rows, curve_radii) for name, rows in records.items()}
    curves["base"] = base_certified_accuracy(logits, labels, curve_radii)
    _plot(
        curves,
        curve_radii,
        run_dir / PLOT_FILE,
        f"digits, {count} test images, sigma {settings.sigma:g}, n {settings.n}, "
        f"alpha {settings.alpha:g}",
    )
    chosen: dict[str, int] = {}
    for row in records["lipschitz"]:
        chosen[row["method"]] = chosen.get(row["method"], 0) + 1
    results = {
        "settings": settings.as_json(),
        "train_sigma": train_sigma,
        "examples": count,
        "clean_accuracy": float(clean.mean()),
        "base_certified_accuracy": {
            f"{r:g}": float(a)
            for r, a in zip(
                settings.radii,
                base_certified_accuracy(logits, labels, settings.radii),
                strict=True,
            )
        },
        "certified_accuracy": {
            name: {
                f"{r:g}": float(a)
                for r, a in zip(
                    settings.radii, certified_accuracy(rows, settings.radii), strict=True
                )
            }
            for name, rows in records.items()
        },
        "average_certified_radius": {
            name: float(np.mean([r["radius"] * r["correct"] for r in rows]))
            for name, rows in records.items()
        },
        "lipschitz_chosen": dict(sorted(chosen.items())),
        "certify_seconds": seconds,
        "forward_passes_per_second": count * (settings.n0 + settings.n) / seconds,
    }
    (run_dir / RESULTS_FILE).write_text(json.dumps(results, indent=2) + "\n")
    return results
