"""grain input pipelines whose iterators can be checkpointed and resumed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any, NamedTuple

import grain
import jax
import numpy as np

from training.state import key_data


class ArraySource:
    """A random-access source over equal-length arrays: item ``i`` is ``{name: array[i]}``."""

    def __init__(self, **arrays: np.ndarray):
        if not arrays:
            raise ValueError("ArraySource needs at least one array")
        lengths = {name: len(a) for name, a in arrays.items()}
        if len(set(lengths.values())) != 1:
            raise ValueError(f"arrays must have the same length, got {lengths}")
        self._arrays = {name: np.asarray(a) for name, a in arrays.items()}
        self._length = next(iter(lengths.values()))

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, index: int) -> dict[str, np.ndarray]:
        return {name: a[index] for name, a in self._arrays.items()}


def _shuffle_seed(seed: int | jax.Array) -> int:
    """A grain seed in ``[0, 2**32)`` from an int or a key (XOR of its key words)."""
    if isinstance(seed, int | np.integer) and not isinstance(seed, bool):
        if not 0 <= seed < 2**32:
            raise ValueError(f"seed must be an int in [0, 2**32) or a key, got {seed}")
        return int(seed)
    try:
        data, _ = key_data(seed)
    except ValueError:
        raise ValueError(f"seed must be an int in [0, 2**32) or a key, got {seed!r}") from None
    return int(np.bitwise_xor.reduce(np.asarray(data, np.uint32).ravel()))


class _ProcessShare(grain.MapDataset):
    """This process's rows of every global batch of ``parent``.

    Global batch ``i`` is ``parent[i * B : (i + 1) * B]`` with ``B = count *
    local_batch``; process ``index`` holds its rows ``index * local_batch`` to
    ``(index + 1) * local_batch``, so the processes' pieces, concatenated in
    process order, are exactly the batch a single process would see.
    """

    def __init__(self, parent: grain.MapDataset, index: int, count: int, local_batch: int):
        super().__init__(parent)
        self._index, self._count, self._local = index, count, local_batch
        self._length = len(parent) // (count * local_batch) * local_batch

    def __len__(self) -> int:
        return self._length

    def __getitem__(self, i):
        if isinstance(i, slice):
            return self.slice(i)
        batch, row = divmod(i, self._local)
        return self._parent[(batch * self._count + self._index) * self._local + row]

    def __str__(self) -> str:
        return f"_ProcessShare(process {self._index} of {self._count}, {self._local} per batch)"


def local_batch_size(batch_size: int, name: str = "batch_size") -> int:
    """The examples each process loads of a global batch of ``batch_size``."""
    count = jax.process_count()
    if batch_size % count:
        raise ValueError(
            f"{name} {batch_size} must be a multiple of the {count} processes of this run"
        )
    return batch_size // count


def make_loader(
    source: Sequence[Any],
    batch_size: int,
    *,
    seed: int | jax.Array = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> grain.IterDataset:
    """Batches of ``source`` as a grain ``IterDataset``.

    Args:
      source: any random-access source (``len`` and ``__getitem__``): a TFDS
        ``as_data_source()`` split, a list, a grain source.
      batch_size: examples per global batch (all processes together).
      seed: shuffle seed, an ``int`` in ``[0, 2**32)`` or a ``jax.random.key``
        (``jax.random.key(s)`` shuffles as the seed ``s`` does); each epoch is
        reshuffled deterministically.
      shuffle: whether to shuffle.
      num_epochs: passes over the data; ``None`` repeats forever (training).
      drop_remainder: drop a last incomplete batch; defaults to ``True`` when
        repeating forever and ``False`` for a finite number of epochs.
      transform: applied to every example before batching.

    In a multi-process run every process shuffles the whole source with the
    same seed and loads only its ``batch_size / process_count`` rows of each
    global batch (transforming only those): the global batches, and so the
    training run, are the same for any number of processes. ``batch_size`` must
    then be a multiple of the process count, and a last incomplete batch cannot
    be shared out (``drop_remainder=False`` with a remainder is refused).

    ``iter(loader)`` returns a grain ``DatasetIterator`` with ``get_state`` and
    ``set_state``; ``training.fit`` checkpoints it next to the train state.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None or >= 1, got {num_epochs}")
    if len(source) == 0:
        raise ValueError("source must hold at least one example, got an empty source")
    seed = _shuffle_seed(seed)
    local_batch = local_batch_size(batch_size)
    if drop_remainder is None:
        drop_remainder = num_epochs is None
    ds = grain.MapDataset.source(source)
    if shuffle:
        ds = ds.shuffle(seed=seed)
    if transform is not None:
        ds = ds.map(transform)
    ds = ds.repeat(num_epochs)
    if drop_remainder and num_epochs is not None and len(ds) < batch_size:
        raise ValueError(
            f"batch_size {batch_size} is larger than the {len(ds)} examples available "
            "with drop_remainder=True"
        )
    if jax.process_count() > 1:
        if not drop_remainder and len(ds) % batch_size:
            raise ValueError(
                f"the last batch ({len(ds) % batch_size} of {len(ds)} examples) cannot be "
                f"shared out among {jax.process_count()} processes; use drop_remainder=True"
            )
        ds = _ProcessShare(ds, jax.process_index(), jax.process_count(), local_batch)
    return ds.batch(local_batch, drop_remainder=drop_remainder).to_iter_dataset()


