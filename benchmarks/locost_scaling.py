"""LOCOST encoder against a full-attention T5 encoder: time and peak memory against length.

Both encoders have the same width and depth: by default the ``base`` width (d_model
768, gated-GELU feed-forward d_ff 2048; T5: 12 heads x 64 with a relative position
bias; LOCOST: SSM state size 512, one FFT convolution per layer) and 2 layers so that
a 2-core CPU gets through the sweep (``--layers 12`` for the full stack). Batch 1,
float32, random embedded inputs ``x [1, L, d_model]`` (no mask), input lengths
1K .. 64K tokens. Two modes:

* ``forward``: ``jit(lambda p, x: encoder.apply(p, x))`` (inference);
* ``train``: ``jit(grad(lambda p, x: sum(encoder.apply(p, x) ** 2), argnums=(0, 1)))``,
  forward + backward with gradients for the parameters and the input (training).

Every (model, mode, length) runs in a fresh subprocess (this script re-invoked with
``--one MODEL MODE LENGTH``), so none sees another's memory or caches. The child
compiles ahead of time, runs one warm-up call (which also measures memory) and then
times a few calls (``--min-reps`` .. ``--max-reps``, as many as fit in
``--config-seconds``) with ``block_until_ready``; the time is their median (also
shown: the minimum, and the CPU time per call, user + system over all threads).

Peak memory, two figures per configuration:

* XLA (the primary figure, used for the exponents and the 16K ratio): the compiled
  executable's ``memory_analysis()``, arguments + outputs + temporaries - aliased
  bytes. Deterministic, and known from compilation alone, so it is reported also for
  the configurations that are too large to run (the full-attention encoder at 16K and
  beyond).
* RSS (the check): the rise of the resident set during the warm-up call (heap trimmed
  and the kernel's peak-RSS mark reset with ``/proc/self/clear_refs`` just before it;
  ``VmHWM`` after minus ``VmRSS`` before) plus the bytes of the arguments (parameters
  and input, allocated before the mark was reset), so it counts the same things as
  XLA's figure, plus any scratch that libraries allocate on their own (YNNPACK fusions,
  FFT plans). The runtime's one-time set-up (about 10 MB) is paid beforehand by one
  call of the same function on 16 tokens.

YNNPACK: by default both encoders are compiled with XLA:CPU's YNNPACK fusions
disabled (``--ynn-off``; pass ``--ynn-off`` with no model to keep them). Those fusions
allocate scratch that XLA's figure does not see (the RSS check then reads about 1.2x
XLA's figure in the train mode); without them the two figures agree within about 10%,
the full-attention encoder needs less memory (it is the stronger baseline) and neither
encoder's CPU time changes measurably.

Budget: before running, the child predicts the configuration's peak as XLA's figure
times the RSS / XLA ratio measured at the previous length of the same model and mode
(at least 1). A configuration predicted above ``--memory-budget-gib`` (default 16) or
above 90% of the memory available is not run, nor is any longer one of the same model
and mode (they are only compiled), and the table says so, with XLA's figure. XLA's
figures at the defaults: the full-attention encoder needs 9.2 GiB at 8K tokens and
36.6 GiB at 16K (forward), 4.7 GiB at 4K and 18.5 GiB at 8K (train), so it stops at 8K
(forward) and 4K (train); the LOCOST encoder needs 3.1 GiB (forward) and 12.5 GiB
(train) at 64K and runs every length.

Exponents: least-squares slope of log(time) and log(memory) against log(L) over the
upper half of each model's measured lengths (at least two), and, for XLA's figure, over
the upper half of all compiled lengths, run or not. Then the memory ratio at
``--ratio-length`` (16K) in both modes, from XLA's figures (the full-attention encoder's
is not run at 16K). Paper context, against LongT5's local/transient-global attention
rather than full attention: LOCOST needs up to 50% less training memory and 87% less
inference memory.

Full run (defaults; about 45 minutes on a quiet 2-core CPU, up to 1 h 15 min on a loaded
one, most of it the LOCOST train mode at 32K and 64K tokens; peak resident set about
14 GiB, the LOCOST train mode at 64K tokens)::

    python benchmarks/locost_scaling.py [--lengths 1024 2048 4096 8192 16384 32768 65536]
        [--layers 2] [--models locost t5] [--modes forward train] [--memory-budget-gib 16]
        [--ratio-length 16384] [--save-json PATH] [--load-json PATH]

Quick check of the script (about a minute)::

    python benchmarks/locost_scaling.py --lengths 256 512 1024 --layers 1 --d-model 128 \\
        --d-ff 256 --heads 4 --head-dim 32 --state-size 64 --ratio-length 1024 \\
        --config-seconds 5
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

MODELS = ("locost", "t5")
MODES = ("forward", "train")
LABELS = {"locost": "LOCOST", "t5": "T5 (full attention)"}
RESULT_TAG = "RESULT "
GIB = 2**30
MIB = 2**20
NO_YNN_FLAG = "--xla_cpu_experimental_ynn_fusion_type=" + ",".join(
    f"-LIBRARY_FUSION_TYPE_{kind}" for kind in ("DOT", "ELTWISE", "REDUCE", "INDIVIDUAL_DOT")
)
PAPER_LESS_MEMORY = {"train": 0.50, "forward": 0.87}  # LOCOST vs LongT5, paper

# ---------------------------------------------------------------------------------------------
# Process memory (shared with locost_long_input.py)
# ---------------------------------------------------------------------------------------------


def proc_status_kib(*keys: str) -> dict[str, int]:
    """Fields of ``/proc/self/status`` in KiB (e.g. ``VmRSS``, ``VmHWM``)."""
    values = {}
    with open("/proc/self/status") as f:
        for line in f:
            name = line.split(":", 1)[0]
            if name in keys:
                values[name] = int(line.split()[1])
    return values


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark (VmHWM) to the current RSS; False if not allowed."""
    try:
        with open("/proc/self/clear_refs", "w") as f:
            f.write("5")
    except OSError:
        return False
    return True


