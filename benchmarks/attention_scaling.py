"""Time and peak memory of one attention layer (forward + backward) against the grid size.

One layer, ``C = 64`` channels, 4 heads of 16, batch 1, float32, on square grids
of side 16 .. 1024: multipole attention (window ``k = 8``, sampling rate ``r = 2``,
conv down/up), global attention and single-level window attention (window ``k``).
The timed function is ``jax.jit(jax.grad(loss, argnums=(0, 1)))`` with
``loss(p, x) = sum(layer(p, x) ** 2)``: gradients for the parameters and the input.

Every configuration runs in a fresh subprocess (this script re-invoked with
``--one METHOD SIDE``), so no configuration sees another's memory or caches.
Compilation is excluded from the time, which is the median over several calls
(also shown: the minimum, and the process's CPU time per call, user + system over
all threads). Each row also shows the 1-minute load average: on a shared machine,
rows measured under a higher load are slower, and a load that rises during the
sweep (which runs from small to large grids) inflates the fitted time exponents.

The multipole child also times multipole and window attention alternately, call
by call, in the same process (``--pair-reps`` alternations, medians): on a shared
machine whose load changes between the fresh processes, that paired ratio is the
fair multipole / window comparison, and the 1.5x target is checked on it.

Peak memory is measured two ways:

* RSS (the primary number): the rise of the process's resident set during the
  first call. After compiling, the parameters and the input are allocated, the C
  heap is trimmed (``malloc_trim``) and the kernel's peak-RSS mark is reset
  (``/proc/self/clear_refs``); the rise is ``VmHWM`` after the call minus
  ``VmRSS`` before it. This sees every byte the call touches, including buffers
  that libraries allocate on their own. The runtime's one-time set-up (about
  10 MB) is paid beforehand by one call of the same layer on a one-window grid.
  Resetting the mark matters: ``ru_maxrss`` alone is dominated by the compiler at
  small sizes (it is shown as the absolute peak).
* XLA: ``compiled.memory_analysis()``, arguments + outputs + temporaries of the
  executable's buffer assignment: deterministic, and known from compilation
  alone, but on CPU it misses the intermediates of YNNPACK fusions
  (``__ynn_fusion``, on by default in XLA:CPU), which allocate their own
  scratch. For fused global attention the real peak is about twice XLA's figure.

Buffers above 32 MiB are mapped fresh by glibc's malloc on every call and given
back afterwards, so by default each call also pays for faulting its large
temporaries in, as any user of XLA:CPU does. ``--keep-heap`` runs the children
with ``MALLOC_MMAP_MAX_=0 MALLOC_TRIM_THRESHOLD_=2^40`` (malloc never returns
memory to the system), which takes the page faults out of the timings.

``--ynn-off METHOD ...`` (default: ``global``) compiles those methods with the
YNNPACK fusions disabled. Global attention is then both faster and leaner on
CPU, so it is the stronger baseline, and XLA's figure covers all its buffers.

Global attention is skipped where its logits alone (``heads * N^2 * 4`` bytes)
exceed ``--logits-budget-gb``, and any configuration whose predicted peak (XLA's
figure times the RSS / XLA ratio measured at the previous size) exceeds 90% of the
memory available is skipped; both still report XLA's figure, which only needs
compilation. Configurations whose predicted run time would not fit in the
remaining ``--total-seconds`` are dropped and listed.

Prints the machine, a markdown table, least-squares scaling exponents (log-log,
sides >= ``--fit-min-side``), the pass/fail of the targets, and saves a log-log
plot.

    python benchmarks/attention_scaling.py [--sides 16 32 64 128 256 512 1024] [--window 8]
        [--rate 2] [--ynn-off global] [--keep-heap] [--total-seconds 900] [--pair-reps 10]
        [--plot benchmarks/attention_scaling.png] [--save-json PATH] [--load-json PATH]
"""

from __future__ import annotations

import argparse
import contextlib
import ctypes
import gc
import json
import math
import os
import resource
import statistics
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine_line