class MaskedBatch(NamedTuple):
    """An evaluation batch padded to full size.

    Attributes:
      batch: the examples, every leaf ``[batch_size, ...]``; the padding rows
        are copies of real examples.
      mask: ``bool[batch_size]``, true for the real examples.
    """

    batch: Any
    mask: np.ndarray


class _PaddedSource:
    """``source[indices[i]]`` with the flag ``i < num_real``."""

    def __init__(self, source: Sequence[Any], indices: list[int], num_real: int):
        self.source = source
        self.indices = indices
        self.num_real = num_real

    def __len__(self) -> int:
        return len(self.indices)

    def __getitem__(self, i: int) -> tuple[Any, np.bool_]:
        return self.source[self.indices[i]], np.bool_(i < self.num_real)


def eval_indices(
    n: int, batch_size: int, process_index: int = 0, process_count: int = 1, multiple: int = 1
) -> tuple[list[int], int, int]:
    """``(indices, num_real, batch)``: the padded evaluation order of one process.

    Process ``p`` reads ``range(p, n, process_count)``, padded with copies of its
    first example (of example 0 if it has none) to ``num_batches * batch``
    indices, where ``batch`` is ``min(ceil(batch_size / process_count),
    ceil(n / process_count))`` rounded up to a multiple of ``multiple`` and
    ``num_batches = ceil(ceil(n / process_count) / batch)``, the same on every
    process; the first ``num_real`` indices are real.
    """
    per_process = -(-n // process_count)
    batch = min(-(-batch_size // process_count), per_process)
    batch = -(-batch // multiple) * multiple
    num_batches = -(-per_process // batch)
    real = list(range(process_index, n, process_count))
    padding = [real[0] if real else 0] * (num_batches * batch - len(real))
    return real + padding, len(real), batch


def make_eval_loader(
    source: Sequence[Any],
    batch_size: int = 128,
    *,
    transform: Callable[[Any], Any] | None = None,
) -> grain.IterDataset:
    """One ordered pass over ``source`` in batches of one fixed size, for evaluation.

    Every batch is a ``MaskedBatch(batch, mask)`` of ``min(batch_size,
    len(source))`` examples (see ``eval_indices`` for a multi-process run); the last one is
    padded with copies of real examples and ``mask`` marks the real ones. All
    batches have the same shape, so a jitted eval step compiles once whatever the
    size of the set, and ``training.evaluate`` weights every metric by the mask:
    the result is the mean over exactly the examples of ``source``.

    Args:
      source: any random-access source (``len`` and ``__getitem__``).
      batch_size: examples per global batch (all processes together).
      transform: applied to every example (padding copies included) before
        batching.

    In a multi-process run process ``p`` reads ``source[p::process_count]`` in
    batches of a multiple of its device count (so the global batch splits over
    every device), and every process yields the same number of batches (see
    ``eval_indices``).
    """
    if not isinstance(batch_size, int | np.integer) or batch_size < 1:
        raise ValueError(f"batch_size must be an int >= 1, got {batch_size!r}")
    if len(source) == 0:
        raise ValueError("source must hold at least one example, got an empty source")
    count = jax.process_count()
    multiple = jax.local_device_count() if count > 1 else 1
    indices, num_real, batch = eval_indices(
        len(source), int(batch_size), jax.process_index(), count, multiple
    )
    ds = grain.MapDataset.source(_PaddedSource(source, indices, num_real))
    if transform is not None:
        ds = ds.map(lambda item: (transform(item[0]), item[1]))
    ds = ds.batch(batch, drop_remainder=False).map(lambda b: MaskedBatch(*b))
    return ds.to_iter_dataset()
