"""MANO operator and classifier models and their baselines: presets are checked for what
they promise (published model sizes, shared layers across families, any resolution), a
small classifier of each attention trains, and every config names a bad argument."""

import dataclasses
import functools
import math
import re

import chex
import jax
import jax.numpy as jnp
import numpy as np
import optax
import pytest

from mano_jax.models import (
    CLASSIFIER_PRESETS,
    OPERATOR_PRESETS,
    AttentionOperator,
    ClassifierConfig,
    HierarchicalClassifier,
    OperatorConfig,
)

_jit = jax.jit


@functools.cache
def _param_shapes(config, shape) -> dict[str, tuple[int, ...]]:
    """``{path: shape}`` of the parameters of ``config.make()`` for inputs of ``shape``,
    without compiling anything; the attention modules' names (``MultipoleAttention_3``,
    ``WindowAttention_3``, ...) read ``attention_3`` whatever their kind."""
    x = jax.ShapeDtypeStruct(shape, jnp.float32)
    params = jax.eval_shape(config.make().init, jax.random.key(0), x)
    return {
        re.sub(r"(Multipole|Window|Global)Attention_", "attention_", jax.tree_util.keystr(path)): (
            leaf.shape
        )
        for path, leaf in jax.tree_util.tree_leaves_with_path(params)
    }


def _count(shapes: dict[str, tuple[int, ...]]) -> int:
    return sum(math.prod(s) for s in shapes.values())


# --------------------------------------------------------------------------- presets

# Published sizes at 224x224 with 1000 classes (Liu et al. 2021, Table 1: Swin-T 28M;
# timm: 28.3M; Touvron et al. 2021: DeiT-S / ViT-S 22M, timm: 22.1M). Our attention has
# no qkv bias, no relative-position tables and no position embedding or class token
# (the specification's reference has none), which is about 0.1-0.4 % of these models.
PUBLISHED_SIZES = {("swin", "swin-t"): 28.3e6, ("vit", "vit-s"): 22.05e6}


def _imagenet_classifier(family, preset):
    """The preset with 1000 classes, and its input shape (32x32 for the tiny ones)."""
    side = 32 if preset == "tiny" else 224
    config = dataclasses.replace(CLASSIFIER_PRESETS[family][preset], num_classes=1000)
    return config, (1, side, side, 3)


@pytest.mark.parametrize(("family", "preset"), list(PUBLISHED_SIZES))
def test_classifier_presets_have_the_published_model_size(family, preset):
    count = _count(_param_shapes(*_imagenet_classifier(family, preset)))
    assert abs(count / PUBLISHED_SIZES[family, preset] - 1) < 0.01, count


def _shared_layers_check(mano, baseline):
    """MANO adds exactly one ``[r, r, C, C]`` down and up kernel per attention layer to
    the Swin baseline, and shares every other parameter with it (same path, same shape)."""
    extra = set(mano) - set(baseline)
    assert set(baseline) <= set(mano)
    assert all(mano[path] == baseline[path] for path in baseline)
    assert extra, "MANO has down/up kernels"
    for path in extra:
        assert re.search(r"\['attention_\d+'\]\['(down|up)'\]$", path), path
        r, r2, c, c2 = mano[path]
        assert r == r2 and c == c2


@pytest.mark.parametrize("family", ["swin", "vit"])
@pytest.mark.parametrize("preset", sorted(OPERATOR_PRESETS["mano"]))
def test_operator_families_share_every_layer_but_the_attention(preset, family):
    """One architecture with a pluggable attention: the Swin and ViT baselines have the
    parameters of MANO without its down/up kernels, and apply at any resolution."""
    mano = _param_shapes(OPERATOR_PRESETS["mano"][preset], (1, 32, 32, 1))
    _shared_layers_check(mano, _param_shapes(OPERATOR_PRESETS[family][preset], (1, 32, 32, 1)))
    # The parameters do not depend on the resolution: the paper's 85x85 grid included.
    assert _param_shapes(OPERATOR_PRESETS["mano"][preset], (1, 85, 85, 1)) == mano
    model = OPERATOR_PRESETS[family][preset].make()
    params = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, 32, 32, 1), jnp.float32)
    )
    out = jax.eval_shape(model.apply, params, jax.ShapeDtypeStruct((2, 85, 85, 1), jnp.float32))
    assert out.shape == (2, 85, 85, 1)


@pytest.mark.parametrize("preset", sorted(CLASSIFIER_PRESETS["mano"]))
def test_swin_mano_is_swin_with_multipole_attention(preset):
    mano = _param_shapes(*_imagenet_classifier("mano", preset))
    _shared_layers_check(mano, _param_shapes(*_imagenet_classifier("swin", preset)))


