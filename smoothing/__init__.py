"""Randomized smoothing: Cohen et al.'s PREDICT/CERTIFY, bucketed multi-class bounds and
Lipschitz-aware certificates, for any base classifier given as ``logits = f(params, xs)``.

Entry points: ``predict`` and ``certify`` (one input), ``sample_certification_batch``
(the noise statistics of many inputs at once, optionally sharded over a device mesh)
with ``certificate``, and ``with_normalization`` (a base classifier that normalises its
own inputs, so that ``sigma`` is in pixel units as in Cohen et al.). The pure pieces live
in ``intervals`` (Clopper–Pearson, empirical Bernstein), ``radii``, ``buckets``,
``simplex`` (softmax / sparsemax at a temperature), ``sampling`` (the jitted, sharded
noise sampler and its key scheme) and ``certificates``; the command ``python -m
smoothing certify`` in ``certify_job``.

Functions that draw noise take the key first (``jax.random.key``, a legacy ``PRNGKey``
or an int seed). Arguments are validated once, at the public functions; a NaN bound
(e.g. where scipy's beta quantile fails) abstains, and ``alpha`` below ``MIN_ALPHA``,
which scipy cannot resolve, is refused. ``sigma`` and the radii are on the scale of the
array the base classifier receives.

Example (a linear classifier on 2-d inputs; a few seconds on a CPU)::

    import jax
    import jax.numpy as jnp
    import smoothing

    def logits_fn(w, xs):  # [b, 2] -> [b, 2]: class 1 where w . x > 0
        score = xs @ w
        return jnp.stack([-score, score], axis=-1)

    w, key = jnp.array([1.0, 0.0]), jax.random.key(0)
    xs = jnp.array([[0.8, 0.3], [-0.5, 0.1], [0.02, 0.0]])  # distances 0.8, 0.5, 0.02

    cert = smoothing.certify(key, logits_fn, w, xs[0], sigma=0.5, n=10_000)
    print(cert)  # class 1, radius a little below 0.8

    # Many inputs at once: input i draws its noise from fold_in(key, i), so this gives
    # what sample_certification(jax.random.fold_in(key, i), ..., xs[i]) gives, whatever
    # the grouping. mesh=training.data_mesh() (or any 1-D Mesh with axis "data") spreads
    # the noise batches over the devices with the same counts.
    for selection, estimation in smoothing.sample_certification_batch(
        key, logits_fn, w, xs, sigma=0.5, n=10_000
    ):
        print(smoothing.certificate(selection, estimation, method="cohen", sigma=0.5,
                                    alpha=0.001))  # the last one abstains

    # logits_fn as a model of pixels p with inputs normalised as (p - 0.5) / 0.25: the
    # wrapper takes pixels and sigma in pixel units. The image of xs[0] at sigma 0.125 is
    # the first certificate (sigma 0.5 on normalised inputs), radius 0.25 times as large.
    pixels = smoothing.with_normalization(logits_fn, mean=0.5, std=0.25)
    print(smoothing.certify(key, pixels, w, xs[0] * 0.25 + 0.5, sigma=0.125, n=10_000))
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
from smoothing.normalization import NormalizedClassifier, with_normalization
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
    sample_certification_batch,
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
    "NormalizedClassifier",
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
    "sample_certification_batch",
    "sample_statistics",
    "smoothed_lipschitz",
    "soft_bounds",
    "soft_certificate",
    "with_normalization",
]
