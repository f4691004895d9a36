"""Fourier Neural Operator (Li et al., 2020) for 2-D operator learning, NHWC.

The core is :func:`spectral_conv2d`, a pure function: a periodic convolution whose kernel
is given directly by its low Fourier modes. With ``X = rfft2(x)`` (over H and W),

    Y[b, k, l, o] = sum_i X[b, k, l, i] R[i, o, k, l]    for k in K, 0 <= l < modes2,
    Y[b, k, l, o] = 0                                    otherwise,
    y = irfft2(Y, s=(H, W)),

where ``K = {0, ..., modes1 - 1} U {H - modes1, ..., H - 1}`` holds the positive and the
negative low frequencies along H (the rfft axis W already only has ``l >= 0``).
:func:`spectral_conv2d_reference` computes the same map with explicit DFT sums in float64.

:class:`SpectralConv2d` and :class:`FNO2d` are thin Linen wrappers; :class:`FNOConfig`
and :data:`FNO_PRESETS` hold the hyper-parameters.

Weight layout: complex ``[2, C_in, C_out, modes1, modes2]``; block 0 multiplies the rows
``0 .. modes1-1`` and block 1 the rows ``H-modes1 .. H-1`` (block-1 index ``j`` is row
``H - modes1 + j``). :class:`SpectralConv2d` stores it as a real parameter
``[2, C_in, C_out, modes1, modes2, 2]`` (last axis: real, imaginary) so that optimisers
see only real arrays.
"""

from __future__ import annotations

import dataclasses
import functools
from collections.abc import Callable

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from mano_jax.checks import check_choice, check_int

__all__ = [
    "FNO2d",
    "FNOConfig",
    "FNO_PRESETS",
    "SpectralConv2d",
    "grid_coordinates",
    "spectral_conv2d",
    "spectral_conv2d_reference",
    "spectral_kernel_init",
]

Array = jax.Array


# ---------------------------------------------------------------------------------------
# Argument checks
# ---------------------------------------------------------------------------------------


def _check_spectral_args(
    x_shape: tuple[int, ...],
    w_shape: tuple[int, ...],
    modes1: int,
    modes2: int,
) -> None:
    if len(x_shape) != 4:
        raise ValueError(
            f"x must have rank 4 [batch, height, width, channels]; got shape {x_shape}"
        )
    _, h, w, c_in = x_shape
    if not isinstance(modes1, int | np.integer) or modes1 < 1:
        raise ValueError(f"modes1 must be a positive integer; got {modes1!r}")
    if not isinstance(modes2, int | np.integer) or modes2 < 1:
        raise ValueError(f"modes2 must be a positive integer; got {modes2!r}")
    if modes1 > h // 2:
        raise ValueError(
            f"modes1 must be <= height // 2 = {h // 2} (height {h}); got modes1={modes1}"
        )
    if modes2 > w // 2 + 1:
        raise ValueError(
            f"modes2 must be <= width // 2 + 1 = {w // 2 + 1} (width {w}); got modes2={modes2}"
        )
    expected = (2, c_in, w_shape[2] if len(w_shape) == 5 else None, modes1, modes2)
    if tuple(w_shape) != expected:
        raise ValueError(
            "weights must have shape [2, C_in, C_out, modes1, modes2] = "
            f"[2, {c_in}, C_out, {modes1}, {modes2}]; got {tuple(w_shape)}"
        )


# ---------------------------------------------------------------------------------------
# Spectral convolution: FFT form
# ---------------------------------------------------------------------------------------


def _hermitian_column(col: Array) -> Array:
    """Hermitian part of one spectral column along the H axis.

    col: [batch, H, C] (complex), indexed by the row frequency k.
    Returns ``(col[k] + conj(col[-k mod H])) / 2``, the unique column whose inverse DFT
    along H is real and whose real part of the inverse DFT equals that of ``col``.
    """
    # flip gives col[H-1-k]; rolling by one gives col[(H-k) mod H] = col[-k mod H].
    col_neg = jnp.roll(jnp.flip(col, axis=1), 1, axis=1)
    return 0.5 * (col + jnp.conj(col_neg))


