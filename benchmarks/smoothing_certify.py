"""Randomized smoothing on digits: certified accuracy of the certificates, and throughput.

One noise-augmented 1-Lipschitz classifier per noise level (``python -m smoothing
certify``'s defaults: ``LipschitzConvNet`` on 8x8 digits, 1000 steps, trained at the
noise level it is certified at; reused from ``--runs`` when already trained). Every
test image gets ONE set of selection (``n0 = 100``) and estimation (``n``, the paper's
100 000 by default) samples, and all certificates are computed from those same samples
at ``alpha = 0.001``: Cohen et al., ``R_multi``, the per-input choice between them
("Cohen or R_multi") and the Lipschitz-aware certificate (the logits are 1-Lipschitz);
for reference, the unsmoothed network's own certificate (logit margin / sqrt 2).

Throughput: noisy forward passes per second of the jitted batched sampler
(``smoothing.sample_statistics``) against a straightforward per-batch Python loop over
the same jitted model (``smoothing.reference_statistics``: noise drawn eagerly, votes
counted on the host after each batch, scores gathered, numpy statistics at the end), on
the same input, keys, batch size (1000) and ``n``; each first run once untimed (compiling
every shape, including the key split), then one timed run, for hard votes only (Cohen's
setting) and with the seven default soft maps.

Prints markdown tables.

    python benchmarks/smoothing_certify.py [--sigmas 0.25 0.5] [--examples 100]
        [--n 100000] [--throughput-n 100000] [--runs runs/smoothing-benchmark]
"""

from __future__ import annotations

import argparse
import time
from pathlib import Path

import jax
import numpy as np
from _machine import machine_line

import smoothing
from smoothing.certify_job import (
    LABELS,
    CertifyJobConfig,
    base_certified_accuracy,
    certified_accuracy,
    certify_test_set,
)
from training import harness

METHODS = ("cohen", "multi", "combined", "lipschitz")
RADII = (0.0, 0.25, 0.5, 0.75, 1.0)
DEFAULT_RUNS = Path(__file__).resolve().parent.parent / "runs" / "smoothing-benchmark"


def accuracy_table(sigma: float, n: int, records: dict, seconds: float, base) -> str:
    header = " | ".join(f"r={r:g}" for r in RADII)
    lines = [
        f"sigma = {sigma:g}, n0 = 100, n = {n:,}, alpha = 0.001, "
        f"{len(records['cohen'])} test images, {seconds:.0f} s of sampling and certification:",
        "",
        f"| certificate | {header} | average certified radius | larger / smaller radius "
        "than Cohen's |",
        "|---|" + "---|" * (len(RADII) + 2),
    ]
    cohen = certified_accuracy(records["cohen"], RADII)
    cohen_radii = np.array([r["radius"] for r in records["cohen"]])
    for name in METHODS:
        accuracy = certified_accuracy(records[name], RADII)
        mean = np.mean([r["radius"] * r["correct"] for r in records[name]])
        cells = " | ".join(
            f"{a:.3f}" if name == "cohen" else f"{a:.3f} ({100 * (a - c):+.1f})"
            for a, c in zip(accuracy, cohen, strict=True)
        )
        radii = np.array([r["radius"] for r in records[name]])
        versus = (
            ""
            if name == "cohen"
            else f"{np.sum(radii > cohen_radii)} / {np.sum(radii < cohen_radii)}"
        )
        lines.append(f"| {LABELS[name]} | {cells} | {mean:.3f} | {versus} |")
    cells = " | ".join(f"{a:.3f}" for a in base)
    lines.append(f"| {LABELS['base']} (margin / sqrt 2, clean input) | {cells} | | |")
    chosen: dict[str, int] = {}
    for row in records["lipschitz"]:
        chosen[row["method"]] = chosen.get(row["method"], 0) + 1
    used = ", ".join(f"{k}: {v}" for k, v in sorted(chosen.items(), key=lambda kv: -kv[1]))
    lines += ["", f"Lipschitz-aware certificate chosen per input: {used}."]
    return "\n".join(lines)


def throughput_table(model, params, image, n: int) -> str:
    def logits_fn(p, xs):
        return model.apply(p, xs)

    key = jax.random.key(0)
    lines = [
        f"One input, n = {n:,} noisy samples, batch 1000, one timed run after compiling:",
        "",
        "| scores | jitted batched sampler (passes/s) | per-batch Python loop (passes/s) | ratio |",
        "|---|---|---|---|",
    ]
    for label, maps in [("hard votes", ()), ("hard votes + 7 soft maps", smoothing.DEFAULT_MAPS)]:
        rates = []
        for fn in (smoothing.sample_statistics, smoothing.reference_statistics):
            kwargs = {"sigma": 0.25, "batch_size": 1000, "maps": maps}
            fn(key, logits_fn, params, image, num=n, **kwargs)  # compile, same shapes
            start = time.perf_counter()
            fn(jax.random.fold_in(key, 1), logits_fn, params, image, num=n, **kwargs)
            rates.append(n / (time.perf_counter() - start))
        lines.append(
            f"| {label} | {rates[0]:,.0f} | {rates[1]:,.0f} | {rates[0] / rates[1]:.2f}x |"
        )
    return "\n".join(lines)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--sigmas", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--examples", type=int, default=100)
    parser.add_argument("--n", type=int, default=100_000)
    parser.add_argument("--throughput-n", type=int, default=100_000)
    parser.add_argument("--runs", default=str(DEFAULT_RUNS))
    args = parser.parse_args()
    print(machine_line(), "\n")
    for sigma in args.sigmas:
        run_dir = Path(args.runs) / f"sigma-{sigma:g}"
        config = CertifyJobConfig(train_sigma=sigma, sigma=sigma, n=args.n)
        _, experiment, result = harness.train(config, run_dir, progress=False)
        model, params = experiment.model, result.state.params
        images, labels = (a[: args.examples] for a in experiment.extras["test"])
        logits = np.asarray(jax.jit(model.apply)(params, images))
        clean = logits.argmax(-1) == labels
        print(f"Base classifier trained at noise {sigma:g}: clean accuracy {clean.mean():.3f}.\n")
        start = time.perf_counter()
        records = certify_test_set(
            model, params, images, labels, config, methods=METHODS, progress=True
        )
        seconds = time.perf_counter() - start
        base = base_certified_accuracy(logits, labels, RADII)
        print(accuracy_table(sigma, args.n, records, seconds, base), "\n")
    print(throughput_table(model, params, images[0], args.throughput_n))


if __name__ == "__main__":
    main()
