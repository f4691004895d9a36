"""TFDS builder for the 2-D Darcy-flow benchmark, generated locally.

Each example is a pair ``{"a": [s, s] float32, "u": [s, s] float32}``: a
thresholded Gaussian-random-field coefficient and the solution of
``-div(a grad u) = 1`` with ``u = 0`` on the boundary (see ``solver.py``).
Files are written as ``array_record`` and read back with
``builder.as_data_source()`` (random access, no TensorFlow needed).

Determinism: example ``i`` of split ``split`` is generated from
``np.random.SeedSequence(seed, spawn_key=(SPLIT_KEYS[split], i))`` and stored at
index ``i`` (shuffling on write is disabled), so the data depend only on the
configuration, never on the number of worker processes.

Generation uses ``spawn``-started worker processes, so a script that builds the
data must guard its entry point with ``if __name__ == "__main__":``.

On disk: ``<data_dir>/darcy_flow/<config name>/<version>/``. The standard
configurations are named ``r<s>`` (``r16``, ``r32``, ``r64``, ``r85``, ``r141``,
``r211``); any other setting of sizes, seed, thresholds or solve grid gets a
name listing the fields that differ, e.g. ``r16_train4_test2_seed3``, so that
it never shares a directory with another setting.
"""

from __future__ import annotations

import concurrent.futures
import dataclasses
import functools
import multiprocessing
import numbers
import os
from collections.abc import Iterator, Sequence
from typing import Any

import numpy as np
import tensorflow_datasets as tfds
from etils import epath
from tqdm.auto import tqdm

from mano_jax.darcy.coefficient import _check_positive
from mano_jax.darcy.solver import generate_sample, solve_stride
from training.datasets.cache import default_data_dir
from training.distributed import primary_first

__all__ = [
    "SPLIT_KEYS",
    "STANDARD_SOLVE_RESOLUTIONS",
    "SUPPORTED_RESOLUTIONS",
    "DarcyFlow",
    "DarcyFlowConfig",
    "darcy_config",
    "default_data_dir",
    "load_darcy",
    "sample_seed",
]

SUPPORTED_RESOLUTIONS: tuple[int, ...] = (16, 32, 64, 85, 141, 211)
"""Output resolutions ``s`` that have a builder configuration."""

STANDARD_SOLVE_RESOLUTIONS: dict[int, int] = {16: 31, 32: 63, 64: 127, 85: 421, 141: 421, 211: 421}
"""Default solve grid per resolution: 421 (the literature's grid) where it subsamples
exactly (85, 141, 211), else ``2 s - 1`` (stride 2)."""

SPLIT_KEYS: dict[str, int] = {"train": 0, "test": 1}
"""Split -> first entry of the ``spawn_key`` that seeds the split's examples."""

DEFAULT_TRAIN_SIZE = 1000
DEFAULT_TEST_SIZE = 200
DEFAULT_SEED = 0
DEFAULT_HIGH = 12.0
DEFAULT_LOW = 3.0


def sample_seed(seed: int, split: str, index: int) -> np.random.SeedSequence:
    """Seed of example ``index`` of ``split``.

    Returns:
      ``np.random.SeedSequence(seed, spawn_key=(SPLIT_KEYS[split], index))``.
    """
    _check_int(seed, "seed", minimum=0)
    _check_split(split)
    _check_int(index, "index", minimum=0)
    return np.random.SeedSequence(int(seed), spawn_key=(SPLIT_KEYS[split], int(index)))


def _check_int(value: Any, name: str, *, minimum: int) -> int:
    if isinstance(value, bool) or not isinstance(value, numbers.Integral) or value < minimum:
        raise ValueError(f"{name} must be an integer >= {minimum}, got {value!r}")
    return int(value)


def _check_split(split: Any) -> str:
    if split not in SPLIT_KEYS:
        raise ValueError(f"split must be one of {sorted(SPLIT_KEYS)}, got {split!r}")
    return split


def _check_resolution(resolution: Any) -> int:
    if (
        isinstance(resolution, bool)
        or not isinstance(resolution, numbers.Integral)
        or int(resolution) not in SUPPORTED_RESOLUTIONS
    ):
        raise ValueError(
            f"resolution must be one of {list(SUPPORTED_RESOLUTIONS)}, got {resolution!r}"
        )
    return int(resolution)


def _float_token(value: float) -> str:
    """Exact, path-safe spelling of a float: ``12.5 -> 12p5``, ``2.5e-05 -> 2p5em05``."""
    return repr(float(value)).replace("+", "").replace("-", "m").replace(".", "p")


@dataclasses.dataclass(eq=False)
class DarcyFlowConfig(tfds.core.BuilderConfig):
    """Configuration of a Darcy-flow dataset; build one with ``darcy_config``.

    Attributes:
      resolution: ``s``, nodes per side of the stored ``[s, s]`` arrays.
      solve_resolution: ``S``, nodes per side of the grid the problem is solved on,
        ``(S - 1) % (s - 1) == 0``.
      train_size: number of training examples.
      test_size: number of test examples.
      seed: root seed of the whole dataset.
      high: coefficient value where the random field is ``>= 0``.
      low: coefficient value where the random field is ``< 0``.
    """

    resolution: int = 85
    solve_resolution: int = 421
    train_size: int = DEFAULT_TRAIN_SIZE
    test_size: int = DEFAULT_TEST_SIZE
    seed: int = DEFAULT_SEED
    high: float = DEFAULT_HIGH
    low: float = DEFAULT_LOW