def spectral_conv2d(x: Array, weights: Array, modes1: int, modes2: int) -> Array:
    """Fourier layer of the FNO: multiply the low Fourier modes of ``x`` by ``weights``.

    Args:
      x: ``[batch, H, W, C_in]`` real.
      weights: ``[2, C_in, C_out, modes1, modes2]`` complex. Block 0 acts on the row
        frequencies ``0 .. modes1-1``, block 1 on ``H-modes1 .. H-1``; the column
        frequencies are ``0 .. modes2-1`` of the rfft axis.
      modes1: kept frequencies per sign along H, ``1 <= modes1 <= H // 2``.
      modes2: kept frequencies along W, ``1 <= modes2 <= W // 2 + 1``.

    Returns:
      ``[batch, H, W, C_out]`` real, in float32 (float64 if ``x`` or ``weights`` is 64-bit).

    Real output: ``irfft2`` only sees the half spectrum, so the imaginary parts that a
    real signal cannot have (the DC column ``l = 0`` and, for even W, the Nyquist column
    ``l = W/2``, must be Hermitian along H) carry no information. NumPy/pocketfft
    discard them (the output is ``Re`` of the inverse sum), other c2r backends (cuFFT,
    rocFFT) leave the result undefined. We therefore replace those columns by their
    Hermitian part ``(Y[k] + conj(Y[-k])) / 2`` before ``irfft2``: the same linear map as
    the NumPy convention, but well defined on every backend (and for its transpose).
    """
    _check_spectral_args(x.shape, weights.shape, modes1, modes2)
    batch, h, w, _ = x.shape
    c_out = weights.shape[2]
    n_cols = w // 2 + 1

    x = x.astype(jnp.promote_types(x.dtype, jnp.float32))
    x_ft = jnp.fft.rfft2(x, axes=(1, 2))  # [B, H, W//2+1, C_in]

    # Per-mode channel mixing on the two kept row blocks.
    top = jnp.einsum("bxyi,ioxy->bxyo", x_ft[:, :modes1, :modes2], weights[0])
    bottom = jnp.einsum("bxyi,ioxy->bxyo", x_ft[:, h - modes1 :, :modes2], weights[1])
    middle = jnp.zeros((batch, h - 2 * modes1, modes2, c_out), top.dtype)
    out_ft = jnp.concatenate([top, middle, bottom], axis=1)  # [B, H, modes2, C_out]

    out_ft = out_ft.at[:, :, 0].set(_hermitian_column(out_ft[:, :, 0]))
    if w % 2 == 0 and modes2 == n_cols:
        out_ft = out_ft.at[:, :, -1].set(_hermitian_column(out_ft[:, :, -1]))

    out_ft = jnp.pad(out_ft, ((0, 0), (0, 0), (0, n_cols - modes2), (0, 0)))
    return jnp.fft.irfft2(out_ft, s=(h, w), axes=(1, 2))


# ---------------------------------------------------------------------------------------
# Spectral convolution: slow reference with explicit DFT sums
# ---------------------------------------------------------------------------------------


def _dft_matrix(n: int) -> np.ndarray:
    """[n, n] complex128 with entry [k, t] = exp(-2 pi i k t / n)."""
    k = np.arange(n)
    return np.exp(-2j * np.pi * np.outer(k, k) / n)


