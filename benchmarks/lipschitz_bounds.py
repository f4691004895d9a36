"""Spectral-norm bounds side by side: accuracy (value / exact) and time, one process.

Kernels 64x64x3x3 and 64x64x5x5 (Gaussian, std 1 / sqrt(c_in k^2)) at input sizes
n in {16, 32, 64}, and a dense 512x512 matrix, all float32 unless stated:

- exact: FFT + batched SVD over the rfft2 frequencies (circular), SVD (dense). jax's
  CPU SVD runs LAPACK from OpenBLAS; it is timed with OpenBLAS's default threads and
  with one thread (``threadpoolctl``), because on a small machine the default worker
  threads compete with XLA's and were 3-100x slower, and erratic;
- Gram iteration: circular (batched over frequencies, default T, frequencies that
  cannot be the maximum are not run to T) and dense;
- power iteration on the operator (the convolution and its ``jax.vjp``), run until
  it is within 1e-3 of the exact value (the accuracy target), reporting the
  iterations needed and the time of exactly that many;
- n-independent bounds, valid for zero padding and every input size: the spatial
  Gram iteration (default T) and the published cheap bounds of Singla et al. (2021)
  and Araujo et al. (2021).

Every function is jitted and compiled before timing; times are medians of repeats.
Prints markdown tables.

    python benchmarks/lipschitz_bounds.py [--repeats 5] [--sizes 16 32 64]
"""

from __future__ import annotations

import argparse
import math
import statistics
import time

import jax
import jax.numpy as jnp
import numpy as np
from _machine import machine_line
from threadpoolctl import threadpool_limits

import lipschitz
from lipschitz.bounds import DEFAULT_SPATIAL_ITERS
from lipschitz.convolution import conv2d
from lipschitz.exact import power_iteration
from lipschitz.gram import DEFAULT_ITERS

TARGET = 1e-3
POWER_CHUNK = 25
POWER_MAX_ITERS = 3000


def timed(fn, *args, repeats: int, blas_threads: int | None = None):
    """``(median seconds, output)`` of ``fn(*args)`` after one compiling call, optionally
    with OpenBLAS limited to ``blas_threads`` threads."""
    limit = threadpool_limits(blas_threads, user_api="blas") if blas_threads else None
    try:
        out = jax.block_until_ready(fn(*args))
        times = []
        for _ in range(repeats):
            start = time.perf_counter()
            jax.block_until_ready(fn(*args))
            times.append(time.perf_counter() - start)
    finally:
        if limit is not None:
            limit.restore_original_limits()
    return statistics.median(times), out


def power_to_target(apply, x0, exact: float) -> int | None:
    """Smallest number of power iterations whose estimate is within ``TARGET`` of ``exact``
    (checked every iteration, run in jitted chunks); ``None`` if not reached."""

    @jax.jit
    def chunk(v):
        _, v, history = power_iteration(apply, v, POWER_CHUNK, history=True)
        return v, history

    v, done = x0, 0
    while done < POWER_MAX_ITERS:
        v, history = chunk(v)
        hit = np.nonzero(np.asarray(history) >= exact * (1 - TARGET))[0]
        if hit.size:
            return done + int(hit[0]) + 1
        done += POWER_CHUNK
    return None


def power_time(apply, x0, iters: int | None, repeats: int) -> float:
    if iters is None:
        return math.nan
    fn = jax.jit(lambda v: power_iteration(apply, v, iters)[0])
    return timed(fn, x0, repeats=repeats)[0]


def kernel_of(c: int, k: int, seed: int) -> jax.Array:
    """A Gaussian ``[k, k, c, c]`` kernel (HWIO, the package's default layout)."""
    rng = np.random.default_rng(seed)
    return jnp.asarray(rng.normal(size=(k, k, c, c)) / np.sqrt(c * k * k), jnp.float32)


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def ms(seconds: float) -> str:
    return "-" if math.isnan(seconds) else f"{seconds * 1e3:.1f}"


