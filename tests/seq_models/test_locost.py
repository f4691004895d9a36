"""The LOCOST encoder-decoder: sizes, padding, generation, mixed precision, optimizer."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from seq_models.generation import greedy_search
from seq_models.locost import (
    LOCOST,
    count_parameters,
    locost_config,
    shift_right,
    ssm_parameter_mask,
    step_fn,
)
from seq_models.locost_job import inverse_sqrt_schedule, sequence_loss
from training.runs import init_variables

CONFIG = locost_config("tiny", vocab_size=50, dropout=0.0)
L_IN, L_OUT, BATCH = 24, 8, 2


def _expected_count(c, tied: bool) -> int:
    """Parameters of a LOCOST config by hand: embeddings, SSM encoder, T5 decoder."""
    d, f, inner, n2 = c.d_model, c.d_ff, c.num_heads * c.head_dim, c.state_size // 2
    ssm = 3 * (d * d + d) + 2 * d * n2 + 2 * d * n2 * 2 + 2 * d  # projections, A, c, dt, D
    encoder_layer = ssm + 3 * d * f + 2 * d
    attention = 4 * d * inner
    decoder_layer = 2 * attention + 3 * d * f + 3 * d
    head = 0 if tied else c.vocab_size * d
    return (
        c.vocab_size * d
        + head
        + c.num_encoder_layers * encoder_layer
        + d
        + c.num_decoder_layers * decoder_layer
        + 32 * c.num_heads
        + d
    )


def test_base_preset_is_the_papers_size_without_allocating():
    base = locost_config("base")
    assert (base.d_model, base.state_size, base.d_ff, base.num_heads) == (768, 512, 2048, 12)
    count = count_parameters(base)
    assert count == _expected_count(base, base.tie_embeddings)
    assert 240e6 < count < 260e6  # LongT5-base sized
    assert count_parameters(CONFIG) == _expected_count(CONFIG, True)
    with pytest.raises(ValueError, match="preset must be one of"):
        locost_config("huge")
    with pytest.raises(ValueError, match="state_size must be an even integer"):
        locost_config("tiny", state_size=7)


@pytest.fixture(scope="module")
def model_and_params():
    model = LOCOST(CONFIG)
    tokens = jnp.zeros((BATCH, L_IN), jnp.int32)
    params = init_variables(
        model, jax.random.key(0), tokens, tokens == 0, jnp.zeros((BATCH, L_OUT), jnp.int32)
    )["params"]
    return model, params


@pytest.fixture(scope="module")
def apply(model_and_params):
    """The model's forward pass, compiled once for the tests of this module."""
    return jax.jit(model_and_params[0].apply)


def _batch(seed: int, lengths=(L_IN, 15)):
    rng = np.random.default_rng(seed)
    inputs = rng.integers(3, CONFIG.vocab_size, (BATCH, L_IN)).astype(np.int32)
    mask = np.arange(L_IN)[None] < np.asarray(lengths)[:, None]
    targets = rng.integers(3, CONFIG.vocab_size, (BATCH, L_OUT)).astype(np.int32)
    return inputs, mask, targets


def test_padding_never_reaches_real_positions(model_and_params, apply):
    _, params = model_and_params
    inputs, mask, targets = _batch(0)
    reference = apply({"params": params}, inputs, mask, targets)
    # Other token ids at the padded positions of example 1, and the same example padded
    # to a shorter total length: the logits do not move.
    noisy = inputs.copy()
    noisy[1, 15:] = np.random.default_rng(1).integers(3, CONFIG.vocab_size, L_IN - 15)
    np.testing.assert_allclose(
        apply({"params": params}, noisy, mask, targets), reference, atol=1e-5
    )
    short = apply({"params": params}, inputs[1:, :18], mask[1:, :18], targets[1:])
    np.testing.assert_allclose(short[0], reference[1], atol=1e-5)


