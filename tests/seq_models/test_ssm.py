"""S4D kernel, bidirectional convolution, recurrence and the gated SSM block."""

import math

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from seq_models.bidirectional_conv import (
    bidirectional_conv,
    bidirectional_conv_chunked,
    bidirectional_conv_direct,
    fft_size,
)
from seq_models.s4d import (
    S4DParams,
    c_init,
    complex_params,
    init_s4d,
    s4d_kernel,
    s4d_kernel_reference,
    ssm_kernel,
    ssm_kernel_reference,
    ssm_recurrence,
)
from seq_models.ssm_block import S4D, SSM_PARAM_NAMES, SSMBlock, ssm_apply

H, N = 3, 16  # channels, state size (8 complex modes)

# Jitted once each: one compilation per shape instead of one per operation.
kernel_fn = jax.jit(s4d_kernel, static_argnums=1, static_argnames="chunk")
conv_fn = jax.jit(bidirectional_conv)
chunked_fn = jax.jit(bidirectional_conv_chunked, static_argnames="chunk")
apply_fn = jax.jit(ssm_apply, static_argnames=("chunk", "kernel_chunk", "channel_groups"))
recurrence_fn = jax.jit(ssm_recurrence)
init_fn = jax.jit(init_s4d, static_argnums=(1, 2), static_argnames="num_kernels")


