"""Steps per second of ``training.fit`` against a loop that waits for every step.

A dispatch-bound setting: a small MLP (16 -> width -> 1, GELU, Adam) on batches of a
few examples, where a step costs the device far less than the host's round trip.
Both loops run the same jitted ``training.make_train_step`` update on the same
batches (a cycle over pre-built numpy batches, so data loading is not measured),
side by side in one process, alternating repetitions:

- before: the loop ``fit`` had before, reduced to its core: every batch placed
  leaf by leaf with ``jax.make_array_from_process_local_data``, every step's
  metrics fetched (``jax.device_get``) and checked for NaN/inf on the host, the
  window sums kept on the host;
- synchronous, new feed: the same loop with batches fed as ``fit`` now feeds
  them (on one device: host arrays straight to the jitted step), which isolates
  the cost of waiting for every step;
- ``training.fit``: metrics summed on the device inside the jitted step, the
  first non-finite step recorded there, one fetch every ``--log-every`` steps.

Each repetition times a whole call (``--steps`` steps, compilation done before);
the table gives the median steps/s, the range, and the ratio of the medians, with
the 1-minute load average before and after.

    python benchmarks/training_loop.py [--steps 2000] [--repeats 5] [--batch 8]
"""

from __future__ import annotations

import argparse
import functools
import itertools
import math
import os
import statistics
import time

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import optax
from _machine import machine_line
from jax.sharding import NamedSharding, PartitionSpec

import training
from training.loop import _feed


class MLP(nn.Module):
    width: int

    @nn.compact
    def __call__(self, x):
        return nn.Dense(1)(nn.gelu(nn.Dense(self.width)(x)))[..., 0]


def shard_batch_before(batch, mesh):
    """The batch placement ``fit`` used before: one global array per leaf."""
    sharding = NamedSharding(mesh, PartitionSpec(training.sharding.DATA_AXIS))
    return jax.tree.map(
        lambda x: jax.make_array_from_process_local_data(sharding, np.asarray(x)), batch
    )


def fit_synchronous(state, train_step, batches, *, num_steps, log_every, feed=_feed):
    """The baseline: fetch and check every step's metrics on the host."""
    mesh = training.data_mesh()
    state = training.replicate(state, mesh)
    window: dict[str, float] = {}
    window_steps = 0
    history = []
    for step in range(1, num_steps + 1):
        state, metrics = train_step(state, feed(next(batches), mesh))
        metrics = {k: float(v) for k, v in jax.device_get(metrics).items()}
        if not all(math.isfinite(v) for v in metrics.values()):
            raise training.NonFiniteLossError(step, metrics)
        for name, value in metrics.items():
            window[name] = window.get(name, 0.0) + value
        window_steps += 1
        if step % log_every == 0 or step == num_steps:
            history.append({"step": step, **{k: v / window_steps for k, v in window.items()}})
            window, window_steps = {}, 0
    return state, history


def fit_asynchronous(state, train_step, batches, *, num_steps: int, log_every: int):
    result = training.fit(
        state, train_step, batches, num_steps=num_steps, log_every=log_every, progress=False
    )
    return result.state, result.history


LOOPS = {
    "before: synchronous, device_put per leaf": functools.partial(
        fit_synchronous, feed=shard_batch_before
    ),
    "synchronous, new feed": fit_synchronous,
    "training.fit": fit_asynchronous,
}


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--steps", type=int, default=2000)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--width", type=int, default=32)
    parser.add_argument("--log-every", type=int, default=100)
    args = parser.parse_args()
    for name in ("steps", "repeats", "batch", "width", "log_every"):
        if getattr(args, name) < 1:
            parser.error(f"--{name.replace('_', '-')} must be >= 1, got {getattr(args, name)}")

    rng = np.random.default_rng(0)
    batches = [
        {
            "x": rng.normal(size=(args.batch, 16)).astype(np.float32),
            "y": rng.normal(size=args.batch).astype(np.float32),
        }
        for _ in range(16)
    ]
    model = MLP(args.width)

    def loss_fn(params, batch, rng):
        del rng
        return jnp.mean((model.apply(params, batch["x"]) - batch["y"]) ** 2)

    optimizer = optax.adam(1e-3)
    params = jax.jit(model.init)(jax.random.key(0), batches[0]["x"])
    train_step, _ = training.make_train_step(loss_fn, optimizer)

    def run(loop, num_steps):
        state = training.TrainState.create(
            jax.tree.map(jnp.copy, params), optimizer, jax.random.key(1)
        )
        start = time.perf_counter()
        state, history = loop(
            state,
            train_step,
            itertools.cycle(batches),
            num_steps=num_steps,
            log_every=args.log_every,
        )
        jax.block_until_ready(state)
        return time.perf_counter() - start, state, history

    finals = {}
    for name, loop in LOOPS.items():  # compile both variants of the step
        _, state, history = run(loop, args.log_every)
        finals[name] = (jax.device_get(state.params), history)
    (p_ref, h_ref), *others = finals.values()
    agree = all(
        np.allclose([r["loss"] for r in h], [r["loss"] for r in h_ref], rtol=1e-5)
        and all(
            np.allclose(x, y, rtol=1e-5, atol=1e-6)
            for x, y in zip(jax.tree.leaves(p), jax.tree.leaves(p_ref), strict=True)
        )
        for p, h in others
    )

    load_before = os.getloadavg()
    rates: dict[str, list[float]] = {name: [] for name in LOOPS}
    for _ in range(args.repeats):
        for name, loop in LOOPS.items():
            seconds, _, _ = run(loop, args.steps)
            rates[name].append(args.steps / seconds)
    load_after = os.getloadavg()

    print(machine_line())
    print(
        f"MLP 16-{args.width}-1, batch {args.batch}, Adam, float32, {jax.device_count()} "
        f"device(s) ({jax.devices()[0].device_kind}); {args.steps} steps per call, "
        f"log every {args.log_every}, {args.repeats} alternating repetitions. Same parameters "
        f"and records from every loop: {'yes' if agree else 'NO'}. "
        f"1-minute load average {load_before[0]:.2f} before, {load_after[0]:.2f} after "
        f"({os.cpu_count()} cores).\n"
    )
    base = statistics.median(rates[next(iter(LOOPS))])
    print("| loop | steps/s (median) | min - max | x before |")
    print("|---|---|---|---|")
    for name, values in rates.items():
        median = statistics.median(values)
        print(
            f"| {name} | {median:.0f} | {min(values):.0f} - {max(values):.0f} "
            f"| {median / base:.2f} |"
        )


if __name__ == "__main__":
    main()
