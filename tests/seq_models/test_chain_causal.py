"""Chain-and-causal attention: both forms, blocked solve, decode step, module."""

import flax.linen as nn
import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax.test_util import check_grads

from seq_models import ChainCausalAttention, chain_causal_attention
from seq_models.chain_causal import (
    MAX_GAMMA,
    causal_attention,
    chain_causal_decode_step,
    chain_causal_reference,
    init_chain_causal_cache,
    segment_mask,
)

B, T, H, D = 2, 7, 3, 4
GAMMA = np.array([0.0, 0.5, 0.9], np.float32)  # one per head

attend = jax.jit(chain_causal_attention, static_argnames=("strict", "block_size"))


def qkv(seed=0, length=T, dtype=jnp.float32):
    keys = jax.random.split(jax.random.key(seed), 3)
    return tuple(jax.random.normal(key, (B, length, H, D), dtype) for key in keys)


def flax_causal_weights(q, k):
    """Flax's own attention weights, ``[B, H, T, T]``: an independent reference."""
    return np.asarray(
        nn.dot_product_attention_weights(q, k, mask=nn.make_causal_mask(q[..., 0, 0])), np.float64
    )


def test_gamma_zero_is_standard_causal_attention():
    q, k, v = qkv()
    expected = nn.dot_product_attention(q, k, v, mask=nn.make_causal_mask(q[..., 0, 0]))
    for strict in (True, False):
        np.testing.assert_allclose(attend(q, k, v, 0.0, strict=strict), expected, atol=1e-5)
    np.testing.assert_allclose(causal_attention(q, k, v), expected, atol=1e-5)


@pytest.mark.parametrize("strict", [True, False])
def test_both_forms_match_the_explicit_inverse(strict):
    q, k, v = qkv()
    for gamma in (GAMMA, 0.7):
        got = attend(q, k, v, gamma, strict=strict)
        expected = chain_causal_reference(q, k, v, gamma, strict=strict)
        np.testing.assert_allclose(got, expected, atol=2e-5)


def test_full_form_is_the_fixed_point_limit_and_differs_from_strict():
    q, k, v = qkv(1)
    a = flax_causal_weights(q, k)  # [B, H, T, T]
    values = np.swapaxes(np.asarray(v, np.float64), 1, 2)  # [B, H, T, D]
    gamma = GAMMA.astype(np.float64)[:, None, None]
    z = np.zeros_like(values)
    for _ in range(400):  # a contraction of ratio <= 0.9
        z = a @ (gamma * z + (1 - gamma) * values)
    full = attend(q, k, v, GAMMA, strict=False)
    np.testing.assert_allclose(full, np.swapaxes(z, 1, 2), atol=2e-5)
    strict = attend(q, k, v, GAMMA, strict=True)
    assert np.abs(np.asarray(strict) - np.asarray(full))[:, :, 1:].max() > 1e-2


@pytest.mark.parametrize("strict", [True, False])
def test_blocked_solve_equals_the_plain_solve(strict):
    q, k, v = qkv(2, length=11)
    padding = jnp.arange(11)[None] < jnp.array([[11], [8]])
    plain = attend(q, k, v, GAMMA, strict=strict, mask=padding)
    for block in (3, 4):  # 11 rows: a partial last block
        blocked = attend(q, k, v, GAMMA, strict=strict, mask=padding, block_size=block)
        np.testing.assert_allclose(blocked, plain, atol=1e-5)


def test_decode_step_equals_the_strict_form_token_by_token():
    q, k, v = qkv(3)
    step = jax.jit(chain_causal_decode_step)
    cache = init_chain_causal_cache(B, T, H, D)
    outputs = []
    for t in range(T):
        y, cache = step(cache, q[:, t], k[:, t], v[:, t], GAMMA)
        outputs.append(y)
    decoded = np.stack(outputs, axis=1)
    np.testing.assert_allclose(decoded, chain_causal_reference(q, k, v, GAMMA), atol=2e-5)
    full = chain_causal_reference(q, k, v, GAMMA, strict=False)
    assert np.abs(decoded - full).max() > 1e-2
    assert int(cache.index) == T


def test_gradient_through_the_solve_matches_finite_differences():
    q, k, v = qkv(4, length=5)
    weights = jnp.asarray(np.random.default_rng(0).normal(size=v.shape), jnp.float32)

    def loss(q, k, v, gamma, strict, block):
        y = chain_causal_attention(q, k, v, gamma, strict=strict, block_size=block)
        return jnp.sum(y * weights)

    gamma = jnp.asarray([0.2, 0.5, 0.8])
    with jax.default_matmul_precision("float32"):
        for strict, block in ((True, None), (False, 2)):
            check_grads(
                jax.jit(lambda *a, s=strict, b=block: loss(*a, s, b)),
                (q, k, v, gamma),
                order=1,
                modes=("rev",),
                eps=1e-2,
                atol=2e-2,
                rtol=2e-2,
            )