def test_tiny_presets_are_cpu_sized():
    for family, presets in OPERATOR_PRESETS.items():
        assert _count(_param_shapes(presets["darcy-tiny"], (1, 32, 32, 1))) < 2e5, family
    for family, presets in CLASSIFIER_PRESETS.items():
        assert _count(_param_shapes(presets["tiny"], (1, 32, 32, 3))) < 5e5, family


# --------------------------------------------------------------------------- running


def test_operator_uses_dropout_only_with_a_key():
    config = OperatorConfig(dim=16, depth=2, num_heads=2, window_size=4, dropout=0.5)
    model = config.make()
    x = jnp.asarray(np.random.default_rng(0).normal(size=(1, 16, 16, 1)), jnp.float32)

    @_jit
    def outputs(x, key):
        params = model.init(jax.random.key(0), x)
        return model.apply(params, x), model.apply(params, x), model.apply(params, x, key)

    plain, again, dropped = outputs(x, jax.random.key(1))
    chex.assert_shape(plain, (1, 16, 16, 1))
    np.testing.assert_array_equal(plain, again)
    assert not np.allclose(dropped, plain)


@functools.cache
def _few_steps(attention: str) -> list[float]:
    """Eight Adam steps of a one-block-per-stage classifier on 12 random images."""
    config = ClassifierConfig(
        attention=attention, num_classes=3, embed_dim=16, depths=(1, 1), stage_heads=(2, 2)
    )
    model = config.make()
    rng = np.random.default_rng(0)
    x = jnp.asarray(rng.normal(size=(12, 16, 16, 1)), jnp.float32)
    y = jnp.asarray(rng.integers(0, 3, 12))
    opt = optax.adam(3e-3)

    def step(carry, _):
        params, state = carry

        def loss_fn(p):
            logits = model.apply(p, x)
            chex.assert_shape(logits, (12, 3))
            return optax.softmax_cross_entropy_with_integer_labels(logits, y).mean()

        loss, grads = jax.value_and_grad(loss_fn)(params)
        updates, state = opt.update(grads, state, params)
        return (optax.apply_updates(params, updates), state), loss

    @_jit  # initialisation and the eight steps in one program: one compilation
    def train(key):
        params = model.init(key, x)
        return jax.lax.scan(step, (params, opt.init(params)), length=8)[1]

    return [float(loss) for loss in train(jax.random.key(0))]


@pytest.mark.parametrize("attention", ["multipole", "window", "global"])
def test_a_few_steps_reduce_the_loss(attention):
    losses = _few_steps(attention)
    assert np.all(np.isfinite(losses))
    assert losses[-1] < 0.7 * losses[0], losses


# --------------------------------------------------------------------------- arguments


@pytest.mark.parametrize(
    ("make", "match"),
    [
        (lambda: ClassifierConfig(depths=(2, 2), stage_heads=(2,)), "depths and stage_heads"),
        (lambda: ClassifierConfig(attention="linear"), "attention must be one of"),
        (lambda: ClassifierConfig(num_classes=1), "num_classes must be an int >= 2, got 1"),
        (lambda: ClassifierConfig(patch_size=0), "patch_size must be a positive int, got 0"),
        (lambda: ClassifierConfig(embed_dim=-32), "embed_dim must be a positive int, got -32"),
        (lambda: ClassifierConfig(depths=(2, 0)), r"depths\[1\] must be a positive int, got 0"),
        (lambda: ClassifierConfig(stage_heads=(3, 4)), r"stage_heads\[0\] \(3\) must divide"),
        (lambda: ClassifierConfig(mlp_ratio=-1.0), "mlp_ratio must be a finite number > 0"),
        (lambda: OperatorConfig(dim=0), "dim must be a positive int, got 0"),
        (lambda: OperatorConfig(depth=-1), "depth must be a positive int, got -1"),
        (lambda: OperatorConfig(dropout=1.0), r"dropout must be in \[0, 1\), got 1.0"),
        (lambda: OperatorConfig(out_channels=0), "out_channels must be a positive int, got 0"),
        (lambda: OperatorConfig(num_heads=0), "num_heads must be a positive int, got 0"),
        (lambda: OperatorConfig(dim=30, num_heads=4), r"num_heads \(4\) must divide the 30"),
        (lambda: OperatorConfig(window_size=4, window_stride=3), "window_stride must be a pos"),
        (lambda: OperatorConfig(sampling_rate=1), "sampling_rate must be an int >= 2, got 1"),
        (lambda: OperatorConfig(down="max"), "down must be one of"),
        (lambda: OperatorConfig(impl="triton"), "impl must be one of"),
        (lambda: AttentionOperator(ClassifierConfig()), "config must be an OperatorConfig"),
        (lambda: HierarchicalClassifier(OperatorConfig()), "config must be a ClassifierConfig"),
    ],
)
def test_configs_name_the_bad_argument(make, match):
    with pytest.raises(ValueError, match=match):
        make()
