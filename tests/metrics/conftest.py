"""Shared test helpers: a dense float64 reference for every metric of ``metrics.support``."""

import numpy as np
import pytest


def dense_reference(x, y, k, strict=True):
    """The metrics from full float64 distance matrices, straight from their definitions."""
    x, y = np.asarray(x, np.float64), np.asarray(y, np.float64)

    def distances(a, b):
        return np.sqrt(np.maximum(((a[:, None, :] - b[None, :, :]) ** 2).sum(-1), 0))

    d_xx, d_yy, d_xy = distances(x, x), distances(y, y), distances(x, y)
    r_x = np.sort(d_xx, axis=1)[:, k]
    r_y = np.sort(d_yy, axis=1)[:, k]
    inside = np.less if strict else np.less_equal
    in_x_balls = inside(d_xy, r_x[:, None])  # [N, M]: y_j in B(x_i)
    in_y_balls = inside(d_xy, r_y[None, :])  # x_i in B(y_j)
    kept = np.where(r_x <= np.median(r_x), r_x, -np.inf)[:, None]
    with np.errstate(divide="ignore", invalid="ignore"):
        ratio = np.where(d_xy > 0, kept / d_xy, np.where(kept > 0, np.inf, -np.inf))
    return {
        "precision": in_x_balls.any(axis=0).mean(),
        "recall": in_y_balls.any(axis=1).mean(),
        "density": in_x_balls.sum() / (k * len(y)),
        "coverage": inside(d_xy.min(axis=1), r_x).mean(),
        "realism": ratio.max(axis=0),
        "reference_radii": r_x,
        "generated_radii": r_y,
        "distances": d_xy,
    }


@pytest.fixture(scope="session")
def dense_metrics():
    return dense_reference
