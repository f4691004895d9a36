"""Sampling on a mesh over all devices, for ``test_sharded.py``.

    python tests/smoothing/sharded_worker.py OUT_PREFIX

Run with several (simulated) devices, or as every process of a multi-process run
(``python -m training.launch ... -- python tests/smoothing/sharded_worker.py OUT``):
process ``p`` writes ``OUT_PREFIX.p.json`` with the device and process counts and, per
case of ``cases``, the votes ``[b, k]`` and soft means ``[b, m, k]``. The test imports
``inputs`` and ``cases`` to compute the same cases on one device.
"""

import json
import sys

import training

training.initialize_distributed()  # first: before anything else touches JAX

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import numpy as np  # noqa: E402

import smoothing  # noqa: E402

MAPS = (smoothing.SimplexMap("softmax", 0.5),)


def mlp(params, xs):
    """``[b, 4, 4] -> [b, 4]``."""
    return jnp.tanh(xs.reshape(xs.shape[0], -1) @ params["w1"]) @ params["w2"]


def inputs():
    """Parameters of ``mlp`` and three inputs ``[3, 4, 4]``."""
    rng = np.random.default_rng(0)
    params = {
        "w1": rng.normal(size=(16, 8)).astype(np.float32),
        "w2": rng.normal(size=(8, 4)).astype(np.float32),
    }
    return params, rng.normal(size=(3, 4, 4)).astype(np.float32)


def cases(params, xs, mesh):
    """Per case, the statistics of the three inputs certified together on ``mesh``
    (``None``: one device): their selection samples (one noise batch each) and estimation
    samples (24 batches each, the last partial; 72 in all, not a multiple of the devices,
    each input's spread over several devices). One batch shape: one compilation."""
    batch = smoothing.sample_certification_batch(
        jax.random.key(11), mlp, params, xs, sigma=0.5, n0=100, n=2350, batch_size=100,
        maps=MAPS, indices=[3, 0, 9], mesh=mesh,
    )  # fmt: skip
    return {"selection": [s for s, _ in batch], "estimation": [e for _, e in batch]}


def main(prefix: str) -> None:
    results = cases(*inputs(), training.data_mesh())
    out = {
        "devices": jax.device_count(),
        "processes": jax.process_count(),
        "cases": {
            name: {
                "votes": [s.votes.tolist() for s in stats],
                "mean": [s.mean.tolist() for s in stats],
            }
            for name, stats in results.items()
        },
    }
    with open(f"{prefix}.{jax.process_index()}.json", "w") as f:
        json.dump(out, f)


if __name__ == "__main__":
    main(sys.argv[1])
