"""Seconds per Darcy sample (coefficient + solve + subsample), single process.

Times ``generate_sample`` end to end at the standard 85x85 resolution (solved on
421x421, stride 5) and at 32x32 (default solve grid 63x63, stride 2), and splits
one sample's time into coefficient sampling, matrix assembly and sparse
factorisation + solve. Baseline for the solve: ``scipy.sparse.linalg.spsolve`` with
its defaults (COLAMD ordering, partial pivoting), on the same matrices, reported
as a ratio. Prints a markdown table.

    python benchmarks/darcy_generation.py [--samples-85 3] [--samples-32 20]
"""

from __future__ import annotations

import argparse
import os
import platform
import statistics
import time

import numpy as np
import scipy
import scipy.sparse.linalg

from mano_jax.darcy.builder import STANDARD_SOLVE_RESOLUTIONS
from mano_jax.darcy.coefficient import sample_coefficient
from mano_jax.darcy.solver import assemble_darcy_matrix, factorize_darcy_matrix, generate_sample


def _time_parts(seed: int, solve_resolution: int) -> dict[str, float]:
    """Wall-clock seconds of each stage of one sample on the solve grid."""
    times = {}
    start = time.perf_counter()
    a = sample_coefficient(seed, solve_resolution)
    times["coefficient"] = time.perf_counter() - start
    start = time.perf_counter()
    matrix = assemble_darcy_matrix(a)
    times["assembly"] = time.perf_counter() - start
    start = time.perf_counter()
    factorize_darcy_matrix(matrix).solve(np.ones(matrix.shape[0]))
    times["factor + solve"] = time.perf_counter() - start
    start = time.perf_counter()
    scipy.sparse.linalg.spsolve(matrix.tocsc(), np.ones(matrix.shape[0]))
    times["spsolve baseline"] = time.perf_counter() - start
    return times


def benchmark(resolution: int, solve_resolution: int, samples: int) -> dict[str, float]:
    generate_sample(10_000, resolution, solve_resolution)  # warm-up (imports, caches)
    totals = []
    for seed in range(samples):
        start = time.perf_counter()
        generate_sample(seed, resolution, solve_resolution)
        totals.append(time.perf_counter() - start)
    parts = [_time_parts(seed, solve_resolution) for seed in range(samples)]
    result = {"total": statistics.median(totals)}
    for key in parts[0]:
        result[key] = statistics.median(p[key] for p in parts)
    return result


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--samples-85", type=int, default=3)
    parser.add_argument("--samples-32", type=int, default=20)
    args = parser.parse_args()
    runs = [
        (85, STANDARD_SOLVE_RESOLUTIONS[85], args.samples_85),
        (32, STANDARD_SOLVE_RESOLUTIONS[32], args.samples_32),
    ]
    print(
        f"Darcy sample generation, single process; {platform.processor() or platform.machine()}, "
        f"{os.cpu_count()} CPUs, numpy {np.__version__}, scipy {scipy.__version__}; "
        "median over samples.\n"
    )
    print(
        "| resolution | solve grid | unknowns | samples | s / sample | coefficient | assembly "
        "| factor + solve | spsolve baseline / ours |"
    )
    print("|---|---|---|---|---|---|---|---|---|")
    for resolution, solve_resolution, samples in runs:
        r = benchmark(resolution, solve_resolution, samples)
        unknowns = (solve_resolution - 2) ** 2
        share = {k: f"{r[k]:.4f} s ({100 * r[k] / r['total']:.0f}%)" for k in r if k != "total"}
        ratio = r["spsolve baseline"] / r["factor + solve"]
        print(
            f"| {resolution} | {solve_resolution} | {unknowns} | {samples} | {r['total']:.4f} "
            f"| {share['coefficient']} | {share['assembly']} | {share['factor + solve']} "
            f"| {ratio:.2f}x |"
        )


if __name__ == "__main__":
    main()
