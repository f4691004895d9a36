"""Command line: ``python -m quantization {train,inpaint,demo} [options]``.

- ``train``: conditional quantization of a synthetic law (``job.SyntheticConfig``);
- ``inpaint``: digit inpainting, ``n`` weighted completions (``job.InpaintingConfig``);
- ``demo``: both, with the conditional mean (``n = 1``) and the mixture density network
  beside the conditional quantizer on the same law, and a plot comparing their W2.
"""

from __future__ import annotations

import dataclasses
import os
import sys
from collections.abc import Sequence
from pathlib import Path

import training
from miles_cli import check_config, config_to_dict, dispatch, option, run_command
from quantization.job import GRID_PLOT, W2_PLOT, InpaintingConfig, SyntheticConfig
from quantization.laws import LAWS
from training import runs

COMPARISON_PLOT = "w2_comparison.png"


def synthetic_summary(results: dict) -> str:
    scores = "  ".join(f"{name} {w2:.4f}" for name, w2 in results["w2"].items())
    mean = results["model"] == "cclvq" and results["num_points"] == 1
    model = "conditional mean" if mean else results["model"]
    return (
        f"{model}, n = {results['num_points']}, {results['law']}: mean W2 {scores}; "
        f"dead heads {results.get('dead_heads', '-')}, {results['ms_per_step']:.1f} ms/step"
    )


def inpainting_summary(results: dict) -> str:
    return (
        f"inpainting, n = {results['num_points']}: best-of-n MSE {results['best_of_n_mse']:.4f}, "
        f"heaviest {results['heaviest_mse']:.4f}, weighted mean "
        f"{results['weighted_mean_mse']:.4f}, diversity (RMS) {results['diversity_rms']:.3f}; "
        f"dead heads {results['dead_heads']}"
    )


def train(config: SyntheticConfig, run_dir: str, progress: bool) -> str:
    results = training.train_and_evaluate(config, run_dir, progress=progress)
    return synthetic_summary(results) + f"\nrun directory {run_dir} ({W2_PLOT}, results.json)"


def inpaint(config: InpaintingConfig, run_dir: str, progress: bool) -> str:
    results = training.train_and_evaluate(config, run_dir, progress=progress)
    return inpainting_summary(results) + f"\nrun directory {run_dir} ({GRID_PLOT}, results.json)"


@dataclasses.dataclass(frozen=True)
class DemoConfig:
    """The synthetic comparison and the inpainting, with small defaults.

    Attributes:
      law: the conditional law of the synthetic comparison.
      num_points: n for the conditional quantizer and the mixture density network.
      num_steps: optimizer steps of each synthetic run.
      inpaint_points: n for the inpainting.
      inpaint_steps: optimizer steps of the inpainting.
      seed: data, initialisation and batch order.
    """

    law: str = option("mixture", choices=tuple(LAWS))
    num_points: int = option(4, minimum=2)
    num_steps: int = option(1500, minimum=1, flag="--steps")
    inpaint_points: int = option(8, minimum=1)
    inpaint_steps: int = option(1500, minimum=1)
    seed: int = option(0, minimum=0)

    def __post_init__(self) -> None:
        check_config(self)

    def runs(self) -> dict[str, SyntheticConfig]:
        """The synthetic runs by label (the first scores the k-means baselines)."""
        common = {"law": self.law, "num_steps": self.num_steps, "seed": self.seed}
        return {
            f"cclvq-n{self.num_points}": SyntheticConfig(num_points=self.num_points, **common),
            "conditional-mean": SyntheticConfig(num_points=1, baselines=False, **common),
            f"mdn-n{self.num_points}": SyntheticConfig(
                model="mdn", num_points=self.num_points, baselines=False, **common
            ),
        }


def demo_results(config: DemoConfig, run_dir: str | os.PathLike, *, progress: bool) -> dict:
    """Every run of ``config`` in ``run_dir/<label>``, the W2 comparison plot and
    ``run_dir/results.json``; returns the latter."""
    run_dir = runs.prepare_run_dir(run_dir, config_to_dict(config))
    synthetic = {
        label: training.train_and_evaluate(run, run_dir / label, progress=progress)
        for label, run in config.runs().items()
    }
    inpainting = training.train_and_evaluate(
        InpaintingConfig(
            num_points=config.inpaint_points, num_steps=config.inpaint_steps, seed=config.seed
        ),
        run_dir / "inpainting",
        progress=progress,
    )
    curves = {}
    for label, results in synthetic.items():
        for name, w2 in results["w2_per_input"].items():
            curves[label if name == results["model"] else name.replace("_", " ")] = (
                results["test_inputs"],
                w2,
            )
    training.plot_lines(
        curves,
        run_dir / COMPARISON_PLOT,
        xlabel="x",
        ylabel="W2 to the true conditional",
        dashed=("oracle kmeans",),
        title=f"{config.law}: n = {config.num_points} points per x (conditional mean: 1)",
    )
    results = {"synthetic": synthetic, "inpainting": inpainting}
    runs.write_results(run_dir, results)
    return results


def demo(config: DemoConfig, run_dir: str, progress: bool) -> str:
    results = demo_results(config, run_dir, progress=progress)
    lines = [synthetic_summary(r) for r in results["synthetic"].values()]
    lines.append(inpainting_summary(results["inpainting"]))
    figures = f"{COMPARISON_PLOT}, */quantization.png, inpainting/{GRID_PLOT}"
    return "\n".join(lines) + f"\nrun directory {Path(run_dir)} ({figures})"


def command(cls, run, description: str, name: str, default_dir: str):
    def main(argv: Sequence[str]) -> int:
        return run_command(
            cls,
            run,
            argv,
            prog=f"python -m quantization {name}",
            description=description,
            run_dir=default_dir,
            progress=True,
        )

    return main


COMMANDS = {
    "train": command(
        SyntheticConfig,
        train,
        "Train a conditional quantizer (or the MDN baseline) on a synthetic conditional law "
        "and measure W2 to the true conditional.",
        "train",
        "runs/quantization",
    ),
    "inpaint": command(
        InpaintingConfig,
        inpaint,
        "Inpaint the bottom half of scikit-learn's 8x8 digits with n weighted completions.",
        "inpaint",
        "runs/quantization-inpainting",
    ),
    "demo": command(
        DemoConfig,
        demo,
        "The conditional quantizer beside the conditional mean and a mixture density network "
        "on a synthetic law, and digit inpainting: results and plots.",
        "demo",
        "runs/quantization-demo",
    ),
}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("python -m quantization", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
