"""Reading what a test run left on disk: saved parameters and checkpoint steps."""

from pathlib import Path

import numpy as np


def saved_params(path):
    """The parameter arrays a test job saved with ``np.savez(path, *leaves, ...)``, in order."""
    with np.load(path) as f:
        return [f[f"arr_{i}"] for i in range(sum(name.startswith("arr_") for name in f.files))]


def checkpoint_steps(workdir):
    """The steps of the finished checkpoints under ``workdir/checkpoints``."""
    root = Path(workdir) / "checkpoints"
    return sorted(int(p.name) for p in root.iterdir() if p.name.isdigit()) if root.exists() else []
