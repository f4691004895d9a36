"""Argument checks at the public boundary: kernel layouts, shapes and finiteness.

Layouts. A convolution kernel is ``[kh, kw, c_in, c_out]`` (``"HWIO"``, Flax's
``nn.Conv`` layout, the default of every public function) or ``[c_out, c_in, kh, kw]``
(``"OIHW"``, PyTorch's). Internally the package works in OIHW, the layout of the math
in ``convolution.py``; public functions take ``layout=`` and convert once. The rules
that make a wrong layout fail loudly instead of being read as a different kernel:

- the layout is one of ``LAYOUTS``, the kernel has rank 4, a real floating dtype and
  no empty axis;
- the spatial axes of the given layout are square (``kh == kw``): a ``[C_out, C_in, k, k]``
  OIHW kernel read as HWIO has spatial axes ``C_out x C_in``, refused when
  ``C_out != C_in`` (the message points to the other layout when it would fit);
- where the input size ``n`` is known, the kernel size is at most ``n``: an OIHW kernel
  ``[C, C, k, k]`` read as HWIO has kernel size ``C``, refused when ``C > n``.

What no shape can reveal: an OIHW kernel ``[C, C, k, k]`` read as HWIO when ``C <= n``
(or with no ``n``), a ``C x C`` kernel with ``k`` channels. Pass ``layout`` explicitly
when kernels do not come from Flax.

Finiteness. A bound computed from weights that hold NaN or inf means nothing, and a
bound of 0 would certify an infinite radius. Outside ``jax.jit`` (concrete arrays) the
public functions raise a ``ValueError`` naming the argument; inside ``jax.jit`` (traced
arrays, no Python control flow on values) they return NaN in every entry of the result
(``poison``), so a non-finite weight never yields a finite bound either way.
"""

from __future__ import annotations

import jax
import jax.numpy as jnp
import numpy as np

LAYOUTS = ("HWIO", "OIHW")
DEFAULT_LAYOUT = "HWIO"


def is_concrete(value) -> bool:
    """True for arrays whose values are known now (not traced under ``jax.jit``/``grad``)."""
    return not isinstance(value, jax.core.Tracer)


def check_finite(name: str, value) -> None:
    """``ValueError`` naming ``name`` if the concrete array ``value`` holds NaN or inf;
    nothing for traced values (``poison`` covers those)."""
    if value is None or not is_concrete(value):
        return
    array = np.asarray(value)
    if not np.issubdtype(array.dtype, np.inexact):
        return
    finite = np.isfinite(array)
    if not finite.all():
        nan = int(np.isnan(array).sum())
        inf = int(array.size - finite.sum() - nan)
        raise ValueError(
            f"{name} must be finite (no NaN or inf), got {nan} NaN and {inf} inf entries "
            f"in an array of shape {array.shape}"
        )


def poison(result: jax.Array, *inputs: jax.Array) -> jax.Array:
    """``result`` where every entry of ``inputs`` is finite, else NaN everywhere (same
    shape and dtype): inside ``jax.jit`` a non-finite input gives a NaN result, never a
    finite one, whatever the computation in between made of it."""
    finite = jnp.all(jnp.stack([jnp.all(jnp.isfinite(x)) for x in inputs]))
    return jnp.where(finite, result, jnp.asarray(jnp.nan, result.dtype))


def check_layout(layout) -> str:
    if layout not in LAYOUTS:
        raise ValueError(f"layout must be one of {LAYOUTS}, got {layout!r}")
    return layout


def to_oihw(kernel: jax.Array, layout: str) -> jax.Array:
    """``kernel`` in ``layout`` -> ``[c_out, c_in, kh, kw]`` (no checks)."""
    return kernel if layout == "OIHW" else jnp.transpose(kernel, (3, 2, 0, 1))


def from_oihw(kernel: jax.Array, layout: str) -> jax.Array:
    """``[c_out, c_in, kh, kw]`` -> ``layout`` (no checks); inverse of ``to_oihw``."""
    return kernel if layout == "OIHW" else jnp.transpose(kernel, (2, 3, 1, 0))


def _spatial(shape: tuple[int, ...], layout: str) -> tuple[int, int]:
    return (shape[0], shape[1]) if layout == "HWIO" else (shape[2], shape[3])


def _other(layout: str) -> str:
    return "OIHW" if layout == "HWIO" else "HWIO"


