"""PNG figures of training curves and image grids (matplotlib, Agg backend)."""

from __future__ import annotations

import os
from collections.abc import Sequence
from pathlib import Path
from typing import Any

import matplotlib

matplotlib.use("Agg")
import matplotlib.pyplot as plt  # noqa: E402
import numpy as np  # noqa: E402

from training.distributed import is_primary  # noqa: E402
from training.metrics_log import read_metrics  # noqa: E402


def plot_curves(
    records: Sequence[dict[str, Any]] | str | os.PathLike,
    path: str | os.PathLike,
    *,
    metrics: Sequence[str] = ("loss",),
    log_scale: bool = True,
    title: str | None = None,
) -> Path:
    """Plot ``metrics`` against ``step`` for every split found in ``records``.

    Args:
      records: metrics records (``fit``'s history) or the path of a metrics JSONL.
      path: the PNG to write.
      metrics: one panel per metric name.
      log_scale: logarithmic y axis.
    """
    if isinstance(records, str | os.PathLike):
        records = read_metrics(records)
    if not records:
        raise ValueError("records is empty: nothing to plot")
    fig, axes = plt.subplots(1, len(metrics), figsize=(5 * len(metrics), 3.6), squeeze=False)
    for ax, name in zip(axes[0], metrics, strict=True):
        for split in sorted({r.get("split", "train") for r in records}):
            points = [
                (r["step"], r[name])
                for r in records
                if r.get("split", "train") == split and name in r
            ]
            if points:
                steps, values = zip(*points, strict=True)
                ax.plot(steps, values, marker="o" if len(points) < 30 else None, label=split)
        ax.set_xlabel("step")
        ax.set_ylabel(name)
        if log_scale:
            ax.set_yscale("log")
        ax.grid(alpha=0.3)
        ax.legend()
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def plot_lines(
    curves: dict[str, tuple[Sequence[float], Sequence[float]]],
    path: str | os.PathLike,
    *,
    xlabel: str,
    ylabel: str,
    ylim: tuple[float, float] | None = None,
    points: dict[float, float] | None = None,
    dashed: Sequence[str] = (),
    title: str | None = None,
) -> Path:
    """One panel of labelled curves, e.g. certified accuracy against radius.

    Args:
      curves: ``label -> (x, y)``.
      path: the PNG to write.
      ylim: fixed y range.
      points: extra marked points ``x -> y`` (reported values on the first curve).
      dashed: labels drawn as grey dashed reference curves.
    """
    if not curves:
        raise ValueError("curves is empty: nothing to plot")
    fig, ax = plt.subplots(figsize=(5.5, 3.8))
    for label, (x, y) in curves.items():
        style = {"linestyle": "--", "color": "gray"} if label in dashed else {}
        ax.plot(x, y, label=label, **style)
    if points:
        ax.scatter(list(points), list(points.values()), zorder=3)
    ax.set_xlabel(xlabel)
    ax.set_ylabel(ylabel)
    if ylim is not None:
        ax.set_ylim(*ylim)
    ax.grid(alpha=0.3)
    ax.legend()
    if title:
        ax.set_title(title, fontsize=9)
    return _save(fig, path)


def plot_image_grid(
    rows: Sequence[Sequence[np.ndarray]],
    path: str | os.PathLike,
    *,
    column_titles: Sequence[str] | None = None,
    cmap: str = "viridis",
    title: str | None = None,
) -> Path:
    """A grid of 2-D images with a colour bar each.

    Args:
      rows: ``rows[i][j]`` is an image ``[H, W]`` (or ``[H, W, 1]``).
      path: the PNG to write.
      column_titles: one title per column, shown above the first row.
    """
    if not rows or not rows[0]:
        raise ValueError("rows must hold at least one image")
    n_rows, n_cols = len(rows), len(rows[0])
    if any(len(r) != n_cols for r in rows):
        raise ValueError(f"every row must hold {n_cols} images, got {[len(r) for r in rows]}")
    if column_titles is not None and len(column_titles) != n_cols:
        raise ValueError(f"column_titles must have {n_cols} entries, got {len(column_titles)}")
    fig, axes = plt.subplots(n_rows, n_cols, figsize=(2.8 * n_cols, 2.5 * n_rows), squeeze=False)
    for i, row in enumerate(rows):
        for j, image in enumerate(row):
            ax = axes[i][j]
            im = ax.imshow(np.squeeze(np.asarray(image)), cmap=cmap, origin="lower")
            fig.colorbar(im, ax=ax, fraction=0.046, pad=0.04)
            ax.set_xticks([])
            ax.set_yticks([])
            if i == 0 and column_titles is not None:
                ax.set_title(column_titles[j])
    if title:
        fig.suptitle(title)
    return _save(fig, path)


def _save(fig: Any, path: str | os.PathLike) -> Path:
    """Write ``fig`` to ``path``; in a multi-process run process 0 alone writes."""
    path = Path(path)
    if is_primary():
        path.parent.mkdir(parents=True, exist_ok=True)
        fig.tight_layout()
        fig.savefig(path, dpi=110)
    plt.close(fig)
    return path
