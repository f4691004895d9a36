"""Multipole Attention Neural Operator (MANO) and its operator-learning stack.

Modules: ``darcy`` (Darcy-flow data: coefficient sampler, solver, TFDS builder,
normaliser, metric), ``fno`` (the Fourier Neural Operator baseline) and
``darcy_job`` (the training job behind ``python -m mano_jax train``).
"""

from mano_jax import darcy
from mano_jax.fno import FNO2d, FNOConfig, spectral_conv2d

__all__ = ["FNO2d", "FNOConfig", "darcy", "spectral_conv2d"]
