"""Diagonal state feedback (DSF) against BPTT and truncated BPTT, side by side in one process.

1. Training-step time: one jitted value-and-grad plus Adam update of a GRU layer
   (d = 256, input projection included, squared-error loss on every state) for
   T in {256, 1024, 4096} and batch sizes 1, 4 and 16: BPTT (``feedback="exact"``,
   ordinary autodiff of the ``lax.scan``), DSF (``"diagonal"``) and truncated BPTT
   (``"zero"``); the forward pass alone (a sequential ``lax.scan`` every method runs)
   for reference. Medians of repeats.
2. Gradient fidelity against BPTT as a function of the sequence length: cosine
   similarity of the parameter gradient (GRU d = 64, batch 8, loss on every state, at
   initialisation) for the diagonal, zero, Gaussian and orthogonal feedbacks.
3. Language modelling: the perplexities of ``python -m gradients train-lm`` (BPTT, DSF
   and truncated BPTT trained with the same seeds and steps), read from its
   ``results.json``.

    python benchmarks/gradients_dsf.py [--repeats 3] [--lm-results runs/gradients-lm/results.json]
"""

from __future__ import annotations

import argparse
import json
import statistics
import time
from pathlib import Path

import jax
import jax.numpy as jnp
import optax
from _machine import machine_line

from gradients import GRU, dsf_rnn

METHODS = {"BPTT": "exact", "DSF": "diagonal", "truncated": "zero"}
FEEDBACK_KEY = jax.random.key(7)


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def layer_loss(feedback: str):
    """``loss(params, xs, target)``: a GRU layer over ``xs: [T, B, d]`` and the squared
    error of every state to ``target``."""
    run = dsf_rnn(GRU.step, feedback, key=FEEDBACK_KEY)

    def loss(params, xs, target):
        us = GRU.project(params["input"], xs)
        h0 = GRU.initial_state(xs.shape[1:2], target.shape[-1])
        return 0.5 * jnp.mean(jnp.square(run(params["recurrent"], h0, us) - target))

    return loss


def problem(length: int, batch: int, width: int, seed: int = 0):
    keys = jax.random.split(jax.random.key(seed), 3)
    params = GRU.init(keys[0], width, width)
    xs = jax.random.normal(keys[1], (length, batch, width))
    target = 0.5 * jax.random.normal(keys[2], (length, batch, width))
    return params, xs, target


def timed(fn, *args, repeats: int) -> float:
    jax.block_until_ready(fn(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(fn(*args))
        times.append(time.perf_counter() - start)
    return statistics.median(times)


def train_step(feedback: str):
    optimizer = optax.adam(1e-3)
    loss = layer_loss(feedback)

    @jax.jit
    def step(params, opt_state, xs, target):
        value, grads = jax.value_and_grad(loss)(params, xs, target)
        updates, opt_state = optimizer.update(grads, opt_state)
        return optax.apply_updates(params, updates), opt_state, value

    return step, optimizer


def timing_table(repeats: int) -> None:
    print(
        "\n### 1. Training-step time, GRU d = 256 (value and gradient + Adam), medians of "
        f"{repeats}\n"
    )
    print(
        row(
            "T", "batch", "forward ms", *[f"{m} ms" for m in METHODS],
            "BPTT / DSF", "BPTT / truncated",
        )
    )  # fmt: skip
    print(row(*["---"] * (5 + len(METHODS))))
    for batch in (1, 4, 16):
        for length in (256, 1024, 4096):
            params, xs, target = problem(length, batch, 256)
            forward = timed(jax.jit(layer_loss("exact")), params, xs, target, repeats=repeats)
            times = {}
            for name, feedback in METHODS.items():
                step, optimizer = train_step(feedback)
                times[name] = timed(
                    step, params, optimizer.init(params), xs, target, repeats=repeats
                )
            print(
                row(
                    length, batch, f"{forward * 1e3:.0f}",
                    *[f"{t * 1e3:.0f}" for t in times.values()],
                    f"{times['BPTT'] / times['DSF']:.2f}",
                    f"{times['BPTT'] / times['truncated']:.2f}",
                ),
                flush=True,
            )  # fmt: skip


def fidelity_table() -> None:
    feedbacks = ["diagonal", "zero", "gaussian", "orthogonal"]
    print(
        "\n### 2. Cosine similarity of the parameter gradient to BPTT's (GRU d = 64, batch 8, "
        "at init)\n"
    )
    print(row("T", *feedbacks))
    print(row(*["---"] * (1 + len(feedbacks))))

    def flat(tree):
        return jnp.concatenate([jnp.ravel(x) for x in jax.tree.leaves(tree)])

    for length in (16, 64, 256, 1024):
        params, xs, target = problem(length, 8, 64, seed=1)
        exact = flat(jax.jit(jax.grad(layer_loss("exact")))(params, xs, target))
        cells = []
        for feedback in feedbacks:
            g = flat(jax.jit(jax.grad(layer_loss(feedback)))(params, xs, target))
            cells.append(f"{float(g @ exact / jnp.linalg.norm(g) / jnp.linalg.norm(exact)):.3f}")
        print(row(length, *cells), flush=True)


def lm_table(path: Path) -> None:
    print("\n### 3. Language modelling (python -m gradients train-lm)\n")
    if not path.exists():
        print(f"{path} not found: run `python -m gradients train-lm` first.")
        return
    results = json.loads(path.read_text())
    config_path = path.with_name("config.json")
    if config_path.exists():
        print(f"configuration: {json.loads(config_path.read_text())}\n")
    methods = results["methods"]
    base = methods.get("bptt", {}).get("valid_perplexity")
    print(row("method", "feedback", "valid perplexity", "vs BPTT", "train perplexity", "ms/step"))
    print(row(*["---"] * 6))
    for name, m in methods.items():
        ratio = f"{m['valid_perplexity'] / base - 1:+.1%}" if base else "-"
        print(
            row(
                name, m["feedback"], f"{m['valid_perplexity']:.2f}", ratio,
                f"{m['train_perplexity']:.2f}", f"{m['ms_per_step']:.0f}",
            )
        )  # fmt: skip


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=3)
    parser.add_argument("--lm-results", type=Path, default=Path("runs/gradients-lm/results.json"))
    args = parser.parse_args()
    print(machine_line())
    print("float32; the CPU is shared with other jobs, so times are noisy: compare ratios")
    timing_table(args.repeats)
    fidelity_table()
    lm_table(args.lm_results)


if __name__ == "__main__":
    main()
