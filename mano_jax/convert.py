"""Load a model trained with the original PyTorch MANO code: ``from_torch_mano``.

``from_torch_mano(state_dict, **original_kwargs) -> (model, params)`` takes the
original ``MANO`` model's ``state_dict()`` (a mapping of its parameter names to
arrays, or a path to it saved as ``.npz``, ``.safetensors`` or ``.pt``) and the
keyword arguments its constructor was given, and returns an ``AttentionOperator``
and its parameters such that ``model.apply(params, x)`` with ``x: [B, H, W, channels]``
is the original's output ``[B, H, W, channels]`` (NHWC; the copies of the original we
read move ``[B, C, H, W]`` to NHWC on entry and back on exit, so transpose around the
call if your data is NCHW). The converted model is the library's operator with:

* ``norm="double"``: the original normalises every token twice before ``to_qkv``
  (its windowing module's LayerNorm, then its attention block's), each with its
  own weights;
* ``num_levels = max(1, int(math.log(image_size, att_sampling_rate)))``, fixed as the
  original fixes it at construction (independent of the window; computed with the
  same floating-point expression, so e.g. ``image_size=243, rate=3`` gives 4 there
  and here);
* ``use_grid=False``, ``out_channels=channels`` (the original lifts the ``channels``
  input channels as given and projects back to ``channels``) and the FFN width
  ``mlp_dim``; ``att_sampling="conv"`` is a strided conv down and a transposed conv
  up, ``"avg_pool"`` average pooling down and nearest upsampling up.

Name table: each original ``state_dict`` name with its PyTorch shape, and the
parameter ``params["params"][...]`` it becomes (``i = 0 .. depth - 1``; ``d = dim``,
``h = heads``, ``e = dim_head``, ``r = att_sampling_rate``, ``c = channels``; PyTorch
``Linear`` weights are ``[out, in]``, Flax ``Dense`` kernels ``[in, out]``)::

    linear_p.weight [d, c], .bias [d]
        -> lift/kernel [c, d] = W.T, lift/bias
    transformer.layers.i.0.Attention.norm.weight, .bias [d]
        -> MultipoleAttention_i/window_norm_scale, window_norm_bias
    transformer.layers.i.0.Attention.Attention.norm.weight, .bias [d]
        -> MultipoleAttention_i/norm_scale, norm_bias
    transformer.layers.i.0.Attention.Attention.to_qkv.weight [3 h e, d]
        -> MultipoleAttention_i/qkv [d, 3, h, e] = W.reshape(3, h, e, d).transpose(3, 0, 1, 2)
    transformer.layers.i.0.Attention.Attention.to_out.0.weight [d, h e], .bias [d]
        -> MultipoleAttention_i/out [h, e, d] = W.T.reshape(h, e, d), out_bias
    transformer.layers.i.0.down.1.weight [d, d, r, r]      (Conv2d, OIHW)
        -> MultipoleAttention_i/down [r, r, d, d] (HWIO) = W.transpose(2, 3, 1, 0)
    transformer.layers.i.0.up.1.weight [d, d, r, r]        (ConvTranspose2d, IOHW)
        -> MultipoleAttention_i/up [r, r, d, d] (HWIO) = W.transpose(2, 3, 0, 1)
    transformer.layers.i.1.net.0.weight, .bias [d]         (the FFN's LayerNorm)
        -> block_i/LayerNorm_0/scale, bias
    transformer.layers.i.1.net.1.weight [mlp_dim, d], .bias [mlp_dim]
        -> block_i/Dense_0/kernel = W.T, bias
    transformer.layers.i.1.net.4.weight [d, mlp_dim], .bias [d]
        -> block_i/Dense_1/kernel = W.T, bias
    transformer.norm.weight, .bias [d]      -> LayerNorm_0/scale, bias
    linear_q.weight [d, d], .bias [d]       -> project_hidden/kernel = W.T, bias
    output_layer.weight [c, d], .bias [c]   -> project_out/kernel = W.T, bias

``down.1`` / ``up.1`` exist only with ``att_sampling="conv"`` (the ``0`` and ``2`` of
those ``Sequential``\\ s are layout changes without parameters). ``to_out.0`` is absent
when ``heads == 1 and dim_head == dim`` (the original's ``to_out`` is then the
identity; here ``out`` is the identity and ``out_bias`` zero). A state dict saved from
a ``DataParallel`` or compiled model (every name prefixed by ``module.`` or
``_orig_mod.``) is accepted too. Names missing from the state dict, names it has that
the original with these arguments does not, and tensors of the wrong shape raise a
``ValueError`` naming each tensor with its expected and received shape.

Files: ``.npz`` (``numpy.savez(path, **{k: v.cpu().numpy() for k, v in
model.state_dict().items()})``, the safest way to move weights out of PyTorch),
``.safetensors`` (needs the ``safetensors`` package) and ``.pt`` / ``.pth`` written by
``torch.save(model.state_dict(), path)`` (the zip format of PyTorch >= 1.6), read
without PyTorch: the pickle inside is read by an unpickler that only builds
dictionaries and tensors (any other object in the file is refused, nothing in it is
executed), and the tensors from the raw storages beside it. A checkpoint dict that
holds the state dict under ``"state_dict"``, ``"model_state_dict"`` or ``"model"`` is
accepted.

What was checked against what. The original repository (github.com/AlexColagrande/MANO)
could not be read here; its module structure and names come from public copies of its
model file (which name, e.g., ``transformer.layers.0.0.Attention.Attention.to_qkv``). No
PyTorch runs in this project's tests: ``tests/mano_jax/test_convert.py`` builds state
dicts with the original's names and shapes (random values) and compares the converted
model with a float64 NumPy forward pass of the original's semantics written in the test
(two LayerNorms, fixed levels, unfold/fold windows with overlap averaging, strided conv
or average pooling down, transposed conv or nearest up, the ``1 / (j + 1)`` V-cycle, the
lift/projection wiring) for conv and average-pool models with windows smaller than,
equal to and larger than the sampling rate, at ``image_size`` and at twice it; and it
reads a small ``.pt`` file written by ``torch.save`` (PyTorch 2.14). Once, outside the
suite, ``.pt`` files of PyTorch 2.14 models built with the original's module structure
(conv and average pooling; one, two and four heads; windows 2 and 3 with strides 1 and
2) were loaded with ``from_torch_mano``: outputs agreed with PyTorch's to 2.4e-7
(outputs of order 1) at ``image_size`` and at twice it; float16 and bfloat16 state
dicts and a training checkpoint (model and Adam state in one dict) read as well.
"""

