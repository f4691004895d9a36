"""Darcy-flow benchmark data: random coefficients, FD solver, TFDS builder, normaliser, metrics.

See ``reference/darcy.md``. The operator to learn maps the coefficient ``a`` to the
solution ``u`` of ``-div(a grad u) = 1`` on the unit square with ``u = 0`` on the boundary.
"""

from mano_jax.darcy.builder import (
    SUPPORTED_RESOLUTIONS,
    DarcyFlow,
    DarcyFlowConfig,
    darcy_config,
    default_data_dir,
    load_darcy,
    sample_seed,
)
from mano_jax.darcy.coefficient import sample_coefficient, sample_grf
from mano_jax.darcy.metrics import relative_l2, relative_mse
from mano_jax.darcy.normalizer import UnitGaussianNormalizer
from mano_jax.darcy.solver import assemble_darcy_matrix, generate_sample, solve_darcy

__all__ = [
    "SUPPORTED_RESOLUTIONS",
    "DarcyFlow",
    "DarcyFlowConfig",
    "UnitGaussianNormalizer",
    "assemble_darcy_matrix",
    "darcy_config",
    "default_data_dir",
    "generate_sample",
    "load_darcy",
    "relative_l2",
    "relative_mse",
    "sample_coefficient",
    "sample_grf",
    "sample_seed",
    "solve_darcy",
]