def _reference_full_spectrum(
    x: np.ndarray, weights: np.ndarray, modes1: int, modes2: int
) -> np.ndarray:
    """Full 2-D output spectrum ``Z[b, k, l, o]`` (all ``H x W`` frequencies) in float64.

    1. ``X[k, l] = sum_{t, u} x[t, u] exp(-2 pi i (k t / H + l u / W))``, all k, l.
    2. Half spectrum ``Y[k, l] = sum_i X[k, l, i] R[i, o, k, l]`` for k in the kept rows
       and ``0 <= l < modes2``, zero otherwise (``l <= W // 2``).
    3. Real signal: for ``0 < l < W - l`` put ``Z[k, l] = Y[k, l]`` and its mirror
       ``Z[-k, -l] = conj(Y[k, l])``; for the self-mirrored columns ``l = 0`` and
       ``l = W / 2`` (even W) put the Hermitian part ``(Y[k, l] + conj(Y[-k, l])) / 2``.
    """
    _, h, w, c_in = x.shape
    c_out = weights.shape[2]
    x = np.asarray(x, np.float64)
    weights = np.asarray(weights, np.complex128)

    x_full = np.einsum("kt,lu,btui->bkli", _dft_matrix(h), _dft_matrix(w), x)

    # Per-mode weights on the full frequency grid, zero outside the kept modes.
    r_full = np.zeros((h, w, c_in, c_out), np.complex128)
    for j in range(modes1):
        for ll in range(modes2):
            r_full[j, ll] = weights[0, :, :, j, ll]
            r_full[h - modes1 + j, ll] = weights[1, :, :, j, ll]
    y_half = np.einsum("bkli,klio->bklo", x_full, r_full)  # zero for l >= modes2

    neg_k = (-np.arange(h)) % h
    z = np.zeros_like(y_half)
    for ll in range(w // 2 + 1):
        if ll == 0 or 2 * ll == w:
            z[:, :, ll] = 0.5 * (y_half[:, :, ll] + np.conj(y_half[:, neg_k, ll]))
        else:
            z[:, :, ll] = y_half[:, :, ll]
            z[:, neg_k, w - ll] = np.conj(y_half[:, :, ll])
    return z


def spectral_conv2d_reference(
    x: np.ndarray, weights: np.ndarray, modes1: int, modes2: int
) -> np.ndarray:
    """Same operator as :func:`spectral_conv2d`, by explicit DFT sums in float64 NumPy.

    ``y[t, u] = 1 / (H W) sum_{k, l} Z[k, l] exp(+2 pi i (k t / H + l u / W))`` with the
    Hermitian full spectrum ``Z`` of :func:`_reference_full_spectrum`; ``y`` is real up to
    rounding and its real part is returned. ``O(H^2 W^2 C)``: for tests only.

    Args / returns as :func:`spectral_conv2d` (``[batch, H, W, C_out]`` float64).
    """
    x = np.asarray(x)
    weights = np.asarray(weights)
    _check_spectral_args(x.shape, weights.shape, modes1, modes2)
    _, h, w, _ = x.shape
    z = _reference_full_spectrum(x, weights, modes1, modes2)
    inv_h = np.conj(_dft_matrix(h))
    inv_w = np.conj(_dft_matrix(w))
    y = np.einsum("kt,lu,bklo->btuo", inv_h, inv_w, z) / (h * w)
    return y.real


# ---------------------------------------------------------------------------------------
# Linen modules
# ---------------------------------------------------------------------------------------


def spectral_kernel_init(key: Array, shape: tuple[int, ...], dtype=jnp.float32) -> Array:
    """Init of the original FNO code: real and imaginary parts i.i.d. ``U[0, scale)``.

    ``shape = [2, C_in, C_out, modes1, modes2, 2]``, ``scale = 1 / (C_in * C_out)``.
    """
    scale = 1.0 / (shape[1] * shape[2])
    return scale * jax.random.uniform(key, shape, dtype)


def _as_complex(kernel: Array) -> Array:
    """[..., 2] real (real, imag) -> [...] complex."""
    return jax.lax.complex(kernel[..., 0], kernel[..., 1])


class SpectralConv2d(nn.Module):
    """Linen wrapper around :func:`spectral_conv2d` (no bias, as in the original).

    Param ``kernel``: ``[2, C_in, features, modes1, modes2, 2]`` real (last axis: real,
    imaginary part). Input ``[batch, H, W, C_in]`` -> ``[batch, H, W, features]``.
    """

    features: int
    modes1: int
    modes2: int
    param_dtype: jnp.dtype = jnp.float32
    kernel_init: Callable[..., Array] = spectral_kernel_init

    def __post_init__(self) -> None:
        for name in ("features", "modes1", "modes2"):
            check_int(getattr(self, name), name)
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if x.ndim != 4:
            raise ValueError(
                f"x must have rank 4 [batch, height, width, channels]; got shape {x.shape}"
            )
        shape = (2, x.shape[-1], self.features, self.modes1, self.modes2, 2)
        kernel = self.param("kernel", self.kernel_init, shape, self.param_dtype)
        return spectral_conv2d(x, _as_complex(kernel), self.modes1, self.modes2)


def grid_coordinates(height: int, width: int, dtype=jnp.float32) -> Array:
    """[height, width, 2]: channel 0 is ``t / (H - 1)`` along H, channel 1 ``u / (W - 1)``
    along W, both in [0, 1] (``linspace(0, 1, n)`` as in the original code)."""
    gx = jnp.linspace(0.0, 1.0, height, dtype=dtype)
    gy = jnp.linspace(0.0, 1.0, width, dtype=dtype)
    return jnp.stack(jnp.meshgrid(gx, gy, indexing="ij"), axis=-1)


_POSITIVE_FIELDS = ("modes1", "modes2", "width", "depth", "out_channels", "projection_features")

gelu = functools.partial(jax.nn.gelu, approximate=False)
"""Exact (erf) GELU, as ``torch.nn.functional.gelu`` in the original code."""


class FNO2d(nn.Module):
    """Fourier Neural Operator, 2-D: ``[batch, H, W, C_in] -> [batch, H, W, out_channels]``.

    ::

        v0 = Dense(width)(concat(x, grid))                 lift (grid if use_grid)
        v0 = pad(v0, bottom/right by `padding`)            optional
        v_{j+1} = act(K_j v_j + W_j v_j),  j < depth - 1   K_j: spectral conv, W_j: 1x1
        v_depth = K v + W v                                no activation after the last
        v = v_depth[:, :H, :W]                              crop the padding
        out = Dense(out_channels)(act(Dense(projection_features)(v)))

    The parameters do not depend on H, W: the same params apply at any resolution with
    ``H + padding >= 2 * modes1`` and ``W + padding >= 2 * modes2 - 2``.

    ``padding`` (grid cells, default 0) zero-pads the lifted field at the high end of H
    and W before the Fourier layers and crops afterwards. The spectral convolution is
    periodic; for non-periodic problems (Darcy with Dirichlet boundary) the padding gives
    the network room to leave the periodic wrap-around outside the domain. The original
    Darcy script uses 9 cells at 85x85. A fixed cell count is a different physical
    fraction at different resolutions; with ``padding=0`` the model is exactly the same
    operator at every resolution.
    """

    modes1: int = 12
    modes2: int = 12
    width: int = 32
    depth: int = 4
    out_channels: int = 1
    use_grid: bool = True
    padding: int = 0
    projection_features: int = 128
    activation: Callable[[Array], Array] = gelu
    param_dtype: jnp.dtype = jnp.float32

    def __post_init__(self) -> None:
        for name in _POSITIVE_FIELDS:
            check_int(getattr(self, name), name)
        check_int(self.padding, "padding", minimum=0)
        if not callable(self.activation):
            raise ValueError(f"activation must be callable, got {self.activation!r}")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: Array) -> Array:
        if x.ndim != 4:
            raise ValueError(
                f"x must have rank 4 [batch, height, width, channels]; got shape {x.shape}"
            )
        batch, h, w, _ = x.shape
        dense = functools.partial(nn.Dense, param_dtype=self.param_dtype)

        if self.use_grid:
            grid = grid_coordinates(h, w, x.dtype)
            x = jnp.concatenate([x, jnp.broadcast_to(grid, (batch, h, w, 2))], axis=-1)
        x = dense(self.width, name="lift")(x)

        p = self.padding
        if p:
            x = jnp.pad(x, ((0, 0), (0, p), (0, p), (0, 0)))
        for j in range(self.depth):
            spectral = SpectralConv2d(
                self.width,
                self.modes1,
                self.modes2,
                param_dtype=self.param_dtype,
                name=f"spectral_{j}",
            )(x)
            pointwise = dense(self.width, name=f"pointwise_{j}")(x)
            x = spectral + pointwise
            if j < self.depth - 1:
                x = self.activation(x)
        if p:
            x = x[:, :h, :w]

        x = dense(self.projection_features, name="project_hidden")(x)
        x = self.activation(x)
        return dense(self.out_channels, name="project_out")(x)