from __future__ import annotations

import collections
import math
import pickle
import zipfile
from collections.abc import Callable, Mapping
from os import PathLike
from pathlib import Path
from typing import Any, NamedTuple

import jax
import jax.numpy as jnp
import numpy as np

from mano_jax.checks import check_choice, check_int
from mano_jax.models import AttentionOperator, OperatorConfig

__all__ = [
    "IGNORED_KWARGS",
    "REQUIRED_KWARGS",
    "convert_state_dict",
    "from_torch_mano",
    "load_state_dict",
    "original_config",
    "original_num_levels",
    "original_shapes",
    "read_torch_file",
]

REQUIRED_KWARGS = (
    "image_size",
    "dim",
    "depth",
    "heads",
    "dim_head",
    "mlp_dim",
    "channels",
    "local_attention_span",
    "local_attention_stride",
    "att_sampling",
    "att_sampling_rate",
)
# Arguments of the original constructor that do not change its trained function.
IGNORED_KWARGS = ("device", "att_dropout", "emb_dropout", "channel_scale")
SAMPLINGS = ("conv", "avg_pool")
_PREFIXES = ("module.", "_orig_mod.")


# --------------------------------------------------------------------------- configuration


def original_num_levels(image_size: int, sampling_rate: int) -> int:
    """The original's level count: ``int(math.log(image_size, sampling_rate))``, at least 1.

    The same floating-point expression as the original, so the rare sizes where it
    rounds down (``math.log(243, 3) = 4.999...``) give the same count. Below 1 the
    original still computes level 0 only, hence the ``max``.
    """
    return max(1, int(math.log(image_size, sampling_rate)))


