"""Per-device memory of LOCOST ``base`` training, replicated against fully sharded state.

For 1, 2, 4 and 8 devices (simulated CPU devices, so the figures are XLA's plan for
each device, which does not depend on the hardware) and both ``param_sharding``
settings of ``training.fit``:

- parameters + AdamW state per device, from ``jax.eval_shape`` of the train state
  and the shard shapes of ``training.state_shardings``;
- the compiled train step's memory analysis per device: arguments (the state and
  the batch), outputs, temporaries, and the peak they imply (arguments + outputs +
  temporaries - the donated state the outputs reuse).

Nothing is run: the step is only lowered and compiled. Batch: ``--batch`` documents
of ``--input-length`` tokens with ``--target-length`` summary tokens (global batch,
split over the devices).

    python benchmarks/param_sharding_memory.py [--devices 1 2 4 8] [--input-length 1024]
"""

from __future__ import annotations

import os

if "xla_force_host_platform_device_count" not in os.environ.get("XLA_FLAGS", ""):
    os.environ["XLA_FLAGS"] = (
        os.environ.get("XLA_FLAGS", "") + " --xla_force_host_platform_device_count=8"
    ).strip()

import argparse  # noqa: E402
import math  # noqa: E402
import time  # noqa: E402

import jax  # noqa: E402
import jax.numpy as jnp  # noqa: E402
import optax  # noqa: E402
from _machine import machine_line  # noqa: E402
from jax.sharding import NamedSharding, PartitionSpec  # noqa: E402

import training  # noqa: E402
from seq_models.locost import locost_config, ssm_parameter_mask  # noqa: E402
from seq_models.locost_job import inverse_sqrt_schedule, sequence_loss  # noqa: E402
from training.sharding import DATA_AXIS, FSDP  # noqa: E402

MIB = 2**20


def abstract_state(model, optimizer):
    """The train state as ``ShapeDtypeStruct`` leaves (nothing allocated)."""

    def create():
        key = jax.random.key(0)
        sample = jnp.zeros((1, 8), jnp.int32)
        params = model.init(key, sample, sample > 0, sample)["params"]
        return training.TrainState.create(params, optimizer, jax.random.fold_in(key, 1))

    return jax.eval_shape(create)


def per_device_bytes(tree, shardings) -> int:
    """Bytes one device holds of ``tree`` placed with ``shardings``."""
    total = 0
    for leaf, sharding in zip(jax.tree.leaves(tree), jax.tree.leaves(shardings), strict=True):
        shape = sharding.shard_shape(leaf.shape)
        total += math.prod(shape) * leaf.dtype.itemsize
    return total


def measure(model, optimizer, state, n_devices: int, mode: str, args) -> dict[str, float]:
    mesh = training.data_mesh(jax.devices()[:n_devices])
    shardings = training.state_shardings(state, mesh, mode)
    step = training.TrainStep(sequence_loss(model), optimizer)
    if mode == FSDP:
        step = step.with_state_shardings(shardings)
    abstract = jax.tree.map(
        lambda leaf, s: jax.ShapeDtypeStruct(leaf.shape, leaf.dtype, sharding=s), state, shardings
    )
    batch_sharding = NamedSharding(mesh, PartitionSpec(DATA_AXIS))

    def tokens(length):
        return jax.ShapeDtypeStruct((args.batch, length), jnp.int32, sharding=batch_sharding)

    def flags(length):
        return jax.ShapeDtypeStruct((args.batch, length), jnp.bool_, sharding=batch_sharding)

    batch = {
        "inputs": tokens(args.input_length),
        "inputs_mask": flags(args.input_length),
        "targets": tokens(args.target_length),
        "targets_mask": flags(args.target_length),
    }
    start = time.perf_counter()
    compiled = step._step.lower(abstract, batch).compile()
    seconds = time.perf_counter() - start
    memory = compiled.memory_analysis()
    peak = (
        memory.argument_size_in_bytes
        + memory.output_size_in_bytes
        + memory.temp_size_in_bytes
        - memory.alias_size_in_bytes
    )
    return {
        "state": per_device_bytes(state, shardings) / MIB,
        "params": per_device_bytes(state.params, shardings.params) / MIB,
        "arguments": memory.argument_size_in_bytes / MIB,
        "outputs": memory.output_size_in_bytes / MIB,
        "temporaries": memory.temp_size_in_bytes / MIB,
        "peak": peak / MIB,
        "compile_s": seconds,
    }


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--devices", type=int, nargs="+", default=[1, 2, 4, 8])
    parser.add_argument("--batch", type=int, default=8)
    parser.add_argument("--input-length", type=int, default=1024)
    parser.add_argument("--target-length", type=int, default=64)
    parser.add_argument("--vocab-size", type=int, default=32128)
    args = parser.parse_args()
    model = locost_config("base", vocab_size=args.vocab_size).make()
    optimizer = optax.adamw(inverse_sqrt_schedule(1e-3, 100), mask=ssm_parameter_mask)
    state = abstract_state(model, optimizer)
    count = sum(math.prod(x.shape) for x in jax.tree.leaves(state.params))
    print(machine_line())
    print(f"load average before: {os.getloadavg()[0]:.2f}")
    print(
        f"LOCOST base, {count / 1e6:.1f}M parameters, AdamW (float32), global batch "
        f"{args.batch} x {args.input_length} input / {args.target_length} target tokens\n"
    )
    header = (
        "| devices | param_sharding | params / device (MiB) | params + AdamW / device (MiB) "
        "| step arguments (MiB) | step temporaries (MiB) | step peak (MiB) | compile (s) |"
    )
    print(header)
    print("|---:|---|---:|---:|---:|---:|---:|---:|")
    rows = {}
    for n in args.devices:
        for mode in training.PARAM_SHARDINGS:
            r = measure(model, optimizer, state, n, mode, args)
            rows[n, mode] = r
            print(
                f"| {n} | {mode} | {r['params']:.0f} | {r['state']:.0f} | {r['arguments']:.0f} "
                f"| {r['temporaries']:.0f} | {r['peak']:.0f} | {r['compile_s']:.0f} |",
                flush=True,
            )
    print()
    for n in args.devices:
        rep, fsdp = rows[n, "replicated"], rows[n, FSDP]
        print(
            f"{n} devices: fsdp holds {rep['state'] / fsdp['state']:.2f}x less state per device "
            f"and peaks {rep['peak'] / fsdp['peak']:.2f}x lower"
        )
    print(f"load average after: {os.getloadavg()[0]:.2f}")


if __name__ == "__main__":
    main()
