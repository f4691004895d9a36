"""LOCOST encoder inference on one very long input (600K and 1M tokens) on a CPU.

The ``base`` encoder width (d_model 768, SSM state size 512, gated-GELU d_ff 2048) and
depth (12 layers; ``--layers`` to reduce), batch 1, float32, random parameters and a
random embedded input ``x [1, L, 768]`` (the token embedding is a lookup and is left
out). As ``seq_models.long_encoding.encode_in_blocks`` does, the layers run one at a time:
one layer is compiled ahead of time for the input's length and called 12 times (the
hidden states are donated to each call, so the previous layer's output is freed), then
the final RMSNorm. Three forms of the layer:

* ``fft``: ``LOCOSTEncoderLayer`` with ``config.chunk = None``: one FFT of size
  ``>= 2L`` per layer for the SSM convolution.
* ``chunked``: ``LOCOSTEncoderLayer`` with ``config.chunk = --chunk``: the overlap-add
  convolution in blocks of ``--chunk`` positions.
* ``blocks``: the library's bounded-memory layer,
  ``seq_models.long_encoding.encoder_layer_in_blocks``: the position-wise parts
  (RMSNorms, projections, gating, feed-forward) over blocks of about
  ``--block-positions`` positions (``lax.map``), the SSM convolution (one FFT) over
  ``--channel-groups`` groups of channels. Its output equals the ``fft`` form's (checked
  by ``--dry-run``; the table's output checksums compare the forms of a full run).

Every (form, length) runs in a fresh subprocess (this script re-invoked with ``--one
FORM L``). The child compiles the layer first; XLA's ``memory_analysis()`` of the
compiled layer (arguments + outputs + temporaries - aliased bytes) plus the other
layers' parameters and the runtime (about 0.7 GiB) predicts the process's peak, and a
form predicted above ``--memory-limit-gb`` (24 GB) or above 90% of the memory available
is not run (the table says so, with the prediction). Reported: the process's peak
resident set (``ru_maxrss``: everything, runtime, compiler, parameters, activations),
the encoding wall time (compile excluded; also shown: the compile time, the slowest
layer and the CPU time), tokens per second, and two checksums of the encoder outputs,
``mean(out)`` and ``mean(out @ v)`` for a fixed random ``v`` (the same for every form).

Predicted peaks at the defaults (``--predict-only`` prints them in a few seconds):
600K tokens: 16.7 GiB (``fft``), 24.4 GiB (``chunked``, blocks of 65536), 8.8 GiB
(``blocks``); 1M tokens: 27.0 GiB, 39.2 GiB and 13.9 GiB. So at 1M tokens only the
``blocks`` form fits in 24 GB, and the ``chunked`` form is not run at either length:
it does not save memory, as the kernels and their lag-indexed copies are
``O(d_model L)`` whatever the block (blocks of 16384 need 23.5 GiB at 600K tokens).

Time: one full-width layer at 20K tokens on a 2-core CPU (load about 3) takes 4.7 s
with ``fft`` (4,200 tokens per second), 5.8 s with ``blocks`` (3,400; its loops use the
two cores less well) and 8.0 s with ``chunked`` (blocks of 8192); so 12 layers take
about 30 min (``fft``) and 35 min (``blocks``) at 600K tokens, and 60 min (``blocks``)
at 1M.

Full run (defaults: 600K and 1M tokens, all three forms, 12 layers; the forms that do
not fit are only compiled; about 2 hours on a 2-core CPU; peak resident set about
17 GiB, the ``fft`` form at 600K tokens)::

    python benchmarks/locost_long_input.py [--lengths 600000 1000000]
        [--forms fft chunked blocks] [--layers 12] [--memory-limit-gb 24]
        [--chunk 65536] [--block-positions 8192] [--channel-groups 12]
        [--predict-only] [--save-json PATH] [--load-json PATH]

Quick check (about a minute and a half: tiny widths, every form checked against the
library's ``LOCOSTEncoder``, then 4K and 6K tokens)::

    python benchmarks/locost_long_input.py --dry-run
"""

from __future__ import annotations

import argparse
import json
import os
import resource
import subprocess
import sys
import time
from pathlib import Path

from _machine import machine_line
from locost_scaling import (
    GIB,
    available_bytes,
    load_line,
    proc_status_kib,
    reset_peak_rss,
    trim_heap,
    xla_bytes,
)

FORMS = ("fft", "chunked", "blocks")
RESULT_TAG = "RESULT "
RUNTIME_BYTES = 0.7 * GIB  # interpreter, jax and XLA runtime, compiler: the rest of the peak
GB = 1e9
DRY_RUN = {
    "lengths": [4000, 6000],
    "layers": 2,
    "d_model": 64,
    "d_ff": 128,
    "state_size": 32,
    "chunk": 1024,
    "block_positions": 1000,
    "channel_groups": 4,
}