def _check_kwargs(kwargs: Mapping[str, Any]) -> dict[str, Any]:
    unknown = sorted(set(kwargs) - set(REQUIRED_KWARGS) - set(IGNORED_KWARGS))
    if unknown:
        raise ValueError(
            f"unknown keyword arguments {unknown}: the original MANO constructor takes "
            f"{list(REQUIRED_KWARGS)} (and {list(IGNORED_KWARGS)}, ignored here)"
        )
    missing = [name for name in REQUIRED_KWARGS if name not in kwargs]
    if missing:
        raise ValueError(f"missing keyword arguments of the original MANO constructor: {missing}")
    values = {name: kwargs[name] for name in REQUIRED_KWARGS}
    for name in REQUIRED_KWARGS:
        if name == "att_sampling":
            check_choice(values[name], name, SAMPLINGS)
        else:
            check_int(values[name], name, minimum=2 if name == "att_sampling_rate" else 1)
    k, s = values["local_attention_span"], values["local_attention_stride"]
    if k % s:
        raise ValueError(
            f"local_attention_stride must divide local_attention_span {k} here, got {s}"
        )
    r, n = values["att_sampling_rate"], values["image_size"]
    levels = original_num_levels(n, r)
    if values["att_sampling"] == "avg_pool" and n % r**levels:
        raise ValueError(
            f"the original asserts that att_sampling_rate**levels ({r}**{levels}) divides "
            f"image_size with att_sampling='avg_pool', got image_size {n}"
        )
    return values


def original_config(impl: str = "auto", **original_kwargs: Any) -> OperatorConfig:
    """The ``OperatorConfig`` of the original MANO built with ``original_kwargs``.

    Args:
      impl: attention core of the returned config, ``"auto" | "xla" | "pallas"``.
      **original_kwargs: the original constructor's keyword arguments
        (``REQUIRED_KWARGS``; ``IGNORED_KWARGS`` are accepted and ignored).
    """
    v = _check_kwargs(original_kwargs)
    sampling = v["att_sampling"]
    return OperatorConfig(
        attention="multipole",
        num_heads=v["heads"],
        head_dim=v["dim_head"],
        window_size=v["local_attention_span"],
        window_stride=v["local_attention_stride"],
        sampling_rate=v["att_sampling_rate"],
        down="conv" if sampling == "conv" else "avg",
        up="conv" if sampling == "conv" else "nearest",
        impl=impl,
        num_levels=original_num_levels(v["image_size"], v["att_sampling_rate"]),
        norm="double",
        dim=v["dim"],
        depth=v["depth"],
        mlp_dim=v["mlp_dim"],
        dropout=0.0,
        use_grid=False,
        out_channels=v["channels"],
    )


# --------------------------------------------------------------------------- name table


class _Entry(NamedTuple):
    """One original tensor: its name and shape, where it goes, and how."""

    name: str
    shape: tuple[int, ...]
    path: tuple[str, ...]
    convert: Callable[[np.ndarray], np.ndarray]


def _same(w: np.ndarray) -> np.ndarray:
    return w


def _transpose(w: np.ndarray) -> np.ndarray:
    return w.T


def _linear(name: str, path: str, fan_in: int, fan_out: int) -> list[_Entry]:
    return [
        _Entry(f"{name}.weight", (fan_out, fan_in), (path, "kernel"), _transpose),
        _Entry(f"{name}.bias", (fan_out,), (path, "bias"), _same),
    ]


def _layer_norm(name: str, path: tuple[str, ...], scale: str, bias: str, dim: int):
    return [
        _Entry(f"{name}.weight", (dim,), (*path, scale), _same),
        _Entry(f"{name}.bias", (dim,), (*path, bias), _same),
    ]