def conv_tables(sizes: list[int], repeats: int) -> None:
    gram_t, spatial_t = DEFAULT_ITERS["float32"], DEFAULT_SPATIAL_ITERS
    circular, independent = [], []
    for seed, k in enumerate((3, 5)):
        kernel = kernel_of(64, k, seed)
        name = f"64x64x{k}x{k}"
        exacts = {}
        for n in sizes:
            exact_fn = jax.jit(lambda w, n=n: lipschitz.exact_spectral_norm(w, "circular", n))
            gram_fn = jax.jit(
                lambda w, n=n: lipschitz.spectral_norm_bound(w, "gram", "circular", n)
            )
            t_svd, exact = timed(exact_fn, kernel, repeats=repeats)
            t_svd1, _ = timed(exact_fn, kernel, repeats=repeats, blas_threads=1)
            t_gram, gram = timed(gram_fn, kernel, repeats=repeats)
            exact = exacts[n] = float(exact)
            x0 = jax.random.normal(jax.random.key(seed), (1, n, n, 64), jnp.float32)

            def apply(x, kernel=kernel):
                return conv2d(x, kernel, "circular")

            iters = power_to_target(apply, x0, exact)
            circular.append(
                row(
                    name,
                    n,
                    f"{exact:.4f}",
                    ms(t_svd),
                    ms(t_svd1),
                    f"{float(gram) / exact - 1:.1e}",
                    ms(t_gram),
                    f"{t_svd / t_gram:.1f}x / {t_svd1 / t_gram:.1f}x",
                    iters or f">{POWER_MAX_ITERS}",
                    ms(power_time(apply, x0, iters, 1)),
                )  # fmt: skip
            )
        for method, label in [
            ("spatial_gram", f"spatial Gram iteration (T={spatial_t})"),
            ("singla2021", "Singla et al. 2021"),
            ("araujo2021", "Araujo et al. 2021"),
        ]:
            fn = jax.jit(lambda w, m=method: lipschitz.spectral_norm_bound(w, m, "zero"))
            t, value = timed(fn, kernel, repeats=max(1, repeats // 2))
            ratios = [f"{float(value) / exacts[n]:.4f}" for n in sizes]
            independent.append(row(name, label, f"{float(value):.4f}", *ratios, ms(t)))

    print("\n### Circular padding at input size n\n")
    print(
        row(
            "kernel",
            "n",
            "exact (FFT+SVD)",
            "SVD ms",
            "SVD ms, 1 BLAS thread",
            f"Gram T={gram_t} / exact - 1",
            "Gram ms",
            "SVD / Gram time (default / 1 thread)",
            "power its to 1e-3",
            "power ms",
        )  # fmt: skip
    )
    print(row(*["---"] * 10))
    print("\n".join(circular))
    print(
        "\n### n-independent bounds (zero padding and circular, every input size): value and "
        "value / circular exact at n\n"
    )
    print(row("kernel", "method", "value", *[f"/ exact n={n}" for n in sizes], "ms"))
    print(row(*["---"] * (4 + len(sizes))))
    print("\n".join(independent))


def dense_table(repeats: int) -> None:
    rows = []
    for dtype, shape, gram_iters in [
        (jnp.float32, (512, 512), DEFAULT_ITERS["float32"]),
        (jnp.float64, (500, 400), 15),
    ]:
        with jax.enable_x64(dtype == jnp.float64):
            w = jnp.asarray(np.random.default_rng(0).normal(size=shape), dtype)
            exact_fn = jax.jit(lipschitz.dense_exact)
            t_svd, exact = timed(exact_fn, w, repeats=repeats)
            t_svd1, _ = timed(exact_fn, w, repeats=repeats, blas_threads=1)
            exact = float(exact)
            name = f"{shape[0]}x{shape[1]} {jnp.dtype(dtype).name}"
            rows.append(row(name, "exact: SVD", "0", f"{ms(t_svd)} / {ms(t_svd1)}", ""))
            tried = [gram_iters]
            if float(lipschitz.gram_iteration(w, gram_iters)) / exact - 1 > TARGET:
                tried.append(
                    next(
                        t
                        for t in range(gram_iters + 1, 30)
                        if float(lipschitz.gram_iteration(w, t)) / exact - 1 <= TARGET
                    )
                )
            for t in tried:
                fn = jax.jit(lambda w, t=t: lipschitz.gram_iteration(w, t))
                t_gram, gram = timed(fn, w, repeats=repeats)
                rows.append(
                    row(name, "Gram iteration", f"{float(gram) / exact - 1:.1e}", ms(t_gram), t)
                )
            x0 = jax.random.normal(jax.random.key(0), (shape[1],), dtype)

            def apply(x, w=w):
                return w @ x

            iters = power_to_target(apply, x0, exact)
            t_power = power_time(apply, x0, iters, repeats)
            rows.append(
                row(
                    name,
                    "power iteration",
                    f"within {TARGET:g}",
                    ms(t_power),
                    iters or f">{POWER_MAX_ITERS}",
                )  # fmt: skip
            )
    print("\n### Dense matrices\n")
    print(row("matrix", "method", "value / exact - 1", "ms", "T / iterations"))
    print(row(*["---"] * 5))
    print("\n".join(rows))
    print("\n(SVD ms: default BLAS threads / one BLAS thread.)")


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument("--sizes", type=int, nargs="+", default=[16, 32, 64])
    args = parser.parse_args()
    print(machine_line())
    print(f"float32 unless stated; medians of {args.repeats} runs")
    conv_tables(args.sizes, args.repeats)
    dense_table(args.repeats)


if __name__ == "__main__":
    main()