HERE = Path(__file__).parent
METHODS = ("multipole", "global", "window")
RESULT_TAG = "RESULT "
IMPORT_SECONDS = 6.0  # interpreter + jax import + init, per subprocess
KEEP_HEAP_ENV = {"MALLOC_MMAP_MAX_": "0", "MALLOC_TRIM_THRESHOLD_": str(2**40)}
NO_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=" + ",".join(
    f"-LIBRARY_FUSION_TYPE_{kind}" for kind in ("DOT", "ELTWISE", "REDUCE", "INDIVIDUAL_DOT")
)
EXPONENT_TARGET = 1.15
SPEEDUP_TARGET = 20.0
MEMORY_TARGET = 50.0
WINDOW_TARGET = 1.5
TARGET_SIDE = 128
MB = 1e6


# ---------------------------------------------------------------------------------------------
# One configuration (child process)
# ---------------------------------------------------------------------------------------------


def _proc_status_kib(*keys: str) -> dict[str, int]:
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            name = line.split(":", 1)[0]
            if name in keys:
                values[name] = int(line.split()[1])
    return values


def _reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def _trim_heap() -> None:
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def _available_bytes() -> int:
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def logits_bytes(method: str, side: int, heads: int) -> int:
    """Bytes of one float32 logits tensor of global attention (0 for the other methods)."""
    n = side * side
    return heads * n * n * 4 if method == "global" else 0


def make_layer(method: str, args: argparse.Namespace):
    from mano_jax.layers import GlobalAttention, MultipoleAttention, WindowAttention

    if method == "multipole":
        return MultipoleAttention(
            args.heads,
            args.head_dim,
            args.window,
            window_stride=args.stride,
            sampling_rate=args.rate,
            down=args.down,
            up=args.up,
            impl="xla",
        )
    if method == "window":
        return WindowAttention(args.heads, args.head_dim, args.window, impl="xla")
    return GlobalAttention(args.heads, args.head_dim, impl="xla")


def run_one(method: str, side: int, args: argparse.Namespace) -> dict:
    """Compile, measure memory, then time one configuration; returns a JSON-able dict."""
    import jax
    import jax.numpy as jnp

    layer = make_layer(method, args)
    x_shape = jax.ShapeDtypeStruct((1, side, side, args.channels), jnp.float32)
    key = jax.random.key(0)
    p_shape = jax.eval_shape(layer.init, key, x_shape)

    def loss(params, x):
        return jnp.sum(layer.apply(params, x) ** 2)

    grad_fn = jax.jit(jax.grad(loss, argnums=(0, 1)))
    start = time.perf_counter()
    compiled = grad_fn.lower(p_shape, x_shape).compile()
    compile_s = time.perf_counter() - start
    stats = compiled.memory_analysis()
    xla_bytes = (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )
    cost = compiled.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    result = {
        "method": method,
        "side": side,
        "n": side * side,
        "ynn": NO_YNN_FLAG not in os.environ.get("XLA_FLAGS", ""),
        "compile_s": compile_s,
        "xla_bytes": xla_bytes,
        "predicted_bytes": xla_bytes * args.memory_factor,
        "gflop": (cost or {}).get("flops", float("nan")) / 1e9,
    }
    logits = logits_bytes(method, side, args.heads)
    available = _available_bytes()
    if logits > args.logits_budget_gb * 1e9:
        result["skipped"] = f"predicted logits {logits / 1e9:.1f} GB"
        return result
    if result["predicted_bytes"] > 0.9 * available:
        result["skipped"] = (
            f"predicted peak {result['predicted_bytes'] / 1e9:.1f} GB, "
            f"{available / 1e9:.1f} GB available"
        )
        return result

    # One call of the same layer on a one-window grid first: the runtime's one-time set-up
    # (thread pools, library state, about 10 MB) is then not counted in the rise below.
    small = jnp.zeros((1, args.window, args.window, args.channels))
    jax.block_until_ready(grad_fn(jax.jit(layer.init)(key, small), small))
    params = jax.block_until_ready(jax.jit(layer.init)(key, jnp.zeros(x_shape.shape)))
    x = jax.block_until_ready(jax.random.normal(jax.random.key(1), x_shape.shape))
    _trim_heap()
    baseline = _proc_status_kib("VmRSS")["VmRSS"]
    reset = _reset_peak_rss()
    start = time.perf_counter()
    grads = jax.block_until_ready(compiled(params, x))
    first = time.perf_counter() - start
    peak = _proc_status_kib("VmHWM")["VmHWM"]
    del grads

    budget = args.config_seconds - compile_s - first
    reps = max(1, min(args.max_reps, int(budget / max(first, 1e-4))))
    times = []
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append(time.perf_counter() - start)
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = sum(getattr(cpu_end, f) - getattr(cpu_start, f) for f in ("ru_utime", "ru_stime"))
    if method == "multipole" and args.pair_reps:
        result.update(_paired_times(compiled, params, x, args, key))
    result.update(
        time_s=statistics.median(times),
        cpu_s=cpu / reps,
        min_s=min(times),
        first_s=first,
        reps=len(times),
        rss_increase_bytes=(peak - baseline) * 1024 if reset else None,
        rss_peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        load=os.getloadavg()[0],
    )
    return result


