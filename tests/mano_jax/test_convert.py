"""Loading the original PyTorch MANO's checkpoints (``mano_jax.convert``), without torch.

The reference is a float64 NumPy forward pass of the original model written here from
its structure (``MANO -> Multipole_TransformerBlock -> Multipole_Attention2D ->
LocalAttention2D -> AttentionBlock``): torch's ``Unfold`` / ``Fold`` windows with the
overlap divided out, two LayerNorms per window token, a ``Conv2d`` / ``AvgPool2d`` down
and a ``ConvTranspose2d`` / nearest ``Upsample`` up shared by all levels, a level count
fixed from ``image_size``, the ``1 / (l + 1)`` V-cycle, and the lift / FFN / projection
wiring. The synthetic state dicts carry the names and shapes that module structure gives
``state_dict()``, independently of the converter's name table.
"""

import base64
import functools
import io
import math
import os
import pickle
import zipfile
import zlib

import jax
import jax.numpy as jnp
import numpy as np
import pytest
from scipy.special import erf

from mano_jax import convert, from_torch_mano
from mano_jax.layers import MultipoleAttention
from mano_jax.models import ClassifierConfig, OperatorConfig
from mano_jax.multipole import multipole_attention_reference, num_levels_for

# --------------------------------------------------------------------------- the original


def _original_state_dict(seed, *, dim, depth, heads, dim_head, mlp_dim, channels, **kw):
    """Random values under the names and shapes of the original's ``state_dict()``."""
    rng = np.random.default_rng(seed)
    r, inner = kw["att_sampling_rate"], heads * dim_head

    def weight(*shape):  # fan-in scaled, like a trained layer's order of magnitude
        return rng.standard_normal(shape) / np.sqrt(np.prod(shape[1:]))

    def norm(name):
        return {
            f"{name}.weight": 1 + 0.2 * rng.standard_normal(dim),
            f"{name}.bias": 0.2 * rng.standard_normal(dim),
        }

    def linear(name, fan_in, fan_out):
        return {
            f"{name}.weight": weight(fan_out, fan_in),
            f"{name}.bias": 0.1 * rng.standard_normal(fan_out),
        }

    sd = linear("linear_p", channels, dim)
    for i in range(depth):
        mpa, ff = f"transformer.layers.{i}.0", f"transformer.layers.{i}.1"
        sd |= norm(f"{mpa}.Attention.norm")  # LocalAttention2D.norm
        sd |= norm(f"{mpa}.Attention.Attention.norm")  # AttentionBlock.norm
        sd[f"{mpa}.Attention.Attention.to_qkv.weight"] = weight(3 * inner, dim)
        if not (heads == 1 and dim_head == dim):  # otherwise to_out is nn.Identity
            sd |= linear(f"{mpa}.Attention.Attention.to_out.0", inner, dim)
        if kw["att_sampling"] == "conv":  # Sequential(Rearrange, conv, Rearrange)
            sd[f"{mpa}.down.1.weight"] = weight(dim, dim, r, r)  # Conv2d: [out, in, r, r]
            sd[f"{mpa}.up.1.weight"] = weight(dim, dim, r, r)  # ConvTranspose2d: [in, out, r, r]
        sd |= norm(f"{ff}.net.0")
        sd |= linear(f"{ff}.net.1", dim, mlp_dim)
        sd |= linear(f"{ff}.net.4", mlp_dim, dim)
    sd |= norm("transformer.norm")
    sd |= linear("linear_q", dim, dim)
    sd |= linear("output_layer", dim, channels)
    return {name: value.astype(np.float32) for name, value in sd.items()}


def _layer_norm(x, weight, bias):
    mean = x.mean(-1, keepdims=True)
    var = ((x - mean) ** 2).mean(-1, keepdims=True)
    return (x - mean) / np.sqrt(var + 1e-5) * weight + bias


def _unfold(x, k, s):
    """torch ``nn.Unfold``: ``[B, C, H, W] -> [B, C*k*k, L]``, rows ``(c, ki, kj)``,
    windows ``L`` in row-major order of their top-left corners."""
    b, c, h, w = x.shape
    cols = [
        x[:, :, i : i + k, j : j + k].reshape(b, c * k * k)
        for i in range(0, h - k + 1, s)
        for j in range(0, w - k + 1, s)
    ]
    return np.stack(cols, axis=-1)


