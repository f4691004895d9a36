"""Cutting a grid into (possibly overlapping) square windows and folding them back.

A side of length ``n`` cut into windows of ``k`` with stride ``s`` has
``(n - k) // s + 1`` windows; ``window_layout`` checks that they tile the side
exactly. Folding averages overlapping windows: each position receives the mean
of the windows that cover it.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np


def windows_per_side(n: int, k: int, s: int) -> int:
    """Number of windows of size ``k``, stride ``s`` that tile a side of ``n`` exactly."""
    if k > n or (n - k) % s:
        raise ValueError(
            f"windows of size {k} with stride {s} do not tile a side of length {n}: "
            f"need n >= k and (n - k) % s == 0"
        )
    return (n - k) // s + 1


def _indices(n: int, k: int, s: int) -> np.ndarray:
    """``[num_windows, k]`` positions covered by each window along one side."""
    starts = np.arange(windows_per_side(n, k, s)) * s
    return starts[:, None] + np.arange(k)[None, :]


def extract_windows(x: jax.Array, window: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    """``x: [B, H, W, C] -> [B, nH, nW, kh, kw, C]``.

    Non-overlapping windows (stride equal to the window) are a reshape; overlapping
    ones a gather.
    """
    b, h, w, c = x.shape
    (kh, kw), (sh, sw) = window, stride
    nh, nw = windows_per_side(h, kh, sh), windows_per_side(w, kw, sw)
    if (kh, kw) == (sh, sw):
        return x.reshape(b, nh, kh, nw, kw, c).transpose(0, 1, 3, 2, 4, 5)
    rows, cols = _indices(h, kh, sh), _indices(w, kw, sw)
    return x[:, rows[:, None, :, None], cols[None, :, None, :]]


def coverage(size: tuple[int, int], window: tuple[int, int], stride: tuple[int, int]) -> np.ndarray:
    """``[H, W]`` number of windows covering each position."""
    counts = [
        np.bincount(_indices(n, k, s).ravel(), minlength=n)
        for n, k, s in zip(size, window, stride, strict=True)
    ]
    return np.outer(*counts)


def fold_windows(windows: jax.Array, size: tuple[int, int], stride: tuple[int, int]) -> jax.Array:
    """Inverse of ``extract_windows``: ``[B, nH, nW, kh, kw, C] -> [B, H, W, C]``.

    Overlapping contributions are averaged.
    """
    b, nh, nw, kh, kw, c = windows.shape
    h, w = size
    sh, sw = stride
    if (kh, kw) == (sh, sw):
        return windows.transpose(0, 1, 3, 2, 4, 5).reshape(b, h, w, c)
    rows, cols = _indices(h, kh, sh), _indices(w, kw, sw)
    total = jnp.zeros((b, h, w, c), windows.dtype)
    total = total.at[:, rows[:, None, :, None], cols[None, :, None, :]].add(windows)
    count = coverage(size, (kh, kw), stride)
    return total / jnp.asarray(count, windows.dtype)[None, :, :, None]
