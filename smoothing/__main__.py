"""Command line: ``python -m smoothing certify [options]``.

Trains (or loads from ``--run-dir``) a noise-augmented 1-Lipschitz classifier on
scikit-learn's digits (offline), then certifies its Gaussian-smoothed version on the test
images with Cohen et al.'s certificate, ``R_multi`` and the Lipschitz-aware certificate,
all from the same noise samples; a few minutes on two CPU cores with the defaults.
"""

from __future__ import annotations

import sys
from collections.abc import Sequence

from miles_cli import dispatch, run_command
from smoothing.certify_job import CERTIFICATES, LABELS, CertifyJobConfig
from training.harness import train_and_evaluate

DEFAULT_RUN_DIR = "runs/smoothing-digits"


def certify(config: CertifyJobConfig, run_dir: str, progress: bool) -> str:
    results = train_and_evaluate(config, run_dir, progress=progress)
    lines = [
        f"{results['examples']} test images, sigma {config.sigma:g}, n0 {config.n0}, "
        f"n {config.n}, alpha {config.alpha:g}; base classifier clean accuracy "
        f"{results['clean_accuracy']:.3f}; certified accuracy at radius "
        + " / ".join(f"{r:g}" for r in config.radii)
        + ":"
    ]
    for name in CERTIFICATES:
        accuracy = results["certified_accuracy"][name].values()
        lines.append(f"  {LABELS[name]:>16}: " + " / ".join(f"{a:.3f}" for a in accuracy))
    lines.append(
        f"{results['forward_passes_per_second']:,.0f} noisy forward passes per second; "
        f"run directory {run_dir}"
    )
    return "\n".join(lines)


def certify_command(argv: Sequence[str]) -> int:
    return run_command(
        CertifyJobConfig,
        certify,
        argv,
        prog="python -m smoothing certify",
        description="Train (or load) a noise-augmented 1-Lipschitz classifier on digits and "
        "certify its Gaussian-smoothed version: Cohen et al., R_multi and the "
        "Lipschitz-aware certificate on the same noise samples. sigma and the radii are "
        "on the model's input scale (pixels in [-1, 1]).",
        run_dir=DEFAULT_RUN_DIR,
        progress=True,
    )


COMMANDS = {"certify": certify_command}


def main(argv: Sequence[str] | None = None) -> int:
    return dispatch("python -m smoothing", COMMANDS, argv)


if __name__ == "__main__":
    sys.exit(main())