def _name_table(v: Mapping[str, Any]) -> list[_Entry]:
    d, h, e, r = v["dim"], v["heads"], v["dim_head"], v["att_sampling_rate"]
    entries = _linear("linear_p", "lift", v["channels"], d)
    for i in range(v["depth"]):
        layer, attention = f"transformer.layers.{i}", f"MultipoleAttention_{i}"
        window = f"{layer}.0.Attention"
        entries += _layer_norm(
            f"{window}.norm", (attention,), "window_norm_scale", "window_norm_bias", d
        )
        entries += _layer_norm(
            f"{window}.Attention.norm", (attention,), "norm_scale", "norm_bias", d
        )
        entries.append(
            _Entry(
                f"{window}.Attention.to_qkv.weight",
                (3 * h * e, d),
                (attention, "qkv"),
                lambda w: w.reshape(3, h, e, d).transpose(3, 0, 1, 2),
            )
        )
        if not (h == 1 and e == d):
            entries += [
                _Entry(
                    f"{window}.Attention.to_out.0.weight",
                    (d, h * e),
                    (attention, "out"),
                    lambda w: w.T.reshape(h, e, d),
                ),
                _Entry(f"{window}.Attention.to_out.0.bias", (d,), (attention, "out_bias"), _same),
            ]
        if v["att_sampling"] == "conv":
            entries += [
                _Entry(
                    f"{layer}.0.down.1.weight",
                    (d, d, r, r),
                    (attention, "down"),
                    lambda w: w.transpose(2, 3, 1, 0),  # Conv2d OIHW -> HWIO
                ),
                _Entry(
                    f"{layer}.0.up.1.weight",
                    (d, d, r, r),
                    (attention, "up"),
                    lambda w: w.transpose(2, 3, 0, 1),  # ConvTranspose2d IOHW -> HWIO
                ),
            ]
        block = f"block_{i}"
        entries += _layer_norm(f"{layer}.1.net.0", (block, "LayerNorm_0"), "scale", "bias", d)
        for index, (path, fan_in, fan_out) in (
            (1, ("Dense_0", d, v["mlp_dim"])),
            (4, ("Dense_1", v["mlp_dim"], d)),
        ):
            for entry in _linear(f"{layer}.1.net.{index}", path, fan_in, fan_out):
                entries.append(entry._replace(path=(block, *entry.path)))
    entries += _layer_norm("transformer.norm", ("LayerNorm_0",), "scale", "bias", d)
    entries += _linear("linear_q", "project_hidden", d, d)
    entries += _linear("output_layer", "project_out", d, v["channels"])
    return entries


def original_shapes(**original_kwargs: Any) -> dict[str, tuple[int, ...]]:
    """``{name: shape}`` of the original MANO's ``state_dict()`` for these arguments."""
    return {entry.name: entry.shape for entry in _name_table(_check_kwargs(original_kwargs))}


# --------------------------------------------------------------------------- conversion


def _strip_prefix(state_dict: dict[str, np.ndarray]) -> dict[str, np.ndarray]:
    for prefix in _PREFIXES:
        if state_dict and all(name.startswith(prefix) for name in state_dict):
            state_dict = {name[len(prefix) :]: value for name, value in state_dict.items()}
    return state_dict


def _listing(names: list[str], limit: int = 8) -> str:
    shown = ", ".join(repr(n) for n in names[:limit])
    return shown + (f", ... ({len(names) - limit} more)" if len(names) > limit else "")