def trim_heap() -> None:
    """Collect garbage and give the C heap's free pages back to the system."""
    gc.collect()
    with contextlib.suppress(OSError, AttributeError):
        ctypes.CDLL("libc.so.6").malloc_trim(0)


def available_bytes() -> int:
    """``MemAvailable`` of ``/proc/meminfo`` in bytes."""
    with open("/proc/meminfo") as f:
        for line in f:
            if line.startswith("MemAvailable:"):
                return int(line.split()[1]) * 1024
    return 0


def xla_bytes(compiled) -> int:
    """Arguments + outputs + temporaries - aliased bytes of a compiled executable."""
    stats = compiled.memory_analysis()
    return (
        stats.argument_size_in_bytes
        + stats.output_size_in_bytes
        + stats.temp_size_in_bytes
        - stats.alias_size_in_bytes
    )


def fit_exponent(points: list[tuple[float, float]]) -> float | None:
    """Least-squares slope of log(y) against log(x); None for fewer than two points."""
    if len(points) < 2:
        return None
    xs = [math.log(x) for x, _ in points]
    ys = [math.log(y) for _, y in points]
    mx, my = statistics.fmean(xs), statistics.fmean(ys)
    sxx = sum((x - mx) ** 2 for x in xs)
    return sum((x - mx) * (y - my) for x, y in zip(xs, ys, strict=True)) / sxx


def load_line() -> str:
    one, five, fifteen = os.getloadavg()
    return f"Load average (1/5/15 min): {one:.2f} / {five:.2f} / {fifteen:.2f}."


# ---------------------------------------------------------------------------------------------
# One configuration (child process)
# ---------------------------------------------------------------------------------------------


def make_encoder(model: str, args: argparse.Namespace):
    """The encoder module ``model`` at the widths of ``args``."""
    import jax.numpy as jnp

    if model == "locost":
        from seq_models.locost import LOCOSTEncoder, locost_config

        config = locost_config(
            "base",
            d_model=args.d_model,
            state_size=args.state_size,
            d_ff=args.d_ff,
            num_encoder_layers=args.layers,
            num_heads=args.heads,
            head_dim=args.head_dim,
            dropout=0.0,
            chunk=args.chunk,
        )
        return LOCOSTEncoder(config)
    from seq_models.t5 import T5Encoder

    return T5Encoder(
        args.layers, args.d_model, args.heads, args.head_dim, args.d_ff, dtype=jnp.float32
    )


