"""MANO against its baselines under one training budget, one fresh process per run.

Darcy 32x32 (operator learning): MANO vs FNO vs Swin (window attention) vs ViT
(global attention), ``darcy-tiny`` presets, relative L2 on the test split.
Digits (classification): Swin-MANO vs Swin vs ViT, ``tiny`` presets, accuracy.
Every run goes through ``python -m mano_jax train`` with the same steps, batch
size and learning-rate schedule; peak memory is the run's peak resident memory
(its own process). Prints markdown tables.

    python benchmarks/mano_comparison.py [--darcy-steps 500] [--digits-steps 600]
        [--skip vit] [--out DIR]
"""

from __future__ import annotations

import argparse
import json
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
    parser.add_argument("--skip", nargs="*", default=[], help="models to leave out")
    parser.add_argument("--out", default=None, help="keep the run directories here")
    args = parser.parse_args()
    out = Path(args.out or tempfile.mkdtemp(prefix="mano_comparison_"))
    print(machine_line())
    print(f"Run directories in {out}\n")

    table(
        f"Darcy 32x32, darcy-tiny presets, {args.darcy_steps} steps, batch 20",
        [m for m in DARCY_MODELS if m not in args.skip],
        ["--steps", str(args.darcy_steps)],
        ("test relative L2", "test_relative_l2"),
        out / "darcy",
    )
    table(
        f"Digits 32x32, tiny presets, {args.digits_steps} steps, batch 50",
        [m for m in DIGITS_MODELS if m not in args.skip],
        ["--task", "classify", "--steps", str(args.digits_steps)],
        ("test accuracy", "test_accuracy"),
        out / "digits",
    )


def table(title: str, models: list[str], args: list[str], metric: tuple[str, str], out: Path):
    """One run per model, printed as a markdown table row as soon as it ends."""
    label, key = metric
    print(f"\n### {title}\n")
    print(f"| model | {label} | parameters | training time (s) | peak memory (MB) |")
    print("|---|---|---|---|---|")
    for model in models:
        r = run(["--model", model, *args], Path(f"{out}-{model}"))
        print(
            f"| {model} | {r[key]:.4f} | {r['parameters']:,} "
            f"| {r['train_seconds']:.0f} | {r['peak_memory_mb']:.0f} |",
            flush=True,
        )


if __name__ == "__main__":
    main()
