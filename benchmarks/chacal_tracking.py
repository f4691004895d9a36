"""Entity tracking against the number of state changes: transformers of 1-4 layers vs one
chain-and-causal (ChaCAL) layer.

Theory (the paper's): following a chain of ``n`` reassignments is a path of length
``n``; ``L`` layers of standard attention compose paths of length at most ``2^L - 1``,
so a transformer needs ``ceil(log2(n + 1))`` layers, while one chain-and-causal layer
sums over every path length. The table groups ``n`` by those thresholds (0, 1, 2-3,
4-7, 8-15): an ``L``-layer transformer can at best solve the groups up to ``2^L - 1``.

Every model is the same ``seq_models.chacal_job.StatementDecoder`` (same width, same
embeddings, feed-forward layers and head), trained side by side in this process with
the same data and optimizer; only the attention layers (and, optionally, the number of
steps: deeper models may get more) differ. Task: ``--length`` statements,
``--num-chains`` interleaved chains (so guessing one of the values in the context is
right ``1 / num_chains`` of the time), the target chain drawn with ``n`` in
``0 .. --max-changes`` for training; accuracy of the last statement on
``--eval-examples`` fresh examples for every ``n``. Several seeds; the tables show the
mean over seeds (min-max in the JSON).

    python benchmarks/chacal_tracking.py [--layers 1 2 3 4] [--seeds 0 1]
        [--steps 2000 2000 3000 5000] [--chain-steps 2000] [--length 24]
        [--num-chains 3] [--max-changes 15] [--num-variables 24]
        [--plot benchmarks/chacal_tracking.png] [--save-json PATH]

Default run: about 10 minutes on a busy 2-core CPU (load 6-8).
"""

from __future__ import annotations

import argparse
import json
import os
import tempfile
import time
from pathlib import Path

import numpy as np
from _machine import machine_line

from seq_models.chacal_job import ChaCALConfig
from training import harness

GROUPS = ((0, 0), (1, 1), (2, 3), (4, 7), (8, 15), (16, 31))


