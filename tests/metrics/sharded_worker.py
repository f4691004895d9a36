"""The metrics on every device against the same process's one-device results.

``python sharded_worker.py OUT`` runs every case of ``CASES`` with ``mesh=None`` (the
default device) and with a 1-D mesh over all devices (of all processes), and writes
both to ``OUT/process_<i>.npz``: run by ``test_sharded.py`` in one process with 8
simulated devices and as 2 processes x 2 devices through ``training.launch``
(``training.initialize_distributed()`` joins them). ``--quick`` runs the first case,
strict only.
"""

import os
import sys
import warnings
from pathlib import Path

if "JAX_COORDINATOR_ADDRESS" in os.environ:  # started as one of several processes
    import training  # its stack takes seconds to import: only to join the run

    training.initialize_distributed()  # before anything else touches JAX

import jax  # noqa: E402
import numpy as np  # noqa: E402

import metrics  # noqa: E402


def sets(seed, n, m, d):
    """Two Gaussian sets with duplicates: within the reference, within the generated set,
    and generated points that are copies of reference points."""
    rng = np.random.default_rng(seed)
    x = rng.normal(size=(n, d)).astype(np.float32)
    y = (1.2 * rng.normal(size=(m, d)) + 0.3).astype(np.float32)
    x[10:13] = x[30]  # four copies: zero radius for k = 3
    y[:6] = x[:6]
    y[20:22] = y[30]
    return x, y


# name: (seed, N, M, d, k, block_size). With block 16 on 8 devices the blocks are padded
# to a multiple of 128 points: 203 and 150 leave padded blocks and a partly padded one;
# 37 and 45 (block 8) leave devices with no real point at all.
CASES = {"uneven": (0, 203, 150, 6, 3, 16), "tiny": (1, 37, 45, 6, 3, 8)}


def main(out: Path, quick: bool) -> None:
    mesh = jax.make_mesh((jax.device_count(),), ("data",))
    results = {}
    warnings.simplefilter("ignore")  # duplicates make zero radii, and say so
    for name in list(CASES)[:1] if quick else CASES:
        seed, n, m, d, k, block = CASES[name]
        x, y = sets(seed, n, m, d)
        results[f"{name}/x"], results[f"{name}/y"] = x, y
        for label, where in (("one", None), ("mesh", mesh)):
            reference = metrics.ReferenceSet(x, k=k, block_size=block, mesh=where)
            for strict in (True,) if quick else (True, False):
                result = reference.compare(y, strict=strict)
                for field, value in result._asdict().items():
                    results[f"{name}/{strict}/{label}/{field}"] = np.asarray(value)
    np.savez(out / f"process_{jax.process_index()}.npz", **results)
    print(f"{jax.process_count()} processes, {jax.device_count()} devices: {len(results)} arrays")


if __name__ == "__main__":
    main(Path(sys.argv[1]), "--quick" in sys.argv[2:])
