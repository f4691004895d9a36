"""Data parallelism: a 1-D device mesh, replicated state, batches split on ``data``.

Multi-host: launch one process per host with ``JAX_COORDINATOR_ADDRESS``,
``JAX_NUM_PROCESSES`` and ``JAX_PROCESS_ID`` set (or on a cluster that
``jax.distributed`` detects, e.g. SLURM or Cloud TPU) and call
``initialize_distributed()`` before anything else touches JAX. Each process
then loads its own slice of the data (``make_loader`` does it) and
``shard_batch`` assembles the global batch from the per-process pieces.
"""

from __future__ import annotations

import os
from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
_COORDINATOR_ENV = "JAX_COORDINATOR_ADDRESS"


def initialize_distributed() -> bool:
    """Call ``jax.distributed.initialize()`` when a multi-host launch is configured.

    Returns whether it was called. Single-process runs (no coordinator in the
    environment) are left alone.
    """
    if os.environ.get(_COORDINATOR_ENV) is None:
        return False
    jax.distributed.initialize()
    return True


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def shard_batch(batch: Any, mesh: Mesh) -> Any:
    """Split the leading axis of every leaf of ``batch`` over the ``data`` axis.

    ``batch`` holds this process's examples; the global batch is their
    concatenation over processes. The global batch size must be a multiple of
    the number of devices; a batch that is not (a small evaluation set) is
    replicated instead so evaluation still sees every example. In a
    single-process run all leaves go to the devices in one batched transfer
    (leaves already on the devices are resharded there, not fetched).
    """
    data_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))
    replicated = NamedSharding(mesh, PartitionSpec())
    n_devices = mesh.devices.size
    n_processes = jax.process_count()
    leaves, treedef = jax.tree.flatten(batch)
    leaves = [x if isinstance(x, jax.Array) else np.asarray(x) for x in leaves]
    for x in leaves:
        if x.ndim == 0:
            raise ValueError(f"batch leaves need a leading batch axis, got shape {x.shape}")

    if n_processes == 1:
        shardings = [data_sharding if x.shape[0] % n_devices == 0 else replicated for x in leaves]
        return jax.tree.unflatten(treedef, jax.device_put(leaves, shardings))

    def put(x):
        global_size = x.shape[0] * n_processes
        if global_size % n_devices:
            raise ValueError(
                f"global batch size {global_size} must be a multiple of the "
                f"{n_devices} devices in multi-host runs"
            )
        return jax.make_array_from_process_local_data(data_sharding, np.asarray(x))

    return jax.tree.unflatten(treedef, [put(x) for x in leaves])