def test_padded_positions_never_reach_real_ones():
    q, k, v = qkv(5)
    real = jnp.arange(T)[None] < jnp.array([[T], [4]])
    noise = qkv(6)
    q2, k2, v2 = (
        jnp.where(real[..., None, None], x, 100 * n) for x, n in zip((q, k, v), noise, strict=True)
    )
    for strict in (True, False):
        a = attend(q, k, v, GAMMA, strict=strict, mask=real)
        b = attend(q2, k2, v2, GAMMA, strict=strict, mask=real)
        np.testing.assert_allclose(a[1, :4], b[1, :4], atol=1e-6)
        np.testing.assert_array_equal(b[1, 4:], 0.0)
        expected = chain_causal_reference(q[1:, :4], k[1:, :4], v[1:, :4], GAMMA, strict=strict)
        np.testing.assert_allclose(a[1:, :4], expected, atol=2e-5)


def test_packed_segments_equal_separate_sequences():
    q, k, v = qkv(7)
    ids = jnp.array([[0, 0, 0, 1, 1, 1, 1]] * B)
    packed = attend(q, k, v, GAMMA, mask=segment_mask(ids))
    first = chain_causal_reference(q[:, :3], k[:, :3], v[:, :3], GAMMA)
    second = chain_causal_reference(q[:, 3:], k[:, 3:], v[:, 3:], GAMMA)
    np.testing.assert_allclose(packed, np.concatenate([first, second], axis=1), atol=2e-5)
    blocked = attend(q, k, v, GAMMA, mask=segment_mask(ids), block_size=2)
    np.testing.assert_allclose(blocked, packed, atol=1e-5)


def test_bfloat16_inputs_accumulate_in_float32():
    q, k, v = qkv(8, dtype=jnp.bfloat16)
    got = attend(q, k, v, GAMMA)
    assert got.dtype == jnp.bfloat16
    # The reference on the same (bf16-rounded) inputs: only the final rounding differs.
    expected = chain_causal_reference(
        q.astype(jnp.float32), k.astype(jnp.float32), v.astype(jnp.float32), GAMMA
    )
    np.testing.assert_allclose(np.asarray(got, np.float32), expected, rtol=1e-2, atol=1e-2)


def test_invalid_arguments_are_named():
    q, k, v = qkv()
    with pytest.raises(ValueError, match=r"q must have shape \[batch, length, heads, head_dim\]"):
        chain_causal_attention(q[0], k, v, 0.5)
    with pytest.raises(ValueError, match="k must have the shape of q"):
        chain_causal_attention(q, k[:, :3], v, 0.5)
    with pytest.raises(ValueError, match="v must have shape"):
        chain_causal_attention(q, k, v[:, :3], 0.5)
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\), got 1.0"):
        chain_causal_attention(q, k, v, 1.0)
    with pytest.raises(ValueError, match=r"gamma must lie in \[0, 1\)"):
        chain_causal_attention(q, k, v, np.array([0.1, -0.1, 0.2]))
    with pytest.raises(
        ValueError, match=r"gamma must be a scalar or have shape \(3,\), got \(2,\)"
    ):
        chain_causal_attention(q, k, v, np.array([0.1, 0.2]))
    with pytest.raises(
        ValueError, match=r"mask must have shape \(2, 7\) \(padding\), got \(2, 6\)"
    ):
        chain_causal_attention(q, k, v, 0.5, mask=jnp.ones((B, T - 1), bool))
    with pytest.raises(ValueError, match="mask must have shape"):
        chain_causal_attention(q, k, v, 0.5, mask=jnp.ones((B, 1, T, T - 1), bool))
    with pytest.raises(ValueError, match="block_size must be an int >= 1, got 0"):
        chain_causal_attention(q, k, v, 0.5, block_size=0)
    with pytest.raises(ValueError, match="q must be a floating dtype"):
        chain_causal_attention(q.astype(jnp.int32), k, v, 0.5)
    with pytest.raises(ValueError, match=r"q must have shape \(2, 3, 4\)"):
        chain_causal_decode_step(init_chain_causal_cache(B, T, H, D), q, k[:, 0], v[:, 0], 0.5)
    with pytest.raises(ValueError, match=r"gamma must be a number in \[0, 1\), got 1.5"):
        ChainCausalAttention(2, 4, gamma=1.5)
    with pytest.raises(ValueError, match="num_heads must be an int >= 1, got 0"):
        ChainCausalAttention(0, 4)


def test_module_learns_a_bounded_gamma_and_gamma_zero_is_standard_attention():
    x = jax.random.normal(jax.random.key(9), (B, T, 12))
    module = ChainCausalAttention(H, D, gamma_init=0.3)
    variables = jax.jit(module.init)(jax.random.key(0), x)
    logit = variables["params"]["gamma_logit"]
    np.testing.assert_allclose(MAX_GAMMA * jax.nn.sigmoid(logit), 0.3, rtol=1e-6)

    def loss(params):
        return jnp.sum(module.apply({"params": params}, x) ** 2)

    grads = jax.jit(jax.grad(loss))(variables["params"])
    assert np.all(np.isfinite(grads["gamma_logit"])) and np.any(grads["gamma_logit"] != 0)

    standard = ChainCausalAttention(H, D, gamma=0.0)
    params = {k: v for k, v in variables["params"].items() if k != "gamma_logit"}
    got = standard.apply({"params": params}, x)
    p = params
    q, k, v = (jnp.einsum("btd,dhe->bthe", x, p[n]["kernel"]) for n in ("query", "key", "value"))
    mixed = nn.dot_product_attention(q, k, v, mask=nn.make_causal_mask(x[..., 0]))
    expected = jnp.einsum("bthe,hed->btd", mixed, p["out"]["kernel"])
    np.testing.assert_allclose(got, expected, atol=1e-5)
