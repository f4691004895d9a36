"""Multipole attention: windowed attention on a hierarchy of coarsened grids, V-cycle combine.

For ``x: [B, H, W, C]``, window ``k``, stride ``s`` and sampling rate ``r``::

    z_0 = x,  z_{l+1} = down(z_l)                        l = 0 .. L-2
    o_l = A(z_l)                                          the same attention at every level
    res = o_{L-1};  res = o + up(res) / (j + 1)           for j, o in enumerate(o_{L-2} .. o_0)

``down`` is a strided ``r x r`` convolution (no bias) or ``r x r`` average
pooling, ``up`` a stride-``r`` transposed ``r x r`` convolution (no bias) or
nearest upsampling; one ``down``, one ``up`` and one attention are shared by all
levels. Level ``l`` has ``N / r^(2l)`` tokens and each costs ``O(k^2)``, so the
whole layer is ``O(N k^2 C)``: linear in ``N = H W``.

Levels and padding (decided at call time from the input size):

* ``L = 1 + ceil(log_r(max(H, W) / k))``: the coarsest grid fits in one window,
  so every output depends on every input (a global receptive field). For square
  inputs of side ``k r^m`` this is the specification's ``floor(log_r(min/k)) + 1``;
  for other sizes the ``floor`` rule leaves several windows at the coarsest level
  and the receptive field is no longer global, which is why the ``ceil`` rule is
  used. Pass ``num_levels`` to fix ``L``.
* Each side is zero-padded to the smallest size that ``r^(L-1)`` divides and
  whose windows tile every level; the padding is a segment of its own (``-1``),
  never attended to, and is cropped from the output. A coarse token is padding
  only if all the fine tokens under it are. At coarse levels a side shorter than
  ``k`` is covered by one window of that side.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

from mano_jax.attention import windowed_attention

DOWN = ("conv", "avg")
UP = ("conv", "nearest")


def check_grid(x: jax.Array, window_size: int, name: str = "x") -> None:
    """``x`` must be ``[B, H, W, C]`` with ``H, W >= window_size``."""
    if x.ndim != 4:
        raise ValueError(f"{name} must have rank 4 [batch, height, width, channels], got {x.shape}")
    if min(x.shape[1:3]) < window_size:
        raise ValueError(
            f"window_size {window_size} is larger than the input grid {x.shape[1]}x{x.shape[2]}"
        )


def check_window(window_size: int, window_stride: int | None) -> int:
    """Validated stride (default: the window size)."""
    if not isinstance(window_size, int | np.integer) or window_size < 1:
        raise ValueError(f"window_size must be a positive int, got {window_size!r}")
    stride = window_size if window_stride is None else window_stride
    if not isinstance(stride, int | np.integer) or stride < 1 or window_size % stride:
        raise ValueError(
            f"window_stride must be a positive divisor of window_size {window_size}, "
            f"got {window_stride!r}"
        )
    return int(stride)


def num_levels_for(height: int, width: int, window_size: int, sampling_rate: int) -> int:
    """``1 + ceil(log_r(max(H, W) / k))``: the smallest L whose coarsest grid is one window."""
    levels, reach = 1, window_size
    while reach < max(height, width):
        levels += 1
        reach *= sampling_rate
    return levels


def level_window(side: int, window_size: int, stride: int) -> tuple[int, int]:
    """``(window, stride)`` along a side of length ``side`` at some level."""
    return (side, side) if side <= window_size else (window_size, stride)


def padded_side(n: int, window_size: int, stride: int, rate: int, levels: int) -> int:
    """Smallest ``n' >= n`` that ``rate^(levels-1)`` divides and whose windows tile every level."""
    step = rate ** (levels - 1)
    candidate = -(-n // step) * step
    while True:
        sides = [candidate // rate**level for level in range(levels)]
        if all(m <= window_size or (m - window_size) % stride == 0 for m in sides):
            return candidate
        candidate += step


def downsample(z: jax.Array, kernel: jax.Array | None, rate: int) -> jax.Array:
    """``[B, H, W, C] -> [B, H/r, W/r, C']``: strided ``r x r`` conv (``kernel [r, r, C, C']``)
    or average pooling (``kernel=None``)."""
    b, h, w, c = z.shape
    blocks = z.reshape(b, h // rate, rate, w // rate, rate, c)
    if kernel is None:
        return blocks.mean(axis=(2, 4))
    return jnp.einsum("bhiwjc,ijcd->bhwd", blocks, kernel.astype(z.dtype))


def upsample(z: jax.Array, kernel: jax.Array | None, rate: int) -> jax.Array:
    """``[B, H, W, C] -> [B, rH, rW, C']``: stride-``r`` transposed ``r x r`` conv
    (``kernel [r, r, C, C']``) or nearest upsampling (``kernel=None``)."""
    b, h, w, c = z.shape
    if kernel is None:
        return jnp.repeat(jnp.repeat(z, rate, axis=1), rate, axis=2)
    out = jnp.einsum("bhwc,ijcd->bhiwjd", z, kernel.astype(z.dtype))
    return out.reshape(b, h * rate, w * rate, kernel.shape[-1])


def _any_block(valid: jax.Array, rate: int) -> jax.Array:
    b, h, w = valid.shape
    return valid.reshape(b, h // rate, rate, w // rate, rate).any(axis=(2, 4))


def multipole_attention(
    x: jax.Array,
    params: dict[str, jax.Array],
    *,
    window_size: int,
    window_stride: int | None = None,
    sampling_rate: int = 2,
    num_levels: int | None = None,
    impl: str = "auto",
) -> jax.Array:
    """One multipole attention layer (module docstring), ``[B, H, W, C] -> [B, H, W, C]``.

    Args:
      x: ``[B, H, W, C]`` with ``H, W >= window_size``.
      params: the attention parameters (``attention`` module docstring) plus
        ``down`` and ``up``: ``[r, r, C, C]`` conv kernels, or absent for average
        pooling / nearest upsampling.
      window_size: ``k``, tokens per window side.
      window_stride: ``s``, a divisor of ``k`` (default ``k``: no overlap).
      sampling_rate: ``r >= 2``.
      num_levels: ``L``; ``None`` derives it from the input size.
      impl: attention core, ``"auto" | "xla" | "pallas"``.
    """
    stride = check_window(window_size, window_stride)
    check_grid(x, window_size)
    if not isinstance(sampling_rate, int | np.integer) or sampling_rate < 2:
        raise ValueError(f"sampling_rate must be an int >= 2, got {sampling_rate!r}")
    b, h, w, _ = x.shape
    r = int(sampling_rate)
    levels = num_levels_for(h, w, window_size, r) if num_levels is None else num_levels
    if not isinstance(levels, int | np.integer) or levels < 1:
        raise ValueError(f"num_levels must be None or an int >= 1, got {num_levels!r}")

    hp, wp = (padded_side(n, window_size, stride, r, levels) for n in (h, w))
    z = jnp.pad(x, ((0, 0), (0, hp - h), (0, wp - w), (0, 0)))
    valid = jnp.zeros((b, hp, wp), bool).at[:, :h, :w].set(True)
    padded = (hp, wp) != (h, w)

    outputs = []
    for level in range(levels):
        if level:
            z = downsample(z, params.get("down"), r)
            valid = _any_block(valid, r)
        lh, lw = z.shape[1:3]
        (kh, sh), (kw, sw) = (
            level_window(lh, window_size, stride),
            level_window(lw, window_size, stride),
        )
        segments = jnp.where(valid, 0, -1).astype(jnp.int32) if padded else None
        outputs.append(windowed_attention(z, params, (kh, kw), (sh, sw), segments, impl))

    res = outputs[-1]
    for j, o in enumerate(reversed(outputs[:-1])):
        res = o + upsample(res, params.get("up"), r) / (j + 1)
    return res[:, :h, :w]
