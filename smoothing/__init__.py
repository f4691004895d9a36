"""Randomized smoothing: Cohen et al.'s PREDICT/CERTIFY, bucketed multi-class bounds and
Lipschitz-aware certificates, for any base classifier given as ``logits = f(params, xs)``.

Entry points: ``predict`` and ``certify`` (``smoothed``); the pure pieces live in
``intervals`` (Clopper–Pearson, empirical Bernstein), ``radii``, ``buckets``, ``simplex``
(softmax / sparsemax at a temperature), ``sampling`` (the jitted batched noise sampler)
and ``certificates``; the command ``python -m smoothing certify`` in ``certify_job``.

Functions that draw noise take the key first (``jax.random.key``, a legacy ``PRNGKey``
or an int seed). Arguments are validated once, at the public functions; a NaN bound
(e.g. where scipy's beta quantile fails) abstains, and ``alpha`` below ``MIN_ALPHA``,
which scipy cannot resolve, is refused.
"""

from smoothing.buckets import class_buckets
from smoothing.certificates import (
    ABSTAIN,
    METHODS,
    Certificate,
    SoftBounds,
    certificate,
    cohen_certificate,
    multi_bounds,
    multi_certificate,
    soft_bounds,
    soft_certificate,
)
from smoothing.checks import MIN_ALPHA
from smoothing.intervals import (
    bernstein_halfwidth,
    clopper_pearson,
    clopper_pearson_lower,
    clopper_pearson_upper,
)
from smoothing.radii import gaussian_radius, margin_radius, smoothed_lipschitz
from smoothing.sampling import NoiseStatistics, reference_statistics, sample_statistics
from smoothing.simplex import SimplexMap
from smoothing.smoothed import (
    DEFAULT_ALPHA,
    DEFAULT_MAPS,
    DEFAULT_N,
    DEFAULT_N0,
    certify,
    predict,
    predict_from_votes,
    sample_certification,
)

__all__ = [
    "ABSTAIN",
    "DEFAULT_ALPHA",
    "DEFAULT_MAPS",
    "DEFAULT_N",
    "DEFAULT_N0",
    "METHODS",
    "MIN_ALPHA",
    "Certificate",
    "NoiseStatistics",
    "SimplexMap",
    "SoftBounds",
    "bernstein_halfwidth",
    "certificate",
    "certify",
    "class_buckets",
    "clopper_pearson",
    "clopper_pearson_lower",
    "clopper_pearson_upper",
    "cohen_certificate",
    "gaussian_radius",
    "margin_radius",
    "multi_bounds",
    "multi_certificate",
    "predict",
    "predict_from_votes",
    "reference_statistics",
    "sample_certification",
    "sample_statistics",
    "smoothed_lipschitz",
    "soft_bounds",
    "soft_certificate",
]
