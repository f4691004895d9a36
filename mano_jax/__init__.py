"""Multipole Attention Neural Operator (MANO) and its operator-learning stack.

Attention (``[B, H, W, C] -> [B, H, W, C]``): ``MultipoleAttention`` (windowed
attention on a hierarchy of coarsened grids; linear cost, global receptive
field), the baselines ``WindowAttention`` (Swin-style, optional shifted
windows) and ``GlobalAttention`` (ViT-style), and ``MultipoleBlock``; the pure
functions they call are ``multipole_attention``, ``windowed_attention``,
``global_attention`` and ``attention_core`` (XLA) /
``pallas_attention.window_attention_pallas`` (Pallas).
Slow float64 references written out from the specification, for checking the fast
paths and your own runs: ``multipole_attention_reference``,
``windowed_attention_reference``, ``attention_core_reference`` and
``spectral_conv2d_reference``.

Models trained with the original PyTorch code: ``from_torch_mano(state_dict,
**original_kwargs) -> (model, params)`` (``convert``: the name table, ``.npz`` /
``.safetensors`` / ``.pt`` files read without PyTorch).

Darcy flow: ``darcy`` (coefficient sampler, solver, TFDS builder, normaliser,
metric); the Fourier Neural Operator baseline ``FNO2d``; ``darcy_job`` (the
training job behind ``python -m mano_jax train``).
"""

from mano_jax import darcy
from mano_jax.attention import global_attention, windowed_attention, windowed_attention_reference
from mano_jax.convert import from_torch_mano
from mano_jax.fno import FNO2d, FNOConfig, spectral_conv2d, spectral_conv2d_reference
from mano_jax.layers import GlobalAttention, MultipoleAttention, MultipoleBlock, WindowAttention
from mano_jax.multipole import multipole_attention, multipole_attention_reference
from mano_jax.segment_attention import attention_core, attention_core_reference

__all__ = [
    "FNO2d",
    "FNOConfig",
    "GlobalAttention",
    "MultipoleAttention",
    "MultipoleBlock",
    "WindowAttention",
    "attention_core",
    "attention_core_reference",
    "darcy",
    "from_torch_mano",
    "global_attention",
    "multipole_attention",
    "multipole_attention_reference",
    "spectral_conv2d",
    "spectral_conv2d_reference",
    "windowed_attention",
    "windowed_attention_reference",
]