def _paired_times(compiled, params, x, args: argparse.Namespace, key) -> dict:
    """Multipole (``compiled``) and window attention timed alternately in one process.

    Both see the same machine load, so their ratio is the fair one on a shared
    machine; medians over ``--pair-reps`` alternations (fewer if they do not fit in
    ``--config-seconds``).
    """
    import jax
    import jax.numpy as jnp

    window = make_layer("window", args)

    def loss(p, x):
        return jnp.sum(window.apply(p, x) ** 2)

    window_params = jax.jit(window.init)(key, x)
    fn = jax.jit(jax.grad(loss, argnums=(0, 1))).lower(window_params, x).compile()
    cost = fn.cost_analysis()
    cost = cost[0] if isinstance(cost, list | tuple) else cost
    calls = ((compiled, params), (fn, window_params))
    times: tuple[list, list] = ([], [])
    start = time.perf_counter()
    for rep in range(args.pair_reps + 1):  # the first alternation warms both up
        for (f, p), out in zip(calls, times, strict=True):
            begin = time.perf_counter()
            jax.block_until_ready(f(p, x))
            if rep:
                out.append(time.perf_counter() - begin)
        if rep and time.perf_counter() - start > args.config_seconds:
            break
    mpa, win = (statistics.median(t) for t in times)
    return {
        "pair_multipole_s": mpa,
        "pair_window_s": win,
        "pair_reps": len(times[0]),
        "pair_window_gflop": (cost or {}).get("flops", float("nan")) / 1e9,
    }


# ---------------------------------------------------------------------------------------------
# Sweep (parent process)
# ---------------------------------------------------------------------------------------------


def measured(results: list[dict], method: str) -> list[dict]:
    """The configurations of ``method`` that ran, by increasing side."""
    rows = (r for r in results if r["method"] == method and "time_s" in r)
    return sorted(rows, key=lambda r: r["side"])


def peak_bytes(r: dict) -> float:
    """The primary peak memory of a measured configuration: RSS rise, else XLA's figure."""
    return r.get("rss_increase_bytes") or r["xla_bytes"]


def _child_flags(args: argparse.Namespace, memory_factor: float) -> list[str]:
    flags = [
        f"--window={args.window}",
        f"--rate={args.rate}",
        f"--channels={args.channels}",
        f"--heads={args.heads}",
        f"--head-dim={args.head_dim}",
        f"--down={args.down}",
        f"--up={args.up}",
        f"--config-seconds={args.config_seconds}",
        f"--max-reps={args.max_reps}",
        f"--logits-budget-gb={args.logits_budget_gb}",
        f"--memory-factor={memory_factor}",
        f"--pair-reps={args.pair_reps}",
    ]
    if args.stride is not None:
        flags.append(f"--stride={args.stride}")
    return flags