# ---------------------------------------------------------------------------------------------
# The layer in three forms
# ---------------------------------------------------------------------------------------------


def make_config(args: argparse.Namespace, form: str):
    from seq_models.locost import locost_config

    return locost_config(
        "base",
        d_model=args.d_model,
        state_size=args.state_size,
        d_ff=args.d_ff,
        num_encoder_layers=args.layers,
        dropout=0.0,
        chunk=args.chunk if form == "chunked" else None,
    )


def blocks_layer(config, block_positions: int, channel_groups: int):
    """``seq_models.long_encoding.encoder_layer_in_blocks`` as ``f(params, h [1, L, D])``."""
    from seq_models.long_encoding import encoder_layer_in_blocks

    def apply(params, h):
        return encoder_layer_in_blocks(
            config, params, h, position_block=block_positions, channel_groups=channel_groups
        )

    return apply


def layer_function(form: str, args: argparse.Namespace):
    """``(config, f(params, h))`` of one encoder layer in ``form``."""
    from seq_models.locost import LOCOSTEncoderLayer

    config = make_config(args, form)
    if form == "blocks":
        return config, blocks_layer(config, args.block_positions, args.channel_groups)
    module = LOCOSTEncoderLayer(config)
    return config, lambda params, h: module.apply({"params": params}, h)


def init_layers(config, num_layers: int):
    """Parameters of ``num_layers`` encoder layers and of the final norm (fixed seeds)."""
    import jax
    import jax.numpy as jnp

    from seq_models.locost import LOCOSTEncoderLayer

    init = jax.jit(LOCOSTEncoderLayer(config).init)
    x = jnp.zeros((1, 8, config.d_model), jnp.float32)
    layers = [init(jax.random.key(i), x)["params"] for i in range(num_layers)]
    scale = {"scale": jnp.ones((config.d_model,), jnp.float32)}
    return jax.block_until_ready(layers), scale


def _tree_bytes(tree) -> int:
    import jax

    return sum(int(a.size) * a.dtype.itemsize for a in jax.tree.leaves(tree))


# ---------------------------------------------------------------------------------------------
# One configuration (child process)
# ---------------------------------------------------------------------------------------------


def run_one(form: str, length: int, args: argparse.Namespace) -> dict:
    import jax
    import jax.numpy as jnp

    from seq_models.t5 import RMSNorm

    config, fn = layer_function(form, args)
    layer = jax.jit(fn, donate_argnums=1)
    h_shape = jax.ShapeDtypeStruct((1, length, args.d_model), jnp.float32)
    layers, final_scale = init_layers(config, args.layers)
    start = time.perf_counter()
    compiled = layer.lower(layers[0], h_shape).compile()
    compile_s = time.perf_counter() - start
    layer_bytes = xla_bytes(compiled)
    predicted = layer_bytes + (args.layers - 1) * _tree_bytes(layers[0]) + RUNTIME_BYTES
    result = {
        "form": form,
        "length": length,
        "layers": args.layers,
        "compile_s": compile_s,
        "layer_xla_bytes": layer_bytes,
        "predicted_bytes": predicted,
    }
    available = available_bytes()
    if args.predict_only:
        result["skipped"] = "compiled only (--predict-only)"
        return result
    if predicted > args.memory_limit_gb * GB:
        result["skipped"] = (
            f"not run: predicted {predicted / GB:.1f} GB > limit {args.memory_limit_gb:g} GB"
        )
        return result
    if predicted > 0.9 * available:
        result["skipped"] = (
            f"not run: predicted {predicted / GB:.1f} GB, {available / GB:.1f} GB available"
        )
        return result

    final = jax.jit(lambda s, h: RMSNorm().apply({"params": s}, h))
    h = jax.jit(lambda key: jax.random.normal(key, h_shape.shape, jnp.float32))(jax.random.key(99))
    h = jax.block_until_ready(h)
    trim_heap()
    before = proc_status_kib("VmRSS")["VmRSS"]
    reset = reset_peak_rss()
    cpu_start = resource.getrusage(resource.RUSAGE_SELF)
    layer_s = []
    start = time.perf_counter()
    for params in layers:
        t = time.perf_counter()
        h = jax.block_until_ready(compiled(params, h))
        layer_s.append(time.perf_counter() - t)
    out = jax.block_until_ready(final(final_scale, h))
    wall = time.perf_counter() - start
    cpu_end = resource.getrusage(resource.RUSAGE_SELF)
    status = proc_status_kib("VmHWM")
    probe = jax.random.normal(jax.random.key(7), (args.d_model,), jnp.float32)
    mean, projected = float(jnp.mean(out)), float(jnp.mean(out @ probe))
    cpu = sum(getattr(cpu_end, f) - getattr(cpu_start, f) for f in ("ru_utime", "ru_stime"))
    result.update(
        wall_s=wall,
        cpu_s=cpu,
        layer_s=layer_s,
        tokens_per_s=length / wall,
        process_peak_bytes=resource.getrusage(resource.RUSAGE_SELF).ru_maxrss * 1024,
        encode_rise_bytes=(status["VmHWM"] - before) * 1024 if reset else None,
        out_mean=mean,
        out_projected=projected,
        load=os.getloadavg()[0],
    )
    return result