def plot(curves: dict[str, tuple[list, list]], path: str, chance: float) -> None:
    """Accuracy against n, one line per model, the chance level dashed, the legend
    outside the axes (the curves fill the whole panel)."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=(7.5, 3.8))
    for label, (x, y) in curves.items():
        ax.plot(x, y, marker=".", label=label)
    x = next(iter(curves.values()))[0]
    ax.plot(x, [chance] * len(x), linestyle="--", color="gray", label="chance")
    ax.set(xlabel="state changes n", ylabel="accuracy (last statement)", ylim=(0, 1.03))
    ax.set_title("tracking: transformers vs one ChaCAL layer", fontsize=10)
    ax.grid(alpha=0.3)
    ax.legend(loc="center left", bbox_to_anchor=(1.01, 0.5), fontsize=8)
    fig.tight_layout()
    fig.savefig(path, dpi=100)
    plt.close(fig)


def models(layers: list[int], steps: list[int], chain_steps: int) -> dict[str, tuple]:
    """``name -> (attention, steps)``."""
    if len(steps) not in (1, len(layers)):
        raise SystemExit(f"--steps: one value or one per layer count {layers}, got {steps}")
    steps = steps * len(layers) if len(steps) == 1 else steps
    out = {
        f"transformer, {n} layer{'s' * (n > 1)}": (("standard",) * n, s)
        for n, s in zip(layers, steps, strict=True)
    }
    out["ChaCAL, 1 layer"] = (("chain",), chain_steps)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument(
        "--steps",
        type=int,
        nargs="+",
        default=[2000, 2000, 3000, 5000],
        help="training steps, one value or one per entry of --layers",
    )
    parser.add_argument("--chain-steps", type=int, default=2000)
    parser.add_argument("--batch-size", type=int, default=32)
    parser.add_argument("--learning-rate", type=float, default=3e-3)
    parser.add_argument("--length", type=int, default=24)
    parser.add_argument("--num-chains", type=int, default=3)
    parser.add_argument("--max-changes", type=int, default=15)
    parser.add_argument("--num-variables", type=int, default=24)
    parser.add_argument("--eval-examples", type=int, default=256)
    parser.add_argument("--plot", default=str(Path(__file__).with_name("chacal_tracking.png")))
    parser.add_argument("--save-json")
    args = parser.parse_args()
    print(machine_line())
    one, five, _ = os.getloadavg()
    print(f"Load average (1/5 min) at the start: {one:.2f} / {five:.2f}", flush=True)
    start = time.time()
    task = dict(
        length=args.length,
        num_chains=args.num_chains,
        max_changes=args.max_changes,
        num_variables=args.num_variables,
        batch_size=args.batch_size,
        learning_rate=args.learning_rate,
        eval_examples=args.eval_examples,
    )
    changes = list(range(args.max_changes + 1))
    results: dict[str, list[dict]] = {}
    steps_of: dict[str, int] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, (attention, steps) in models(args.layers, args.steps, args.chain_steps).items():
            steps_of[name] = steps
            for seed in args.seeds:
                config = ChaCALConfig(attention=attention, num_steps=steps, seed=seed, **task)
                run_dir = Path(tmp) / f"{'-'.join(attention)}-{seed}"
                out = harness.train_and_evaluate(config, run_dir, progress=False)
                results.setdefault(name, []).append(out)
                print(f"  {name}, seed {seed}: {out['mean_accuracy']:.3f}", flush=True)
    one, five, _ = os.getloadavg()
    print(
        f"\nLoad average (1/5 min) at the end: {one:.2f} / {five:.2f}; "
        f"total {time.time() - start:.0f} s"
    )
    print(
        f"{args.length} statements, {args.num_chains} chains, {args.num_variables} variables, "
        f"n in 0..{args.max_changes}; batch {args.batch_size}, peak learning rate "
        f"{args.learning_rate:g}; seeds {args.seeds}; {args.eval_examples} test examples per n; "
        f"accuracy of the last statement (chance among the context's values: "
        f"{1 / args.num_chains:.2f})\n"
    )
    groups = [(lo, min(hi, args.max_changes)) for lo, hi in GROUPS if lo <= args.max_changes]
    header = [f"n = {lo}" if lo == hi else f"n = {lo}-{hi}" for lo, hi in groups]
    print("| model | steps | parameters | ms/step | " + " | ".join(header) + " |")
    print("|---" * (4 + len(groups)) + "|")
    curves, summary, means = {}, {}, {}
    for name, runs in results.items():
        by_n = np.array([[r["accuracy_by_changes"][n] for n in changes] for r in runs])
        mean = means[name] = by_n.mean(axis=0)
        cells = [f"{mean[lo : hi + 1].mean():.2f}" for lo, hi in groups]
        ms = np.median([r["ms_per_step"] for r in runs])
        print(
            f"| {name} | {steps_of[name]} | {runs[0]['parameters']:,} | {ms:.1f} | "
            + " | ".join(cells)
            + " |"
        )
        curves[name] = (changes, mean.tolist())
        summary[name] = {
            "steps": steps_of[name],
            "mean": mean.tolist(),
            "min": by_n.min(0).tolist(),
            "max": by_n.max(0).tolist(),
            "gammas": [r["gammas"] for r in runs],
        }
    print("\nPer n (mean over seeds; in brackets the lowest seed where it differs by > 0.05):\n")
    print("| model | " + " | ".join(str(n) for n in changes) + " |")
    print("|---" * (1 + len(changes)) + "|")
    for name, mean in means.items():
        low = summary[name]["min"]
        cells = [
            f"{m:.2f}" + (f" ({lo:.2f})" if m - lo > 0.05 else "")
            for m, lo in zip(mean, low, strict=True)
        ]
        print(f"| {name} | " + " | ".join(cells) + " |")
    plot(curves, args.plot, 1 / args.num_chains)
    print(f"\nplot: {args.plot}")
    if args.save_json:
        Path(args.save_json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
