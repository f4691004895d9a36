"""MANO operator and classifier models, their baselines, the classify job and the eval command."""

import dataclasses
import json

import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest
import tensorflow_datasets as tfds

from mano_jax.__main__ import main
from mano_jax.classify_job import ClassifyJobConfig, build, train_classifier
from mano_jax.images import load_images
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


def test_digits_are_upsampled_with_a_fixed_split():
    data = load_images("digits", 32)
    assert (len(data.train), len(data.test)) == (1500, 297)
    item = data.train[0]
    assert item["image"].shape == (32, 32, 1) and item["image"].dtype == np.float32
    assert item["image"].min() >= -1.0 and item["image"].max() <= 1.0
    again = load_images("digits", 32)
    np.testing.assert_array_equal(again.test[5]["image"], data.test[5]["image"])
    with pytest.raises(ValueError, match="image_size"):
        load_images("digits", 4)


def test_classify_run_checkpoint_round_trip_and_eval(tmp_path, capsys):
    run = tmp_path / "run"
    config = ClassifyJobConfig(
        image_size=16, num_steps=6, batch_size=20, eval_every=3, checkpoint_every=3
    )
    results = train_classifier(config, run, progress=False)
    for name in ("config.json", "metrics.jsonl", "loss_curve.png", "results.json"):
        assert (run / name).exists(), name
    assert json.loads((run / "results.json").read_text()) == results
    # Reloaded parameters give the same predictions as the trained ones.
    data = load_images("digits", 16)
    model, _, template = build(config, data)
    from training import runs

    restored = runs.restore_state(run, template)
    assert int(restored.step) == 6
    batch = jnp.stack([data.test[i]["image"] for i in range(8)])
    logits = model.apply(restored.params, batch)
    capsys.readouterr()
    assert main(["eval", "--run", str(run)]) == 0
    evaluated = json.loads(capsys.readouterr().out)
    assert evaluated["test_accuracy"] == pytest.approx(results["test_accuracy"], abs=1e-6)
    assert logits.shape == (8, 10)
    # A Darcy evaluation of a classification run is refused with a message.
    with pytest.raises(SystemExit):
        main(["eval", "--run", str(run), "--resolution", "64"])
    assert "--resolution only applies" in capsys.readouterr().err


def test_tfds_image_path_with_mock_data_trains_one_step(tmp_path):
    with tfds.testing.mock_data(num_examples=16):
        results = train_classifier(
            ClassifyJobConfig(
                dataset="cifar10", image_size=16, num_steps=1, batch_size=8, eval_every=1
            ),
            tmp_path / "run",
            data_dir=str(tmp_path / "tfds"),
            progress=False,
        )
    assert results["steps"] == 1
    assert 0.0 <= results["test_accuracy"] <= 1.0
    assert np.isfinite(results["test_loss"])


def test_tfds_data_set_that_is_not_prepared_says_how_to_prepare_it(tmp_path):
    with pytest.raises(ValueError, match="is not prepared"):
        load_images("mnist", 28, data_dir=str(tmp_path))