def convert_state_dict(state_dict: Any, **original_kwargs: Any) -> dict[str, Any]:
    """The original MANO's ``state_dict`` as the converted model's ``params`` (name table
    in the module docstring), float32 NumPy arrays in a ``{"params": ...}`` tree.

    Args:
      state_dict: mapping of names to arrays, or a path (``load_state_dict``).
      **original_kwargs: the original constructor's keyword arguments.

    Raises:
      ValueError: missing or extra tensors, a tensor of the wrong shape (each named
        with the expected and received shape), a non-numeric or non-finite tensor.
    """
    values = _check_kwargs(original_kwargs)
    arrays = load_state_dict(state_dict)
    table = _name_table(values)
    expected = {entry.name for entry in table}
    missing = sorted(expected - set(arrays))
    extra = sorted(set(arrays) - expected)
    problems = []
    if missing:
        problems.append(f"missing {len(missing)} tensor(s): {_listing(missing)}")
    if extra:
        problems.append(
            f"{len(extra)} unexpected tensor(s), not in the original with these arguments: "
            f"{_listing(extra)}"
        )
    for entry in table:
        if entry.name in arrays and arrays[entry.name].shape != entry.shape:
            problems.append(
                f"tensor {entry.name!r} has shape {arrays[entry.name].shape}, "
                f"expected {entry.shape}"
            )
    if problems:
        arguments = ", ".join(f"{name}={values[name]!r}" for name in REQUIRED_KWARGS)
        raise ValueError(
            f"state_dict does not match the original MANO({arguments}):\n  " + "\n  ".join(problems)
        )
    params: dict[str, Any] = {}
    for entry in table:
        array = arrays[entry.name]
        if not np.issubdtype(array.dtype, np.floating):
            raise ValueError(f"tensor {entry.name!r} must be floating point, got {array.dtype}")
        if not np.all(np.isfinite(array)):
            raise ValueError(f"tensor {entry.name!r} has non-finite values")
        node = params
        for key in entry.path[:-1]:
            node = node.setdefault(key, {})
        node[entry.path[-1]] = np.ascontiguousarray(entry.convert(array.astype(np.float32)))
    d, h, e = values["dim"], values["heads"], values["dim_head"]
    if h == 1 and e == d:  # the original's to_out is the identity
        for i in range(values["depth"]):
            layer = params[f"MultipoleAttention_{i}"]
            layer["out"] = np.eye(d, dtype=np.float32).reshape(1, d, d)
            layer["out_bias"] = np.zeros(d, np.float32)
    return {"params": params}


def from_torch_mano(
    state_dict: Any, *, impl: str = "auto", **original_kwargs: Any
) -> tuple[AttentionOperator, dict[str, Any]]:
    """A trained original PyTorch MANO as ``(model, params)`` (module docstring).

    Args:
      state_dict: the original model's ``state_dict()`` as a mapping of names to arrays
        (NumPy arrays, or anything ``numpy.asarray`` takes), or a path to an ``.npz``,
        ``.safetensors`` or ``.pt`` / ``.pth`` file of it.
      impl: attention core, ``"auto" | "xla" | "pallas"``.
      **original_kwargs: the keyword arguments the original ``MANO`` was built with:
        ``image_size, dim, depth, heads, dim_head, mlp_dim, channels,
        local_attention_span, local_attention_stride, att_sampling, att_sampling_rate``;
        ``device, att_dropout, emb_dropout, channel_scale`` are accepted and ignored.

    Returns:
      ``(model, params)``: ``model.apply(params, x)`` maps ``x: [B, H, W, channels]`` to
      the original's output ``[B, H, W, channels]``, at ``image_size`` and at any other
      size where the original runs (``att_sampling_rate**(levels - 1)`` divides ``H`` and
      ``W`` and the windows tile every level; elsewhere this model pads, see
      ``multipole.py``, where the original fails).
    """
    config = original_config(impl=impl, **original_kwargs)
    params = convert_state_dict(state_dict, **original_kwargs)
    model = config.make()
    n, c = original_kwargs["image_size"], original_kwargs["channels"]
    side = max(n, config.window_size)
    shapes = jax.eval_shape(
        model.init, jax.random.key(0), jax.ShapeDtypeStruct((1, side, side, c), jnp.float32)
    )
    ours = jax.tree_util.tree_map(lambda a: a.shape, params)
    theirs = jax.tree_util.tree_map(lambda a: a.shape, shapes)
    if ours != theirs:  # the name table and the model disagree: a bug here, not the user's
        raise RuntimeError(f"converted parameters {ours} do not fit the model {theirs}")
    return model, jax.tree_util.tree_map(jnp.asarray, params)


