"""Blockwise precision/recall/density/coverage (``metrics.precision_recall``) vs ``prdc``.

1. Scaling: N = M in {5k, 20k, 50k} points of dimension 768 (two N(0, I) samples, float32,
   k = 5). Each (implementation, N) runs once in a fresh Python process, which reports its
   wall time for the call (ours includes jit compilation) and its peak resident memory
   (``ru_maxrss``: imports and the data included, so a process that only imports and makes
   the data is measured too, as the baseline). prdc builds three N x N float32 distance
   matrices and an int64 index array of the same shape; sizes where that exceeds
   ``--prdc-limit-gib`` run under ``RLIMIT_AS`` of that many GiB, so prdc fails fast with a
   MemoryError instead of exhausting the machine.
2. The prdc README's check: N = M = 10k points of N(0, I_1000), k = 5, published values
   precision 0.477, recall 0.471, density 1.056, coverage 0.974; ours over
   ``--published-seeds`` seeds (mean and standard deviation), and prdc on the first seed.

    python benchmarks/metrics_prdc.py [--sizes 5000 20000 50000] [--published-seeds 5]
"""

from __future__ import annotations

import argparse
import json
import math
import resource
import statistics
import subprocess
import sys
import time

from _machine import machine_line

DIM = 768
K = 5
PUBLISHED = {"precision": 0.477, "recall": 0.471, "density": 1.056, "coverage": 0.974}
METRICS = tuple(PUBLISHED)


def child(contender: str, n: int, dim: int, seed: int, limit_gib: float) -> None:
    """Runs in the fresh process: limit its address space (if ``limit_gib`` > 0), make the
    data, run one contender, print a JSON line."""
    import numpy as np

    if limit_gib > 0:
        size = int(limit_gib * 2**30)
        resource.setrlimit(resource.RLIMIT_AS, (size, size))

    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, dim)).astype(np.float32)
    y = rng.normal(size=(n, dim)).astype(np.float32)
    result: dict = {}
    start = time.perf_counter()
    if contender.startswith("ours"):
        import metrics

        rounding = contender == "ours-prdc-rounding"
        result = metrics.precision_recall(x, y, k=K, prdc_rounding=rounding).summary()
    elif contender == "prdc":
        import contextlib
        import io

        from prdc import compute_prdc

        try:
            with contextlib.redirect_stdout(io.StringIO()):
                result = {k: float(v) for k, v in compute_prdc(x, y, K).items()}
        except MemoryError:
            result = {"error": "MemoryError"}
    seconds = time.perf_counter() - start
    peak_gib = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20
    print(json.dumps({"seconds": seconds, "peak_gib": peak_gib, **result}))


def run_fresh(contender: str, n: int, dim: int, seed: int, limit_gib: float = 0) -> dict:
    command = [sys.executable, __file__, "--child", contender, str(n), str(dim), str(seed)]
    out = subprocess.run([*command, str(limit_gib)], capture_output=True, text=True)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {out.returncode}: {tail[:120]}"}
    return json.loads(lines[-1])


def prdc_matrix_gib(n: int) -> float:
    """Memory of prdc's N x N arrays alive at once: two float32 distance matrices and the
    int64 argpartition indices of one (a lower bound on its peak)."""
    return n * n * (4 + 4 + 8) / 2**30


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


def decisions_apart(a: dict, b: dict, n: int) -> int:
    """How many single decisions (a point in or out of a ball) separate two results on
    N = M = n points: a flip moves precision, recall or coverage by 1/n, density by 1/(k n)."""
    steps = {"precision": 1 / n, "recall": 1 / n, "coverage": 1 / n, "density": 1 / (K * n)}
    return sum(round(abs(a[m] - b[m]) / step) for m, step in steps.items())


def cell(result: dict, key: str, fmt: str) -> str:
    return result["error"] if "error" in result else format(result[key], fmt)