def check_kernel(
    kernel,
    layout: str = DEFAULT_LAYOUT,
    *,
    name: str = "kernel",
    n: int | None = None,
    square: bool = True,
) -> jax.Array:
    """Validate a convolution kernel in ``layout`` (module docstring) and return it in OIHW.

    Args:
      kernel: ``[kh, kw, c_in, c_out]`` (HWIO) or ``[c_out, c_in, kh, kw]`` (OIHW).
      layout: ``"HWIO"`` or ``"OIHW"``.
      name: the argument's name in error messages.
      n: the input height and width, when known: the kernel must fit (``kh, kw <= n``).
      square: require ``kh == kw``.

    Returns:
      ``[c_out, c_in, kh, kw]``.

    Raises:
      ValueError: bad layout, rank, dtype or shape, or (concrete arrays) NaN or inf.
    """
    check_layout(layout)
    kernel = jnp.asarray(kernel)
    expected = "[kh, kw, c_in, c_out]" if layout == "HWIO" else "[c_out, c_in, kh, kw]"
    if kernel.ndim != 4:
        raise ValueError(
            f"{name} must be a convolution kernel {expected} (layout={layout!r}), got shape "
            f"{kernel.shape}"
        )
    if not jnp.issubdtype(kernel.dtype, jnp.floating):
        raise ValueError(f"{name} must be a real floating-point array, got dtype {kernel.dtype}")
    if 0 in kernel.shape:
        raise ValueError(f"{name} must be non-empty, got shape {kernel.shape}")
    kh, kw = _spatial(kernel.shape, layout)
    other_kh, other_kw = _spatial(kernel.shape, _other(layout))
    hint = (
        f"; is it a {_other(layout)} kernel? pass layout={_other(layout)!r}"
        if other_kh == other_kw and (n is None or other_kh <= n)
        else ""
    )
    if square and kh != kw:
        raise ValueError(
            f"{name} must have square spatial axes (kh == kw) in layout {layout!r} "
            f"{expected}, got kh={kh}, kw={kw} from shape {kernel.shape}{hint}"
        )
    if n is not None and max(kh, kw) > n:
        raise ValueError(
            f"{name} must fit the input: kernel size <= n = {n} in layout {layout!r} "
            f"{expected}, got {kh}x{kw} from shape {kernel.shape}{hint}"
        )
    check_finite(name, kernel)
    return to_oihw(kernel, layout)


def check_iters(iters, name: str = "iters") -> int:
    """``iters`` as an int ``>= 1``, else a ``ValueError``."""
    if not isinstance(iters, int | np.integer) or isinstance(iters, bool) or iters < 1:
        raise ValueError(f"{name} must be an int >= 1, got {iters!r}")
    return int(iters)


def check_size(n, name: str = "n") -> int:
    """The input height and width ``n`` as an int ``>= 1``, else a ``ValueError``."""
    if not isinstance(n, int | np.integer) or isinstance(n, bool) or n < 1:
        raise ValueError(f"{name} (the input height and width) must be an int >= 1, got {n!r}")
    return int(n)


def as_key(key, name: str = "key") -> jax.Array:
    """A new-style ``jax.random`` key from a new-style key (``jax.random.key``), a legacy
    ``PRNGKey`` (``uint32[2]``) or an ``int`` seed; the three draw the same numbers for
    the same seed (and share one compilation)."""
    if isinstance(key, int | np.integer) and not isinstance(key, bool):
        return jax.random.key(int(key))
    dtype = getattr(key, "dtype", None)
    if dtype is not None and jnp.issubdtype(dtype, jax.dtypes.prng_key) and key.ndim == 0:
        return key
    if dtype == jnp.uint32 and getattr(key, "shape", None) == (2,):
        return jax.random.wrap_key_data(key)
    raise ValueError(
        f"{name} must be a jax.random key (jax.random.key or PRNGKey) or an int seed, got {key!r}"
    )


def check_matrix(w, name: str = "w") -> jax.Array:
    """A real or complex floating, non-empty ``[..., m, n]`` array, finite when concrete."""
    w = jnp.asarray(w)
    if not jnp.issubdtype(w.dtype, jnp.inexact):
        raise ValueError(f"{name} must be a floating-point array, got dtype {w.dtype}")
    if w.ndim < 2 or 0 in w.shape:
        raise ValueError(f"{name} must be a non-empty matrix [..., m, n], got shape {w.shape}")
    check_finite(name, w)
    return w
