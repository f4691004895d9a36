"""Class buckets for simultaneous bounds on the top class and the runner-up.

Bounding ``pA`` from below and every other class from above at once needs a
multiple-testing correction; Bonferroni over all ``K`` classes is wasteful when most
classes are negligible. From the *selection* samples only (so the buckets are fixed
before the estimation samples are drawn and Bonferroni over the buckets is valid):
bucket 0 is the top class ``A``, bucket 1 the runner-up ``B``; then the largest remaining
class is split off into its own bucket while the remaining mass exceeds ``B``'s, and what
remains is lumped into one last bucket. An upper bound on a bucket's total mass bounds
each of its classes (scores are non-negative), so the largest upper bound over the
non-``A`` buckets bounds the runner-up.
"""

from __future__ import annotations

import numpy as np


def class_buckets(masses) -> np.ndarray:
    """Bucket membership from selection masses (vote counts or mean scores).

    Args:
      masses: ``[k]`` non-negative, ``k >= 2``; ties go to the lower class index.

    Returns:
      ``[num_buckets, k]`` bool, each class in exactly one bucket; row 0 holds only the top
      class, row 1 only the runner-up.
    """
    masses = np.asarray(masses, np.float64)
    if masses.ndim != 1 or masses.size < 2:
        raise ValueError(f"masses must be a vector of k >= 2 classes, got shape {masses.shape}")
    order = np.argsort(-masses, kind="stable")
    runner_up = masses[order[1]]
    groups = [order[:1], order[1:2]]
    rest = order[2:]
    while rest.size and masses[rest].sum() > runner_up:
        groups.append(rest[:1])
        rest = rest[1:]
    if rest.size:
        groups.append(rest)
    membership = np.zeros((len(groups), masses.size), bool)
    for row, group in enumerate(groups):
        membership[row, group] = True
    return membership
