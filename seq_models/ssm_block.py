"""The gated bidirectional SSM block of the LOCOST encoder.

On normalised ``x: [B, L, H]`` (one SSM per channel):

    k = W_k x + b_k            (zero at padding positions)
    q = W_q x + b_q            (gate)
    y = W_o (q * (Kf *> k + Kb <* k + D k)) + b_o

where ``Kf *> k`` is the causal and ``Kb <* k`` the anti-causal convolution along the
sequence with the S4D-Lin kernels of :mod:`seq_models.s4d` (two ``c``, shared ``A`` and
``dt``). Zeroing ``k`` at padding means padding never reaches a real position, whatever
its values or amount; outputs at padding positions are not meaningful.

Parameter tree of :class:`SSMBlock` (``H = d_model``, ``N2 = state_size / 2``,
``K = 2`` if bidirectional else 1)::

    k_proj/kernel [H, H], k_proj/bias [H]
    q_proj/kernel [H, H], q_proj/bias [H]
    ssm/log_neg_re_a [H, N2], ssm/im_a [H, N2], ssm/c [K, H, N2, 2], ssm/log_dt [H], ssm/d [H]
    out_proj/kernel [H, H], out_proj/bias [H]

Every SSM parameter is under the ``ssm`` submodule (:data:`SSM_PARAM_NAMES`): the ones
to keep out of weight decay.

Precision: parameters in ``param_dtype`` (float32); the projections run in ``dtype``
(bfloat16 allowed); the kernel, the FFT convolution and the gating product run in float32.
"""

from __future__ import annotations

from typing import Any

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np

from seq_models.bidirectional_conv import bidirectional_conv, bidirectional_conv_chunked
from seq_models.s4d import (
    DT_MAX,
    DT_MIN,
    KERNEL_CHUNK,
    S4DParams,
    _check_dt_range,
    _check_int,
    _check_params,
    c_init,
    d_init,
    im_a_init,
    log_dt_init,
    log_neg_re_a_init,
    s4d_kernel,
)

SSM_SUBMODULE = "ssm"
SSM_PARAM_NAMES = ("log_neg_re_a", "im_a", "c", "log_dt", "d")


def _check_optional_int(value: Any, name: str) -> int | None:
    if value is None:
        return None
    is_int = isinstance(value, int | np.integer) and not isinstance(value, bool | np.bool_)
    if not is_int or value < 1:
        raise ValueError(f"{name} must be None or a positive int, got {value!r}")
    return int(value)


def _check_bool(value: Any, name: str) -> None:
    if not isinstance(value, bool | np.bool_):
        raise ValueError(f"{name} must be a bool, got {value!r}")


def _check_state_size(value: Any) -> None:
    _check_int(value, "state_size", minimum=2)
    if value % 2:
        raise ValueError(f"state_size must be an even int >= 2 (N/2 complex modes), got {value!r}")


def _check_ssm_fields(module: Any, width: str) -> None:
    """The size fields shared by ``S4D`` and ``SSMBlock`` (``width`` names the channels)."""
    _check_int(getattr(module, width), width)
    _check_state_size(module.state_size)
    _check_bool(module.bidirectional, "bidirectional")
    _check_optional_int(module.chunk, "chunk")
    _check_int(module.kernel_chunk, "kernel_chunk")
    _check_dt_range(module.dt_min, module.dt_max)


def ssm_apply(
    params: S4DParams,
    u: jax.Array,
    *,
    chunk: int | None = None,
    kernel_chunk: int = KERNEL_CHUNK,
    channel_groups: int = 1,
) -> jax.Array:
    """The S4D layer as a convolution: ``y = Kf *> u + Kb <* u + D u``.

    Args:
      params: :class:`S4DParams` with ``K = 2`` (bidirectional) or ``K = 1`` (causal)
        kernels.
      u: ``[B, L, H]``.
      chunk: ``None`` for one FFT of size ``>= 2L``; an int for the blockwise (overlap-add)
        convolution with blocks of ``chunk`` positions.
      kernel_chunk: block length of the kernel evaluation (:func:`seq_models.s4d.ssm_kernel`).
      channel_groups: ``G`` dividing ``H``: the kernels and the convolution are computed for
        ``H / G`` channels at a time (``lax.map``; each channel's SSM is independent), so
        the ``[K, H, L]`` kernels and ``[B, ~L, H]`` spectra are never all in memory: the
        convolution's working memory drops by about ``G`` for the same result.

    Returns:
      ``[B, L, H]`` in ``u``'s dtype (computed in float32).
    """
    num_kernels, h, _ = _check_params(params)
    if num_kernels not in (1, 2):
        raise ValueError(f"params.c must hold 1 or 2 kernels, got {num_kernels}")
    if np.ndim(u) != 3 or np.shape(u)[-1] != h:
        raise ValueError(f"u must have shape [B, L, H] with H = {h}, got {np.shape(u)}")
    chunk = _check_optional_int(chunk, "chunk")
    groups = _check_int(channel_groups, "channel_groups")
    if h % groups:
        raise ValueError(f"channel_groups must divide H = {h}, got {groups}")
    if groups > 1:
        width = h // groups

        def group_params(a: jax.Array, axis: int) -> jax.Array:  # channels on `axis` -> [G, ...]
            a = jnp.moveaxis(jnp.asarray(a), axis, 0)
            return a.reshape(groups, width, *a.shape[1:])

        grouped = S4DParams(
            log_neg_re_a=group_params(params.log_neg_re_a, 0),
            im_a=group_params(params.im_a, 0),
            c=jnp.moveaxis(group_params(params.c, 1), 1, 2),  # [G, K, H/G, N2, 2]
            log_dt=group_params(params.log_dt, 0),
            d=group_params(params.d, 0),
        )
        b, length, _ = np.shape(u)
        u_groups = jnp.moveaxis(jnp.reshape(u, (b, length, groups, width)), 2, 0)

        def one_group(args: tuple[S4DParams, jax.Array]) -> jax.Array:
            return ssm_apply(args[0], args[1], chunk=chunk, kernel_chunk=kernel_chunk)

        y = jax.lax.map(one_group, (grouped, u_groups))  # [G, B, L, H/G]
        return jnp.moveaxis(y, 0, 2).reshape(b, length, h)
    kernels = s4d_kernel(params, np.shape(u)[1], chunk=kernel_chunk)  # [K, H, L] float32
    k_bwd = kernels[1] if num_kernels == 2 else None
    d = jnp.asarray(params.d, jnp.float32)
    if chunk is None:
        return bidirectional_conv(u, kernels[0], k_bwd, d)
    return bidirectional_conv_chunked(u, kernels[0], k_bwd, d, chunk=chunk)


