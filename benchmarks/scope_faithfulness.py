"""SCOPE against SFT and context-aware decoding: hallucinations counted exactly.

For each seed, the pipeline of ``python -m seq_models scope`` (``seq_models.scope_job``)
runs once up to SFT (the unconditional LM and the SFT model are shared by every
``alpha`` of that seed) and once per ``alpha`` for the noisy negatives and DPO; the
same test records are then decoded greedily by the SFT model, by SFT + SCOPE and by
CAD. Reported per system: hallucinated values (mentioned values absent from the
record / mentioned values), outputs with at least one, omitted values, PARENT-style
precision / recall / F1 and ROUGE-1/L, as mean +- standard deviation over the seeds
(the SFT and CAD rows are the same for every ``alpha`` of a seed, so they are listed
once). Also the change from SFT to SFT + SCOPE of each seed (paired).

Usage (defaults: seeds 0 1 2, alpha 0.25 and 0.5, the command's default sizes)::

    python benchmarks/scope_faithfulness.py [--seeds 0 1 2] [--alphas 0.25 0.5]
        [--model encoder-decoder] [--run-dir runs/scope-bench] [--save-json PATH]
        [--lm-steps N] [--sft-steps N] [--dpo-lr LR] [--beta B]
"""

from __future__ import annotations

import argparse
import dataclasses
import json
import os
import sys
import time
from pathlib import Path

import numpy as np
from _machine import machine_line

from seq_models.scope_job import TABLE_COLUMNS, ScopeRunConfig, run_scope


def run(args: argparse.Namespace) -> list[dict]:
    results = []
    for seed in args.seeds:
        for alpha in args.alphas:
            config = ScopeRunConfig(
                model=args.model,
                seed=seed,
                alpha=alpha,
                beta=args.beta,
                lm_steps=args.lm_steps,
                sft_steps=args.sft_steps,
                dpo_learning_rate=args.dpo_lr,
            )
            start = time.perf_counter()
            out = run_scope(
                config.stage_config(),
                Path(args.run_dir) / f"{args.model}-seed{seed}",
                lm_steps=config.lm_steps,
                sft_steps=config.sft_steps,
                dpo_learning_rate=config.dpo_learning_rate,
                progress=False,
            )
            out["seconds"] = time.perf_counter() - start
            out["config"] = dataclasses.asdict(config)
            results.append(out)
            scope = out["table"]["SFT + SCOPE"]["hallucination_rate"]
            sft = out["table"]["SFT"]["hallucination_rate"]
            print(
                f"  seed {seed} alpha {alpha:g}: hallucinated values SFT {sft:.3f} -> "
                f"SCOPE {scope:.3f} ({out['seconds']:.0f} s)",
                file=sys.stderr,
                flush=True,
            )
    return results


def _cell(values: list[float]) -> str:
    values = np.asarray(values, float)
    if len(values) == 1:
        return f"{values[0]:.3f}"
    return f"{values.mean():.3f} ± {values.std(ddof=1):.3f}"


def report(results: list[dict]) -> str:
    seeds = sorted({r["seed"] for r in results})
    alphas = sorted({r["alpha"] for r in results})
    first = {s: next(r for r in results if r["seed"] == s) for s in seeds}
    rows = [("SFT", [first[s]["table"]["SFT"] for s in seeds])]
    rows.append(("CAD (a = 0.5)", [first[s]["table"]["CAD"] for s in seeds]))
    for alpha in alphas:
        tables = [r["table"]["SFT + SCOPE"] for r in results if r["alpha"] == alpha]
        rows.append((f"SFT + SCOPE, alpha {alpha:g}", tables))
    lines = [
        f"{len(seeds)} seeds ({', '.join(map(str, seeds))}), mean ± standard deviation; "
        f"{results[0]['test_examples']} test records, greedy decoding.",
        "",
        "| system | " + " | ".join(label for _, label in TABLE_COLUMNS) + " |",
        "|---" * (len(TABLE_COLUMNS) + 1) + "|",
    ]
    for name, tables in rows:
        cells = [_cell([t[key] for t in tables]) for key, _ in TABLE_COLUMNS]
        lines.append(f"| {name} | " + " | ".join(cells) + " |")
    lines += [
        "",
        "Change from SFT to SFT + SCOPE, per seed (hallucinated values, omitted values, "
        "PARENT F1):",
        "",
    ]
    for alpha in alphas:
        for r in (r for r in results if r["alpha"] == alpha):
            sft, scope = r["table"]["SFT"], r["table"]["SFT + SCOPE"]
            deltas = ", ".join(
                f"{scope[k] - sft[k]:+.3f}"
                for k in ("hallucination_rate", "omission_rate", "parent_f1")
            )
            margin = r["dpo"].get("reward_margin", float("nan"))
            lines.append(
                f"- alpha {alpha:g}, seed {r['seed']}: {deltas} (DPO validation reward margin "
                f"{margin:.2f}, {r['seconds']:.0f} s)"
            )
    return "\n".join(lines)


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--seeds", type=int, nargs="+", default=[0, 1, 2])
    parser.add_argument("--alphas", type=float, nargs="+", default=[0.25, 0.5])
    parser.add_argument("--model", default="encoder-decoder")
    parser.add_argument("--run-dir", default="runs/scope-bench")
    parser.add_argument("--lm-steps", type=int, default=600)
    parser.add_argument("--sft-steps", type=int, default=1500)
    parser.add_argument("--dpo-lr", type=float, default=1e-4)
    parser.add_argument("--beta", type=float, default=0.1)
    parser.add_argument("--save-json", type=Path)
    parser.add_argument("--load-json", type=Path, help="report saved results instead")
    args = parser.parse_args()
    start = time.perf_counter()
    print(machine_line())
    print(f"Load average at start: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}.\n")
    results = json.loads(args.load_json.read_text()) if args.load_json else run(args)
    if args.save_json:
        args.save_json.write_text(json.dumps(results, indent=1))
    print(report(results))
    print(
        f"\nLoad average at the end: {' / '.join(f'{x:.2f}' for x in os.getloadavg())}. "
        f"Total wall time {time.perf_counter() - start:.0f} s."
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())