# ---------------------------------------------------------------------------------------------
# Parent: sweep, check, report
# ---------------------------------------------------------------------------------------------


def _child_flags(args: argparse.Namespace) -> list[str]:
    return [
        f"--layers={args.layers}",
        f"--d-model={args.d_model}",
        f"--d-ff={args.d_ff}",
        f"--state-size={args.state_size}",
        f"--chunk={args.chunk}",
        f"--block-positions={args.block_positions}",
        f"--channel-groups={args.channel_groups}",
        f"--memory-limit-gb={args.memory_limit_gb}",
    ] + (["--predict-only"] if args.predict_only else [])


def spawn(form: str, length: int, args: argparse.Namespace) -> dict:
    cmd = [sys.executable, str(Path(__file__).resolve()), "--one", form, str(length)]
    base = {"form": form, "length": length, "layers": args.layers}
    try:
        proc = subprocess.run(
            cmd + _child_flags(args), capture_output=True, text=True, timeout=args.timeout
        )
    except subprocess.TimeoutExpired:
        return base | {"failed": f"timed out after {args.timeout:.0f} s"}
    for line in proc.stdout.splitlines():
        if line.startswith(RESULT_TAG):
            return json.loads(line[len(RESULT_TAG) :])
    tail = (proc.stderr.strip().splitlines() or ["no output"])[-1]
    reason = "killed (out of memory?)" if proc.returncode == -9 else tail[:120]
    return base | {"failed": f"exit code {proc.returncode}: {reason}"}


def _status(r: dict) -> str:
    if "wall_s" in r:
        return (
            f"{r['wall_s']:.1f} s, {r['tokens_per_s']:.0f} tokens/s, peak "
            f"{r['process_peak_bytes'] / GIB:.2f} GiB (predicted {r['predicted_bytes'] / GIB:.2f})"
        )
    return r.get("skipped") or r.get("failed", "?")


def sweep(args: argparse.Namespace) -> list[dict]:
    results = []
    for length in sorted(args.lengths):
        for form in args.forms:
            record = spawn(form, length, args)
            results.append(record)
            print(f"  {form:7s} {length:8d}: {_status(record)}", file=sys.stderr, flush=True)
    return results


def check_forms(args: argparse.Namespace, length: int) -> float:
    """Largest relative difference of every form's encoder output from the library's
    ``LOCOSTEncoder`` at ``length`` tokens (in this process, small widths only)."""
    import jax
    import jax.numpy as jnp

    from seq_models.locost import LOCOSTEncoder
    from seq_models.t5 import RMSNorm

    config = make_config(args, "fft")
    layers, final_scale = init_layers(config, config.num_encoder_layers)
    x = jax.random.normal(jax.random.key(5), (1, length, config.d_model), jnp.float32)
    params = {f"layers_{i}": p for i, p in enumerate(layers)} | {"final_norm": final_scale}
    reference = LOCOSTEncoder(config).apply({"params": params}, x)
    worst = 0.0
    for form in FORMS:
        _, fn = layer_function(form, args)
        h = x
        for p in layers:
            h = jax.jit(fn)(p, h)
        out = RMSNorm().apply({"params": final_scale}, h)
        error = float(jnp.max(jnp.abs(out - reference)) / jnp.max(jnp.abs(reference)))
        print(f"- {form}, {length} tokens: max |out - reference| / max |reference| = {error:.1e}")
        worst = max(worst, error)
    return worst


