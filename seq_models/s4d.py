"""S4D-Lin: a diagonal state-space model, its convolution kernel and its recurrence.

One SSM per channel ``h`` with ``N2 = N / 2`` complex modes (the conjugate half is
implied by taking twice the real part). Continuous parameters per channel:

    A_n = -exp(log_neg_re_a_n) + i im_a_n      (S4D-Lin init: -1/2 + i pi n, n = 0..N2-1)
    c_n = B_n C_n                              (B = 1 at init, folded into C; C ~ CN(0, 1))
    dt  = exp(log_dt)                          (log dt ~ U[log dt_min, log dt_max])

Storing ``log(-Re A)`` keeps ``Re A < 0`` (a stable, decaying kernel) whatever the update.
Zero-order-hold discretisation with step ``dt``:

    A_bar = exp(dt A),   B_bar = (exp(dt A) - 1) / A      (B folded into c)

Recurrence (``u_t`` real, ``x_t`` complex, ``x_{-1} = 0``):

    x_t = A_bar x_{t-1} + B_bar u_t,       y_t = 2 Re sum_n c_n x_{t,n}

Unrolled, ``y_t = sum_{s<=t} K[t-s] u_s`` with the convolution kernel

    C~_n = c_n (exp(dt A_n) - 1) / A_n,    K[l] = 2 Re sum_n C~_n exp(dt A_n l)

a Vandermonde product. :func:`ssm_kernel` evaluates it in blocks of ``chunk`` lags,
so the ``[H, N2, L]`` Vandermonde matrix is never formed; :func:`ssm_kernel_reference`
forms it in float64 (small ``L`` only) and :func:`ssm_recurrence` runs the recurrence
step by step. A bidirectional layer has two ``c`` (forward and backward kernels) that
share ``A`` and ``dt``.

Parameters live in :class:`S4DParams` as real arrays (``c`` as ``[..., 2]`` real and
imaginary parts), the same names as the ``ssm`` submodule of
:class:`seq_models.ssm_block.SSMBlock`.
"""

from __future__ import annotations

import math
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

DT_MIN = 1e-3
DT_MAX = 1e-1
KERNEL_CHUNK = 128


class S4DParams(NamedTuple):
    """The parameters of ``H`` diagonal SSMs with ``N2`` complex modes and ``K`` kernels.

    Attributes:
      log_neg_re_a: ``[H, N2]``, ``log(-Re A)``.
      im_a: ``[H, N2]``, ``Im A``.
      c: ``[K, H, N2, 2]``, real and imaginary parts of ``c = B C``, one per kernel
        (``K = 2``: forward then backward; ``K = 1``: causal).
      log_dt: ``[H]``, log step size.
      d: ``[H]``, skip connection ``D``.
    """

    log_neg_re_a: jax.Array
    im_a: jax.Array
    c: jax.Array
    log_dt: jax.Array
    d: jax.Array


# ----------------------------------------------------------------------------- checks


def _check_int(value: Any, name: str, *, minimum: int = 1) -> int:
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not is_int or value < minimum:
        what = "a positive int" if minimum == 1 else f"an int >= {minimum}"
        raise ValueError(f"{name} must be {what}, got {value!r}")
    return int(value)


def _check_shape(x: Any, name: str, expected: tuple[int, ...], what: str) -> None:
    if tuple(np.shape(x)) != tuple(expected):
        raise ValueError(f"{name} must have shape {what} = {expected}, got {np.shape(x)}")


def _check_dt_range(dt_min: Any, dt_max: Any) -> None:
    for value, name in ((dt_min, "dt_min"), (dt_max, "dt_max")):
        real = isinstance(value, int | float | np.integer | np.floating)
        if not real or isinstance(value, bool) or not 0 < value < np.inf:
            raise ValueError(f"{name} must be a finite number > 0, got {value!r}")
    if dt_min > dt_max:
        raise ValueError(f"dt_min must be <= dt_max = {dt_max!r}, got {dt_min!r}")


def _check_kernel_args(log_dt: Any, a: Any, c: Any) -> tuple[int, int]:
    """Shapes of ``log_dt: [H]``, ``a: [H, N2]``, ``c: [..., H, N2]``; returns ``(H, N2)``."""
    if np.ndim(log_dt) != 1:
        raise ValueError(f"log_dt must have shape [H], got {np.shape(log_dt)}")
    h = np.shape(log_dt)[0]
    if np.ndim(a) != 2 or np.shape(a)[0] != h:
        raise ValueError(f"a must have shape [H, N2] with H = {h}, got {np.shape(a)}")
    n2 = np.shape(a)[1]
    if np.ndim(c) < 2 or tuple(np.shape(c)[-2:]) != (h, n2):
        raise ValueError(f"c must have shape [..., H, N2] = [..., {h}, {n2}], got {np.shape(c)}")
    return h, n2