# ---------------------------------------------------------------------------------------
# Configuration
# ---------------------------------------------------------------------------------------

ACTIVATIONS: dict[str, Callable[[Array], Array]] = {
    "gelu": gelu,
    "gelu_tanh": functools.partial(jax.nn.gelu, approximate=True),
    "relu": jax.nn.relu,
    "silu": jax.nn.silu,
}


@dataclasses.dataclass(frozen=True)
class FNOConfig:
    """Hyper-parameters of :class:`FNO2d`; ``make()`` builds the module."""

    modes1: int = 12
    modes2: int = 12
    width: int = 32
    depth: int = 4
    out_channels: int = 1
    use_grid: bool = True
    padding: int = 0
    projection_features: int = 128
    activation: str = "gelu"

    def __post_init__(self) -> None:
        for name in _POSITIVE_FIELDS:
            check_int(getattr(self, name), name)
        check_int(self.padding, "padding", minimum=0)
        check_choice(self.activation, "activation", sorted(ACTIVATIONS))

    def make(self) -> FNO2d:
        return FNO2d(
            modes1=self.modes1,
            modes2=self.modes2,
            width=self.width,
            depth=self.depth,
            out_channels=self.out_channels,
            use_grid=self.use_grid,
            padding=self.padding,
            projection_features=self.projection_features,
            activation=ACTIVATIONS[self.activation],
        )


FNO_PRESETS: dict[str, FNOConfig] = {
    # CPU-sized: runs from 16x16 upwards.
    "darcy-tiny": FNOConfig(modes1=8, modes2=8, width=24, depth=4),
    # The published Darcy setting (85x85, 9 cells of domain padding).
    "darcy-paper": FNOConfig(modes1=12, modes2=12, width=32, depth=4, padding=9),
}