def _config_name(
    resolution: int,
    solve_resolution: int,
    train_size: int,
    test_size: int,
    seed: int,
    high: float,
    low: float,
) -> str:
    parts = [f"r{resolution}"]
    if solve_resolution != STANDARD_SOLVE_RESOLUTIONS[resolution]:
        parts.append(f"solve{solve_resolution}")
    if train_size != DEFAULT_TRAIN_SIZE:
        parts.append(f"train{train_size}")
    if test_size != DEFAULT_TEST_SIZE:
        parts.append(f"test{test_size}")
    if seed != DEFAULT_SEED:
        parts.append(f"seed{seed}")
    if high != DEFAULT_HIGH:
        parts.append(f"high{_float_token(high)}")
    if low != DEFAULT_LOW:
        parts.append(f"low{_float_token(low)}")
    return "_".join(parts)


def _make_config(
    resolution: int,
    solve_resolution: int,
    train_size: int,
    test_size: int,
    seed: int,
    high: float,
    low: float,
) -> DarcyFlowConfig:
    stride = solve_stride(resolution, solve_resolution)
    return DarcyFlowConfig(
        name=_config_name(resolution, solve_resolution, train_size, test_size, seed, high, low),
        description=(
            f"{resolution}x{resolution} (solved on {solve_resolution}x{solve_resolution}, "
            f"stride {stride}); train {train_size}, test {test_size}, seed {seed}, "
            f"a in {{{high:g}, {low:g}}}"
        ),
        resolution=resolution,
        solve_resolution=solve_resolution,
        train_size=train_size,
        test_size=test_size,
        seed=seed,
        high=high,
        low=low,
    )


_STANDARD_CONFIGS: dict[str, DarcyFlowConfig] = {
    f"r{s}": _make_config(
        s,
        STANDARD_SOLVE_RESOLUTIONS[s],
        DEFAULT_TRAIN_SIZE,
        DEFAULT_TEST_SIZE,
        DEFAULT_SEED,
        DEFAULT_HIGH,
        DEFAULT_LOW,
    )
    for s in SUPPORTED_RESOLUTIONS
}


def darcy_config(
    resolution: int,
    *,
    train_size: int = DEFAULT_TRAIN_SIZE,
    test_size: int = DEFAULT_TEST_SIZE,
    seed: int = DEFAULT_SEED,
    high: float = DEFAULT_HIGH,
    low: float = DEFAULT_LOW,
    solve_resolution: int | None = None,
) -> DarcyFlowConfig:
    """Validated configuration; the registered ``r<s>`` object when every field is default.

    Args:
      resolution: one of ``SUPPORTED_RESOLUTIONS``.
      train_size: training examples, ``>= 1``.
      test_size: test examples, ``>= 1``.
      seed: root seed, ``>= 0``.
      high: coefficient where the field is ``>= 0``, ``> 0``.
      low: coefficient where the field is ``< 0``, ``> 0``.
      solve_resolution: solve grid ``S``; ``None`` means ``STANDARD_SOLVE_RESOLUTIONS``.

    Returns:
      A ``DarcyFlowConfig`` whose name encodes every non-default field.
    """
    resolution = _check_resolution(resolution)
    train_size = _check_int(train_size, "train_size", minimum=1)
    test_size = _check_int(test_size, "test_size", minimum=1)
    seed = _check_int(seed, "seed", minimum=0)
    high = _check_positive(high, "high")
    low = _check_positive(low, "low")
    if solve_resolution is None:
        solve_resolution = STANDARD_SOLVE_RESOLUTIONS[resolution]
    solve_stride(resolution, solve_resolution)
    solve_resolution = int(solve_resolution)
    name = _config_name(resolution, solve_resolution, train_size, test_size, seed, high, low)
    if name in _STANDARD_CONFIGS:
        return _STANDARD_CONFIGS[name]
    return _make_config(resolution, solve_resolution, train_size, test_size, seed, high, low)


def _generate_one(
    seed: np.random.SeedSequence, resolution: int, solve_resolution: int, high: float, low: float
) -> tuple[np.ndarray, np.ndarray]:
    return generate_sample(seed, resolution, solve_resolution, high=high, low=low)