def _check_params(params: S4DParams) -> tuple[int, int, int]:
    """Consistent shapes of an :class:`S4DParams`; returns ``(K, H, N2)``."""
    if not isinstance(params, S4DParams):
        raise ValueError(f"params must be an S4DParams, got {type(params).__name__}")
    if np.ndim(params.log_neg_re_a) != 2:
        raise ValueError(
            f"log_neg_re_a must have shape [H, N2], got {np.shape(params.log_neg_re_a)}"
        )
    h, n2 = np.shape(params.log_neg_re_a)
    _check_shape(params.im_a, "im_a", (h, n2), "[H, N2]")
    _check_shape(params.log_dt, "log_dt", (h,), "[H]")
    _check_shape(params.d, "d", (h,), "[H]")
    if np.ndim(params.c) != 4 or tuple(np.shape(params.c)[1:]) != (h, n2, 2):
        raise ValueError(
            f"c must have shape [K, H, N2, 2] = [K, {h}, {n2}, 2], got {np.shape(params.c)}"
        )
    return np.shape(params.c)[0], h, n2


# ----------------------------------------------------------------------------- init


def log_neg_re_a_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    """``log(-Re A) = log(1/2)`` everywhere (S4D-Lin); ``shape = [H, N2]``. ``key`` unused."""
    del key
    return jnp.full(shape, math.log(0.5), dtype)


def im_a_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    """``Im A_n = pi n`` for ``n = 0..N2-1`` along the last axis (S4D-Lin). ``key`` unused."""
    del key
    return jnp.broadcast_to(jnp.pi * jnp.arange(shape[-1], dtype=dtype), shape)


def c_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    """``C ~ CN(0, 1)`` (``E|C|^2 = 1``) as ``[..., 2]`` real and imaginary parts."""
    if shape[-1] != 2:
        raise ValueError(f"shape must end in 2 (real, imaginary), got {shape}")
    return jax.random.normal(key, shape, dtype) * math.sqrt(0.5)


def log_dt_init(dt_min: float = DT_MIN, dt_max: float = DT_MAX):
    """An initializer drawing ``log dt ~ U[log dt_min, log dt_max]`` (per channel)."""
    _check_dt_range(dt_min, dt_max)

    def init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
        return jax.random.uniform(key, shape, dtype, math.log(dt_min), math.log(dt_max))

    return init


def d_init(key: jax.Array, shape: tuple[int, ...], dtype: Any = jnp.float32):
    """``D ~ N(0, 1)``."""
    return jax.random.normal(key, shape, dtype)


