"""MANO against its baselines under one training budget, one fresh process per run.

Darcy (operator learning, 32x32 by default): MANO vs FNO vs Swin (window
attention) vs ViT (global attention), ``darcy-tiny`` presets, relative L2 and
relative MSE on the test split. Digits (classification): Swin-MANO vs Swin vs
ViT, ``tiny`` presets, accuracy. Every run goes through ``python -m mano_jax
train`` with the same steps, batch size and learning-rate schedule; peak memory
is the run's peak resident memory (its own process). With several ``--seeds``
each cell is the mean and standard deviation over the seeds (initialisation and
batch order; the data set is the same). Prints markdown tables.

    python benchmarks/mano_comparison.py [--darcy-steps 500] [--digits-steps 600]
        [--darcy-resolution 16] [--seeds 0 1 2] [--tasks darcy] [--skip vit] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
import math
import statistics
import subprocess
import sys
import tempfile
from pathlib import Path

from _machine import machine_line

DARCY_MODELS = ("mano", "fno", "swin", "vit")
DIGITS_MODELS = ("mano", "swin", "vit")


def run(args: list[str], run_dir: Path) -> dict:
    cmd = [sys.executable, "-m", "mano_jax", "train", *args, "--run-dir", str(run_dir)]
    proc = subprocess.run([*cmd, "--no-progress"], capture_output=True, text=True)
    if proc.returncode:
        raise RuntimeError(f"{' '.join(cmd)} failed:\n{proc.stderr[-2000:]}")
    return json.loads((run_dir / "results.json").read_text())


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--darcy-steps", type=int, default=500)
    parser.add_argument("--digits-steps", type=int, default=600)
    parser.add_argument("--darcy-resolution", type=int, default=32)
    parser.add_argument("--darcy-preset", default="darcy-tiny")
    parser.add_argument("--seeds", type=int, nargs="+", default=[0])
    parser.add_argument("--tasks", nargs="+", default=["darcy", "digits"])
    parser.add_argument("--skip", nargs="*", default=[], help="models to leave out")
    parser.add_argument("--out", default=None, help="keep the run directories here")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="mano_comparison_"))
    print(machine_line())
    print(f"Run directories in {out}\n")

    seeds = [str(seed) for seed in args.seeds]
    if "darcy" in args.tasks:
        res = args.darcy_resolution
        table(
            f"Darcy {res}x{res}, {args.darcy_preset} presets, {args.darcy_steps} steps, "
            f"batch 20, seeds {', '.join(seeds)}",
            [m for m in DARCY_MODELS if m not in args.skip],
            ["--steps", str(args.darcy_steps), "--resolution", str(res)],
            [("test relative L2", "test_relative_l2"), ("test relative MSE", "test_relative_mse")],
            out / f"darcy{res}",
            seeds,
            preset=args.darcy_preset,
        )
    if "digits" in args.tasks:
        table(
            f"Digits 32x32, tiny presets, {args.digits_steps} steps, batch 50, "
            f"seeds {', '.join(seeds)}",
            [m for m in DIGITS_MODELS if m not in args.skip],
            ["--task", "classify", "--steps", str(args.digits_steps)],
            [("test accuracy", "test_accuracy")],
            out / "digits",
            seeds,
        )


def _cell(values: list[float]) -> str:
    """Three significant digits (relative MSE is about 1e-3), the spread to the same place."""
    mean = statistics.mean(values)
    places = max(0, 2 - math.floor(math.log10(abs(mean)))) if mean else 4
    if len(values) == 1:
        return f"{mean:.{places}f}"
    return f"{mean:.{places}f} ± {statistics.stdev(values):.{places}f}"


def table(
    title: str,
    models: list[str],
    args: list[str],
    metrics: list[tuple[str, str]],
    out: Path,
    seeds: list[str],
    preset: str | None = None,
):
    """Runs of every model and seed, a markdown table row per model as soon as it ends."""
    print(f"\n### {title}\n")
    labels = " | ".join(label for label, _ in metrics)
    print(f"| model | {labels} | parameters | training time (s) | peak memory (MB) |")
    print("|---|" + "---|" * (len(metrics) + 3))
    for model in models:
        chosen = [] if preset is None else ["--preset", preset]
        if model == "fno" and preset is not None and preset != "darcy-tiny":
            chosen = []  # the FNO has its own presets; its default stands in
        runs_ = [
            run(["--model", model, *chosen, *args, "--seed", seed], Path(f"{out}-{model}-{seed}"))
            for seed in seeds
        ]
        cells = " | ".join(_cell([r[key] for r in runs_]) for _, key in metrics)
        seconds = statistics.mean(r["train_seconds"] for r in runs_)
        memory = max(r["peak_memory_mb"] for r in runs_)
        print(
            f"| {model} | {cells} | {runs_[0]['parameters']:,} | {seconds:.0f} | {memory:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
