"""Entity tracking against the number of state changes: transformers of 1-4 layers vs one
chain-and-causal (ChaCAL) layer.

Theory (the paper's): following a chain of ``n`` reassignments is a path of length
``n``; ``L`` layers of standard attention compose paths of length at most ``2^L - 1``,
so a transformer needs ``ceil(log2(n + 1))`` layers, while one chain-and-causal layer
sums over every path length. The table groups ``n`` by those thresholds (0, 1, 2-3,
4-7, 8-15): an ``L``-layer transformer can at best solve the groups up to ``2^L - 1``.

Every model is the same ``seq_models.chacal_job.StatementDecoder`` (same width, same
embeddings, feed-forward layers and head), trained side by side in this process with
the same data, steps and optimizer; only the attention layers differ. Task: 32
statements, 4 interleaved chains (so guessing one of the values in the context is
right 25% of the time), the target chain drawn with ``n`` in 0..15 for training;
accuracy of the last statement on ``--eval-examples`` fresh examples for every ``n``.
Several seeds; the table shows the mean over seeds (min-max in the JSON).

    python benchmarks/chacal_tracking.py [--layers 1 2 3 4] [--seeds 0 1] [--steps 1000]
        [--plot benchmarks/chacal_tracking.png] [--save-json PATH]

Default run: about 10 minutes on a quiet 2-core CPU.
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
from training import harness, plot_lines

GROUPS = ((0, 0), (1, 1), (2, 3), (4, 7), (8, 15))
CHANGES = range(ChaCALConfig().max_changes + 1)  # 0 .. 15


def models(layers: list[int]) -> dict[str, tuple[str, ...]]:
    out = {f"transformer, {n} layer{'s' * (n > 1)}": ("standard",) * n for n in layers}
    out["ChaCAL, 1 layer"] = ("chain",)
    return out


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--layers", type=int, nargs="+", default=[1, 2, 3, 4])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1])
    parser.add_argument("--steps", type=int, default=1000)
    parser.add_argument("--eval-examples", type=int, default=256)
    parser.add_argument("--plot", default=str(Path(__file__).with_name("chacal_tracking.png")))
    parser.add_argument("--save-json")
    args = parser.parse_args()
    print(machine_line())
    start = time.time()
    results: dict[str, list[dict]] = {}
    with tempfile.TemporaryDirectory() as tmp:
        for name, attention in models(args.layers).items():
            for seed in args.seeds:
                config = ChaCALConfig(
                    attention=attention,
                    num_steps=args.steps,
                    seed=seed,
                    eval_examples=args.eval_examples,
                )
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
        f"{args.steps} steps of batch 32, {len(args.seeds)} seeds, {args.eval_examples} test "
        "examples per n; accuracy of the last statement (chance among the context's values: 0.25)\n"
    )
    header = [f"n = {lo}" if lo == hi else f"n = {lo}-{hi}" for lo, hi in GROUPS]
    print("| model | parameters | ms/step | " + " | ".join(header) + " |")
    print("|---" * (3 + len(GROUPS)) + "|")
    curves, summary = {}, {}
    for name, runs in results.items():
        by_n = np.array([[r["accuracy_by_changes"][n] for n in CHANGES] for r in runs])
        mean = by_n.mean(axis=0)
        cells = [f"{mean[lo : hi + 1].mean():.2f}" for lo, hi in GROUPS]
        ms = np.median([r["ms_per_step"] for r in runs])
        print(f"| {name} | {runs[0]['parameters']:,} | {ms:.1f} | " + " | ".join(cells) + " |")
        curves[name] = (list(CHANGES), mean.tolist())
        summary[name] = {
            "mean": mean.tolist(),
            "min": by_n.min(0).tolist(),
            "max": by_n.max(0).tolist(),
            "gammas": [r["gammas"] for r in runs],
        }
    plot_lines(
        curves,
        args.plot,
        xlabel="state changes n",
        ylabel="accuracy",
        ylim=(0, 1.02),
        title="tracking: transformers vs one ChaCAL layer",
    )
    print(f"\nplot: {args.plot}")
    if args.save_json:
        Path(args.save_json).write_text(json.dumps(summary, indent=2) + "\n")


if __name__ == "__main__":
    main()
