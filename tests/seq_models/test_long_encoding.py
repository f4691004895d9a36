"""The bounded-memory encoder equals the LOCOST encoder, padding and odd lengths included."""

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from jax import jit

from seq_models.locost import LOCOST, LOCOSTEncoderLayer, locost_config
from seq_models.long_encoding import (
    default_channel_groups,
    encode_in_blocks,
    encoder_layer_in_blocks,
)

CONFIG = locost_config("tiny", vocab_size=50, dropout=0.0)
LENGTH = 203  # 7 x 29: blocks of 64 pad the input to 256


@pytest.fixture(scope="module")
def model_and_params():
    model = LOCOST(CONFIG)
    ids = jnp.zeros((2, 8), jnp.int32)
    params = jit(model.init)(jax.random.key(0), ids, ids == 0, ids)["params"]
    # Perturb the SSM so that no channel's kernel equals another's.
    ssm = params["encoder"]["layers_0"]["ssm_block"]["ssm"]
    noise = jax.random.normal(jax.random.key(1), ssm["im_a"].shape)
    ssm["im_a"] = ssm["im_a"] + noise
    return model, params


def _inputs(seed: int):
    rng = np.random.default_rng(seed)
    h = rng.normal(size=(2, LENGTH, CONFIG.d_model)).astype(np.float32)
    mask = np.arange(LENGTH)[None] < np.array([[LENGTH], [150]])
    return h, mask


def _rel_err(actual, expected) -> float:
    actual, expected = np.asarray(actual, np.float64), np.asarray(expected, np.float64)
    return float(np.abs(actual - expected).max() / np.abs(expected).max())


@pytest.mark.parametrize(("block", "groups"), [(64, 4), (50, 1)])
def test_layer_in_blocks_equals_the_layer(model_and_params, block, groups):
    _, params = model_and_params
    layer_params = params["encoder"]["layers_0"]
    h, mask = _inputs(0)
    layer = LOCOSTEncoderLayer(CONFIG)
    expected = jit(layer.apply)({"params": layer_params}, h, mask)

    def blocks(p, h, mask):
        return encoder_layer_in_blocks(
            CONFIG, p, h, mask, position_block=block, channel_groups=groups
        )

    out = jit(blocks)(layer_params, h, mask)
    real = np.asarray(mask)
    assert _rel_err(np.asarray(out)[real], np.asarray(expected)[real]) < 1e-5
    # Padding never reaches a real position in the blockwise form either.
    h_other = np.where(mask[..., None], h, 1e3).astype(np.float32)
    out_other = jit(blocks)(layer_params, h_other, mask)
    np.testing.assert_allclose(np.asarray(out_other)[real], np.asarray(out)[real], atol=1e-5)


def test_encode_in_blocks_equals_encode(model_and_params):
    model, params = model_and_params
    rng = np.random.default_rng(2)
    ids = rng.integers(3, CONFIG.vocab_size, (2, LENGTH)).astype(np.int32)
    _, mask = _inputs(0)
    expected = jit(lambda p, i, m: model.apply({"params": p}, i, m, method=LOCOST.encode))(
        params, ids, mask
    )
    out = encode_in_blocks(model, params, ids, mask, position_block=64, channel_groups=2)
    assert out.shape == expected.shape
    assert _rel_err(out, expected) < 1e-5
    assert not np.asarray(out)[~mask].any()  # zero at padding, as encode


def test_default_channel_groups_and_errors(model_and_params):
    assert default_channel_groups(768, 1_000_000) == 48  # 16 channels x 1M <= 2^24
    assert default_channel_groups(768, 1000) == 1
    assert default_channel_groups(7, 10**9) == 7
    model, params = model_and_params
    layer_params = params["encoder"]["layers_0"]
    h, mask = _inputs(0)
    with pytest.raises(ValueError, match="h must have shape \\[B, L, d_model\\]"):
        encoder_layer_in_blocks(CONFIG, layer_params, h[..., :3])
    with pytest.raises(ValueError, match="mask must have shape"):
        encoder_layer_in_blocks(CONFIG, layer_params, h, mask[:, :5])
    with pytest.raises(ValueError, match="position_block must be a positive int"):
        encoder_layer_in_blocks(CONFIG, layer_params, h, position_block=0)
    with pytest.raises(ValueError, match="channel_groups must divide"):
        encoder_layer_in_blocks(CONFIG, layer_params, h, channel_groups=3)
    with pytest.raises(ValueError, match="inputs must have shape \\[B, L\\]"):
        encode_in_blocks(model, params, np.zeros(5, np.int32))