def scaling(sizes: list[int], limit_gib: float, rounding_up_to: int) -> None:
    print(f"\n### Scaling: N = M points, d = {DIM}, k = {K}, float32, one fresh process each\n")
    print(
        row(
            "N",
            "baseline peak GiB",
            "ours s",
            "ours peak GiB",
            "prdc s",
            "prdc peak GiB",
            "prdc N x N arrays GiB",
            "prdc / ours time",
            "prdc / ours peak",
            "decisions apart from prdc: ours / ours with prdc_rounding (s)",
        )  # fmt: skip
    )
    print(row(*["---"] * 10))
    for n in sizes:
        baseline = run_fresh("none", n, DIM, 0)
        ours = run_fresh("ours", n, DIM, 0)
        needs = prdc_matrix_gib(n)
        limited = limit_gib if needs > limit_gib else 0
        prdc = run_fresh("prdc", n, DIM, 0, limited)
        both = "error" not in prdc and "error" not in ours
        apart = "-"
        if both:
            apart = str(decisions_apart(ours, prdc, n))
            if n <= rounding_up_to:
                rounded = run_fresh("ours-prdc-rounding", n, DIM, 0)
                apart += (
                    f" / {decisions_apart(rounded, prdc, n)} ({cell(rounded, 'seconds', '.1f')})"
                )
        prdc_time = cell(prdc, "seconds", ".1f")
        if "error" in prdc and limited:
            prdc_time = f"fails under RLIMIT_AS = {limited:g} GiB: {prdc['error']}"
        print(
            row(
                n,
                f"{baseline['peak_gib']:.2f}",
                cell(ours, "seconds", ".1f"),
                cell(ours, "peak_gib", ".2f"),
                prdc_time,
                cell(prdc, "peak_gib", ".2f") if "error" not in prdc else "-",
                f"{needs:.1f}",
                f"{prdc['seconds'] / ours['seconds']:.1f}x" if both else "-",
                f"{prdc['peak_gib'] / ours['peak_gib']:.1f}x" if both else "-",
                apart,
            ),
            flush=True,
        )


def published(seeds: int) -> None:
    import jax

    import metrics

    print(f"\n### prdc README check: N = M = 10,000, N(0, I_1000), k = {K}, {seeds} seeds\n")
    runs = []
    for seed in range(seeds):
        kx, ky = jax.random.split(jax.random.key(seed))
        x = jax.random.normal(kx, (10_000, 1000))
        y = jax.random.normal(ky, (10_000, 1000))
        start = time.perf_counter()
        runs.append(metrics.precision_recall(x, y, k=K).summary())
        seconds = time.perf_counter() - start
        print(f"seed {seed}: " + ", ".join(f"{m} {runs[-1][m]:.4f}" for m in METRICS)
              + f" ({seconds:.1f} s)", flush=True)  # fmt: skip
    import contextlib
    import io

    import numpy as np
    from prdc import compute_prdc

    kx, ky = jax.random.split(jax.random.key(0))
    x = np.asarray(jax.random.normal(kx, (10_000, 1000)))
    y = np.asarray(jax.random.normal(ky, (10_000, 1000)))
    with contextlib.redirect_stdout(io.StringIO()):
        reference = compute_prdc(x, y, K)
    print()
    print(row("metric", "published", "ours: mean", "ours: std over seeds", "prdc, seed 0",
              "ours, seed 0"))  # fmt: skip
    print(row(*["---"] * 6))
    for m in METRICS:
        values = [r[m] for r in runs]
        spread = statistics.stdev(values) if len(values) > 1 else math.nan
        print(
            row(
                m,
                PUBLISHED[m],
                f"{statistics.mean(values):.4f}",
                f"{spread:.4f}",
                f"{reference[m]:.4f}",
                f"{values[0]:.4f}",
            )  # fmt: skip
        )


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        contender, n, dim, seed = sys.argv[2], *map(int, sys.argv[3:6])
        child(contender, n, dim, seed, float(sys.argv[6]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[5000, 20000, 50000])
    parser.add_argument("--published-seeds", type=int, default=1)
    parser.add_argument("--prdc-limit-gib", type=float, default=12.0)
    parser.add_argument(
        "--rounding-up-to", type=int, default=20000, help="largest N to run prdc_rounding at"
    )
    args = parser.parse_args()
    print(machine_line())
    if args.sizes:
        scaling(args.sizes, args.prdc_limit_gib, args.rounding_up_to)
    if args.published_seeds:
        published(args.published_seeds)


if __name__ == "__main__":
    main()
