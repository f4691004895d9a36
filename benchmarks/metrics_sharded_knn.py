"""Sharded k-NN precision / recall / density / coverage (``metrics.ReferenceSet`` with a mesh).

Two N(0, I) samples of N = M points, d = 768, float32, k = 5. Each row runs in a fresh
Python process, with ``XLA_FLAGS=--xla_force_host_platform_device_count=D`` for D
simulated CPU devices (the mesh then spans all of them; D = 1 is the plain one-device
path, ``mesh=None``). A row reports the wall time of the reference pass
(``ReferenceSet``: blocks and k-NN radii, waited for through ``.radii``), of the
comparison (``compare``: the generated set's radii and the reference x generated
pass), both including their compilation, the peak resident memory (``ru_maxrss``) and
that of the same process before the metrics (imports and data), the load average of
the machine around the row, and the distance pairs per second: ``N^2 + M^2 + N M``
pairs over the total time.

1. ``--sizes`` x ``--devices``: one device against the same work split over simulated
   devices (all on this machine's cores).
2. ``--full`` (default 100k) on ``--full-devices`` (default: one device).
3. The projected time of 1M x 1M on 8 devices from the per-pair rate of the largest
   one-device row, assuming each device sustains that rate (so: 8 machines like this
   one), a perfect split of the pairs (the blocks are shared out evenly; padding is at
   most one block per device) and negligible communication (the collectives move
   ``O(N + M)`` numbers against ``O(N M d)`` arithmetic); and the memory per device
   from the measured bytes per point (both sets are replicated on every device).

    python benchmarks/metrics_sharded_knn.py [--sizes 10000 20000] [--devices 1 2 8]
        [--full 100000] [--full-devices 1]
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time

from _machine import machine_line

DIM = 768
K = 5
METRICS = ("precision", "recall", "density", "coverage")


def peak_gib() -> float:
    return resource.getrusage(resource.RUSAGE_SELF).ru_maxrss / 2**20


def child(n: int, devices: int) -> None:
    """Runs in the fresh process (its XLA_FLAGS set by the parent): one row, a JSON line."""
    import jax
    import numpy as np

    import metrics

    rng = np.random.default_rng(0)
    x = rng.standard_normal((n, DIM), dtype=np.float32)
    y = rng.standard_normal((n, DIM), dtype=np.float32)
    mesh = jax.make_mesh((devices,), ("data",)) if devices > 1 else None
    baseline = peak_gib()
    start = time.perf_counter()
    reference = metrics.ReferenceSet(x, k=K, mesh=mesh)
    _ = reference.radii  # waits for the reference pass
    prepared = time.perf_counter()
    result = reference.compare(y)
    done = time.perf_counter()
    row = {
        "reference_s": prepared - start,
        "compare_s": done - prepared,
        "peak_gib": peak_gib(),
        "baseline_gib": baseline,
        "devices": jax.device_count(),
        **result.summary(),
    }
    print(json.dumps(row))


def run_fresh(n: int, devices: int) -> dict:
    flags = f"{os.environ.get('XLA_FLAGS', '')} --xla_force_host_platform_device_count={devices}"
    env = {**os.environ, "XLA_FLAGS": flags.strip(), "JAX_PLATFORMS": "cpu"}
    load_before = os.getloadavg()[0]
    command = [sys.executable, __file__, "--child", str(n), str(devices)]
    out = subprocess.run(command, capture_output=True, text=True, env=env)
    lines = [line for line in out.stdout.splitlines() if line.startswith("{")]
    if out.returncode or not lines:
        tail = (out.stderr.strip().splitlines() or ["no output"])[-1]
        return {"error": f"exit {out.returncode}: {tail[:120]}"}
    return {**json.loads(lines[-1]), "load": (load_before, os.getloadavg()[0])}


def pairs(n: int) -> int:
    """Distance pairs of N = M: reference radii, generated radii, reference x generated."""
    return 3 * n * n


def row(*cells) -> str:
    return "| " + " | ".join(str(c) for c in cells) + " |"


HEADER = (
    "N = M",
    "devices",
    "reference pass s",
    "compare s",
    "total s",
    "pairs / s (total)",
    "peak GiB",
    "before metrics GiB",
    "load average (1 min) before / after",
    "metrics equal to 1 device",
)


def table_row(n: int, result: dict, one_device: dict | None) -> str:
    if "error" in result:
        return row(n, "-", result["error"], *["-"] * (len(HEADER) - 3))
    total = result["reference_s"] + result["compare_s"]
    same = "-"
    if one_device is not None and "error" not in one_device:
        same = "yes" if all(result[m] == one_device[m] for m in METRICS) else "NO"
    return row(
        n,
        result["devices"],
        f"{result['reference_s']:.1f}",
        f"{result['compare_s']:.1f}",
        f"{total:.1f}",
        f"{pairs(n) / total:.3g}",
        f"{result['peak_gib']:.2f}",
        f"{result['baseline_gib']:.2f}",
        f"{result['load'][0]:.1f} / {result['load'][1]:.1f}",
        same,
    )


def projection(n: int, result: dict, target: int = 1_000_000, devices: int = 8) -> None:
    total = result["reference_s"] + result["compare_s"]
    rate = pairs(n) / total
    seconds = pairs(target) / (devices * rate)
    per_point = (result["peak_gib"] - result["baseline_gib"]) / (2 * n) * 2**30
    data_gib = 2 * target * DIM * 4 / 2**30
    print(
        f"\nProjection, {target:,} x {target:,} at d = {DIM} on {devices} devices, from the "
        f"{n:,}-point one-device row: {pairs(target):.2e} pairs at {rate:.3g} pairs/s per "
        f"device = {seconds:,.0f} s ({seconds / 3600:.1f} h), assuming each device sustains "
        f"this machine's rate, an even split and negligible communication. Memory per "
        f"device: both sets replicated, {data_gib:.1f} GiB of float32 data; at the measured "
        f"{per_point / 1024:.1f} KiB per point above the data-only process "
        f"({per_point / (DIM * 4):.1f}x the point's own {DIM * 4} bytes), "
        f"{per_point * 2 * target / 2**30:.0f} GiB."
    )


def main() -> None:
    if sys.argv[1:2] == ["--child"]:
        child(int(sys.argv[2]), int(sys.argv[3]))
        return
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sizes", type=int, nargs="*", default=[10_000, 20_000])
    parser.add_argument("--devices", type=int, nargs="*", default=[1, 2, 8])
    parser.add_argument("--full", type=int, default=100_000, help="0: skip")
    parser.add_argument("--full-devices", type=int, nargs="*", default=[1])
    args = parser.parse_args()
    print(machine_line())
    print(f"Load average at the start (1, 5, 15 min): {os.getloadavg()}")
    print(f"\nN = M points, d = {DIM}, k = {K}, float32, one fresh process per row\n")
    print(row(*HEADER))
    print(row(*["---"] * len(HEADER)))
    largest = None
    runs = [(n, args.devices) for n in args.sizes]
    if args.full:
        runs.append((args.full, args.full_devices))
    for n, device_counts in runs:
        one_device = None
        for devices in device_counts:
            result = run_fresh(n, devices)
            if devices == 1:
                one_device = result
                if "error" not in result:
                    largest = (n, result)
            print(table_row(n, result, one_device if devices > 1 else None), flush=True)
    if largest is not None:
        projection(*largest)
    print(f"\nLoad average at the end (1, 5, 15 min): {os.getloadavg()}")


if __name__ == "__main__":
    main()