class DarcyFlow(tfds.core.GeneratorBasedBuilder):
    """Darcy flow ``-div(a grad u) = 1`` on the unit square: coefficient ``a`` -> solution ``u``.

    Features: ``a`` and ``u``, float32 ``[s, s]`` on the node grid including the
    boundary (``u`` is zero there). Splits ``train`` and ``test``.

    Args:
      num_workers: processes used to generate examples (``None``: ``os.cpu_count()``;
        ``1``: in this process). Does not change the data.
      **kwargs: ``data_dir``, ``config`` (a name such as ``"r85"`` or a ``darcy_config(...)``),
        ``version`` as for any TFDS builder.
    """

    VERSION = tfds.core.Version("1.0.0")
    RELEASE_NOTES = {"1.0.0": "Initial release."}
    BUILDER_CONFIGS = list(_STANDARD_CONFIGS.values())
    DEFAULT_BUILDER_CONFIG_NAME = "r85"

    @tfds.core.utils.classproperty
    @classmethod
    def code_path(cls) -> epath.Path:
        """This file. (The inherited lookup needs ``importlib_resources``, which
        tensorflow-datasets only declares for Python < 3.9.)"""
        return epath.Path(__file__)

    def __init__(self, *, num_workers: int | None = None, **kwargs: Any):
        if num_workers is not None:
            _check_int(num_workers, "num_workers", minimum=1)
        self._num_workers = num_workers
        super().__init__(file_format="array_record", **kwargs)

    def _info(self) -> tfds.core.DatasetInfo:
        s = self.builder_config.resolution
        return tfds.core.DatasetInfo(
            builder=self,
            description=(
                "2-D Darcy flow benchmark of the neural-operator literature, generated "
                "locally: thresholded Gaussian-random-field coefficient a and the "
                "finite-difference solution u of -div(a grad u) = 1, u = 0 on the boundary."
            ),
            features=tfds.features.FeaturesDict(
                {
                    "a": tfds.features.Tensor(shape=(s, s), dtype=np.float32),
                    "u": tfds.features.Tensor(shape=(s, s), dtype=np.float32),
                }
            ),
            supervised_keys=("a", "u"),
            # Keep example i of a split at index i, next to its seed.
            disable_shuffling=True,
        )

    def _split_generators(self, dl_manager: Any) -> dict[str, Iterator[tuple[int, dict]]]:
        del dl_manager
        config = self.builder_config
        return {
            "train": self._generate_examples("train", config.train_size),
            "test": self._generate_examples("test", config.test_size),
        }

    def _generate_examples(self, split: str, size: int) -> Iterator[tuple[int, dict]]:
        config = self.builder_config
        worker = functools.partial(
            _generate_one,
            resolution=config.resolution,
            solve_resolution=config.solve_resolution,
            high=config.high,
            low=config.low,
        )
        seeds = [sample_seed(config.seed, split, i) for i in range(size)]
        workers = min(self._num_workers or os.cpu_count() or 1, size)
        progress = functools.partial(tqdm, total=size, desc=f"darcy_flow/{config.name} {split}")
        if workers == 1:
            for i, (a, u) in enumerate(progress(map(worker, seeds))):
                yield i, {"a": a, "u": u}
            return
        chunksize = max(1, size // (8 * workers))
        context = multiprocessing.get_context("spawn")
        with concurrent.futures.ProcessPoolExecutor(workers, mp_context=context) as executor:
            results = executor.map(worker, seeds, chunksize=chunksize)
            try:
                for i, (a, u) in enumerate(progress(results)):
                    yield i, {"a": a, "u": u}
            except concurrent.futures.process.BrokenProcessPool as error:
                raise RuntimeError(
                    "Darcy generation worker processes died. Worker processes are started "
                    "with 'spawn', which re-imports the main script: guard a script's entry "
                    'point with `if __name__ == "__main__":`, or pass num_workers=1 to '
                    "generate in this process."
                ) from error


def load_darcy(
    resolution: int,
    split: str,
    *,
    train_size: int = DEFAULT_TRAIN_SIZE,
    test_size: int = DEFAULT_TEST_SIZE,
    seed: int = DEFAULT_SEED,
    high: float = DEFAULT_HIGH,
    low: float = DEFAULT_LOW,
    solve_resolution: int | None = None,
    data_dir: str | os.PathLike | None = None,
    num_workers: int | None = None,
) -> Sequence[dict[str, np.ndarray]]:
    """Random-access Darcy data, generated on first use.

    Args:
      resolution: one of ``SUPPORTED_RESOLUTIONS``.
      split: ``"train"`` or ``"test"``.
      train_size, test_size, seed, high, low, solve_resolution: see ``darcy_config``.
      data_dir: TFDS data directory; ``None`` means ``default_data_dir()``.
      num_workers: generation processes; ``None`` means ``os.cpu_count()``.

    Returns:
      A sequence (``len``, integer indexing) of ``{"a": [s, s], "u": [s, s]}`` float32
      numpy dicts, as returned by ``DarcyFlow.as_data_source()[split]``.
    """
    split = _check_split(split)
    config = darcy_config(
        resolution,
        train_size=train_size,
        test_size=test_size,
        seed=seed,
        high=high,
        low=low,
        solve_resolution=solve_resolution,
    )

    def prepared() -> DarcyFlow:
        builder = DarcyFlow(
            config=config,
            data_dir=os.fspath(data_dir) if data_dir is not None else default_data_dir(),
            num_workers=num_workers,
        )
        builder.download_and_prepare()
        return builder

    # One process generates; the others then open the finished data set.
    return primary_first(prepared).as_data_source()[split]