# --------------------------------------------------------------------------- files


def _arrays_of(obj: Any, source: str) -> dict[str, np.ndarray]:
    """The state dict inside a loaded object: itself, or its ``state_dict`` / ... entry."""
    if isinstance(obj, Mapping):
        if (
            obj
            and all(isinstance(key, str) for key in obj)
            and not any(isinstance(value, Mapping) for value in obj.values())
        ):
            return {name: np.asarray(value) for name, value in obj.items()}
        for key in ("state_dict", "model_state_dict", "model"):
            if isinstance(obj.get(key), Mapping):
                return _arrays_of(obj[key], source)
        keys = sorted(map(str, obj))[:8]
        raise ValueError(
            f"{source} holds a dict with keys {keys}, not a state dict of tensors "
            "(nor one under 'state_dict', 'model_state_dict' or 'model')"
        )
    raise ValueError(f"{source} must hold a dict of tensors, got {type(obj).__name__}")


def load_state_dict(source: Any) -> dict[str, np.ndarray]:
    """``{name: array}`` from a mapping or a file (``.npz``, ``.safetensors``, ``.pt``).

    A common ``module.`` / ``_orig_mod.`` prefix of every name is removed.
    """
    if isinstance(source, str | PathLike):
        path = Path(source)
        if not path.is_file():
            raise ValueError(f"state_dict file {str(path)!r} does not exist")
        suffix = path.suffix.lower()
        if suffix == ".npz":
            with np.load(path, allow_pickle=False) as data:
                arrays = {name: data[name] for name in data.files}
        elif suffix == ".safetensors":
            try:
                from safetensors.numpy import load_file
            except ImportError as err:
                raise ValueError(
                    "reading .safetensors needs the safetensors package (pip install "
                    "safetensors); or save the state dict as .npz"
                ) from err
            arrays = load_file(str(path))
        elif suffix in (".pt", ".pth", ".bin", ".ckpt"):
            arrays = _arrays_of(read_torch_file(path), str(path))
        else:
            raise ValueError(
                f"state_dict file must be .npz, .safetensors or .pt/.pth, got {str(path)!r}"
            )
    else:
        arrays = _arrays_of(source, "state_dict")
    return _strip_prefix(arrays)


# --------------------------------------------------------------------------- .pt without torch

# Storage classes of ``torch.save`` files and the dtypes of their raw bytes.
_STORAGE_DTYPES = {
    "FloatStorage": "f4",
    "DoubleStorage": "f8",
    "HalfStorage": "f2",
    "BFloat16Storage": "bf16",
    "LongStorage": "i8",
    "IntStorage": "i4",
    "ShortStorage": "i2",
    "CharStorage": "i1",
    "ByteStorage": "u1",
    "BoolStorage": "b1",
}


class _StorageType(NamedTuple):
    name: str


def _rebuild_tensor(storage, storage_offset, size, stride, *_) -> np.ndarray:
    """``torch._utils._rebuild_tensor_v2``: a strided view of a storage, copied."""
    size, stride = tuple(int(n) for n in size), tuple(int(n) for n in stride)
    if len(size) != len(stride) or any(n < 0 for n in size) or any(s < 0 for s in stride):
        raise ValueError(f"malformed tensor record: size {size}, stride {stride}")
    if 0 in size:
        return np.zeros(size, storage.dtype)
    last = storage_offset + sum((n - 1) * s for n, s in zip(size, stride, strict=True))
    if storage_offset < 0 or last >= storage.size:
        raise ValueError(
            f"tensor record reaches element {last} of a storage of {storage.size} elements"
        )
    view = np.lib.stride_tricks.as_strided(
        storage[storage_offset:],
        shape=size,
        strides=tuple(s * storage.itemsize for s in stride),
        writeable=False,
    )
    return np.array(view)


