"""The decoder-only LM: causality, cached = uncached generation, left-padded prompts."""

import functools

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import jit

from seq_models.decoder_lm import DecoderLM, DecoderLMConfig, prefill, step_fn
from seq_models.generation import greedy_search

CONFIG = DecoderLMConfig(
    vocab_size=30, d_model=32, d_ff=64, num_layers=2, num_heads=2, head_dim=8, dropout=0.0
)
MODEL = DecoderLM(CONFIG)
STEP = functools.partial(step_fn, model=MODEL)
APPLY = jit(MODEL.apply)  # one jitted function: compiled once per input shape


@pytest.fixture(scope="module")
def params():
    return jit(MODEL.init)(jax.random.key(0), jnp.zeros((1, 4), jnp.int32))["params"]


def test_no_cross_attention_parameters_and_causality(params):
    assert not any("cross" in k for k in params["decoder"]["layers_0"])
    tokens = np.random.default_rng(0).integers(0, 30, (2, 12)).astype(np.int32)
    logits = APPLY({"params": params}, tokens)
    later = tokens.copy()
    later[:, 8:] = (later[:, 8:] + 1) % 30
    moved = APPLY({"params": params}, later)
    np.testing.assert_allclose(moved[:, :8], logits[:, :8], atol=1e-5)
    assert not np.allclose(moved[:, 8:], logits[:, 8:])


def _greedy_uncached(params, prompt: list[int], steps: int) -> list[int]:
    """Recompute the whole sequence at every step (fixed width: the model is causal, so
    the trailing zeros change nothing before them; one compilation)."""
    tokens = list(prompt)
    for _ in range(steps):
        row = np.zeros((1, 16), np.int32)
        row[0, : len(tokens)] = tokens
        logits = APPLY({"params": params}, row)
        tokens.append(int(np.argmax(logits[0, len(tokens) - 1])))
    return tokens[len(prompt) :]


def test_left_padded_prompts_generate_as_alone(params):
    prompts = [[5, 9, 2, 7, 11, 4], [8, 3]]
    width, steps = 6, 5
    padded = np.zeros((2, width), np.int32)
    mask = np.zeros((2, width), bool)
    for row, prompt in enumerate(prompts):
        padded[row, width - len(prompt) :] = prompt
        mask[row, width - len(prompt) :] = True
    padded[1, :4] = 17  # padding values must not matter
    cache, start = prefill(MODEL, params, padded, mask, steps)
    out = np.asarray(greedy_search(STEP, params, cache, start, max_length=steps, eos_id=None))
    for row, prompt in enumerate(prompts):
        assert out[row].tolist() == _greedy_uncached(params, prompt, steps)


def test_prefill_errors(params):
    prompts = np.ones((2, 4), np.int32)
    with pytest.raises(ValueError, match="non-empty suffix"):
        prefill(MODEL, params, prompts, np.array([[1, 1, 0, 1], [0, 1, 1, 1]], bool), 3)
    with pytest.raises(ValueError, match="same shape"):
        prefill(MODEL, params, prompts, np.ones((2, 3), bool), 3)
    with pytest.raises(ValueError, match="max_new_tokens must be a positive int"):
        prefill(MODEL, params, prompts, np.ones((2, 4), bool), 0)