def print_table(results: list[dict]) -> None:
    print(
        "| tokens | form | layers | peak GiB (process) | rise GiB | predicted GiB "
        "| layer GiB (XLA) | wall s | tokens / s | slowest layer s | CPU s | compile s "
        "| output checksums | load |"
    )
    print("|" + "---|" * 14)
    for r in results:
        xla = f"{r['layer_xla_bytes'] / GIB:.2f}" if "layer_xla_bytes" in r else "–"
        predicted = f"{r['predicted_bytes'] / GIB:.2f}" if "predicted_bytes" in r else "–"
        compile_s = f"{r['compile_s']:.1f}" if "compile_s" in r else "–"
        if "wall_s" in r:
            rise = r.get("encode_rise_bytes")
            cells = [
                f"{r['process_peak_bytes'] / GIB:.2f}",
                "–" if rise is None else f"{rise / GIB:.2f}",
                predicted,
                xla,
                f"{r['wall_s']:.2f}",
                f"{r['tokens_per_s']:.0f}",
                f"{max(r['layer_s']):.2f}",
                f"{r['cpu_s']:.1f}",
                compile_s,
                f"{r['out_mean']:.6f} / {r['out_projected']:.6f}",
                f"{r['load']:.1f}",
            ]
        else:
            cells = [_status(r), "–", predicted, xla] + ["–"] * 4 + [compile_s, "–", "–"]
        print(f"| {r['length']:,} | {r['form']} | {r['layers']} | " + " | ".join(cells) + " |")


def print_header(args: argparse.Namespace) -> None:
    print(machine_line())
    print(load_line())
    print(
        f"\nLOCOST encoder inference, {args.layers} layers, d_model {args.d_model}, state size "
        f"{args.state_size}, d_ff {args.d_ff}; batch 1, float32, random parameters and "
        "embedded input. One layer compiled for the input's length and called once per "
        "layer (hidden states donated), then the final RMSNorm. Forms: fft = one FFT per "
        f"layer; chunked = overlap-add in blocks of {args.chunk}; blocks = position blocks of "
        f"about {args.block_positions} and {args.channel_groups} channel groups (one FFT "
        "each). Fresh process per row. Peak = the process's peak resident set; rise = its rise "
        "during the encoding (above the parameters, the input and the runtime); predicted = "
        "XLA's figure for one layer + the other layers' parameters + 0.7 GiB. Output "
        "checksums: mean(out) and mean(out @ v) for a fixed random v (the same for every "
        f"form). Wall time excludes compilation. Memory limit {args.memory_limit_gb:g} GB.\n",
        flush=True,
    )


def parse_args(argv: list[str] | None = None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--lengths", type=int, nargs="+", default=[600_000, 1_000_000])
    parser.add_argument("--forms", nargs="+", choices=FORMS, default=list(FORMS))
    parser.add_argument("--layers", type=int, default=12)
    parser.add_argument("--d-model", type=int, default=768)
    parser.add_argument("--d-ff", type=int, default=2048)
    parser.add_argument("--state-size", type=int, default=512)
    parser.add_argument("--chunk", type=int, default=65536, help="overlap-add block (chunked)")
    parser.add_argument("--block-positions", type=int, default=8192, help="blocks: positions")
    parser.add_argument("--channel-groups", type=int, default=12, help="blocks: channel groups")
    parser.add_argument("--memory-limit-gb", type=float, default=24.0)
    parser.add_argument("--timeout", type=float, default=4 * 3600.0, help="per child, seconds")
    parser.add_argument(
        "--predict-only",
        action="store_true",
        help="compile every configuration and report XLA's memory prediction; run nothing",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="tiny widths and lengths, with a check of every form against the library",
    )
    parser.add_argument("--save-json", type=Path, help="also write the raw results here")
    parser.add_argument("--load-json", type=Path, help="report saved results instead of running")
    parser.add_argument("--one", nargs=2, metavar=("FORM", "L"), help=argparse.SUPPRESS)
    args = parser.parse_args(argv)
    if args.dry_run:
        for name, value in DRY_RUN.items():
            setattr(args, name, value)
    return args


def main() -> int:
    args = parse_args()
    if args.one:
        print(RESULT_TAG + json.dumps(run_one(args.one[0], int(args.one[1]), args)), flush=True)
        return 0
    start = time.perf_counter()
    print_header(args)
    if args.dry_run:
        print("Check of the forms against the library's encoder:\n")
        # 2500 tokens: blocks that divide the length; 2503 (prime): a padded last block.
        worst = max(check_forms(args, length) for length in (2500, 2503))
        print()
        if worst > 1e-4:
            print(f"FAIL: the forms differ from the library's encoder by {worst:.1e}")
            return 1
    results = json.loads(args.load_json.read_text()) if args.load_json else sweep(args)
    if args.save_json:
        args.save_json.write_text(json.dumps(results, indent=1))
    print_table(results)
    print(f"\n{load_line()} Total wall time {time.perf_counter() - start:.0f} s.")
    return 0


if __name__ == "__main__":
    sys.exit(main())
