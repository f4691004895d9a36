"""Gram-iteration spectral-norm bounds and spectral-rescaling 1-Lipschitz networks.

Entry points: ``spectral_norm_bound`` and ``exact_spectral_norm`` (dense matrices and
stride-1 convolutions with circular or zero padding); the pure pieces live in
``gram``, ``conv_bounds``, ``exact``, ``baselines`` and ``rescaling``, the Flax
layers in ``layers``, certification in ``certify``, the training job in
``train_job`` (``python -m lipschitz train``).

Convolution kernels are in Flax's layout ``[k, k, c_in, c_out]`` (HWIO) by default;
every function taking one also accepts ``layout="OIHW"`` (``[c_out, c_in, k, k]``,
PyTorch's), and refuses shapes that do not fit the given layout (``checks.py``).
Weights with NaN or inf raise a ``ValueError`` outside ``jax.jit`` and give NaN bounds
inside it: never a finite bound. Functions that draw randomness take the key first.
"""

from lipschitz.baselines import araujo2021_bound, singla2021_bound
from lipschitz.bounds import (
    DEFAULT_SPATIAL_ITERS,
    METHODS,
    PADDINGS,
    exact_spectral_norm,
    spectral_norm_bound,
)
from lipschitz.certify import certified_accuracy, certified_radii, logit_margins
from lipschitz.checks import DEFAULT_LAYOUT, LAYOUTS
from lipschitz.conv_bounds import (
    circular_gram_bound,
    spatial_gram_bound,
    spatial_gram_row_bounds,
)
from lipschitz.convolution import conv2d
from lipschitz.exact import (
    circular_exact,
    conv_matrix,
    conv_power_iteration,
    dense_exact,
    dense_power_iteration,
    power_iteration,
    zero_padding_exact,
)
from lipschitz.gram import DEFAULT_ITERS, gram_iteration, gram_row_bounds
from lipschitz.layers import LipschitzConvNet, MaxMin, SRConv, SRDense, max_min, space_to_depth
from lipschitz.regularizer import lipschitz_penalty
from lipschitz.rescaling import (
    aol_conv,
    aol_dense,
    spectral_rescale_conv,
    spectral_rescale_dense,
)

__all__ = [
    "DEFAULT_ITERS",
    "DEFAULT_LAYOUT",
    "DEFAULT_SPATIAL_ITERS",
    "LAYOUTS",
    "METHODS",
    "PADDINGS",
    "LipschitzConvNet",
    "MaxMin",
    "SRConv",
    "SRDense",
    "aol_conv",
    "aol_dense",
    "araujo2021_bound",
    "certified_accuracy",
    "certified_radii",
    "circular_exact",
    "circular_gram_bound",
    "conv2d",
    "conv_matrix",
    "conv_power_iteration",
    "dense_exact",
    "dense_power_iteration",
    "exact_spectral_norm",
    "gram_iteration",
    "gram_row_bounds",
    "lipschitz_penalty",
    "logit_margins",
    "max_min",
    "power_iteration",
    "singla2021_bound",
    "space_to_depth",
    "spatial_gram_bound",
    "spatial_gram_row_bounds",
    "spectral_norm_bound",
    "spectral_rescale_conv",
    "spectral_rescale_dense",
    "zero_padding_exact",
]
