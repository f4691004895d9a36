"""Users' own operator-learning data: input and output fields read from ``.npz`` or ``.mat``.

A file holds ``N`` samples of an input field and an output field on the same
``H x W`` grid, each ``[N, H, W]`` (one channel) or ``[N, H, W, C]``:

- ``.npz`` (``numpy.savez``) with the arrays under one of the key pairs of
  ``KEY_PAIRS`` (``inputs``/``outputs``, ``x``/``y``, ``a``/``u``, ``coeff``/``sol``),
  or any names given with ``input_key``/``output_key``;
- ``.mat`` (MATLAB v5/v7, read with ``scipy.io.loadmat``) in the layout of the
  published neural-operator files: Darcy flow ``coeff`` -> ``sol`` (``[N, 421, 421]``;
  ``stride=5`` gives the usual 85 x 85 grid) and Navier-Stokes ``a`` -> ``u``
  (``u: [N, 64, 64, T]``, the T time steps as channels). MATLAB v7.3 files are HDF5:
  re-save them as ``.npz`` (or as v7) first.
"""

from __future__ import annotations

import os
from pathlib import Path

import numpy as np

KEY_PAIRS = (("inputs", "outputs"), ("x", "y"), ("a", "u"), ("coeff", "sol"))
MIN_SAMPLES = 3  # two to fit the pointwise normalisers, one to test


def _read(path: Path) -> dict[str, np.ndarray]:
    if not path.exists():
        raise ValueError(f"data file {path} does not exist")
    suffix = path.suffix.lower()
    if suffix == ".npz":
        with np.load(path, allow_pickle=False) as f:
            return {name: f[name] for name in f.files}
    if suffix == ".mat":
        from scipy.io import loadmat

        try:
            return {k: v for k, v in loadmat(path).items() if not k.startswith("__")}
        except NotImplementedError:  # scipy's answer to HDF5-based v7.3 files
            raise ValueError(
                f"{path} is a MATLAB v7.3 (HDF5) file, which scipy cannot read; re-save it "
                "as .npz (numpy.savez(path, a=..., u=...)) or as MATLAB v7 (save -v7)"
            ) from None
    raise ValueError(f"data file must be .npz or .mat, got {path.name!r}")


def _keys(arrays: dict[str, np.ndarray], input_key: str | None, output_key: str | None, path):
    if (input_key is None) != (output_key is None):
        raise ValueError("give both input_key and output_key, or neither")
    if input_key is not None:
        pairs = [(input_key, output_key)]
    else:
        pairs = [p for p in KEY_PAIRS if p[0] in arrays and p[1] in arrays]
        if not pairs:
            raise ValueError(
                f"{path} holds the arrays {sorted(arrays)}; expected one of the key pairs "
                f"{[f'{i}/{o}' for i, o in KEY_PAIRS]}, or name them with input_key/output_key"
            )
    for key in pairs[0]:
        if key not in arrays:
            raise ValueError(f"{path} has no array {key!r}; it holds {sorted(arrays)}")
    return pairs[0]


def _as_fields(name: str, x: np.ndarray, stride: int) -> np.ndarray:
    x = np.asarray(x)
    if x.ndim not in (3, 4) or not np.issubdtype(x.dtype, np.number):
        raise ValueError(
            f"{name} must be a numeric array [N, H, W] or [N, H, W, C], got {x.dtype} {x.shape}"
        )
    x = x.astype(np.float32)[:, ::stride, ::stride]
    bad = int(np.sum(~np.isfinite(x)))
    if bad:
        raise ValueError(f"{name} holds {bad} NaN or infinite values; clean the data first")
    return x if x.ndim == 4 else x[..., None]


def load_fields(
    path: str | os.PathLike,
    *,
    input_key: str | None = None,
    output_key: str | None = None,
    stride: int = 1,
) -> tuple[np.ndarray, np.ndarray]:
    """``(inputs [N, H, W, C_in], outputs [N, H, W, C_out])`` float32 from ``path``.

    Args:
      path: an ``.npz`` or ``.mat`` file (module docstring).
      input_key, output_key: the arrays' names (default: the first pair of
        ``KEY_PAIRS`` present).
      stride: keep every ``stride``-th grid point along H and W (421 -> 85 with 5).

    Raises:
      ValueError: missing file or arrays, wrong ranks, different sample counts or
        grids, NaN or infinite values, fewer than ``MIN_SAMPLES`` samples.
    """
    if not isinstance(stride, int) or stride < 1:
        raise ValueError(f"stride must be an integer >= 1, got {stride!r}")
    path = Path(path)
    arrays = _read(path)
    in_key, out_key = _keys(arrays, input_key, output_key, path)
    inputs = _as_fields(f"input field {in_key!r}", arrays[in_key], stride)
    outputs = _as_fields(f"output field {out_key!r}", arrays[out_key], stride)
    if inputs.shape[:3] != outputs.shape[:3]:
        raise ValueError(
            f"input field {in_key!r} {inputs.shape[:3]} and output field {out_key!r} "
            f"{outputs.shape[:3]} must have the same [N, H, W]"
        )
    if len(inputs) < MIN_SAMPLES:
        raise ValueError(f"{path} holds {len(inputs)} samples; at least {MIN_SAMPLES} are needed")
    return inputs, outputs
