"""MANO operator and classifier models and their baselines."""

import dataclasses

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mano_jax.models import CLASSIFIER_PRESETS, OPERATOR_PRESETS, ClassifierConfig, OperatorConfig


@pytest.mark.parametrize(
    ("family", "preset"), [(f, p) for f, ps in OPERATOR_PRESETS.items() for p in ps]
)
def test_operator_preset_shapes(family, preset):
    model = OPERATOR_PRESETS[family][preset].make()
    x = jax.ShapeDtypeStruct((2, 32, 32, 1), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    assert jax.eval_shape(model.apply, params, x).shape == (2, 32, 32, 1)


@pytest.mark.parametrize(
    ("family", "preset"), [(f, p) for f, ps in CLASSIFIER_PRESETS.items() for p in ps]
)
def test_classifier_preset_shapes(family, preset):
    config = dataclasses.replace(CLASSIFIER_PRESETS[family][preset], num_classes=7)
    model = config.make()
    side = 32 if preset == "tiny" else 224
    x = jax.ShapeDtypeStruct((2, side, side, 3), jnp.float32)
    params = jax.eval_shape(model.init, jax.random.PRNGKey(0), x)
    assert jax.eval_shape(model.apply, params, x).shape == (2, 7)


def test_operator_applies_at_another_resolution_and_uses_dropout_only_with_rng():
    config = OperatorConfig(dim=16, depth=2, num_heads=2, window_size=4, dropout=0.5)
    model = config.make()
    x = jnp.ones((1, 16, 16, 1))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    assert model.apply(params, jnp.ones((1, 32, 32, 1))).shape == (1, 32, 32, 1)
    np.testing.assert_array_equal(model.apply(params, x), model.apply(params, x))
    dropped = model.apply(params, x, jax.random.PRNGKey(1))
    assert not np.allclose(dropped, model.apply(params, x))


@pytest.mark.parametrize("attention", ["multipole", "window", "global"])
def test_a_few_steps_reduce_the_loss(attention):
    config = ClassifierConfig(
        attention=attention, num_classes=3, embed_dim=16, depths=(1, 1), stage_heads=(2, 2)
    )
    model = config.make()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(12, 16, 16, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 12))
    params = jax.jit(model.init)(jax.random.PRNGKey(0), x)
    opt = optax.adam(3e-3)

    @jax.jit
    def step(params, state):
        def loss_fn(p):
            logits = model.apply(p, x)
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return optax.apply_updates(params, updates), state, loss

    state = opt.init(params)
    losses = []
    for _ in range(8):
        params, state, loss = step(params, state)
        losses.append(float(loss))
    assert losses[-1] < 0.7 * losses[0], losses


def test_classifier_config_errors():
    with pytest.raises(ValueError, match="depths and stage_heads"):
        ClassifierConfig(depths=(2, 2), stage_heads=(2,))
    with pytest.raises(ValueError, match="attention must be one of"):
        ClassifierConfig(attention="linear")
    with pytest.raises(ValueError, match="num_classes"):
        ClassifierConfig(num_classes=1)
