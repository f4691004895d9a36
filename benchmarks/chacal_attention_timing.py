"""Time and memory of chain-and-causal attention against the length T: one triangular
solve vs the blocked solve vs standard causal attention.

One attention call on ``q, k, v: [1, T, H, d]`` (float32, ``H = 4`` heads of ``d = 64``,
one gamma per head), strict form; three functions side by side in one process:

* ``standard``: ``causal_attention`` (``A V``);
* ``solve``: ``chain_causal_attention`` with one ``solve_triangular`` of ``I - gamma A_s``;
* ``blocked``: the same with ``block_size`` rows per block (the rows of ``A`` computed
  block by block, exact diagonal blocks, matrix products for the rest; neither ``A``
  nor ``I - gamma A`` is formed whole, and each block is rematerialised in training).

Two modes: ``forward`` and ``train`` (``grad`` of ``sum(y * w)`` with respect to q, k,
v). Time: median of several calls after compilation (``block_until_ready``). Memory:
XLA's ``memory_analysis()`` of the compiled function (arguments + outputs + temporaries
- aliased), known from compilation alone. Prints the machine, the load and a markdown
table.

    python benchmarks/chacal_attention_timing.py [--lengths 256 512 1024 2048 4096]
        [--block-size 256] [--repeats 5]
"""

from __future__ import annotations

import argparse
import os
import statistics
import subprocess
import sys
import time

import jax
import jax.numpy as jnp
from _machine import machine_line

from seq_models.chain_causal import causal_attention, chain_causal_attention

HEADS, HEAD_DIM = 4, 64


def functions(block_size: int):
    gamma = jnp.linspace(0.3, 0.9, HEADS)
    return {
        "standard": lambda q, k, v: causal_attention(q, k, v),
        "solve": lambda q, k, v: chain_causal_attention(q, k, v, gamma),
        "blocked": lambda q, k, v: chain_causal_attention(q, k, v, gamma, block_size=block_size),
    }


def measure(fn, args, repeats: int) -> tuple[float, float]:
    """(median milliseconds per call, XLA MiB) of ``jit(fn)(*args)``."""
    compiled = jax.jit(fn).lower(*args).compile()
    stats = compiled.memory_analysis()
    mib = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    ) / 2**20
    jax.block_until_ready(compiled(*args))
    times = []
    for _ in range(repeats):
        start = time.perf_counter()
        jax.block_until_ready(compiled(*args))
        times.append(1e3 * (time.perf_counter() - start))
    return statistics.median(times), mib


def row(mode: str, length: int, block_size: int, repeats: int, forms: list[str]) -> str:
    """One table row: the functions ``forms`` at ``length`` in ``mode``."""
    keys = jax.random.split(jax.random.key(length), 4)
    q, k, v, w = (jax.random.normal(key, (1, length, HEADS, HEAD_DIM)) for key in keys)
    times, memory = [], []
    for name, fn in functions(block_size).items():
        if name not in forms:
            times.append("–")
            memory.append("–")
            continue
        if mode == "train":
            fn = jax.grad(lambda q, k, v, f=fn, w=w: jnp.sum(f(q, k, v) * w), argnums=(0, 1, 2))
        ms, mib = measure(fn, (q, k, v), repeats)
        times.append(f"{ms:.1f}")
        memory.append(f"{mib:.0f}")
    return f"| {mode} | {length} | " + " | ".join(times + memory) + " |"


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[256, 512, 1024, 2048, 4096])
    parser.add_argument("--block-size", type=int, default=256)
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--timeout", type=float, default=300.0, help="seconds per row")
    parser.add_argument(
        "--forms",
        nargs="+",
        choices=("standard", "solve", "blocked"),
        default=["standard", "solve", "blocked"],
        help="the functions to time",
    )
    parser.add_argument("--one", nargs=2, metavar=("MODE", "T"), help=argparse.SUPPRESS)
    args = parser.parse_args()
    if args.one:
        print(
            row(args.one[0], int(args.one[1]), args.block_size, args.repeats, args.forms),
            flush=True,
        )
        return
    print(machine_line())
    print(
        f"Batch 1, {HEADS} heads of {HEAD_DIM}, float32, strict form; blocked: "
        f"{args.block_size} rows per block; median of {args.repeats} calls; each row in a "
        f"fresh process, stopped after {args.timeout:g} s.\n"
    )
    names = list(functions(args.block_size))
    header = " | ".join(f"{n} {m}" for m in ("ms", "MiB") for n in names)
    print(f"| mode | T | {header} |")
    print("|---|---|" + "---|" * (2 * len(names)))
    for mode in ("forward", "train"):
        for length in args.lengths:
            command = [sys.executable, __file__, "--one", mode, str(length)]
            command += [f"--block-size={args.block_size}", f"--repeats={args.repeats}"]
            command += ["--forms", *args.forms]
            try:
                done = subprocess.run(command, capture_output=True, text=True, timeout=args.timeout)
                line = (
                    done.stdout.strip() or f"| {mode} | {length} | failed: {done.stderr[-200:]} |"
                )
            except subprocess.TimeoutExpired:
                line = f"| {mode} | {length} | did not finish in {args.timeout:g} s |"
            print(line, flush=True)
    one, five, _ = os.getloadavg()
    print(f"\nLoad average (1/5 min) at the end: {one:.2f} / {five:.2f}.")


if __name__ == "__main__":
    main()
