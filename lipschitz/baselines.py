"""Published cheap bounds on the spectral norm of a convolution, for comparison.

Both bound the bi-infinite operator, hence the zero-padding and the circular
convolution at every input size (conventions as in ``convolution.py``), and neither
needs ``n``. Kernel ``K: [c_out, c_in, h, w]``, taps ``K_u = K[:, :, u_1, u_2]``.

Singla, Singla & Feizi (ICLR 2021), "Fantastic Four": the convolution is
``sum_u K_u (x) shift_u``; writing it as a 1-D convolution along one spatial axis whose
taps are 1-D convolutions along the other and applying, per axis, ``||sum_u B_u
shift_u|| <= sqrt(#taps) ||[B_1; ...; B_m]||`` (or the horizontal stack, by duality)::

    ||conv|| <= sqrt(h w) min(||R||_2, ||S||_2, ||T||_2, ||U||_2)

with the four reshapes ``R[(u1, o), (u2, i)]``  ``[h c_out, w c_in]``,
``S[(u2, o), (u1, i)]``  ``[w c_out, h c_in]``, ``T[o, (u, i)]``  ``[c_out, h w c_in]``
and ``U[(u, o), i]``  ``[h w c_out, c_in]``. We take each matrix norm from a float
SVD (they are small).

Kernels are taken in ``layout`` (``checks.py``; HWIO by default) and worked on in OIHW.

Araujo, Negrevergne, Chevaleyre & Atif (AAAI 2021), "LipBound": with the trigonometric
polynomials ``f_oi(w) = sum_u K[o, i, u] exp(-i <w, u>)``, the symbol's spectral norm is
at most its Frobenius norm at every ``w``, so::

    ||conv|| <= sqrt(sum_{o, i} sup_w |f_oi(w)| ** 2)

The paper evaluates each ``sup`` on a grid of frequencies. To keep the result a
guaranteed bound we inflate the grid maximum: ``q = |f_oi| ** 2`` is a nonnegative
trigonometric polynomial of degree ``d = k - 1`` in each frequency; at its maximiser
``grad q = 0`` and Bernstein's inequality bounds every second derivative by
``d ** 2 max q``, so a grid of spacing ``2 pi / N`` (nearest point within ``pi / N`` per
axis) gives ``max_grid q >= (1 - 2 pi^2 d^2 / N^2) sup q``.
"""

from __future__ import annotations

import functools
import math

import jax
import jax.numpy as jnp

from lipschitz.checks import DEFAULT_LAYOUT, check_kernel, check_size, poison
from lipschitz.exact import _dense_exact


def _singla2021_reshapes(kernel: jax.Array) -> tuple[jax.Array, jax.Array, jax.Array, jax.Array]:
    """The four matrices ``(R, S, T, U)`` of Singla et al. (2021) for ``[c_out, c_in, h, w]``."""
    c_out, c_in, h, w = kernel.shape
    r = jnp.transpose(kernel, (2, 0, 3, 1)).reshape(h * c_out, w * c_in)
    s = jnp.transpose(kernel, (3, 0, 2, 1)).reshape(w * c_out, h * c_in)
    t = jnp.transpose(kernel, (0, 2, 3, 1)).reshape(c_out, h * w * c_in)
    u = jnp.transpose(kernel, (2, 3, 0, 1)).reshape(h * w * c_out, c_in)
    return r, s, t, u


@jax.jit
def _singla2021_bound(kernel: jax.Array) -> jax.Array:
    h, w = kernel.shape[-2:]
    norms = jnp.stack([_dense_exact(m) for m in _singla2021_reshapes(kernel)])
    return poison(math.sqrt(h * w) * jnp.min(norms), kernel)


def singla2021_bound(kernel, *, layout: str = DEFAULT_LAYOUT) -> jax.Array:
    """``sqrt(h w) min(||R||, ||S||, ||T||, ||U||)`` (Singla et al. 2021); scalar, NaN if
    the kernel holds NaN or inf under ``jax.jit``.

    Args:
      kernel: ``[h, w, c_in, c_out]`` (``layout="HWIO"``) or ``[c_out, c_in, h, w]``
        (``"OIHW"``); ``h != w`` is allowed.
    """
    return _singla2021_bound(check_kernel(kernel, layout, square=False))


def araujo_grid_size(k: int) -> int:
    """Default frequency grid for ``araujo2021_bound``: ``16 (k - 1)`` points per axis
    (at least 1), where the Bernstein correction is below 4%."""
    return max(16 * (k - 1), 1)


def _araujo_shrink(k: int, grid: int) -> float:
    """``1 - 2 pi^2 (k - 1)^2 / N^2``: the grid maximum's worst-case fraction of the sup."""
    return 1.0 - 2.0 * math.pi**2 * (k - 1) ** 2 / grid**2


@functools.partial(jax.jit, static_argnames=("grid",))
def _araujo2021_bound(kernel: jax.Array, grid: int) -> jax.Array:
    shrink = _araujo_shrink(max(kernel.shape[-2:]), grid)
    f = jnp.fft.fft2(kernel, s=(grid, grid), axes=(-2, -1))
    power = jnp.real(f) ** 2 + jnp.imag(f) ** 2
    sup_power = jnp.max(power, axis=(-2, -1)) / shrink
    return poison(jnp.sqrt(jnp.sum(sup_power)), kernel)


def araujo2021_bound(kernel, grid: int | None = None, *, layout: str = DEFAULT_LAYOUT) -> jax.Array:
    """``sqrt(sum_{o,i} sup_w |f_oi(w)| ** 2)`` (Araujo et al. 2021), guaranteed.

    Args:
      kernel: ``[h, w, c_in, c_out]`` (``layout="HWIO"``) or ``[c_out, c_in, h, w]``
        (``"OIHW"``); ``h != w`` is allowed.
      grid: frequencies per axis ``N``; needs ``N > sqrt(2) pi (k - 1)`` with
        ``k = max(h, w)``; default ``araujo_grid_size(k)``.

    Returns:
      scalar: the grid estimate times ``(1 - 2 pi^2 (k - 1)^2 / N^2) ** -1/2``; NaN if the
      kernel holds NaN or inf under ``jax.jit``.
    """
    kernel = check_kernel(kernel, layout, square=False)
    k = max(kernel.shape[-2:])
    grid = araujo_grid_size(k) if grid is None else check_size(grid, "grid")
    if _araujo_shrink(k, grid) <= 0:
        raise ValueError(
            f"grid must be > sqrt(2) pi (k - 1) = {math.sqrt(2) * math.pi * (k - 1):.1f} for "
            f"a size-{k} kernel, got {grid}"
        )
    return _araujo2021_bound(kernel, grid)
