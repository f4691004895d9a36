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
  used. Pass ``num_levels`` to fix ``L`` for every input size (the original PyTorch
  code fixes ``L = int(log_r(image_size))`` at construction, whatever ``k``;
  ``convert.from_torch_mano`` does the same).
* Each side is zero-padded to the smallest size that ``r^(L-1)`` divides and
  whose windows tile every level; the padding is a segment of its own (``-1``),
  never attended to, and is cropped from the output. A coarse token is padding
  only if all the fine tokens under it are. At coarse levels a side shorter than
  ``k`` is covered by one window of that side.
"""

from __future__ import annotations

import chex
import jax
import jax.numpy as jnp
import numpy as np

from mano_jax.attention import windowed_attention_grids, windowed_attention_reference

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
      params: the attention parameters (``attention`` module docstring; with
        ``window_norm_*`` the tokens get the original's two LayerNorms) plus
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

    grids, windows, strides, segments = [], [], [], []
    for level in range(levels):
        if level:
            z = downsample(z, params.get("down"), r)
            valid = _any_block(valid, r)
        lh, lw = z.shape[1:3]
        (kh, sh), (kw, sw) = (
            level_window(lh, window_size, stride),
            level_window(lw, window_size, stride),
        )
        grids.append(z)
        windows.append((kh, kw))
        strides.append((sh, sw))
        segments.append(jnp.where(valid, 0, -1).astype(jnp.int32))
    # One attention pass for all levels: levels with the same window share the calls.
    outputs = windowed_attention_grids(
        grids, params, windows, strides, segments if padded else None, impl
    )

    res = outputs[-1]
    for j, o in enumerate(reversed(outputs[:-1])):
        res = o + upsample(res, params.get("up"), r) / (j + 1)
    chex.assert_shape(res, (b, hp, wp, x.shape[-1]))
    return res[:, :h, :w]


def multipole_attention_reference(
    x,
    params: dict,
    *,
    window_size: int,
    window_stride: int | None = None,
    sampling_rate: int = 2,
    num_levels: int | None = None,
) -> np.ndarray:
    """``multipole_attention`` written out from the specification, in float64 NumPy.

    Shares no code with the fast path; each step is a loop over grid positions:

    1. ``L`` levels (``num_levels``, or the smallest ``L`` with
       ``k r^(L-1) >= max(H, W)``); each side is zero-padded to the smallest length
       ``n'`` that ``r^(L-1)`` divides and whose level sides ``m = n' / r^l`` are all
       tiled by windows (``m <= k``, or ``(m - k) % s == 0``); the padding is masked.
    2. ``z_0 = x``; ``z_{l+1}[i, j] = sum_{a, b < r} z_l[r i + a, r j + b] @ down[a, b]``
       (or the mean of the ``r x r`` block without ``down``); a coarse token is padding
       when all ``r x r`` tokens under it are.
    3. ``o_l``: window attention on ``z_l`` (``attention.windowed_attention_reference``)
       with windows ``k`` every ``s``, or one window across a side shorter than ``k``;
       padding tokens are never attended to.
    4. ``res = o_{L-1}``; for ``j, o`` in ``enumerate(o_{L-2}, ..., o_0)``:
       ``res = o + up(res) / (j + 1)`` with
       ``up(res)[r i + a, r j + b] = res[i, j] @ up[a, b]`` (or ``res[i, j]`` without
       ``up``); the output is ``res`` cropped to ``[B, H, W, C]``.

    Args:
      x: ``[B, H, W, C]``.
      params: as ``multipole_attention`` (``down`` / ``up``: ``[r, r, C, C]`` or absent).
      window_size, window_stride, sampling_rate, num_levels: as ``multipole_attention``.

    Returns:
      ``[B, H, W, C]`` float64. ``O(N k^2 C)`` Python-loop work: for tests only.
    """
    x = np.asarray(x, np.float64)
    k, r = int(window_size), int(sampling_rate)
    s = k if window_stride is None else int(window_stride)
    b, h, w, _ = x.shape
    levels = num_levels
    if levels is None:
        levels = 1
        while k * r ** (levels - 1) < max(h, w):
            levels += 1

    def tiled(n: int) -> bool:
        if n % r ** (levels - 1):
            return False
        sides = [n // r**level for level in range(levels)]
        return all(m <= k or (m - k) % s == 0 for m in sides)

    hp, wp = h, w
    while not tiled(hp):
        hp += 1
    while not tiled(wp):
        wp += 1
    z = np.zeros((b, hp, wp, x.shape[-1]))
    z[:, :h, :w] = x
    valid = np.zeros((b, hp, wp), bool)
    valid[:, :h, :w] = True
    down = params.get("down")
    up = params.get("up")
    down = None if down is None else np.asarray(down, np.float64)
    up = None if up is None else np.asarray(up, np.float64)

    outputs = []
    for level in range(levels):
        if level:
            lh, lw = z.shape[1] // r, z.shape[2] // r
            coarse = np.zeros((b, lh, lw, down.shape[-1] if down is not None else z.shape[-1]))
            coarse_valid = np.zeros((b, lh, lw), bool)
            for i in range(lh):
                for j in range(lw):
                    block = z[:, r * i : r * i + r, r * j : r * j + r]  # [B, r, r, C]
                    if down is None:
                        coarse[:, i, j] = block.mean(axis=(1, 2))
                    else:
                        coarse[:, i, j] = np.einsum("nabc,abcd->nd", block, down)
                    coarse_valid[:, i, j] = valid[:, r * i : r * i + r, r * j : r * j + r].any(
                        axis=(1, 2)
                    )
            z, valid = coarse, coarse_valid
        lh, lw = z.shape[1:3]
        window = (min(lh, k), min(lw, k))
        stride = (lh if lh <= k else s, lw if lw <= k else s)
        segments = np.where(valid, 0, -1)
        outputs.append(windowed_attention_reference(z, params, window, stride, segments))

    res = outputs[-1]
    for j, o in enumerate(reversed(outputs[:-1])):
        fine = np.zeros(o.shape[:3] + ((up.shape[-1],) if up is not None else res.shape[3:]))
        for i in range(res.shape[1]):
            for jj in range(res.shape[2]):
                if up is None:
                    fine[:, r * i : r * i + r, r * jj : r * jj + r] = res[:, i, jj, None, None]
                else:
                    fine[:, r * i : r * i + r, r * jj : r * jj + r] = np.einsum(
                        "nc,abcd->nabd", res[:, i, jj], up
                    )
        res = o + fine / (j + 1)
    return res[:, :h, :w]