def _spawn(method: str, side: int, args: argparse.Namespace, memory_factor: float) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", method, str(side)]
    env = dict(os.environ)
    if method in args.ynn_off:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {NO_YNN_FLAG}".strip()
    if args.keep_heap:
        env.update(KEEP_HEAP_ENV)
    timeout = 3 * args.config_seconds + 300
    base = {"method": method, "side": side, "n": side * side}
    try:
        proc = subprocess.run(
            cmd + _child_flags(args, memory_factor),
            capture_output=True,
            text=True,
            timeout=timeout,
            env=env,
        )
    except subprocess.TimeoutExpired:
        return base | {"failed": "timed out"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    reason = "killed (out of memory?)" if proc.returncode == -9 else tail[:120]
    return base | {"failed": f"exit code {proc.returncode}: {reason}"}


def _predicted_seconds(method: str, side: int, results: list[dict], args) -> float | None:
    """Wall time of a child for (method, side), extrapolated from the largest measured side."""
    rows = measured(results, method)
    if not rows:
        return None
    last = rows[-1]
    power = 2.0 if method == "global" else 1.1
    call = last["time_s"] * (side * side / last["n"]) ** power
    runs = max(2 * call, min(args.config_seconds, call * (args.max_reps + 1)))
    return IMPORT_SECONDS + last["compile_s"] + runs


def _memory_factor(method: str, results: list[dict]) -> float:
    """RSS rise / XLA figure at the largest measured side of ``method`` (at least 1)."""
    rows = [r for r in measured(results, method) if r.get("rss_increase_bytes")]
    return max(1.0, rows[-1]["rss_increase_bytes"] / rows[-1]["xla_bytes"]) if rows else 1.0


def sweep(args: argparse.Namespace) -> list[dict]:
    start = time.perf_counter()
    results = []
    for side in sorted(args.sides):
        for method in args.methods:
            elapsed = time.perf_counter() - start
            predicted = _predicted_seconds(method, side, results, args)
            earlier = [r for r in results if r["method"] == method and r["side"] < side]
            base = {"method": method, "side": side, "n": side * side}
            over_budget = logits_bytes(method, side, args.heads) > args.logits_budget_gb * 1e9
            if over_budget:  # the child only compiles, for XLA's figure
                record = _spawn(method, side, args, _memory_factor(method, results))
            elif earlier and ("failed" in earlier[-1] or "dropped" in earlier[-1]):
                record = base | {"dropped": "a smaller side was dropped or failed"}
            elif predicted is not None and elapsed + predicted > args.total_seconds:
                left = args.total_seconds - elapsed
                record = base | {
                    "dropped": f"predicted {predicted:.0f} s, {left:.0f} s of the run budget left"
                }
            else:
                record = _spawn(method, side, args, _memory_factor(method, results))
            results.append(record)
            print(f"  {method:9s} {side:4d}: {_status(record)}", file=sys.stderr, flush=True)
    return results


def _status(r: dict) -> str:
    if "time_s" in r:
        return (
            f"{1e3 * r['time_s']:.1f} ms (min {1e3 * r['min_s']:.1f}) x{r['reps']}, "
            f"RSS +{peak_bytes(r) / MB:.1f} MB, XLA {r['xla_bytes'] / MB:.1f} MB, "
            f"compile {r['compile_s']:.1f} s"
            + (f", paired MPA / window {_paired_ratio(r):.2f}x" if _paired_ratio(r) else "")
        )
    return r.get("skipped") or r.get("dropped") or r.get("failed", "?")


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _lookup(results: list[dict], method: str, side: int) -> dict | None:
    for r in results:
        if r["method"] == method and r["side"] == side:
            return r
    return None


def _ran(r: dict | None) -> bool:
    return r is not None and "time_s" in r


def _fmt(value, spec: str = ".1f", suffix: str = "") -> str:
    return "–" if value is None else f"{value:{spec}}{suffix}"


def fit_exponent(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) against log(x)."""
    if len(points) < 2:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def _paired_ratio(mpa: dict | None) -> float | None:
    """Multipole / window time, both timed alternately in the multipole child."""
    if mpa is None or "pair_window_s" not in mpa:
        return None
    return mpa["pair_multipole_s"] / mpa["pair_window_s"]


def _flop_ratio(mpa: dict | None) -> float | None:
    """Multipole / window flops of the compiled gradients (XLA's cost analysis)."""
    if mpa is None or "pair_window_gflop" not in mpa:
        return None
    return mpa["gflop"] / mpa["pair_window_gflop"]


def _ratio_cells(results: list[dict], side: int) -> list[str]:
    mpa, glb, win = (_lookup(results, m, side) for m in ("multipole", "global", "window"))
    cells = ["–"] * 6
    if not _ran(mpa):
        return cells
    cells[4] = _fmt(_paired_ratio(mpa), ".2f", "x")
    cells[5] = _fmt(_flop_ratio(mpa), ".2f", "x")
    if _ran(glb):
        cells[0] = f"{glb['time_s'] / mpa['time_s']:.1f}x"
        cells[1] = f"{peak_bytes(glb) / peak_bytes(mpa):.0f}x"
    elif glb is not None and "predicted_bytes" in glb:
        cells[1] = f">= {glb['predicted_bytes'] / peak_bytes(mpa):.0f}x (predicted)"
    if _ran(win):
        cells[2] = f"{mpa['time_s'] / win['time_s']:.2f}x"
        cells[3] = f"{peak_bytes(mpa) / peak_bytes(win):.2f}x"
    return cells


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    print(
        "| side | N | method | time ms | min ms | CPU ms | peak MB (RSS rise) | XLA MB "
        "| process peak RSS MB | reps | load | global / MPA time | global / MPA memory "
        "| MPA / window time | MPA / window memory | MPA / window time, paired "
        "| MPA / window flops |"
    )
    print("|" + "---|" * 17)
    for side in sorted(args.sides):
        for method in args.methods:
            r = _lookup(results, method, side)
            if r is None:
                continue
            label = method + ("" if r.get("ynn", True) else " (no YNN)")
            ratios = _ratio_cells(results, side) if method == "multipole" else ["–"] * 6
            if _ran(r):
                cells = [
                    f"{1e3 * r['time_s']:.2f}",
                    f"{1e3 * r['min_s']:.2f}",
                    f"{1e3 * r['cpu_s']:.1f}",
                    f"{peak_bytes(r) / MB:.1f}",
                    f"{r['xla_bytes'] / MB:.1f}",
                    f"{r['rss_peak_bytes'] / MB:.0f}",
                    str(r["reps"]),
                    f"{r['load']:.1f}",
                ]
            else:
                xla = f"{r['xla_bytes'] / MB:.0f}" if "xla_bytes" in r else "–"
                cells = [_status(r), "–", "–", "–", xla, "–", "–", "–"]
            print(f"| {side} | {side * side} | {label} | " + " | ".join(cells + ratios) + " |")


def print_exponents(results: list[dict], args: argparse.Namespace) -> dict:
    """Fitted exponents per method: {method: {quantity: exponent}}."""
    quantities = {
        "time": lambda r: r["time_s"],
        "time (min)": lambda r: r["min_s"],
        "CPU time": lambda r: r["cpu_s"],
        "memory (RSS rise)": peak_bytes,
        "memory (XLA)": lambda r: r["xla_bytes"],
    }
    print(f"\nScaling exponents vs N (least squares on log-log, sides >= {args.fit_min_side}):\n")
    print("| method | sides used | " + " | ".join(quantities) + " |")
    print("|" + "---|" * (2 + len(quantities)))
    exponents = {}
    for method in args.methods:
        rows = [r for r in measured(results, method) if r["side"] >= args.fit_min_side]
        exponents[method] = {
            name: fit_exponent([(r["n"], get(r)) for r in rows]) for name, get in quantities.items()
        }
        sides = ", ".join(str(r["side"]) for r in rows) or "none"
        cells = [_fmt(v, ".3f") for v in exponents[method].values()]
        print(f"| {method} | {sides} | " + " | ".join(cells) + " |")

    print("\nLocal exponents between consecutive sides (time median / memory RSS rise):\n")
    for method in args.methods:
        rows = measured(results, method)
        steps = []
        for a, b in zip(rows, rows[1:], strict=False):
            t = fit_exponent([(a["n"], a["time_s"]), (b["n"], b["time_s"])])
            m = fit_exponent([(a["n"], peak_bytes(a)), (b["n"], peak_bytes(b))])
            steps.append(f"{a['side']}->{b['side']}: {t:.2f} / {m:.2f}")
        print(f"- {method}: " + (", ".join(steps) or "–"))
    return exponents


def check_targets(results: list[dict], exponents: dict, args: argparse.Namespace) -> bool:
    lines = []
    fitted = exponents.get("multipole", {})
    for name in ("time", "memory (RSS rise)"):
        value = fitted.get(name)
        ok = value is not None and value <= EXPONENT_TARGET
        lines.append((ok, f"multipole {name} exponent {_fmt(value, '.3f')} <= {EXPONENT_TARGET}"))
    side = TARGET_SIDE
    mpa, glb = _lookup(results, "multipole", side), _lookup(results, "global", side)
    if _ran(mpa) and _ran(glb):
        speed = glb["time_s"] / mpa["time_s"]
        memory = peak_bytes(glb) / peak_bytes(mpa)
        xla = glb["xla_bytes"] / mpa["xla_bytes"]
        lines.append(
            (
                speed >= SPEEDUP_TARGET,
                f"{side}x{side}: multipole {speed:.1f}x faster than global "
                f"(>= {SPEEDUP_TARGET:.0f}x; min times: {glb['min_s'] / mpa['min_s']:.1f}x)",
            )
        )
        lines.append(
            (
                memory >= MEMORY_TARGET,
                f"{side}x{side}: multipole {memory:.0f}x less peak memory than global "
                f"(RSS rise; XLA figures: {xla:.0f}x) (>= {MEMORY_TARGET:.0f}x)",
            )
        )
    else:
        why = _status(glb) if glb is not None else "not in the sweep"
        lines.append((False, f"{side}x{side}: multipole vs global not measured ({why})"))
    worst, ratios = None, []
    for s in sorted(args.sides):
        mpa = _lookup(results, "multipole", s)
        ratio = _paired_ratio(mpa)
        if ratio is not None:
            worst = ratio if worst is None else max(worst, ratio)
            ratios.append(f"{s}: {ratio:.2f}x (flops {_fmt(_flop_ratio(mpa), '.2f', 'x')})")
    lines.append(
        (
            worst is not None and worst <= WINDOW_TARGET,
            f"multipole time within {WINDOW_TARGET}x of window attention at every size, timed "
            f"alternately in one process (worst {_fmt(worst, '.2f', 'x')}; "
            + ", ".join(ratios)
            + ")",
        )
    )
    print("\nTargets:\n")
    for ok, text in lines:
        print(f"- {'PASS' if ok else 'FAIL'}: {text}")
    return all(ok for ok, _ in lines)


def _label(results: list[dict], method: str) -> str:
    ynn = all(r.get("ynn", True) for r in results if r["method"] == method)
    return method if ynn else f"{method} (no YNN)"


def plot(results: list[dict], args: argparse.Namespace) -> None:
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, axes = plt.subplots(1, 2, figsize=(12, 5))
    colors = {"multipole": "tab:blue", "global": "tab:red", "window": "tab:green"}
    panels = (
        (axes[0], lambda r: 1e3 * r["time_s"], "fwd + bwd time, median (ms)"),
        (axes[1], lambda r: peak_bytes(r) / MB, "peak memory, RSS rise (MB)"),
    )
    for ax, value, label in panels:
        points = []
        for method in args.methods:
            rows = measured(results, method)
            if not rows:
                continue
            ns, ys = [r["n"] for r in rows], [value(r) for r in rows]
            ax.plot(ns, ys, "o-", color=colors[method], label=_label(results, method))
            points += list(zip(ns, ys, strict=True))
            if ax is not axes[1]:
                continue
            ax.plot(
                ns,
                [r["xla_bytes"] / MB for r in rows],
                "x:",
                color=colors[method],
                alpha=0.6,
                label=f"{method}, XLA figure",
            )
            skipped = [
                r
                for r in results
                if r["method"] == method and "skipped" in r and r["side"] > rows[-1]["side"]
            ]
            if skipped:
                nxt = min(skipped, key=lambda r: r["side"])
                y = nxt["predicted_bytes"] / MB
                ax.plot(
                    [ns[-1], nxt["n"]],
                    [ys[-1], y],
                    "o--",
                    color=colors[method],
                    markerfacecolor="none",
                    label=f"{method}, predicted (not run)",
                )
                ax.annotate(
                    f"{y / 1e3:.0f} GB",
                    (nxt["n"], y),
                    textcoords="offset points",
                    xytext=(6, -4),
                    fontsize=8,
                )
                points.append((nxt["n"], y))
        if not points:
            continue
        n0, y0 = min(points)
        n_max = max(n for n, _ in points)
        y_low, y_high = min(y for _, y in points) / 2, max(y for _, y in points) * 2
        for slope, style in ((1, "--"), (2, "-.")):
            ax.plot(
                [n0, n_max],
                [y0, y0 * (n_max / n0) ** slope],
                style,
                color="gray",
                linewidth=1,
                label=f"slope {slope}",
            )
        ax.set_xscale("log")
        ax.set_yscale("log")
        ax.set_ylim(y_low, y_high)
        ax.set_xlabel("tokens N = side^2")
        ax.set_ylabel(label)
        ax.grid(True, which="both", alpha=0.3)
        ax.legend(fontsize=7, loc="upper left")
    stride = f", stride {args.stride}" if args.stride else ""
    fig.suptitle(
        f"One attention layer, fwd + bwd, batch 1, float32, CPU: C={args.channels}, "
        f"{args.heads} heads x {args.head_dim}, window {args.window}{stride}, r={args.rate}"
    )
    fig.tight_layout()
    args.plot.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(args.plot, dpi=120)
    plt.close(fig)
    print(f"\nPlot: {args.plot}")


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--sides", type=int, nargs="+", default=[16, 32, 64, 128, 256, 512, 1024])
    parser.add_argument("--methods", nargs="+", choices=METHODS, default=list(METHODS))
    parser.add_argument("--window", type=int, default=8, help="window size k")
    parser.add_argument("--stride", type=int, default=None, help="multipole window stride")
    parser.add_argument("--rate", type=int, default=2, help="multipole sampling rate r")
    parser.add_argument("--down", choices=("conv", "avg"), default="conv")
    parser.add_argument("--up", choices=("conv", "nearest"), default="conv")
    parser.add_argument("--channels", type=int, default=64)
    parser.add_argument("--heads", type=int, default=4)
    parser.add_argument("--head-dim", type=int, default=16)
    parser.add_argument(
        "--ynn-off",
        nargs="*",
        choices=METHODS,
        default=["global"],
        help="methods compiled with XLA:CPU's YNNPACK fusions disabled",
    )
    parser.add_argument(
        "--keep-heap",
        action="store_true",
        help="children's malloc never returns memory to the system (no per-call page faults)",
    )
    parser.add_argument("--logits-budget-gb", type=float, default=16.0)
    parser.add_argument("--config-seconds", type=float, default=60.0)
    parser.add_argument("--total-seconds", type=float, default=900.0)
    parser.add_argument("--max-reps", type=int, default=20)
    parser.add_argument(
        "--pair-reps",
        type=int,
        default=10,
        help="multipole and window attention timed alternately in the multipole child (0: off)",
    )
    parser.add_argument("--fit-min-side", type=int, default=64)
    parser.add_argument("--plot", type=Path, default=HERE / "attention_scaling.png")
    parser.add_argument("--save-json", type=Path, help="also write the raw results here")
    parser.add_argument(
        "--load-json", type=Path, help="report and plot saved results instead of running"
    )
    parser.add_argument("--one", nargs=2, metavar=("METHOD", "SIDE"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-factor", type=float, default=1.0, help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    if args.one:
        method, side = args.one[0], int(args.one[1])
        print(RESULT_TAG + json.dumps(run_one(method, side, args)), flush=True)
        return 0
    start = time.perf_counter()
    stride = f", stride {args.stride}" if args.stride else ""
    no_ynn = ", ".join(args.ynn_off) or "none"
    print(machine_line())
    print(
        f"One attention layer, jit(grad(sum(layer(p, x)^2), argnums=(0, 1))): batch 1, "
        f"C={args.channels}, {args.heads} heads x {args.head_dim}, float32; multipole "
        f"k={args.window}{stride}, r={args.rate}, down={args.down}, up={args.up}; window "
        f"attention k={args.window}. Fresh process per configuration; compile excluded; "
        "time = median over reps. Peak memory = rise of the resident set during one call "
        "(VmHWM reset before it); XLA = arguments + outputs + temporaries of the compiled "
        f"executable. YNNPACK fusions disabled for: {no_ynn}. Heap kept between calls: "
        f"{'yes' if args.keep_heap else 'no (glibc defaults)'}. Load = 1-minute load average "
        "at the end of a configuration (this process counts about 1-2).\n",
        flush=True,
    )
    results = json.loads(args.load_json.read_text()) if args.load_json else sweep(args)
    if args.save_json:
        args.save_json.write_text(json.dumps(results, indent=1))
    print_table(results, args)
    exponents = print_exponents(results, args)
    check_targets(results, exponents, args)
    plot(results, args)
    print(f"\nTotal wall time {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
