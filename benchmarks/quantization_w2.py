"""Conditional quantization (CCLVQ) against its baselines in W2, and its training cost.

1. W2 against n: for each synthetic law (``quantization.LAWS``), n in {1, 2, 4, 8, 16}
   and a few seeds, ``python -m quantization train`` runs (the shared harness) of the
   conditional quantizer and of the mixture density network (same body, scored by its
   component means with the mixture weights), each scored by the exact W2 between its
   n weighted points and 400 stratified draws of the true conditional at 32 test inputs;
   beside them k-means on the targets of the 200 nearest training inputs and k-means on fresh
   draws of the truth (the oracle: what an n-point quantizer can reach). n = 1 of CCLVQ
   is the conditional mean (its loss is then the squared error). A diagnostic row scores
   CCLVQ's points with the true masses of their cells instead of the weight head's
   estimate, separating the placement of the points from the weights. Mean +- sd over
   seeds.
2. Dead heads of the trained quantizers (heads with no win on the training set).
3. Training cost per step against n: one jitted optimizer step (batch 256), median of
   repeats, CCLVQ and MDN.

    python benchmarks/quantization_w2.py [--seeds 2] [--steps 1000] [--run-dir DIR]
"""

from __future__ import annotations

import argparse
import os
import statistics
import time
from pathlib import Path

import jax
import numpy as np
from _machine import machine_line

import training
from quantization.job import SyntheticConfig
from quantization.laws import LAWS

NS = (1, 2, 4, 8, 16)


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def config(law: str, model: str, n: int, seed: int, steps: int) -> SyntheticConfig:
    return SyntheticConfig(
        law=law,
        model=model,
        num_points=n,
        seed=seed,
        num_steps=steps,
        train_size=10_000,
        test_inputs=32,
        samples_per_input=400,
        neighbours=200,
        baselines=model == "cclvq",
        eval_every=0,
    )


def cell(values: list[float]) -> str:
    if not values:
        return "—"
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{np.mean(values):.3f} ± {np.std(values, ddof=1):.3f}"


def w2_tables(args) -> None:
    print("\n### 1. Mean W2 to the true conditional against n (mean ± sd over seeds)\n")
    print(
        f"{args.steps} Adam steps, batch 256, 10 000 training draws, MLP 64-64; W2 at 32 test "
        "inputs in [-1, 1] against 400 stratified true draws each. CCLVQ at n = 1 is the "
        "conditional mean; MDN scored by its component means and mixture weights.\n"
    )
    dead: dict[int, list[int]] = {n: [] for n in args.ns}
    for law in args.laws:
        scores: dict[str, dict[int, list[float]]] = {}
        for n in args.ns:
            for seed in range(args.seeds):
                for model in ("cclvq", "mdn") if n > 1 else ("cclvq",):
                    run_dir = args.run_dir / f"{law}-{model}-n{n}-seed{seed}"
                    results = training.train_and_evaluate(
                        config(law, model, n, seed, args.steps), run_dir, progress=False
                    )
                    for name, w2 in results["w2"].items():
                        scores.setdefault(name, {}).setdefault(n, []).append(w2)
                    if model == "cclvq":
                        dead[n].append(len(results["dead_heads"]))
        print(f"\n**{law}**\n")
        print(row("method", *(f"n = {n}" for n in args.ns)))
        print(row(*["---"] * (1 + len(args.ns))))
        labels = {
            "cclvq": "CCLVQ",
            "cclvq_true_masses": "CCLVQ points, true cell masses",
            "mdn": "MDN (means)",
            "knn_kmeans": "k-means on 200 nearest targets",
            "oracle_kmeans": "k-means on true draws (oracle)",
        }
        for name, label in labels.items():
            print(row(label, *(cell(scores[name].get(n, [])) for n in args.ns)), flush=True)
    print("\n### 2. Dead heads of CCLVQ (no win on the training set), all laws and seeds\n")
    print(row("n", *args.ns))
    print(row(*["---"] * (1 + len(args.ns))))
    print(row("dead heads (total)", *(sum(dead[n]) for n in args.ns)))
    print(row("runs", *(len(dead[n]) for n in args.ns)))


def step_cost(args) -> None:
    print("\n### 3. Training cost per step against n (ms, median of repeats, batch 256)\n")
    print(row("model", *(f"n = {n}" for n in args.ns)))
    print(row(*["---"] * (1 + len(args.ns))))
    for model in ("cclvq", "mdn"):
        cells = []
        for n in args.ns:
            experiment = config("ring", model, n, 0, args.steps).build(args.run_dir)
            train_step, _ = training.make_train_step(experiment.loss_fn, experiment.optimizer)
            batch = next(iter(experiment.train_data))
            state, _ = train_step(experiment.state, batch)
            times = []
            for _ in range(args.repeats):
                start = time.perf_counter()
                for _ in range(20):
                    state, metrics = train_step(state, batch)
                jax.block_until_ready(metrics)
                times.append((time.perf_counter() - start) / 20)
            cells.append(f"{1e3 * statistics.median(times):.2f}")
        print(row("CCLVQ" if model == "cclvq" else "MDN", *cells), flush=True)


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, default=2)
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--ns", type=int, nargs="+", default=NS)
    parser.add_argument("--laws", nargs="+", default=tuple(LAWS), choices=tuple(LAWS))
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--run-dir", type=Path, default=Path("runs/quantization-w2"))
    args = parser.parse_args()
    print(machine_line())
    print(f"load average at start: {os.getloadavg()}")
    start = time.perf_counter()
    w2_tables(args)
    step_cost(args)
    print(f"\nload average at end: {os.getloadavg()}; {time.perf_counter() - start:.0f} s in all")


if __name__ == "__main__":
    main()
