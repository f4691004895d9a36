"""Exact Wasserstein-2 distances between discrete measures (POT's network simplex).

``W2(mu, nu)^2 = min_pi sum_ij pi_ij |x_i - y_j|^2`` over the couplings ``pi >= 0`` with
marginals ``wx`` and ``wy``: a linear program, solved exactly by ``ot.emd2`` in float64.
"""

from __future__ import annotations

import numpy as np
import ot

from quantization import checks

MAX_ITERATIONS = 10_000_000  # network-simplex pivots; far above what 1000 x 1000 needs


def w2_distance(x, wx, y, wy) -> float:
    """Exact W2 (not squared) between ``sum_i wx_i delta_{x_i}`` and ``sum_j wy_j delta_{y_j}``.

    Args:
      x: ``[n, d]`` support of the first measure; ``wx: [n]`` its weights.
      y: ``[m, d]`` support of the second measure; ``wy: [m]`` its weights.
      Weights must be non-negative and sum to 1 (within ``1e-5``; they are then
      renormalised exactly).

    Raises:
      ValueError: bad shapes, non-finite values, negative weights or sums other than 1.
      RuntimeError: the solver stopped before the optimum.
    """
    x = checks.point_set("x", x)
    y = checks.point_set("y", y, dim=x.shape[1])
    wx = checks.probability_vector("wx", wx, len(x))
    wy = checks.probability_vector("wy", wy, len(y))
    cost = ot.dist(x, y, metric="sqeuclidean")
    value, log = ot.emd2(wx, wy, cost, numItermax=MAX_ITERATIONS, log=True)
    if log["warning"] is not None:
        raise RuntimeError(f"the optimal-transport solver did not converge: {log['warning']}")
    return float(np.sqrt(max(value, 0.0)))


def w2_to_samples(points, weights, samples) -> np.ndarray:
    """W2 between weighted points and an empirical law, for each of a batch of inputs.

    Args:
      points: ``[batch, n, d]``; ``weights: [batch, n]`` (each row sums to 1).
      samples: ``[batch, m, d]``, each row weighing ``1 / m``.

    Returns ``[batch]`` float64 distances.
    """
    points, weights, samples = (np.asarray(a) for a in (points, weights, samples))
    if points.ndim != 3 or samples.ndim != 3 or len(points) != len(samples):
        raise ValueError(
            "points and samples must be [batch, count, d] with the same batch, got "
            f"{points.shape} and {samples.shape}"
        )
    uniform = np.full(samples.shape[1], 1.0 / samples.shape[1])
    return np.array(
        [w2_distance(p, w, s, uniform) for p, w, s in zip(points, weights, samples, strict=True)]
    )