def _fold(patches, size, k, s):
    """torch ``nn.Fold``: the adjoint of ``_unfold`` (overlaps are summed)."""
    b, ckk, _ = patches.shape
    h, w = size
    out = np.zeros((b, ckk // (k * k), h, w))
    n = 0
    for i in range(0, h - k + 1, s):
        for j in range(0, w - k + 1, s):
            out[:, :, i : i + k, j : j + k] += patches[:, :, n].reshape(b, -1, k, k)
            n += 1
    return out


def _local_attention(x, p, prefix, kw):
    """``LocalAttention2D`` and its ``AttentionBlock``: ``[B, H, W, C] -> [B, H, W, C]``."""
    b, h, w, c = x.shape
    k, s, heads, dh = (
        kw["local_attention_span"],
        kw["local_attention_stride"],
        kw["heads"],
        kw["dim_head"],
    )
    patches = _unfold(x.transpose(0, 3, 1, 2), k, s)  # [B, C*k*k, L]
    n = patches.shape[-1]
    tokens = patches.reshape(b, c, k * k, n).transpose(0, 3, 2, 1).reshape(b * n, k * k, c)
    tokens = _layer_norm(tokens, p[f"{prefix}.norm.weight"], p[f"{prefix}.norm.bias"])
    attn = f"{prefix}.Attention"
    tokens = _layer_norm(tokens, p[f"{attn}.norm.weight"], p[f"{attn}.norm.bias"])
    q, key, v = np.split(tokens @ p[f"{attn}.to_qkv.weight"].T, 3, axis=-1)
    q, key, v = (t.reshape(b * n, k * k, heads, dh).transpose(0, 2, 1, 3) for t in (q, key, v))
    dots = q @ key.transpose(0, 1, 3, 2) * dh**-0.5
    weights = np.exp(dots - dots.max(-1, keepdims=True))
    weights /= weights.sum(-1, keepdims=True)
    out = (weights @ v).transpose(0, 2, 1, 3).reshape(b * n, k * k, heads * dh)
    if f"{attn}.to_out.0.weight" in p:
        out = out @ p[f"{attn}.to_out.0.weight"].T + p[f"{attn}.to_out.0.bias"]
    out = out.reshape(b, n, k * k, c).transpose(0, 3, 2, 1).reshape(b, c * k * k, n)
    folded = _fold(out, (h, w), k, s)
    count = _fold(_unfold(np.ones((b, 1, h, w)), k, s), (h, w), k, s)
    return (folded / count).transpose(0, 2, 3, 1)


def _down(z, weight, r):
    """``Conv2d(kernel r, stride r, no bias)`` (weight ``[out, in, r, r]``) or
    ``AvgPool2d(r)`` (``weight=None``), on ``[B, H, W, C]``."""
    if weight is None:
        return sum(z[:, i::r, j::r] for i in range(r) for j in range(r)) / r**2
    return sum(z[:, i::r, j::r] @ weight[:, :, i, j].T for i in range(r) for j in range(r))


def _up(z, weight, r):
    """``ConvTranspose2d(kernel r, stride r, no bias)`` (weight ``[in, out, r, r]``) or
    nearest ``Upsample(r)`` (``weight=None``), on ``[B, H, W, C]``."""
    b, h, w, _ = z.shape
    out = np.zeros((b, r * h, r * w, z.shape[-1] if weight is None else weight.shape[1]))
    for i in range(r):
        for j in range(r):
            out[:, i::r, j::r] = z if weight is None else z @ weight[:, :, i, j]
    return out


def _original_forward(p, x, kw):
    """The original ``MANO`` on ``x: [B, H, W, channels]``, float64, eval mode."""
    p = {name: np.asarray(value, np.float64) for name, value in p.items()}
    r = kw["att_sampling_rate"]
    levels = int(math.log(kw["image_size"], r))
    x = np.asarray(x, np.float64) @ p["linear_p.weight"].T + p["linear_p.bias"]
    for i in range(kw["depth"]):
        mpa, ff = f"transformer.layers.{i}.0", f"transformer.layers.{i}.1"
        down, up = p.get(f"{mpa}.down.1.weight"), p.get(f"{mpa}.up.1.weight")
        z = x
        outs = [_local_attention(z, p, f"{mpa}.Attention", kw)]
        for _ in range(1, levels):
            z = _down(z, down, r)
            outs.append(_local_attention(z, p, f"{mpa}.Attention", kw))
        res = outs.pop()
        for level, out in enumerate(outs[::-1]):
            res = out + (1 / (level + 1)) * _up(res, up, r)
        x = res + x
        y = _layer_norm(x, p[f"{ff}.net.0.weight"], p[f"{ff}.net.0.bias"])
        y = y @ p[f"{ff}.net.1.weight"].T + p[f"{ff}.net.1.bias"]
        y = 0.5 * y * (1 + erf(y / np.sqrt(2)))  # nn.GELU(): the exact form
        x = y @ p[f"{ff}.net.4.weight"].T + p[f"{ff}.net.4.bias"] + x
    x = _layer_norm(x, p["transformer.norm.weight"], p["transformer.norm.bias"])
    x = np.tanh(x @ p["linear_q.weight"].T + p["linear_q.bias"])
    return x @ p["output_layer.weight"].T + p["output_layer.bias"]


# --------------------------------------------------------------------------- agreement

_BASE = dict(dim=8, heads=2, dim_head=4, mlp_dim=12, channels=3, device="cpu", att_dropout=0.1)
CASES = {
    # window < rate, overlapping windows: 2 levels (16, 4), where the adaptive rule has 3
    "conv-k2-s1-r4": dict(
        image_size=16,
        depth=1,
        local_attention_span=2,
        local_attention_stride=1,
        att_sampling="conv",
        att_sampling_rate=4,
    ),
    # window = rate; one head as wide as dim, so the original has no to_out
    "avg-k2-r2-no-to-out": dict(
        image_size=8,
        depth=1,
        local_attention_span=2,
        local_attention_stride=2,
        att_sampling="avg_pool",
        att_sampling_rate=2,
        heads=1,
        dim_head=8,
    ),
    # window > rate: levels 12, 6, 3; two layers
    "conv-k3-r2": dict(
        image_size=12,
        depth=2,
        local_attention_span=3,
        local_attention_stride=3,
        att_sampling="conv",
        att_sampling_rate=2,
    ),
    # window > rate, overlapping: levels 18, 6 (the adaptive rule has 3)
    "avg-k4-s2-r3": dict(
        image_size=18,
        depth=1,
        local_attention_span=4,
        local_attention_stride=2,
        att_sampling="avg_pool",
        att_sampling_rate=3,
    ),
}


def _kwargs(name):
    return {**_BASE, "emb_dropout": 0.1, "channel_scale": 2, **CASES[name]}


@functools.cache
def _converted(name):
    """``(state_dict, kwargs, x, outputs)``; for the first case also at twice the size."""
    kw = _kwargs(name)
    sd = _original_state_dict(0, **kw)
    model, params = from_torch_mano(sd, impl="xla", **kw)
    n, c = kw["image_size"], kw["channels"]
    rng = np.random.default_rng(1)
    xs = [rng.standard_normal((2, n, n, c)).astype(np.float32)]
    if name == "conv-k2-s1-r4":
        xs.append(rng.standard_normal((1, 2 * n, 2 * n, c)).astype(np.float32))
    outs = jax.jit(lambda params, xs: [model.apply(params, x) for x in xs])(params, xs)
    return sd, kw, xs, outs


@pytest.mark.parametrize("name", list(CASES))
def test_converted_model_matches_the_original_forward(name):
    sd, kw, xs, outs = _converted(name)
    for x, out in zip(xs, outs, strict=True):
        expected = _original_forward(sd, x, kw)
        assert out.shape == expected.shape == (*x.shape[:3], kw["channels"])
        atol = 1e-5 * float(np.abs(expected).max())
        np.testing.assert_allclose(np.asarray(out, np.float64), expected, rtol=1e-4, atol=atol)


def test_levels_are_fixed_from_image_size_as_in_the_original():
    """``int(log_r(image_size))`` whatever the window, and the same float expression."""
    assert convert.original_num_levels(16, 4) == 2 != num_levels_for(16, 16, 2, 4)
    assert convert.original_num_levels(18, 3) == 2 != num_levels_for(18, 18, 4, 3)
    assert convert.original_num_levels(64, 4) == 3
    assert convert.original_num_levels(243, 3) == int(math.log(243, 3)) == 4
    assert convert.original_num_levels(3, 4) == 1
    config = convert.original_config(**_kwargs("conv-k2-s1-r4"))
    assert (config.num_levels, config.norm, config.use_grid, config.out_channels) == (
        2,
        "double",
        False,
        3,
    )
    assert (config.mlp_dim, config.window_size, config.window_stride) == (12, 2, 1)


# --------------------------------------------------------------------------- errors


def _sd_and_kwargs():
    kw = _kwargs("conv-k3-r2")
    return _original_state_dict(0, **kw), kw


def test_missing_tensor_is_named():
    sd, kw = _sd_and_kwargs()
    del sd["transformer.layers.0.0.Attention.norm.weight"]
    with pytest.raises(ValueError, match=r"missing 1 tensor.*'transformer.layers.0.0.Attention"):
        convert.convert_state_dict(sd, **kw)


def test_extra_tensor_is_named():
    sd, kw = _sd_and_kwargs()
    sd["transformer.layers.2.1.net.0.weight"] = np.ones(8, np.float32)  # a third layer
    with pytest.raises(ValueError, match=r"1 unexpected tensor.*'transformer.layers.2.1.net"):
        convert.convert_state_dict(sd, **kw)


def test_misshaped_tensor_is_named_with_both_shapes():
    sd, kw = _sd_and_kwargs()
    sd["transformer.layers.0.0.down.1.weight"] = np.ones((8, 8, 3, 3), np.float32)
    match = r"'transformer.layers.0.0.down.1.weight' has shape \(8, 8, 3, 3\), expected \(8, 8, 2"
    with pytest.raises(ValueError, match=match):
        convert.convert_state_dict(sd, **kw)


@pytest.mark.parametrize(
    ("change", "match"),
    [
        ({"heads": 0}, "heads must be a positive int, got 0"),
        ({"att_sampling": "max_pool"}, "att_sampling must be one of"),
        ({"local_attention_stride": 2}, "local_attention_stride must divide"),
        ({"patch_size": 4}, r"unknown keyword arguments \['patch_size'\]"),
        ({"image_size": None}, r"missing keyword arguments .*\['image_size'\]"),
        ({"att_sampling": "avg_pool", "image_size": 12}, "the original asserts"),
    ],
)
def test_bad_constructor_arguments_are_named(change, match):
    sd, kw = _sd_and_kwargs()
    kw = {name: value for name, value in {**kw, **change}.items() if value is not None}
    with pytest.raises(ValueError, match=match):
        convert.convert_state_dict(sd, **kw)


def test_non_finite_tensor_is_refused():
    sd, kw = _sd_and_kwargs()
    sd["linear_q.bias"][0] = np.nan
    with pytest.raises(ValueError, match="'linear_q.bias' has non-finite values"):
        convert.convert_state_dict(sd, **kw)


# --------------------------------------------------------------------------- files


def _assert_same_tree(a, b):
    assert jax.tree_util.tree_structure(a) == jax.tree_util.tree_structure(b)
    for x, y in zip(jax.tree_util.tree_leaves(a), jax.tree_util.tree_leaves(b), strict=True):
        np.testing.assert_array_equal(x, y)


def test_npz_file_and_wrapped_state_dicts_load_alike(tmp_path):
    sd, kw = _sd_and_kwargs()
    params = convert.convert_state_dict(sd, **kw)
    np.savez(tmp_path / "mano.npz", **sd)
    _assert_same_tree(convert.convert_state_dict(tmp_path / "mano.npz", **kw), params)
    prefixed = {f"module.{name}": value for name, value in sd.items()}  # DataParallel
    _assert_same_tree(convert.convert_state_dict(prefixed, **kw), params)
    wrapped = {"epoch": 3, "model_state_dict": sd}
    _assert_same_tree(convert.convert_state_dict(wrapped, **kw), params)


def test_safetensors_file_loads_like_the_mapping(tmp_path):
    save_file = pytest.importorskip("safetensors.numpy").save_file
    sd, kw = _sd_and_kwargs()
    save_file(sd, str(tmp_path / "mano.safetensors"))
    loaded = convert.convert_state_dict(tmp_path / "mano.safetensors", **kw)
    _assert_same_tree(loaded, convert.convert_state_dict(sd, **kw))


# The file ``torch.save(sd, "small.pt")`` wrote with PyTorch 2.14.1 (zip format), for
#   sd = collections.OrderedDict()
#   sd["a"] = torch.arange(6.).reshape(2, 3)                              float32
#   sd["b"] = torch.arange(12., dtype=torch.float64).reshape(3, 4).t()    a transposed view
#   sd["c"] = torch.arange(12.)[4:8].half()                               float16
#   sd["d"] = torch.arange(10.)[2:8].view(2, 3)                           at a storage offset
# zlib-compressed and base64-encoded.
_TORCH_FILE = zlib.decompress(
    base64.b64decode(
        "eNqtVktv00AQ3jipk5r0SUtTSKGE0gYEad4PRGlqFVPJB9IgoOoldRK3sXDjbrIpKnCohFKJGxy5IC7cucGRvwAS"
        "BxAHJBCFEz1yZNd2gu2S9AGrbCa25vvmG8/OOBne7gDA5QK7VjcYANVVQZYniwISAmt3ZI7tBYuWtUkVCoosiwUk"
        "KeUqc71SFCticVYqIAaCc1lo8y/YMJkAqQJSKoVSIFdDklxlchUxX5PkYg6J5apSya2HGWj3+xec2LmKPYUVETo0"
        "CMPJioBuaDcZ2KESBiG9YMe2sFaDTp5G0DXPA57i7Vuwk7fzti3IPCoRAUcQdGdhlwrKw+4SDlJqEM8qtbwsNpl7"
        "VKcQ7C05eTeCfYTRQRj7eRvv2IJHNcYBBAez8JjqXIBDJsY5QV5u8nlUlzAcxnwOBI+rfHV4grfVoVfjGkHwZBae"
        "Uh2LcFTjKmkpRuBpDGQQ9M3jxNTUzmipjWngswiOZ+FELZDhnS7Fd7uvjmFkZ1oWdRAk9aIGlpXKqoBy62KlikvH"
        "sdFdtd3PCpHYr35+ekgUk906tgekGrH1CucEWVopr4plxLGxQ4VfjEeJgOm78AeFQ1BtBfSAGV1AfgOJCjmqHDt1"
        "uLiNJUsIySLRUJ/6MkzjKHRbDW6QNnTVZJBjL/+TAI11cxp/pfEH7028n6eJoqHH20886oNvryhgVBTi2PPgoPEb"
        "a2da/5HWjEu3vbod0K1Ht17djurWp9sx3Y6reew4n/5awldLe+QxbswjzLG+feQBZsFVwIFrJM79Bx8/EGLXHnGu"
        "GONEOPYS+P/1A+AN3p/Jc5jBz2+G6JO2X3zz4xv+tvq6wIiur9naw60FRhjC/PbZys29+8cLoo0GVlOvihUJd/A9"
        "gcz+nFTk2OCBn0QomEgk4+FEOJVIpZKxaCgejgWT4Vg0Fk+lEvFELJGKRSIptcu/8nMbf/K3UeoJ03Uax1/3LuXm"
        "95gVaxxfgybcexv4+7i0UhgHkMdEMU+BllPPymIcIT0mlndNlubosoKN3e42gW/ZgWnmWJHG/jIjv5uRISvS2DFm"
        "5EuHCRm2Io1n2Yz0dJiQESvSeFa7TMjXTWSLKhkPkNcE7adB26Od4Wn6gu570n6xiWMsVqF0KbRmMY78owETndq1"
        "9obsoDUMo/prvr8Baan4tg=="
    )
)


def test_pt_file_written_by_torch_reads_without_torch(tmp_path):
    path = tmp_path / "small.pt"
    path.write_bytes(_TORCH_FILE)
    sd = convert.read_torch_file(path)
    assert list(sd) == ["a", "b", "c", "d"]
    expected = {
        "a": np.arange(6.0, dtype=np.float32).reshape(2, 3),
        "b": np.arange(12.0).reshape(3, 4).T,
        "c": np.arange(4.0, 8.0, dtype=np.float16),
        "d": np.arange(2.0, 8.0, dtype=np.float32).reshape(2, 3),
    }
    for name, value in expected.items():
        assert sd[name].dtype == value.dtype, name
        np.testing.assert_array_equal(sd[name], value)


def test_pt_file_with_other_objects_is_refused_and_nothing_runs(tmp_path):
    """A pickle that would call ``os.system`` is refused before anything is called."""
    payload = io.BytesIO()
    pickle.dump({"weight": os.system}, payload)
    path = tmp_path / "evil.pt"
    with zipfile.ZipFile(path, "w") as archive:
        archive.writestr("evil/data.pkl", payload.getvalue())
    with pytest.raises(ValueError, match=r"posix.system is not a tensor or a dict"):
        convert.load_state_dict(path)
    legacy = tmp_path / "legacy.pt"
    legacy.write_bytes(pickle.dumps({"a": 1}))
    with pytest.raises(ValueError, match="not a zip-format torch file"):
        convert.load_state_dict(legacy)


# --------------------------------------------------------------------------- the settings


def test_single_norm_keeps_the_parameters_and_outputs():
    """``norm="single"`` (the default) has today's parameters and outputs; ``"double"``
    adds exactly the two ``window_norm`` vectors and leaves every other value as it was."""
    x = jnp.asarray(np.random.default_rng(0).standard_normal((1, 8, 8, 8)), jnp.float32)
    default = MultipoleAttention(2, 4, 4, impl="xla")
    single = MultipoleAttention(2, 4, 4, impl="xla", norm="single")
    double = MultipoleAttention(2, 4, 4, impl="xla", norm="double")

    modules = (default, single, double)

    @jax.jit
    def run(x):
        params = [m.init(jax.random.key(0), x) for m in modules]
        return params, [m.apply(p, x) for m, p in zip(modules, params, strict=True)]

    (p_default, p_single, p_double), (y_default, y_single, _) = run(x)
    names = {"norm_scale", "norm_bias", "qkv", "out", "out_bias", "down", "up"}
    assert set(p_default["params"]) == names
    _assert_same_tree(p_single, p_default)
    np.testing.assert_array_equal(y_single, y_default)
    extra = {"window_norm_scale", "window_norm_bias"}
    assert set(p_double["params"]) == names | extra
    _assert_same_tree({n: p_double["params"][n] for n in names}, p_default["params"])
    reference = multipole_attention_reference(x, p_default["params"], window_size=4)
    np.testing.assert_allclose(y_default, reference, rtol=1e-4, atol=1e-4)


def test_num_levels_and_norm_pass_through_every_config():
    for config in (
        OperatorConfig(num_levels=3, norm="double"),
        ClassifierConfig(num_levels=3, norm="double"),
    ):
        attention = config.make_attention()
        assert (attention.num_levels, attention.norm) == (3, "double")
    window = OperatorConfig(attention="window", norm="double").make_attention()
    assert window.norm == "double"
    assert OperatorConfig().make_attention().num_levels is None
    with pytest.raises(ValueError, match="num_levels must be None or a positive int, got 0"):
        OperatorConfig(num_levels=0)
    with pytest.raises(ValueError, match="norm must be one of"):
        ClassifierConfig(norm="triple")
    with pytest.raises(ValueError, match="mlp_dim must be None or a positive int, got 0"):
        OperatorConfig(mlp_dim=0)
