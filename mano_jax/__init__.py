"""Multipole Attention Neural Operator (MANO) and its operator-learning stack.

Attention (``[B, H, W, C] -> [B, H, W, C]``): ``MultipoleAttention`` (windowed
attention on a hierarchy of coarsened grids; linear cost, global receptive
field), the baselines ``WindowAttention`` (Swin-style, optional shifted
windows) and ``GlobalAttention`` (ViT-style), and ``MultipoleBlock``; the pure
functions they call are ``multipole_attention``, ``windowed_attention``,
``global_attention`` and ``attention_core`` (XLA) / ``pallas_attention`` (Pallas).

Darcy flow: ``darcy`` (coefficient sampler, solver, TFDS builder, normaliser,
metric); the Fourier Neural Operator baseline ``FNO2d``; ``darcy_job`` (the
training job behind ``python -m mano_jax train``).
"""

from mano_jax import darcy
from mano_jax.attention import attention_core, global_attention, windowed_attention
from mano_jax.fno import FNO2d, FNOConfig, spectral_conv2d
from mano_jax.layers import GlobalAttention, MultipoleAttention, MultipoleBlock, WindowAttention
from mano_jax.multipole import multipole_attention

__all__ = [
    "FNO2d",
    "FNOConfig",
    "GlobalAttention",
    "MultipoleAttention",
    "MultipoleBlock",
    "WindowAttention",
    "attention_core",
    "darcy",
    "global_attention",
    "multipole_attention",
    "spectral_conv2d",
    "windowed_attention",
]
