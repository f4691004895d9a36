"""Randomized smoothing: certifying many inputs per batch against one input at a time.

The base classifier of ``python -m smoothing certify`` (``LipschitzConvNet`` on 8x8
digits, 1000 steps at noise 0.25; reused from ``--runs`` when already trained). The
same ``--images`` test images are certified, side by side in one process, by

- batched: one ``smoothing.sample_certification_batch`` call on all the images (the
  command's path: small noise batches of several images share a compiled call, every
  call is dispatched before any result is read back), and
- per input: a loop of ``smoothing.sample_certification`` on one image at a time (the
  command's path before), image ``i`` from ``fold_in(key, i)``: the same noise, so the
  same counts (checked),

each followed by the command's three certificates (Cohen et al., ``R_multi``, the
Lipschitz-aware one) per image on the host. ``n0 = 100``, batch 1000 noisy copies, one
device; the seven default soft maps (the command's setting) or hard votes only. Every
path runs once untimed (compiling its shapes), then ``--repeats`` timed runs in
alternating order; the table gives the median inputs per second (sampling and
certificates) and the ratios, also of the sampling alone. The
1-minute load average is printed before and after (the machine may be shared).

    python benchmarks/smoothing_batched_certify.py [--images 64] [--ns 500 1000 5000]
        [--repeats 3] [--runs runs/smoothing-benchmark]
"""

from __future__ import annotations

import argparse
import os
import time
from pathlib import Path

import jax
import numpy as np
from _machine import machine_line

import smoothing
from smoothing.certify_job import CERTIFICATES, CertifyJobConfig
from training import harness

DEFAULT_RUNS = Path(__file__).resolve().parent.parent / "runs" / "smoothing-benchmark"
N0 = 100
BATCH = 1000


def certify_all(samples, maps) -> list[smoothing.Certificate]:
    """The command's certificates of every image (``lipschitz`` only with soft maps)."""
    methods = CERTIFICATES if maps else ("cohen", "multi")
    return [
        smoothing.certificate(sel, est, method=m, sigma=0.25, alpha=0.001, maps=maps, lipschitz=1.0)
        for sel, est in samples
        for m in methods
    ]


def batched(logits_fn, params, images, n, maps, key):
    return smoothing.sample_certification_batch(
        key, logits_fn, params, images, sigma=0.25, n0=N0, n=n, batch_size=BATCH, maps=maps
    )


def per_input(logits_fn, params, images, n, maps, key):
    return [
        smoothing.sample_certification(
            jax.random.fold_in(key, i),
            logits_fn,
            params,
            image,
            sigma=0.25,
            n0=N0,
            n=n,
            batch_size=BATCH,
            maps=maps,
        )
        for i, image in enumerate(images)
    ]


def timed(path, logits_fn, params, images, n, maps, key):
    """``(samples, sampling seconds, sampling and certificates seconds)`` of one path."""
    start = time.perf_counter()
    samples = path(logits_fn, params, images, n, maps, key)
    sampled = time.perf_counter()
    certify_all(samples, maps)
    return samples, sampled - start, time.perf_counter() - start


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--images", type=int, default=64)
    parser.add_argument("--ns", type=int, nargs="+", default=[500, 1000, 5000])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--runs", default=str(DEFAULT_RUNS))
    args = parser.parse_args()
    print(machine_line())
    print(f"1-minute load average at the start: {os.getloadavg()[0]:.2f}\n")
    config = CertifyJobConfig(train_sigma=0.25, sigma=0.25)
    _, experiment, result = harness.train(config, Path(args.runs) / "sigma-0.25", progress=False)
    model, params = experiment.model, result.state.params
    images = np.asarray(experiment.extras["test"][0][: args.images])

    def logits_fn(p, xs):
        return model.apply(p, xs)

    print(
        f"{len(images)} test images, n0 = {N0}, batch {BATCH}, one device; median of "
        f"{args.repeats} timed runs:\n"
    )
    print(
        "| scores | n | batched (inputs/s) | per input (inputs/s) | ratio | sampling only: "
        "batched / per input | same counts |"
    )
    print("|---|---|---|---|---|---|---|")
    settings = [("7 soft maps", smoothing.DEFAULT_MAPS, n) for n in args.ns]
    settings.append(("hard votes", (), min(args.ns)))
    paths = (batched, per_input)
    for label, maps, n in settings:
        key = jax.random.key(n)
        outputs = [timed(p, logits_fn, params, images, n, maps, key)[0] for p in paths]  # compile
        same = all(
            np.array_equal(a.votes, b.votes)
            for pair_a, pair_b in zip(*outputs, strict=True)
            for a, b in zip(pair_a, pair_b, strict=True)
        )
        seconds: dict = {path: [] for path in paths}
        for repeat in range(args.repeats):
            for path in paths if repeat % 2 == 0 else paths[::-1]:
                run_key = jax.random.fold_in(key, repeat + 1)
                seconds[path].append(timed(path, logits_fn, params, images, n, maps, run_key)[1:])
        sampling, total = (
            [len(images) / np.median([t[i] for t in seconds[path]]) for path in paths]
            for i in (0, 1)
        )
        print(
            f"| {label} | {n:,} | {total[0]:.1f} | {total[1]:.1f} | {total[0] / total[1]:.2f}x "
            f"| {sampling[0] / sampling[1]:.2f}x | {'yes' if same else 'NO'} |",
            flush=True,
        )
    print(f"\n1-minute load average at the end: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