class S4D(nn.Module):
    """S4D-Lin layer owning :class:`S4DParams`: ``[B, L, features] -> [B, L, features]``.

    Attributes:
      features: channels ``H``.
      state_size: ``N`` (even); ``N / 2`` complex modes per channel.
      bidirectional: two kernels (forward and backward) if True, one causal kernel if False.
      chunk: ``None`` (one FFT) or the block length of the overlap-add convolution.
      kernel_chunk: block length of the kernel evaluation.
      dt_min, dt_max: range of the log-uniform step-size initialisation.
      param_dtype: parameter dtype.
    """

    features: int
    state_size: int
    bidirectional: bool = True
    chunk: int | None = None
    kernel_chunk: int = KERNEL_CHUNK
    dt_min: float = DT_MIN
    dt_max: float = DT_MAX
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check_ssm_fields(self, "features")
        super().__post_init__()

    @nn.compact
    def __call__(self, u: jax.Array) -> jax.Array:
        """``u: [B, L, features]`` -> ``[B, L, features]`` in ``u``'s dtype."""
        if np.ndim(u) != 3 or np.shape(u)[-1] != self.features:
            raise ValueError(
                f"u must have shape [B, L, features] with features = {self.features}, "
                f"got {np.shape(u)}"
            )
        h, n2, dt = self.features, self.state_size // 2, self.param_dtype
        params = S4DParams(
            log_neg_re_a=self.param("log_neg_re_a", log_neg_re_a_init, (h, n2), dt),
            im_a=self.param("im_a", im_a_init, (h, n2), dt),
            c=self.param("c", c_init, (2 if self.bidirectional else 1, h, n2, 2), dt),
            log_dt=self.param("log_dt", log_dt_init(self.dt_min, self.dt_max), (h,), dt),
            d=self.param("d", d_init, (h,), dt),
        )
        return ssm_apply(params, u, chunk=self.chunk, kernel_chunk=self.kernel_chunk)


class SSMBlock(nn.Module):
    """Gated bidirectional SSM block: ``[B, L, d_model] -> [B, L, d_model]``.

    Attributes:
      d_model: channels ``H``.
      state_size: ``N`` (even); ``N / 2`` complex modes per channel.
      bidirectional: forward and backward kernels if True, causal if False.
      chunk: ``None`` for one FFT per call; an int for the overlap-add convolution in
        blocks of ``chunk`` positions (long inputs).
      kernel_chunk: block length of the kernel evaluation (memory ``O(H N kernel_chunk)``).
      dt_min, dt_max: range of the log-uniform step-size initialisation.
      dtype: activation dtype of the projections (float32 or bfloat16).
      param_dtype: parameter dtype.
    """

    d_model: int
    state_size: int
    bidirectional: bool = True
    chunk: int | None = None
    kernel_chunk: int = KERNEL_CHUNK
    dt_min: float = DT_MIN
    dt_max: float = DT_MAX
    dtype: Any = jnp.float32
    param_dtype: Any = jnp.float32

    def __post_init__(self) -> None:
        _check_ssm_fields(self, "d_model")
        super().__post_init__()

    @nn.compact
    def __call__(self, x: jax.Array, mask: jax.Array | None = None) -> jax.Array:
        """``x: [B, L, d_model]``, ``mask: [B, L]`` (True at real tokens) or None.

        Returns ``[B, L, d_model]`` in ``dtype``.
        """
        if np.ndim(x) != 3 or np.shape(x)[-1] != self.d_model:
            raise ValueError(
                f"x must have shape [B, L, d_model] with d_model = {self.d_model}, "
                f"got {np.shape(x)}"
            )
        if mask is not None and tuple(np.shape(mask)) != tuple(np.shape(x)[:2]):
            raise ValueError(
                f"mask must have shape [B, L] = {np.shape(x)[:2]}, got {np.shape(mask)}"
            )

        def dense(name: str) -> nn.Dense:
            return nn.Dense(self.d_model, dtype=self.dtype, param_dtype=self.param_dtype, name=name)

        k = dense("k_proj")(x)
        if mask is not None:
            # where, not a product: non-finite padding values must not leak either.
            k = jnp.where(jnp.asarray(mask, bool)[..., None], k, jnp.zeros((), k.dtype))
        q = dense("q_proj")(x)
        ssm = S4D(
            self.d_model,
            self.state_size,
            bidirectional=self.bidirectional,
            chunk=self.chunk,
            kernel_chunk=self.kernel_chunk,
            dt_min=self.dt_min,
            dt_max=self.dt_max,
            param_dtype=self.param_dtype,
            name=SSM_SUBMODULE,
        )
        y = ssm(k.astype(jnp.float32))  # [B, L, H] float32
        y = (q.astype(jnp.float32) * y).astype(self.dtype)
        return dense("out_proj")(y)
