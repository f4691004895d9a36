"""Sampling, SCOPE's noisy decoding and the DPO loss, on toy step functions."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy import stats

from seq_models.generation import noisy_sample, sample, top_p_filter
from seq_models.preference import dpo_loss, sequence_logps

VOCAB = 6


def table_step(params, tokens, cache):
    """Logits depend on the last token (a bigram table) and on the step count."""
    logits = params["table"][tokens] + 0.1 * cache["step"]
    return logits, {"step": cache["step"] + 1}


def fixed_step(params, tokens, cache):
    return jnp.broadcast_to(params["logits"], (tokens.shape[0], VOCAB)), cache


CACHE = {"step": jnp.array(0.0)}


def _nucleus_reference(logits: np.ndarray, top_p: float) -> np.ndarray:
    out = np.full_like(logits, -np.inf)
    for row, values in zip(out, logits, strict=True):
        probs = np.exp(values - values.max())
        probs /= probs.sum()
        order = np.argsort(-values, kind="stable")
        mass, threshold = 0.0, values[order[0]]
        for i in order:
            if mass >= top_p:
                break
            mass += probs[i]
            threshold = values[i]
        row[values >= threshold] = values[values >= threshold]
    return out


@pytest.mark.parametrize("top_p", [0.3, 0.75, 0.99, 1.0])
def test_top_p_filter_keeps_the_smallest_nucleus(top_p):
    logits = np.random.default_rng(0).normal(size=(20, VOCAB)).astype(np.float32) * 2
    np.testing.assert_array_equal(top_p_filter(logits, top_p), _nucleus_reference(logits, top_p))


def test_sample_draws_from_the_filtered_tempered_distribution():
    logits = np.array([2.0, 1.5, 1.0, 0.2, -1.0, -3.0], np.float32)
    params = {"logits": jnp.asarray(logits)}
    batch, temperature, top_p = 4000, 0.7, 0.8
    start = jnp.zeros((batch,), jnp.int32)
    tokens = sample(
        fixed_step,
        params,
        {},
        start,
        jax.random.key(0),
        max_length=1,
        temperature=temperature,
        top_p=top_p,
        eos_id=None,
    )
    kept = np.isfinite(_nucleus_reference(logits[None] / temperature, top_p)[0])
    expected = np.where(kept, np.exp(logits / temperature), 0.0)
    expected /= expected.sum()
    counts = np.bincount(np.asarray(tokens[:, 0]), minlength=VOCAB)
    assert counts[~kept].sum() == 0
    assert stats.chisquare(counts[kept], batch * expected[kept]).pvalue > 1e-3


def test_noisy_coin_is_per_sequence_with_rate_alpha():
    batch, steps, alpha = 256, 40, 0.3
    cond = {"logits": jnp.array([0, 0, 0, 10, 0, 0], jnp.float32)}
    uncond = {"logits": jnp.array([0, 0, 0, 0, 10, 0], jnp.float32)}
    start = jnp.zeros((batch,), jnp.int32)
    tokens, from_uncond = noisy_sample(
        fixed_step,
        cond,
        {},
        fixed_step,
        uncond,
        {},
        start,
        jax.random.key(1),
        alpha=alpha,
        max_length=steps,
        temperature=0.5,
        top_p=1.0,
        eos_id=None,
    )
    tokens, coins = np.asarray(tokens), np.asarray(from_uncond)
    assert not coins[:, :2].any()  # the first two tokens are always conditional
    coins = coins[:, 2:]
    # Each token came from the model its coin chose.
    np.testing.assert_array_equal(tokens[:, 2:] == 4, coins)
    assert (tokens[:, :2] == 3).all()
    # Rate alpha overall, and per sequence Binomial(38, alpha): the coin is drawn for each
    # sequence, not once for the whole batch (that would give 0 or 1 at every step).
    assert stats.binomtest(int(coins.sum()), coins.size, alpha).pvalue > 1e-3
    per_step = coins.mean(axis=0)
    assert ((per_step > 0) & (per_step < 1)).all()
    per_sequence = coins.sum(axis=1)
    n = coins.shape[1]
    ratio = per_sequence.var() / (n * alpha * (1 - alpha))
    assert 0.75 < ratio < 1.3, ratio
    # Tokens the conditional model rules out (-inf) stay out of unconditional steps.
    ruled_out = {"logits": jnp.array([0, 0, 0, 10, -jnp.inf, 0], jnp.float32)}
    masked_tokens, masked_coins = noisy_sample(
        fixed_step,
        ruled_out,
        {},
        fixed_step,
        uncond,
        {},
        start,
        jax.random.key(1),
        alpha=alpha,
        max_length=steps,
        temperature=0.5,
        top_p=1.0,
        eos_id=None,
    )
    masked_tokens, masked_coins = np.asarray(masked_tokens), np.asarray(masked_coins)
    assert not (masked_tokens == 4).any()
    # There the unconditional model is uniform over the other five tokens.
    counts = np.bincount(masked_tokens[masked_coins], minlength=VOCAB)
    assert counts[4] == 0 and stats.chisquare(counts[[0, 1, 2, 3, 5]]).pvalue > 1e-3


def test_alpha_zero_is_plain_sampling_with_the_same_key():
    rng = np.random.default_rng(2)
    cond = {"table": jnp.asarray(rng.normal(size=(VOCAB, VOCAB)).astype(np.float32) * 2)}
    uncond = {"table": jnp.asarray(rng.normal(size=(VOCAB, VOCAB)).astype(np.float32) * 2)}
    start = jnp.zeros((64,), jnp.int32)
    key = jax.random.key(3)
    settings = dict(max_length=12, temperature=0.8, top_p=0.9, eos_id=5, pad_id=0)
    plain = sample(table_step, cond, CACHE, start, key, **settings)
    noisy, coins = noisy_sample(
        table_step, cond, CACHE, table_step, uncond, CACHE, start, key, alpha=0.0, **settings
    )
    np.testing.assert_array_equal(noisy, plain)
    assert not np.asarray(coins).any()
    plain = np.asarray(plain)
    ended = plain == 5
    assert ended.any()  # EOS happens, and every token after it is padding
    after = np.cumsum(ended, axis=1) - ended > 0
    assert (plain[after] == 0).all()
    other = noisy_sample(
        table_step, cond, CACHE, table_step, uncond, CACHE, start, key, alpha=1.0, **settings
    )[0]
    assert not np.array_equal(other, plain)


def test_sampling_errors():
    start = jnp.zeros((2,), jnp.int32)
    params = {"logits": jnp.zeros(VOCAB)}
    args = (fixed_step, params, {}, fixed_step, params, {}, start, jax.random.key(0))
    with pytest.raises(ValueError, match="alpha must be a number in \\[0, 1\\], got 1.5"):
        noisy_sample(*args, alpha=1.5, max_length=3, eos_id=None)
    with pytest.raises(ValueError, match="temperature must be a positive number"):
        noisy_sample(*args, alpha=0.5, max_length=3, eos_id=None, temperature=0.0)
    with pytest.raises(ValueError, match="top_p must be a number in \\(0, 1\\]"):
        sample(
            fixed_step, params, {}, start, jax.random.key(0), max_length=3, eos_id=None, top_p=1.5
        )


# ----------------------------------------------------------------------------- DPO


def test_sequence_logps_sums_the_masked_target_log_probabilities():
    rng = np.random.default_rng(4)
    logits = rng.normal(size=(3, 5, VOCAB)).astype(np.float32)
    targets = rng.integers(0, VOCAB, (3, 5)).astype(np.int32)
    mask = rng.random((3, 5)) < 0.6
    expected = np.zeros(3)
    for b in range(3):
        for t in range(5):
            if mask[b, t]:
                row = logits[b, t].astype(np.float64)
                expected[b] += row[targets[b, t]] - np.log(np.exp(row).sum())
    np.testing.assert_allclose(sequence_logps(logits, targets, mask), expected, rtol=1e-5)
    with pytest.raises(ValueError, match="targets must have shape \\[B, T\\] = \\(3, 5\\)"):
        sequence_logps(logits, targets[:, :4], mask[:, :4])
    with pytest.raises(ValueError, match="targets must be integer token ids"):
        sequence_logps(logits, targets.astype(np.float32), mask)


def test_dpo_loss_is_the_sigmoid_loss():
    rng = np.random.default_rng(5)
    pc, pr, rc, rr = rng.normal(size=(4, 8)) * 5
    loss, metrics = dpo_loss(pc, pr, rc, rr, beta=0.1)
    margin = 0.1 * ((pc - rc) - (pr - rr))
    np.testing.assert_allclose(loss, np.mean(np.log1p(np.exp(-margin))), rtol=1e-5)
    np.testing.assert_allclose(metrics["reward_margin"], margin.mean(), rtol=1e-5, atol=1e-6)
    np.testing.assert_allclose(metrics["preference_accuracy"], np.mean(margin > 0))
    np.testing.assert_allclose(metrics["chosen_reward"], np.mean(0.1 * (pc - rc)), rtol=1e-5)
    # The policy equal to the reference: log 2; raising the chosen log-probability helps.
    same, _ = dpo_loss(pc, pr, pc, pr)
    np.testing.assert_allclose(same, np.log(2.0), rtol=1e-6)
    grad = jax.grad(lambda p: dpo_loss(p, pr, rc, rr)[0])(jnp.asarray(pc, jnp.float32))
    assert (np.asarray(grad) < 0).all()
    with pytest.raises(ValueError, match="ref_rejected_logps must have shape \\[B\\]"):
        dpo_loss(pc, pr, rc, rr[:3])
    with pytest.raises(ValueError, match="beta must be a positive number"):
        dpo_loss(pc, pr, rc, rr, beta=0.0)