def make_function(encoder, mode: str):
    """The jitted function timed in ``mode``: ``f(params, x)``."""
    import jax
    import jax.numpy as jnp

    def forward(params, x):
        return encoder.apply(params, x)

    if mode == "forward":
        return jax.jit(forward)

    def loss(params, x):
        return jnp.sum(forward(params, x) ** 2)

    return jax.jit(jax.grad(loss, argnums=(0, 1)))


def count_parameters(model: str, args: argparse.Namespace) -> int:
    """Parameters of the encoder ``model`` (``jax.eval_shape``: nothing allocated)."""
    import jax
    import jax.numpy as jnp

    encoder = make_encoder(model, args)
    x = jax.ShapeDtypeStruct((1, 16, args.d_model), jnp.float32)
    shapes = jax.eval_shape(encoder.init, jax.random.key(0), x)
    return sum(int(leaf.size) for leaf in jax.tree.leaves(shapes))


def run_one(model: str, mode: str, length: int, args: argparse.Namespace) -> dict:
    """Compile, predict, then (if within budget) measure one configuration."""
    import jax
    import jax.numpy as jnp

    encoder = make_encoder(model, args)
    x_shape = jax.ShapeDtypeStruct((1, length, args.d_model), jnp.float32)
    key = jax.random.key(0)
    p_shape = jax.eval_shape(encoder.init, key, x_shape)
    fn = make_function(encoder, mode)
    start = time.perf_counter()
    compiled = fn.lower(p_shape, x_shape).compile()
    compile_s = time.perf_counter() - start
    argument_bytes = sum(int(a.size) * a.dtype.itemsize for a in jax.tree.leaves(p_shape))
    argument_bytes += length * args.d_model * 4
    result = {
        "model": model,
        "mode": mode,
        "length": length,
        "compile_s": compile_s,
        "xla_bytes": xla_bytes(compiled),
        "ynn": NO_YNN_FLAG not in os.environ.get("XLA_FLAGS", ""),
    }
    predicted = result["xla_bytes"] * args.memory_factor
    result["predicted_bytes"] = predicted
    available = available_bytes()
    if args.compile_only:
        result["skipped"] = "compiled only"
        return result
    if predicted > args.memory_budget_gib * GIB:
        result["skipped"] = (
            f"not run: predicted {predicted / GIB:.1f} GiB > budget {args.memory_budget_gib:g} GiB"
        )
        return result
    if predicted > 0.9 * available:
        result["skipped"] = (
            f"not run: predicted {predicted / GIB:.1f} GiB, {available / GIB:.1f} GiB available"
        )
        return result

    init = jax.jit(encoder.init)
    params = jax.block_until_ready(init(key, jnp.zeros((1, 8, args.d_model), jnp.float32)))
    # One call at 16 tokens first: the runtime's one-time set-up (thread pools, about
    # 10 MB) is then not counted in the rise below.
    jax.block_until_ready(fn(params, jnp.zeros((1, 16, args.d_model), jnp.float32)))
    x = jax.block_until_ready(jax.random.normal(jax.random.key(1), x_shape.shape, jnp.float32))
    trim_heap()
    before = proc_status_kib("VmRSS")["VmRSS"]
    reset = reset_peak_rss()
    start = time.perf_counter()
    out = jax.block_until_ready(compiled(params, x))
    first = time.perf_counter() - start
    peak = proc_status_kib("VmHWM")["VmHWM"]
    del out

    budget = args.config_seconds - first
    reps = max(args.min_reps, min(args.max_reps, int(budget / max(first, 1e-4))))
    times = []
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    for _ in range(reps):
        start = time.perf_counter()
        jax.block_until_ready(compiled(params, x))
        times.append(time.perf_counter() - start)
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    cpu = sum(getattr(cpu_end, f) - getattr(cpu_start, f) for f in ("ru_utime", "ru_stime"))
    result.update(
        time_s=statistics.median(times),
        min_s=min(times),
        cpu_s=cpu / reps,
        first_s=first,
        reps=reps,
        rss_bytes=(peak - before) * 1024 + argument_bytes if reset else None,
        process_peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        load=os.getloadavg()[0],
    )
    return result


# ---------------------------------------------------------------------------------------------
# Sweep (parent process)
# ---------------------------------------------------------------------------------------------


def _ran(r: dict | None) -> bool:
    return r is not None and "time_s" in r


def measured(results: list[dict], model: str, mode: str) -> list[dict]:
    """The configurations of (model, mode) that ran, by increasing length."""
    rows = (r for r in results if r["model"] == model and r["mode"] == mode and _ran(r))
    return sorted(rows, key=lambda r: r["length"])


