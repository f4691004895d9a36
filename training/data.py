"""grain input pipelines whose iterators can be checkpointed and resumed."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import grain
import jax
import numpy as np


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


def make_loader(
    source: Sequence[Any],
    batch_size: int,
    *,
    seed: int = 0,
    shuffle: bool = True,
    num_epochs: int | None = None,
    drop_remainder: bool | None = None,
    transform: Callable[[Any], Any] | None = None,
) -> grain.IterDataset:
    """Batches of ``source`` as a grain ``IterDataset``.

    Args:
      source: any random-access source (``len`` and ``__getitem__``): a TFDS
        ``as_data_source()`` split, a list, a grain source.
      batch_size: examples per batch on this process.
      seed: shuffle seed; each epoch is reshuffled deterministically.
      shuffle: whether to shuffle.
      num_epochs: passes over the data; ``None`` repeats forever (training).
      drop_remainder: drop a last incomplete batch; defaults to ``True`` when
        repeating forever and ``False`` for a finite number of epochs.
      transform: applied to every example before batching.

    In a multi-process run each process reads the slice
    ``source[process_index::process_count]``.

    ``iter(loader)`` returns a grain ``DatasetIterator`` with ``get_state`` and
    ``set_state``; ``training.fit`` checkpoints it next to the train state.
    """
    if batch_size < 1:
        raise ValueError(f"batch_size must be >= 1, got {batch_size}")
    if num_epochs is not None and num_epochs < 1:
        raise ValueError(f"num_epochs must be None or >= 1, got {num_epochs}")
    if len(source) == 0:
        raise ValueError("source is empty")
    if drop_remainder is None:
        drop_remainder = num_epochs is None
    ds = grain.MapDataset.source(source)
    if jax.process_count() > 1:
        ds = ds[jax.process_index() :: jax.process_count()]
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
    return ds.batch(batch_size, drop_remainder=drop_remainder).to_iter_dataset()


def make_eval_loader(
    source: Sequence[Any],
    max_batch_size: int = 128,
    *,
    transform: Callable[[Any], Any] | None = None,
) -> grain.IterDataset:
    """One ordered pass over ``source`` in equal batches, for evaluation.

    The batch size is the largest divisor of ``len(source)`` up to
    ``max_batch_size``, so every batch has the same shape and a jitted eval step
    compiles once (a ragged last batch would compile a second time).
    """
    if max_batch_size < 1:
        raise ValueError(f"max_batch_size must be >= 1, got {max_batch_size}")
    n = len(source)
    batch_size = max((d for d in range(1, min(n, max_batch_size) + 1) if n % d == 0), default=1)
    return make_loader(source, batch_size, shuffle=False, num_epochs=1, transform=transform)