def _rebuild_parameter(data, *_) -> np.ndarray:
    """``torch._utils._rebuild_parameter(_with_state)``: the parameter's data."""
    return data


class _TorchUnpickler(pickle.Unpickler):
    """Builds dicts and tensors only; every other global in the pickle is refused."""

    _GLOBALS = {
        ("collections", "OrderedDict"): collections.OrderedDict,
        ("torch._utils", "_rebuild_tensor_v2"): _rebuild_tensor,
        ("torch._utils", "_rebuild_parameter"): _rebuild_parameter,
        ("torch._utils", "_rebuild_parameter_with_state"): _rebuild_parameter,
    }

    def __init__(self, file, archive: zipfile.ZipFile, prefix: str, byteorder: str):
        super().__init__(file)
        self._archive, self._prefix, self._byteorder = archive, prefix, byteorder
        self._storages: dict[str, np.ndarray] = {}

    def find_class(self, module: str, name: str) -> Any:
        if (module, name) in self._GLOBALS:
            return self._GLOBALS[module, name]
        if module == "torch" and name in _STORAGE_DTYPES:
            return _StorageType(name)
        raise pickle.UnpicklingError(
            f"{module}.{name} is not a tensor or a dict; this reader builds nothing else"
        )

    def persistent_load(self, pid: Any) -> np.ndarray:
        if not (isinstance(pid, tuple) and len(pid) == 5 and pid[0] == "storage"):
            raise pickle.UnpicklingError(f"unknown persistent record {pid!r:.80}")
        _, storage_type, key, _, numel = pid
        if not isinstance(storage_type, _StorageType):
            raise pickle.UnpicklingError(f"unknown storage type {storage_type!r:.80}")
        if key not in self._storages:
            raw = self._archive.read(f"{self._prefix}data/{key}")
            code = _STORAGE_DTYPES[storage_type.name]
            order = "<" if self._byteorder == "little" else ">"
            if code == "bf16":  # the upper half of a float32
                bits = np.frombuffer(raw, f"{order}u2").astype(np.uint32) << 16
                array = bits.view(np.float32)
            else:
                array = np.frombuffer(raw, np.dtype(order + code)).astype(code)
            if array.size < int(numel):
                raise pickle.UnpicklingError(
                    f"storage {key} has {array.size} elements, the file says {numel}"
                )
            self._storages[key] = array
        return self._storages[key]


def read_torch_file(path: str | PathLike) -> Any:
    """The object ``torch.save`` wrote to ``path`` (zip format, PyTorch >= 1.6), with
    tensors as NumPy arrays; only dicts, lists, numbers, strings and tensors are built.

    Raises:
      ValueError: not a zip-format torch file, or it holds other objects.
    """
    path = Path(path)
    if not zipfile.is_zipfile(path):
        raise ValueError(
            f"{str(path)!r} is not a zip-format torch file (PyTorch >= 1.6 writes them by "
            "default); save the state dict as .npz instead: numpy.savez(path, **{k: "
            "v.cpu().numpy() for k, v in model.state_dict().items()})"
        )
    with zipfile.ZipFile(path) as archive:
        pickles = [name for name in archive.namelist() if name.endswith("data.pkl")]
        if len(pickles) != 1:
            raise ValueError(f"{str(path)!r} has {len(pickles)} data.pkl records, expected 1")
        prefix = pickles[0][: -len("data.pkl")]  # "archive/" or the like
        byteorder = "little"  # files without a byteorder record predate big-endian support
        if f"{prefix}byteorder" in archive.namelist():
            byteorder = archive.read(f"{prefix}byteorder").decode().strip()
        with archive.open(pickles[0]) as file:
            try:
                return _TorchUnpickler(file, archive, prefix, byteorder).load()
            except (pickle.UnpicklingError, KeyError, EOFError) as err:
                raise ValueError(
                    f"cannot read {str(path)!r} without torch: {err}; save the state dict "
                    "alone (torch.save(model.state_dict(), path)) or as .npz"
                ) from err