def _memory_factor(results: list[dict], model: str, mode: str) -> float:
    rows = [r for r in measured(results, model, mode) if r.get("rss_bytes")]
    return max(1.0, rows[-1]["rss_bytes"] / rows[-1]["xla_bytes"]) if rows else 1.0


def _child_flags(args: argparse.Namespace) -> list[str]:
    flags = [
        f"--layers={args.layers}",
        f"--d-model={args.d_model}",
        f"--d-ff={args.d_ff}",
        f"--heads={args.heads}",
        f"--head-dim={args.head_dim}",
        f"--state-size={args.state_size}",
        f"--memory-budget-gib={args.memory_budget_gib}",
        f"--config-seconds={args.config_seconds}",
        f"--min-reps={args.min_reps}",
        f"--max-reps={args.max_reps}",
    ]
    if args.chunk is not None:
        flags.append(f"--chunk={args.chunk}")
    return flags


def spawn(model: str, mode: str, length: int, args, *, factor: float, compile_only: bool):
    """Run one configuration in a fresh subprocess; its result dict."""
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", model, mode, str(length)]
    cmd += _child_flags(args) + [f"--memory-factor={factor}"]
    if compile_only:
        cmd.append("--compile-only")
    env = dict(os.environ)
    if model in args.ynn_off:
        env["XLA_FLAGS"] = f"{env.get('XLA_FLAGS', '')} {NO_YNN_FLAG}".strip()
    base = {"model": model, "mode": mode, "length": length}
    try:
        proc = subprocess.run(
            cmd, capture_output=True, text=True, env=env, timeout=4 * args.config_seconds + 900
        )
    except subprocess.TimeoutExpired:
        return base | {"failed": "timed out"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    reason = "killed (out of memory?)" if proc.returncode == -9 else tail[:120]
    return base | {"failed": f"exit code {proc.returncode}: {reason}"}


def sweep(args: argparse.Namespace) -> list[dict]:
    results = []
    for length in sorted(args.lengths):
        for model in args.models:
            for mode in args.modes:
                earlier = [
                    r
                    for r in results
                    if r["model"] == model and r["mode"] == mode and r["length"] < length
                ]
                # Once a smaller length failed or was over budget, only compile (XLA's figure).
                stopped = bool(earlier) and not _ran(earlier[-1])
                record = spawn(
                    model,
                    mode,
                    length,
                    args,
                    factor=_memory_factor(results, model, mode),
                    compile_only=stopped,
                )
                if stopped and record.get("skipped") == "compiled only":
                    first = next(r for r in earlier if not _ran(r))
                    record["skipped"] = f"not run: {first['length']} tokens was not run"
                results.append(record)
                print(
                    f"  {model:6s} {mode:7s} {length:6d}: {_status(record)}",
                    file=sys.stderr,
                    flush=True,
                )
    return results


def _status(r: dict) -> str:
    if _ran(r):
        rss = f"{r['rss_bytes'] / MIB:.0f}" if r.get("rss_bytes") else "–"
        return (
            f"{r['time_s']:.3f} s (min {r['min_s']:.3f}) x{r['reps']}, "
            f"XLA {r['xla_bytes'] / MIB:.0f} MiB, RSS {rss} MiB, compile {r['compile_s']:.1f} s"
        )
    return r.get("skipped") or r.get("failed", "?")


# ---------------------------------------------------------------------------------------------
# Report
# ---------------------------------------------------------------------------------------------


def _lookup(results: list[dict], model: str, mode: str, length: int) -> dict | None:
    for r in results:
        if r["model"] == model and r["mode"] == mode and r["length"] == length:
            return r
    return None


def size(num_bytes: float) -> str:
    """``num_bytes`` in MiB below 1 GiB, else in GiB."""
    if num_bytes < GIB:
        return f"{num_bytes / MIB:.0f} MiB"
    return f"{num_bytes / GIB:.2f} GiB"


def _fmt(value, spec: str = ".2f") -> str:
    return "–" if value is None else f"{value:{spec}}"


def _label(r: dict) -> str:
    return LABELS[r["model"]] + ("" if r.get("ynn", True) else " (no YNN)")


def print_table(results: list[dict], args: argparse.Namespace) -> None:
    print(
        "| L | mode | model | time s | min s | CPU s | reps | peak MiB (XLA) | peak MiB (RSS) "
        "| process peak RSS MiB | load | T5 / LOCOST time | T5 / LOCOST memory (XLA) |"
    )
    print("|" + "---|" * 13)
    for length in sorted(args.lengths):
        for mode in args.modes:
            locost = _lookup(results, "locost", mode, length)
            t5 = _lookup(results, "t5", mode, length)
            for r in (locost, t5):
                if r is None:
                    continue
                ratios = ["–", "–"]
                if r is locost and locost is not None and t5 is not None:
                    if _ran(locost) and _ran(t5):
                        ratios[0] = f"{t5['time_s'] / locost['time_s']:.1f}x"
                    if "xla_bytes" in locost and "xla_bytes" in t5:
                        ratios[1] = f"{t5['xla_bytes'] / locost['xla_bytes']:.1f}x"
                xla = f"{r['xla_bytes'] / MIB:.0f}" if "xla_bytes" in r else "–"
                if _ran(r):
                    rss = f"{r['rss_bytes'] / MIB:.0f}" if r.get("rss_bytes") else "–"
                    cells = [
                        f"{r['time_s']:.3f}",
                        f"{r['min_s']:.3f}",
                        f"{r['cpu_s']:.2f}",
                        str(r["reps"]),
                        xla,
                        rss,
                        f"{r['process_peak_bytes'] / MIB:.0f}",
                        f"{r['load']:.1f}",
                    ]
                else:
                    cells = [_status(r), "–", "–", "–", xla, "–", "–", "–"]
                row = [str(length), mode, _label(r)] + cells + ratios
                print("| " + " | ".join(row) + " |")


def upper_half(rows: list[dict]) -> list[dict]:
    """The last ``max(2, ceil(n / 2))`` of ``n`` rows sorted by length (all if fewer)."""
    return rows[-max(2, -(-len(rows) // 2)) :]


def print_exponents(results: list[dict], args: argparse.Namespace) -> None:
    print(
        "\nScaling exponents against L (least squares on log-log over the upper half of the "
        "measured lengths; last column: XLA's figure over the upper half of all compiled "
        "lengths, run or not):\n"
    )
    print(
        "| model | mode | lengths (measured) | time | CPU time | memory (XLA) | memory (RSS) "
        "| lengths (compiled) | memory (XLA, compiled) |"
    )
    print("|" + "---|" * 9)
    for model in args.models:
        for mode in args.modes:
            rows = upper_half(measured(results, model, mode))
            compiled = sorted(
                (
                    r
                    for r in results
                    if r["model"] == model and r["mode"] == mode and "xla_bytes" in r
                ),
                key=lambda r: r["length"],
            )
            compiled = upper_half(compiled)
            rss_rows = [r for r in rows if r.get("rss_bytes")]
            cells = [
                fit_exponent([(r["length"], r["time_s"]) for r in rows]),
                fit_exponent([(r["length"], r["cpu_s"]) for r in rows]),
                fit_exponent([(r["length"], r["xla_bytes"]) for r in rows]),
                fit_exponent([(r["length"], r["rss_bytes"]) for r in rss_rows]),
            ]
            xla_all = fit_exponent([(r["length"], r["xla_bytes"]) for r in compiled])
            lengths = ", ".join(str(r["length"]) for r in rows) or "none"
            all_lengths = ", ".join(str(r["length"]) for r in compiled) or "none"
            print(
                f"| {LABELS[model]} | {mode} | {lengths} | "
                + " | ".join(_fmt(c) for c in cells)
                + f" | {all_lengths} | {_fmt(xla_all)} |"
            )


def print_memory_ratio(results: list[dict], args: argparse.Namespace) -> None:
    length = args.ratio_length
    print(f"\nPeak memory at {length} tokens, LOCOST against full attention:\n")
    for mode in args.modes:
        locost = _lookup(results, "locost", mode, length)
        t5 = _lookup(results, "t5", mode, length)
        paper = f"paper, against LongT5: up to {PAPER_LESS_MEMORY[mode]:.0%} less"
        if not (locost and t5 and "xla_bytes" in locost and "xla_bytes" in t5):
            print(f"- {mode}: not in the sweep ({paper})")
            continue
        ratio = locost["xla_bytes"] / t5["xla_bytes"]
        t5_note = "measured" if _ran(t5) else "XLA's figure only, not run"
        text = (
            f"- {mode}: LOCOST {size(locost['xla_bytes'])}, T5 {size(t5['xla_bytes'])} "
            f"({t5_note}) (XLA): ratio {ratio:.3f}, "
            f"{1 - ratio:.0%} less"
        )
        if _ran(locost) and _ran(t5) and locost.get("rss_bytes") and t5.get("rss_bytes"):
            rss = locost["rss_bytes"] / t5["rss_bytes"]
            text += f"; RSS: ratio {rss:.3f}, {1 - rss:.0%} less"
        print(text + f" ({paper})")


def print_header(args: argparse.Namespace) -> None:
    counts = {m: count_parameters(m, args) for m in args.models}
    chunk = "one FFT" if args.chunk is None else f"overlap-add in blocks of {args.chunk}"
    no_ynn = ", ".join(args.ynn_off) or "none"
    print(machine_line())
    print(load_line())
    print(
        f"\nEncoders, {args.layers} layer(s), d_model {args.d_model}, d_ff {args.d_ff} "
        f"(gated GELU): LOCOST (state size {args.state_size}, convolution {chunk}; "
        f"{counts.get('locost', 0):,} parameters) and T5 full attention ({args.heads} heads x "
        f"{args.head_dim}, relative position bias; {counts.get('t5', 0):,} parameters). "
        "Batch 1, float32, random inputs x [1, L, d_model]. forward = jit(apply); train = "
        "jit(grad(sum(apply(p, x)^2), argnums=(0, 1))). Fresh process per configuration; "
        "compile excluded; time = median over reps after one warm-up call. Peak memory: XLA "
        "= arguments + outputs + temporaries of the compiled executable (primary); RSS = rise "
        "of the resident set during the warm-up call + argument bytes (check). Memory budget "
        f"{args.memory_budget_gib:g} GiB. YNNPACK fusions disabled for: {no_ynn}. Load = "
        "1-minute load average at the end of a configuration.\n",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[1024 * 2**i for i in range(7)])
    parser.add_argument("--models", nargs="+", choices=MODELS, default=list(MODELS))
    parser.add_argument("--modes", nargs="+", choices=MODES, default=list(MODES))
    parser.add_argument("--layers", type=int, default=2, help="encoder layers (base: 12)")
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--d-ff", type=int, default=2048)
    parser.add_argument("--heads", type=int, default=12)
    parser.add_argument("--head-dim", type=int, default=64)
    parser.add_argument("--state-size", type=int, default=512)
    parser.add_argument(
        "--chunk", type=int, default=None, help="LOCOST overlap-add block (default: one FFT)"
    )
    parser.add_argument("--memory-budget-gib", type=float, default=16.0)
    parser.add_argument(
        "--ynn-off",
        nargs="*",
        choices=MODELS,
        default=list(MODELS),
        help="models compiled with XLA:CPU's YNNPACK fusions disabled (default: both)",
    )
    parser.add_argument("--config-seconds", type=float, default=60.0, help="timing budget")
    parser.add_argument("--min-reps", type=int, default=3)
    parser.add_argument("--max-reps", type=int, default=10)
    parser.add_argument("--ratio-length", type=int, default=16384)
    parser.add_argument("--save-json", type=Path, help="also write the raw results here")
    parser.add_argument("--load-json", type=Path, help="report saved results instead of running")
    parser.add_argument("--one", nargs=3, metavar=("MODEL", "MODE", "L"), help=argparse.SUPPRESS)
    parser.add_argument("--memory-factor", type=float, default=1.0, help=argparse.SUPPRESS)
    parser.add_argument("--compile-only", action="store_true", help=argparse.SUPPRESS)
    return parser.parse_args(argv)


def main() -> int:
    args = parse_args()
    if args.one:
        model, mode, length = args.one[0], args.one[1], int(args.one[2])
        print(RESULT_TAG + json.dumps(run_one(model, mode, length, args)), flush=True)
        return 0
    start = time.perf_counter()
    print_header(args)
    results = json.loads(args.load_json.read_text()) if args.load_json else sweep(args)
    if args.save_json:
        args.save_json.write_text(json.dumps(results, indent=1))
    print_table(results, args)
    print_exponents(results, args)
    print_memory_ratio(results, args)
    print(f"\n{load_line()} Total wall time {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