def init_s4d(
    key: jax.Array,
    features: int,
    state_size: int,
    *,
    num_kernels: int = 2,
    dt_min: float = DT_MIN,
    dt_max: float = DT_MAX,
    dtype: Any = jnp.float32,
) -> S4DParams:
    """S4D-Lin parameters for ``features`` channels (H) of state size ``N`` (N/2 complex modes).

    ``num_kernels``: 2 for a bidirectional layer (forward and backward ``c``), 1 for causal.
    """
    h = _check_int(features, "features")
    n = _check_int(state_size, "state_size", minimum=2)
    if n % 2:
        raise ValueError(f"state_size must be even (N/2 complex modes), got {state_size!r}")
    k = _check_int(num_kernels, "num_kernels")
    keys = jax.random.split(key, 3)
    return S4DParams(
        log_neg_re_a=log_neg_re_a_init(None, (h, n // 2), dtype),
        im_a=im_a_init(None, (h, n // 2), dtype),
        c=c_init(keys[0], (k, h, n // 2, 2), dtype),
        log_dt=log_dt_init(dt_min, dt_max)(keys[1], (h,), dtype),
        d=d_init(keys[2], (h,), dtype),
    )


def complex_params(params: S4DParams) -> tuple[jax.Array, jax.Array, jax.Array]:
    """``(log_dt [H], a [H, N2], c [K, H, N2])`` in float32 / complex64 from the stored form."""
    _check_params(params)
    a = jax.lax.complex(
        -jnp.exp(jnp.asarray(params.log_neg_re_a, jnp.float32)),
        jnp.asarray(params.im_a, jnp.float32),
    )
    c = jnp.asarray(params.c, jnp.float32)
    return jnp.asarray(params.log_dt, jnp.float32), a, jax.lax.complex(c[..., 0], c[..., 1])


# ----------------------------------------------------------------------------- kernel


def _discretize(log_dt: jax.Array, a: jax.Array, c: jax.Array) -> tuple[jax.Array, jax.Array]:
    """``dt A [H, N2]`` and ``C~ = c (exp(dt A) - 1) / A [..., H, N2]`` (complex64)."""
    dta = jnp.exp(jnp.asarray(log_dt, jnp.float32))[:, None] * jnp.asarray(a, jnp.complex64)
    # expm1: exp(dt A) - 1 would lose about 4 of float32's 7 digits when |dt A| ~ 1e-4.
    c_tilde = jnp.asarray(c, jnp.complex64) * (jnp.expm1(dta) / jnp.asarray(a, jnp.complex64))
    return dta, c_tilde


def ssm_kernel(
    log_dt: jax.Array, a: jax.Array, c: jax.Array, length: int, *, chunk: int = KERNEL_CHUNK
) -> jax.Array:
    """The S4D convolution kernel ``K[..., h, l] = 2 Re sum_n C~[..., h, n] exp(dt_h a_hn l)``.

    Args:
      log_dt: ``[H]`` log step sizes.
      a: ``[H, N2]`` complex state matrix diagonal (``Re a < 0``).
      c: ``[..., H, N2]`` complex output vectors (B folded in); leading axes are kernels.
      length: number of lags ``L``.
      chunk: block length ``m``. Lag ``l = j m + i`` factors as
        ``exp(dt a l) = exp(dt a j m) exp(dt a i)``: a fixed ``[H, N2, m]`` block of powers
        times per-block coefficients, so the kernel is a matrix product over the modes.
        Only the real part is needed, ``Re(x z) = Re x Re z - Im x Im z``, so it is one
        real product contracting ``2 N2``. Each step of the loop evaluates up to ``m``
        blocks (``m^2`` lags), so the working memory is ``O(K H N2 m + K H m^2)`` whatever
        ``L``, also under ``grad`` (the step is rematerialised); ``chunk >= L`` evaluates
        everything at once (``O(K H N2 L)``). Work ``4 K H N2 L`` multiply-adds.

    Returns:
      ``[..., H, L]`` float32 (computed in complex64 whatever the input dtype).
    """
    h, n2 = _check_kernel_args(log_dt, a, c)
    length = _check_int(length, "length")
    chunk = _check_int(chunk, "chunk")
    lead = np.shape(c)[:-2]
    dta, c_tilde = _discretize(log_dt, a, c)
    c_tilde = c_tilde.reshape((-1, h, n2))  # [K, H, N2]
    num_kernels = c_tilde.shape[0]
    m = min(chunk, length)
    num_blocks = -(-length // m)
    num_steps = -(-num_blocks // m)
    per_step = -(-num_blocks // num_steps)  # G <= m blocks per step, little padding
    # Powers within one block, shared by every block, as [Re; Im]: [H, 2 N2, m].
    base = jnp.exp(dta[..., None] * jnp.arange(m, dtype=jnp.float32))
    base = jnp.concatenate([base.real, base.imag], axis=1)
    c_tilde = jnp.moveaxis(c_tilde, 0, 1)[:, :, None, :]  # [H, K, 1, N2]
    starts = jnp.arange(num_steps * per_step, dtype=jnp.float32) * m

    @jax.checkpoint
    def step(first_lags: jax.Array) -> jax.Array:  # [G] -> [H, K G, m]
        coef = c_tilde * jnp.exp(dta[:, None, None, :] * first_lags[:, None])  # [H, K, G, N2]
        coef = jnp.concatenate([coef.real, -coef.imag], axis=-1)
        coef = coef.reshape(h, num_kernels * per_step, 2 * n2)
        # Full float32 products also where float32 matmuls default to lower precision.
        return 2.0 * jnp.einsum("hgn,hnm->hgm", coef, base, precision=jax.lax.Precision.HIGHEST)

    out = jax.lax.map(step, starts.reshape(num_steps, per_step))  # [S, H, K G, m]
    out = out.reshape(num_steps, h, num_kernels, per_step * m)
    out = jnp.transpose(out, (2, 1, 0, 3)).reshape(num_kernels, h, -1)[..., :length]
    return out.reshape(lead + (h, length))


def ssm_kernel_reference(log_dt: Any, a: Any, c: Any, length: int) -> np.ndarray:
    """:func:`ssm_kernel` in float64 NumPy from the explicit ``[H, N2, L]`` Vandermonde matrix.

    Small ``L`` only. Returns ``[..., H, L]`` float64.
    """
    _check_kernel_args(log_dt, a, c)
    length = _check_int(length, "length")
    dt = np.exp(np.asarray(log_dt, np.float64))
    a = np.asarray(a, np.complex128)
    c = np.asarray(c, np.complex128)
    dta = dt[:, None] * a
    c_tilde = c * (np.exp(dta) - 1.0) / a
    vandermonde = np.exp(dta[..., None] * np.arange(length))  # [H, N2, L]
    return 2.0 * np.einsum("...hn,hnl->...hl", c_tilde, vandermonde).real


def s4d_kernel(params: S4DParams, length: int, *, chunk: int = KERNEL_CHUNK) -> jax.Array:
    """The kernels of :class:`S4DParams`: ``[K, H, L]`` float32 (see :func:`ssm_kernel`)."""
    log_dt, a, c = complex_params(params)
    return ssm_kernel(log_dt, a, c, length, chunk=chunk)


def s4d_kernel_reference(params: S4DParams, length: int) -> np.ndarray:
    """:func:`s4d_kernel` in float64 NumPy: ``[K, H, L]``."""
    _check_params(params)
    c = np.asarray(params.c, np.float64)
    a = -np.exp(np.asarray(params.log_neg_re_a, np.float64)) + 1j * np.asarray(
        params.im_a, np.float64
    )
    return ssm_kernel_reference(params.log_dt, a, c[..., 0] + 1j * c[..., 1], length)


# ----------------------------------------------------------------------------- recurrence


def ssm_recurrence(
    u: jax.Array, log_dt: jax.Array, a: jax.Array, c: jax.Array, d: jax.Array
) -> jax.Array:
    """The SSM run step by step: the slow reference for kernel + convolution.

    ``x_t = exp(dt a) x_{t-1} + (exp(dt a) - 1) / a u_t``, ``y_t = 2 Re sum_n c_n x_t``,
    forward in time with ``c[0]`` and, when ``c`` has two kernels, backward in time (the
    reversed sequence) with ``c[1]``; plus ``d u_t``. Both directions include lag 0, as in
    :func:`seq_models.bidirectional_conv.bidirectional_conv`.

    Args:
      u: ``[B, L, H]`` real input.
      log_dt: ``[H]``; a: ``[H, N2]`` complex; c: ``[K, H, N2]`` complex, ``K`` in {1, 2};
      d: ``[H]``.

    Returns:
      ``[B, L, H]`` in ``u``'s dtype (state in complex64, or complex128 for float64 input).
    """
    h, _ = _check_kernel_args(log_dt, a, c)
    if np.ndim(u) != 3 or np.shape(u)[-1] != h:
        raise ValueError(f"u must have shape [B, L, H] with H = {h}, got {np.shape(u)}")
    if np.ndim(c) != 3 or np.shape(c)[0] not in (1, 2):
        raise ValueError(f"c must have shape [K, H, N2] with K in (1, 2), got {np.shape(c)}")
    _check_shape(d, "d", (h,), "[H]")
    u = jnp.asarray(u)
    real = jnp.promote_types(u.dtype, jnp.float32)
    cplx = jnp.promote_types(real, jnp.complex64)
    a = jnp.asarray(a, cplx)
    dta = jnp.exp(jnp.asarray(log_dt, real))[:, None] * a
    a_bar, b_bar = jnp.exp(dta), jnp.expm1(dta) / a  # [H, N2]
    us = jnp.moveaxis(u.astype(real), 1, 0)  # [L, B, H]

    def run(c_k: jax.Array, reverse: bool) -> jax.Array:
        def step(x, u_t):  # x: [B, H, N2]
            x = a_bar * x + b_bar * u_t[..., None]
            return x, 2.0 * jnp.sum(c_k * x, axis=-1).real

        x0 = jnp.zeros(us.shape[1:] + a.shape[-1:], cplx)
        return jax.lax.scan(step, x0, us, reverse=reverse)[1]

    c = jnp.asarray(c, cplx)
    y = run(c[0], False) + jnp.asarray(d, real) * us
    if c.shape[0] == 2:
        y = y + run(c[1], True)
    return jnp.moveaxis(y, 0, 1).astype(u.dtype)
