"""Zero-shot resolution transfer of trained Darcy runs: every transfer mode on the same runs.

For each run directory (trained by ``python -m mano_jax train``, e.g. at 32x32) the
test error at the training resolution and, for every ``transfer`` mode of
``mano_jax.darcy_job.evaluate_darcy_run``, the zero-shot test error at
``--resolution`` (the test set solved at that resolution), and their ratio:

- native: the trained model on the finer grid (multipole attention gains a level);
- fixed-levels: the training level count kept;
- scaled-window: windows and strides scaled with the grid, level count kept;
- resample: the input interpolated onto the training grid and the output back.

    python benchmarks/mano_resolution_transfer.py RUN_DIR [RUN_DIR ...] [--resolution 64]
"""

from __future__ import annotations

import argparse
import os

from _machine import machine_line

from mano_jax.darcy_job import TRANSFERS, evaluate_darcy_run


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("run_dirs", nargs="+")
    parser.add_argument("--resolution", type=int, default=64)
    parser.add_argument("--data-dir", default=None)
    args = parser.parse_args()
    print(machine_line())
    print(f"load average before: {os.getloadavg()[0]:.2f}\n")
    print(
        f"| run | model | transfer | test rel. L2 at training res. | zero-shot rel. L2 at "
        f"{args.resolution} | ratio | zero-shot rel. MSE |"
    )
    print("|---|---|---|---:|---:|---:|---:|")
    for run_dir in args.run_dirs:
        base = evaluate_darcy_run(run_dir, data_dir=args.data_dir)
        for transfer in TRANSFERS:
            if base["model"] == "fno" and transfer in ("fixed-levels", "scaled-window"):
                continue  # no levels or windows: the same as native
            shot = evaluate_darcy_run(
                run_dir, args.resolution, data_dir=args.data_dir, transfer=transfer
            )
            ratio = shot["test_relative_l2"] / base["test_relative_l2"]
            print(
                f"| {os.path.basename(run_dir.rstrip('/'))} | {base['model']}/{base['preset']} "
                f"| {transfer} | {base['test_relative_l2']:.4f} "
                f"| {shot['test_relative_l2']:.4f} | {ratio:.2f}x "
                f"| {shot['test_relative_mse']:.5f} |",
                flush=True,
            )
    print(f"\nload average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