def test_cached_generation_agrees_with_teacher_forcing(model_and_params, apply):
    """Greedy tokens from the cached decoder are the argmax of the uncached, teacher-forced
    decoder run on those same tokens, at every position."""
    model, params = model_and_params
    inputs, mask, _ = _batch(2)

    @jax.jit  # compiled, as generation runs it, rather than op by op (160 small programs)
    def init_cache(params, inputs, mask):
        _, variables = model.apply(
            {"params": params}, inputs, mask, L_OUT, method=LOCOST.init_cache, mutable=["cache"]
        )
        return variables["cache"]

    step = functools.partial(step_fn, model=model)
    start = jnp.zeros((BATCH,), jnp.int32)
    cache = init_cache(params, inputs, mask)
    tokens = np.asarray(greedy_search(step, params, cache, start, max_length=L_OUT, eos_id=None))
    logits = apply({"params": params}, inputs, mask, jnp.asarray(tokens))
    np.testing.assert_array_equal(np.argmax(logits, -1), tokens)
    assert np.asarray(shift_right(jnp.asarray(tokens)))[:, 0].tolist() == [0, 0]


def _train(dtype: str, steps: int):
    config = locost_config("tiny", vocab_size=50, dropout=0.0, dtype=dtype)
    model = config.make()
    optimizer = optax.adamw(3e-3, mask=ssm_parameter_mask)
    inputs, mask, targets = _batch(3)
    batch = {
        "inputs": inputs,
        "inputs_mask": mask,
        "targets": targets,
        "targets_mask": np.ones_like(targets, bool),
    }
    # The parameters are float32 whatever the activation dtype, and do not depend on the
    # input values: those of ``CONFIG``'s model, whose compiled initialisation every test
    # here shares.
    params = init_variables(LOCOST(CONFIG), jax.random.key(0), inputs, mask, targets)["params"]
    loss_fn = sequence_loss(model)

    @jax.jit
    def run(params):
        def body(carry, _):
            params, opt_state = carry
            loss, grads = jax.value_and_grad(lambda p: loss_fn(p, batch, None)[0])(params)
            updates, opt_state = optimizer.update(grads, opt_state, params)
            return (optax.apply_updates(params, updates), opt_state), loss

        _, losses = jax.lax.scan(body, (params, optimizer.init(params)), None, length=steps)
        return losses

    return np.asarray(run(params))


def test_bfloat16_training_follows_float32():
    """A few hundred bfloat16 steps (activations bf16; SSM kernel, FFT, norms, softmax and
    logits float32) stay finite and track the float32 loss curve."""
    f32, bf16 = _train("float32", 200), _train("bfloat16", 200)
    assert np.all(np.isfinite(bf16))
    assert f32[-1] < 0.2 * f32[0] and bf16[-1] < 0.2 * bf16[0]
    np.testing.assert_allclose(bf16[::20], f32[::20], rtol=0.1, atol=0.05)


def test_ssm_parameters_are_not_decayed(model_and_params):
    _, params = model_and_params
    mask = ssm_parameter_mask(params)
    ssm = mask["encoder"]["layers_0"]["ssm_block"]["ssm"]
    assert not any(jax.tree.leaves(ssm))
    assert all(jax.tree.leaves(mask["decoder"]))
    optimizer = optax.adamw(1.0, weight_decay=0.5, mask=ssm_parameter_mask)

    @jax.jit  # one compiled update, not one small program per operation and leaf shape
    def decay_only(params):
        zeros = jax.tree.map(jnp.zeros_like, params)
        return optimizer.update(zeros, optimizer.init(params), params)[0]

    moved = jax.tree.map(lambda u: bool(np.any(np.asarray(u) != 0)), decay_only(params))
    assert not any(jax.tree.leaves(moved["encoder"]["layers_0"]["ssm_block"]["ssm"]))
    assert moved["encoder"]["layers_0"]["ssm_block"]["k_proj"]["kernel"]


def test_inverse_sqrt_schedule():
    schedule = inverse_sqrt_schedule(0.02, 100)
    assert float(schedule(0)) == float(schedule(100)) == pytest.approx(0.02)
    assert float(schedule(400)) == pytest.approx(0.01)