def rel_err(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.fixture(scope="module")
def initial_params() -> S4DParams:
    return init_fn(jax.random.key(0), H, N, num_kernels=2)


@pytest.fixture(scope="module")
def params(initial_params) -> S4DParams:
    """Bidirectional parameters with perturbed A so no test relies on the init's values."""
    p = initial_params
    noise = np.random.default_rng(1).normal(size=p.im_a.shape).astype(np.float32)
    return p._replace(log_neg_re_a=p.log_neg_re_a + 0.3 * noise, im_a=p.im_a + noise)


@pytest.fixture(scope="module")
def conv_inputs():
    """Random (not decaying) kernels, so every tap at every lag is checked."""
    rng = np.random.default_rng(0)

    def make(length, batch=2, channels=2):
        u = rng.normal(size=(batch, length, channels)).astype(np.float32)
        k_fwd, k_bwd = rng.normal(size=(2, channels, length)).astype(np.float32)
        d = rng.normal(size=channels).astype(np.float32)
        return u, k_fwd, k_bwd, d

    return make


# ----------------------------------------------------------------------------- init


def test_init_is_s4d_lin(initial_params):
    p = initial_params
    n2 = N // 2
    np.testing.assert_allclose(-np.exp(p.log_neg_re_a), -0.5, rtol=1e-6)
    np.testing.assert_allclose(p.im_a, np.broadcast_to(np.pi * np.arange(n2), (H, n2)), rtol=1e-6)
    assert p.c.shape == (2, H, n2, 2) and p.log_dt.shape == (H,) and p.d.shape == (H,)
    assert np.all(p.log_dt >= math.log(1e-3)) and np.all(p.log_dt <= math.log(1e-1))
    # C ~ CN(0, 1): E|C|^2 = 1, real and imaginary parts each of variance 1/2.
    c = np.asarray(c_init(jax.random.key(4), (4096, 2)))
    np.testing.assert_allclose(np.var(c, axis=0), 0.5, rtol=0.1)


# ----------------------------------------------------------------------------- kernel


@pytest.mark.parametrize("chunk", [7, 100])
def test_kernel_matches_explicit_formula(params, chunk):
    kernel = kernel_fn(params, 100, chunk=chunk)
    assert kernel.shape == (2, H, 100) and kernel.dtype == jnp.float32
    assert rel_err(kernel, s4d_kernel_reference(params, 100)) < 2e-6


def test_ssm_kernel_single_kernel_signature(params):
    log_dt, a, c = complex_params(params)
    kernel = jax.jit(ssm_kernel, static_argnums=3)(log_dt, a, c[0], 50)
    assert kernel.shape == (H, 50)
    # Independent check of the formula for one channel, one lag.
    dta = np.exp(float(log_dt[1])) * np.asarray(a[1], np.complex128)
    c_tilde = np.asarray(c[0, 1], np.complex128) * (np.exp(dta) - 1) / np.asarray(a[1])
    expected = 2 * np.sum(c_tilde * np.exp(dta * 17)).real
    np.testing.assert_allclose(kernel[1, 17], expected, rtol=1e-5, atol=1e-7)
    np.testing.assert_allclose(kernel, ssm_kernel_reference(log_dt, a, c[0], 50), atol=1e-6)


def test_kernel_chunked_equals_unchunked(params):
    # 1000 lags in blocks of 16: 63 blocks in 4 steps of 16 (the last block partly used).
    chunked = kernel_fn(params, 1000, chunk=16)
    whole = kernel_fn(params, 1000, chunk=1000)
    assert rel_err(chunked, whole) < 2e-6


def test_kernel_never_forms_the_vandermonde_matrix():
    h, n2, length = 4, 8, 100_000
    args = (jnp.zeros(h), -jnp.ones((h, n2), jnp.complex64), jnp.ones((2, h, n2), jnp.complex64))
    jaxpr = jax.make_jaxpr(lambda *a: ssm_kernel(*a, length, chunk=16))(*args)

    def sizes(jaxpr):  # every intermediate, inside loop bodies and remat too
        for eqn in jaxpr.eqns:
            yield from (math.prod(v.aval.shape) for v in eqn.outvars)
            for sub in eqn.params.values():
                sub = getattr(sub, "jaxpr", sub)  # closed jaxprs
                if hasattr(sub, "eqns"):
                    yield from sizes(sub)

    assert max(sizes(jaxpr.jaxpr)) < h * n2 * length / 2


def test_kernel_is_float32_for_bfloat16_params(params):
    low = jax.tree.map(lambda x: x.astype(jnp.bfloat16), params)
    assert jax.eval_shape(lambda p: s4d_kernel(p, 20), low).dtype == jnp.float32


def test_kernel_errors(params):
    log_dt, a, c = complex_params(params)
    with pytest.raises(ValueError, match="length must be a positive int, got 0"):
        ssm_kernel(log_dt, a, c, 0)
    with pytest.raises(ValueError, match="chunk must be a positive int"):
        ssm_kernel(log_dt, a, c, 10, chunk=0)
    with pytest.raises(ValueError, match=r"a must have shape \[H, N2\]"):
        ssm_kernel(log_dt, a[:2], c, 10)
    with pytest.raises(ValueError, match=r"c must have shape \[..., H, N2\]"):
        ssm_kernel(log_dt, a, c[..., :3], 10)
    with pytest.raises(ValueError, match="state_size must be even"):
        init_s4d(jax.random.key(0), 2, 5)


# ----------------------------------------------------------------------------- convolution


@pytest.mark.parametrize("length", [1, 2, 7, 100, 127, 1000])
def test_fft_conv_equals_direct(conv_inputs, length):
    u, k_fwd, k_bwd, d = conv_inputs(length)
    assert fft_size(length) >= 2 * length
    y = conv_fn(u, k_fwd, k_bwd, d)
    assert y.shape == u.shape and y.dtype == jnp.float32
    assert rel_err(y, bidirectional_conv_direct(u, k_fwd, k_bwd, d)) < 2e-6
    causal = conv_fn(u, k_fwd, None, d)
    assert rel_err(causal, bidirectional_conv_direct(u, k_fwd, None, d)) < 2e-6


def test_direct_conv_is_the_definition(conv_inputs):
    u, k_fwd, k_bwd, d = conv_inputs(5, batch=1, channels=1)
    y = bidirectional_conv_direct(u, k_fwd, k_bwd, d)
    t = 2
    expected = (
        sum(k_fwd[0, t - s] * u[0, s, 0] for s in range(t + 1))
        + sum(k_bwd[0, s - t] * u[0, s, 0] for s in range(t, 5))
        + d[0] * u[0, t, 0]
    )
    np.testing.assert_allclose(y[0, t, 0], expected, rtol=1e-6)


@pytest.mark.parametrize(
    ("length", "chunk", "causal"),
    [(7, 1, False), (100, 7, False), (127, 16, True), (100, 500, False)],
)
def test_chunked_conv_equals_one_fft(conv_inputs, length, chunk, causal):
    u, k_fwd, k_bwd, d = conv_inputs(length)
    if causal:
        k_bwd = None
    one = conv_fn(u, k_fwd, k_bwd, d)
    assert rel_err(chunked_fn(u, k_fwd, k_bwd, d, chunk=chunk), one) < 2e-6


def test_conv_bfloat16_input_accumulates_in_float32(conv_inputs):
    u, k_fwd, k_bwd, d = conv_inputs(127)
    low = jnp.asarray(u, jnp.bfloat16)
    for y in (
        conv_fn(low, k_fwd, k_bwd, d),
        chunked_fn(low, k_fwd, k_bwd, d, chunk=16),
    ):
        assert y.dtype == jnp.bfloat16
        # Only the input and output roundings (~2^-8 each), not L of them.
        exact = bidirectional_conv_direct(np.asarray(low, np.float32), k_fwd, k_bwd, d)
        assert rel_err(y, exact) < 1e-2


def test_conv_errors(conv_inputs):
    u, k_fwd, k_bwd, d = conv_inputs(7)
    with pytest.raises(
        ValueError, match=r"k_bwd must have shape \[H, L\] = \(2, 7\), got \(2, 6\)"
    ):
        bidirectional_conv(u, k_fwd, k_bwd[:, :6], d)
    with pytest.raises(ValueError, match=r"u must have shape \[B, L, H\]"):
        bidirectional_conv(u[0], k_fwd, k_bwd, d)
    with pytest.raises(ValueError, match=r"d must have shape \[H\]"):
        bidirectional_conv_direct(u, k_fwd, k_bwd, d[:1])
    with pytest.raises(ValueError, match="chunk must be a positive int, got 0"):
        bidirectional_conv_chunked(u, k_fwd, k_bwd, d, chunk=0)
    with pytest.raises(ValueError, match="real floating"):
        bidirectional_conv(u.astype(np.int32), k_fwd, k_bwd, d)


# ----------------------------------------------------------------------------- recurrence


@pytest.mark.parametrize("num_kernels", [2, 1])
def test_recurrence_equals_convolution(params, num_kernels):
    p = params._replace(c=params.c[:num_kernels])
    u = jax.random.normal(jax.random.key(5), (2, 100, H))
    log_dt, a, c = complex_params(p)
    recurrent = recurrence_fn(u, log_dt, a, c, p.d)
    y = apply_fn(p, u)
    assert rel_err(y, recurrent) < 5e-6
    if num_kernels == 1:  # causal: the future does not reach the past
        y_future = apply_fn(p, u.at[:, 60:].add(3.0))
        np.testing.assert_allclose(y_future[:, :60], y[:, :60], atol=1e-6)
        assert not np.allclose(y_future[:, 60:], y[:, 60:])


@pytest.mark.parametrize(("groups", "chunk"), [(3, None), (3, 16)])
def test_channel_groups_equal_all_channels(params, groups, chunk):
    u = jax.random.normal(jax.random.key(6), (2, 37, H))
    whole = apply_fn(params, u, chunk=chunk)
    assert rel_err(apply_fn(params, u, chunk=chunk, channel_groups=groups), whole) < 2e-6
    causal = params._replace(c=params.c[:1])
    assert rel_err(apply_fn(causal, u, channel_groups=groups), apply_fn(causal, u)) < 2e-6
    with pytest.raises(ValueError, match=f"channel_groups must divide H = {H}, got 2"):
        ssm_apply(params, u, channel_groups=2)


# ----------------------------------------------------------------------------- block

D_MODEL, STATE, LENGTH = 8, 8, 24


@pytest.fixture(scope="module")
def block_and_variables():
    """The block, its variables and its jitted apply on ``[2, LENGTH, D_MODEL]`` with a mask."""
    block = SSMBlock(D_MODEL, STATE)
    x = jnp.zeros((2, LENGTH, D_MODEL))
    return block, jax.jit(block.init)(jax.random.key(6), x), jax.jit(block.apply)


@pytest.fixture(scope="module")
def block_input():
    x = jax.random.normal(jax.random.key(7), (2, LENGTH, D_MODEL))
    return x, np.arange(LENGTH) < np.array([[LENGTH], [13]])


def test_block_parameter_names(block_and_variables):
    _, variables, apply = block_and_variables
    shapes = jax.tree.map(jnp.shape, variables["params"])
    n2 = STATE // 2
    assert shapes["ssm"] == {
        "log_neg_re_a": (D_MODEL, n2),
        "im_a": (D_MODEL, n2),
        "c": (2, D_MODEL, n2, 2),
        "log_dt": (D_MODEL,),
        "d": (D_MODEL,),
    }
    assert set(shapes["ssm"]) == set(SSM_PARAM_NAMES)
    assert set(shapes) == {"k_proj", "q_proj", "ssm", "out_proj"}
    causal = jax.eval_shape(
        SSMBlock(D_MODEL, STATE, bidirectional=False).init,
        jax.random.key(0),
        jnp.zeros((1, 5, D_MODEL)),
    )
    assert causal["params"]["ssm"]["c"].shape == (1, D_MODEL, n2, 2)


def test_block_padding_invariance(block_and_variables, block_input):
    _, variables, apply = block_and_variables
    x, mask = block_input
    lengths = mask.sum(axis=1)
    y = apply(variables, x, mask)
    # Other values at the padding, including NaN.
    noisy = jnp.where(mask[..., None], x, 1e3 * jax.random.normal(jax.random.key(8), x.shape))
    noisy = noisy.at[1, -1].set(jnp.nan)
    y_noisy = apply(variables, noisy, mask)
    # More trailing padding.
    longer = jnp.pad(x, ((0, 0), (0, 9), (0, 0)), constant_values=5.0)
    y_longer = apply(variables, longer, np.arange(LENGTH + 9) < lengths[:, None])
    for b, n in enumerate(lengths):
        assert np.all(np.isfinite(y_noisy[b, :n]))
        np.testing.assert_allclose(y_noisy[b, :n], y[b, :n], atol=1e-5)
        np.testing.assert_allclose(y_longer[b, :n], y[b, :n], atol=1e-5)
    # The real positions do see each other in both directions.
    x2 = x.at[1, 0].add(1.0)
    assert not np.allclose(apply(variables, x2, mask)[1, 12], y[1, 12])


def test_block_chunked_equals_one_fft(block_and_variables, block_input):
    _, variables, apply = block_and_variables
    x, mask = block_input
    chunked = SSMBlock(D_MODEL, STATE, chunk=5, kernel_chunk=4)
    assert rel_err(jax.jit(chunked.apply)(variables, x, mask), apply(variables, x, mask)) < 1e-5


def test_block_bfloat16_close_to_float32(block_and_variables, block_input):
    _, variables, apply = block_and_variables
    x, mask = block_input
    y32 = apply(variables, x, mask)
    y16 = jax.jit(SSMBlock(D_MODEL, STATE, dtype=jnp.bfloat16).apply)(
        variables, x.astype(jnp.bfloat16), mask
    )
    assert y16.dtype == jnp.bfloat16
    assert np.all(np.isfinite(np.asarray(y16, np.float32)))
    assert rel_err(y16, y32) < 2e-2


def test_block_gradients_match_finite_differences(block_and_variables, block_input):
    block, variables, _ = block_and_variables
    x, mask = block_input
    weights = jax.random.normal(jax.random.key(15), x.shape)

    @jax.jit
    def loss(variables, x):
        return jnp.sum(weights * block.apply(variables, x, mask))

    # Float32 central differences along a random direction of every parameter and input.
    with jax.default_matmul_precision("float32"):
        check_grads(loss, (variables, x), order=1, modes=("rev",), eps=1e-2, atol=2e-2, rtol=2e-2)


def test_block_errors():
    with pytest.raises(ValueError, match="d_model must be a positive int, got 0"):
        SSMBlock(0, 8)
    with pytest.raises(ValueError, match="state_size must be an even int >= 2 .*got 7"):
        SSMBlock(4, 7)
    with pytest.raises(ValueError, match="chunk must be None or a positive int, got 0"):
        SSMBlock(4, 8, chunk=0)
    with pytest.raises(ValueError, match="bidirectional must be a bool, got 'yes'"):
        SSMBlock(4, 8, bidirectional="yes")
    with pytest.raises(ValueError, match="dt_min must be <= dt_max"):
        SSMBlock(4, 8, dt_min=0.5, dt_max=0.1)
    with pytest.raises(ValueError, match="features must be a positive int"):
        S4D(-1, 8)
    block = SSMBlock(4, 8)
    with pytest.raises(ValueError, match=r"x must have shape \[B, L, d_model\] with d_model = 4"):
        block.init(jax.random.key(0), jnp.zeros((1, 5, 3)))
    with pytest.raises(ValueError, match=r"mask must have shape \[B, L\] = \(1, 5\)"):
        block.init(jax.random.key(0), jnp.zeros((1, 5, 4)), jnp.ones((1, 4), bool))
