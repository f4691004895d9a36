"""Data parallelism: a 1-D device mesh, the train state placed on it, batches split on ``data``.

The train state is either replicated on every device (``"replicated"``) or fully
sharded (``"fsdp"``): every parameter and optimizer-state array is split along one
of its axes over the ``data`` axis, and XLA gathers what each step needs inside the
compiled step, so a device holds ``1 / devices`` of the state between steps.

Multi-process runs (``training.initialize_distributed``): each process loads its
own slice of every batch (``make_loader`` does it) and ``shard_batch`` assembles
the global batch from the per-process pieces.
"""

from __future__ import annotations

from typing import Any

import jax
import numpy as np
from jax.sharding import Mesh, NamedSharding, PartitionSpec

DATA_AXIS = "data"
REPLICATED = "replicated"
FSDP = "fsdp"
PARAM_SHARDINGS = (REPLICATED, FSDP)


def data_mesh(devices: list[jax.Device] | None = None) -> Mesh:
    """A 1-D mesh with axis ``"data"`` over ``devices`` (default: all devices)."""
    devices = jax.devices() if devices is None else devices
    return Mesh(np.asarray(devices), (DATA_AXIS,))


def replicate(tree: Any, mesh: Mesh) -> Any:
    """Place every leaf of ``tree`` on all devices of ``mesh``."""
    return jax.device_put(tree, NamedSharding(mesh, PartitionSpec()))


def _fsdp_spec(shape: tuple[int, ...], n_devices: int) -> PartitionSpec:
    """Split the largest axis that ``n_devices`` divides (the first of equals); replicate
    leaves with none (scalars, small odd-sized vectors)."""
    axes = [a for a, size in enumerate(shape) if size % n_devices == 0]
    if n_devices == 1 or not axes:
        return PartitionSpec()
    axis = max(axes, key=lambda a: (shape[a], -a))
    return PartitionSpec(*([None] * axis), DATA_AXIS)


def state_shardings(tree: Any, mesh: Mesh, param_sharding: str = REPLICATED) -> Any:
    """``NamedSharding`` of every leaf of ``tree`` (arrays or ``ShapeDtypeStruct``).

    ``"replicated"``: every leaf on every device. ``"fsdp"``: each leaf split
    along its largest axis that the ``data`` axis size divides (optimizer moments
    are shaped like the parameters, so they are split the same way); leaves with
    no such axis are replicated.
    """
    if param_sharding not in PARAM_SHARDINGS:
        raise ValueError(f"param_sharding must be one of {PARAM_SHARDINGS}, got {param_sharding!r}")
    n_devices = mesh.shape[DATA_AXIS]

    def sharding(leaf):
        shape = tuple(leaf.shape) if hasattr(leaf, "shape") else np.shape(leaf)
        spec = _fsdp_spec(shape, n_devices) if param_sharding == FSDP else PartitionSpec()
        return NamedSharding(mesh, spec)

    return jax.tree.map(sharding, tree)


def place_state(tree: Any, mesh: Mesh, param_sharding: str = REPLICATED) -> Any:
    """``tree`` placed on ``mesh`` as ``state_shardings`` says."""
    if param_sharding == REPLICATED:
        return replicate(tree, mesh)
    return jax.device_put(tree, state_shardings(tree, mesh, param_sharding))


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
