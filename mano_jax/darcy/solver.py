"""Finite-difference solver for ``-div(a grad u) = f`` on (0, 1)^2 with ``u = 0`` on the boundary.

Grid: ``s x s`` nodes ``(x_i, x_j) = (i h, j h)``, ``h = 1 / (s - 1)``, boundary
nodes included. At an interior node the 5-point flux-form stencil is

    [a_(i+1/2,j) (u_ij - u_(i+1)j) + a_(i-1/2,j) (u_ij - u_(i-1)j)
     + a_(i,j+1/2) (u_ij - u_i(j+1)) + a_(i,j-1/2) (u_ij - u_i(j-1))] / h^2 = f_ij,

with face coefficients the arithmetic mean of the two adjacent nodal values,
``a_(i+1/2,j) = (a_ij + a_(i+1)j) / 2``. Boundary values are zero, so their
columns are dropped (Dirichlet elimination) and the unknowns are the
``(s - 2)^2`` interior values in row-major order. For ``a > 0`` the matrix is
symmetric positive definite; it is factorised by SuperLU with a symmetric
(minimum degree on ``A + A^T``) ordering and diagonal pivoting.
"""

from __future__ import annotations

import numbers

import numpy as np
import scipy.sparse
import scipy.sparse.linalg

from mano_jax.darcy.coefficient import SeedLike, _check_resolution, sample_coefficient

__all__ = [
    "assemble_darcy_matrix",
    "default_solve_resolution",
    "factorize_darcy_matrix",
    "generate_sample",
    "solve_darcy",
    "solve_stride",
]


def _check_coefficient(a: np.ndarray) -> np.ndarray:
    a = np.asarray(a, dtype=np.float64)
    if a.ndim != 2 or a.shape[0] != a.shape[1] or a.shape[0] < 3:
        raise ValueError(f"a must be a square [s, s] array with s >= 3, got shape {a.shape}")
    if not np.all(np.isfinite(a)) or not np.all(a > 0):
        raise ValueError(
            f"a must be finite and positive everywhere, got min {np.min(a)!r}, max {np.max(a)!r}"
        )
    return a


def assemble_darcy_matrix(a: np.ndarray) -> scipy.sparse.csr_matrix:
    """Assembles the interior finite-difference matrix of ``-div(a grad .)``.

    Args:
      a: ``[s, s]`` positive nodal coefficient, ``s >= 3``.

    Returns:
      ``A: [(s-2)^2, (s-2)^2]`` sparse CSR float64, symmetric positive definite;
      unknown ``(i - 1) * (s - 2) + (j - 1)`` is the value at interior node ``(i, j)``.
    """
    a = _check_coefficient(a)
    s = a.shape[0]
    m = s - 2
    inv_h2 = float(s - 1) ** 2
    # Face coefficients between nodes (i, j) and (i + 1, j) for interior j: [s - 1, m].
    w0 = 0.5 * (a[:-1, 1:-1] + a[1:, 1:-1]) * inv_h2
    # Face coefficients between nodes (i, j) and (i, j + 1) for interior i: [m, s - 1].
    w1 = 0.5 * (a[1:-1, :-1] + a[1:-1, 1:]) * inv_h2
    diag = w0[:-1, :] + w0[1:, :] + w1[:, :-1] + w1[:, 1:]
    index = np.arange(m * m).reshape(m, m)
    # Couplings between neighbouring interior nodes (faces touching the boundary drop out).
    up_rows, up_cols, up_vals = index[:-1, :], index[1:, :], -w0[1:-1, :]
    right_rows, right_cols, right_vals = index[:, :-1], index[:, 1:], -w1[:, 1:-1]
    rows = np.concatenate(
        [index.ravel(), up_rows.ravel(), up_cols.ravel(), right_rows.ravel(), right_cols.ravel()]
    )
    cols = np.concatenate(
        [index.ravel(), up_cols.ravel(), up_rows.ravel(), right_cols.ravel(), right_rows.ravel()]
    )
    vals = np.concatenate(
        [diag.ravel(), up_vals.ravel(), up_vals.ravel(), right_vals.ravel(), right_vals.ravel()]
    )
    return scipy.sparse.csr_matrix((vals, (rows, cols)), shape=(m * m, m * m))


def _interior_rhs(f: float | np.ndarray, s: int) -> np.ndarray:
    if np.ndim(f) == 0:
        value = float(f)
        if not np.isfinite(value):
            raise ValueError(f"f must be finite, got {f!r}")
        return np.full((s - 2) * (s - 2), value)
    f = np.asarray(f, dtype=np.float64)
    if f.shape != (s, s):
        raise ValueError(f"f must be a scalar or an [s, s] = {(s, s)} array, got shape {f.shape}")
    if not np.all(np.isfinite(f)):
        raise ValueError("f must be finite everywhere")
    return f[1:-1, 1:-1].ravel()


def factorize_darcy_matrix(matrix: scipy.sparse.spmatrix) -> scipy.sparse.linalg.SuperLU:
    """Sparse LU factorisation of an SPD Darcy matrix (symmetric ordering, no pivoting)."""
    return scipy.sparse.linalg.splu(
        scipy.sparse.csc_matrix(matrix),
        permc_spec="MMD_AT_PLUS_A",
        diag_pivot_thresh=0.0,
        options={"SymmetricMode": True},
    )


def solve_darcy(a: np.ndarray, f: float | np.ndarray = 1.0) -> np.ndarray:
    """Solves ``-div(a grad u) = f`` on ``(0, 1)^2`` with ``u = 0`` on the boundary.

    Args:
      a: ``[s, s]`` positive nodal coefficient on the node grid ``x_i = i / (s - 1)``.
      f: scalar or ``[s, s]`` nodal right-hand side (boundary values are ignored).

    Returns:
      ``u: [s, s]`` float64 nodal solution, zero on the boundary rows and columns.
    """
    a = _check_coefficient(a)
    s = a.shape[0]
    rhs = _interior_rhs(f, s)
    interior = factorize_darcy_matrix(assemble_darcy_matrix(a)).solve(rhs)
    u = np.zeros((s, s))
    u[1:-1, 1:-1] = interior.reshape(s - 2, s - 2)
    return u


def default_solve_resolution(resolution: int) -> int:
    """Default fine grid for ``resolution = s``: ``2 s - 1`` nodes per side (stride 2)."""
    s = _check_resolution(resolution)
    return 2 * s - 1


def solve_stride(resolution: int, solve_resolution: int) -> int:
    """Stride ``(S - 1) / (s - 1)`` that subsamples an ``S``-node grid to an ``s``-node one.

    Raises:
      ValueError: unless ``S >= s`` and ``(S - 1) % (s - 1) == 0`` (for example 421 -> 85,
        stride 5).
    """
    s = _check_resolution(resolution)
    fine = _check_resolution(solve_resolution, "solve_resolution")
    if fine < s or (fine - 1) % (s - 1) != 0:
        raise ValueError(
            f"solve_resolution must be >= resolution and satisfy (solve_resolution - 1) % "
            f"(resolution - 1) == 0, got solve_resolution={fine} for resolution={s}"
        )
    return (fine - 1) // (s - 1)


def generate_sample(
    seed: SeedLike,
    resolution: int,
    solve_resolution: int | None = None,
    *,
    f: float = 1.0,
    **coefficient_kwargs: float,
) -> tuple[np.ndarray, np.ndarray]:
    """One benchmark pair: coefficient on the fine grid, solve there, subsample.

    The coefficient is sampled by ``sample_coefficient(seed, solve_resolution, ...)``
    on the ``S = solve_resolution`` node grid, the problem is solved there with
    right-hand side ``f``, and both fields are subsampled with stride
    ``(S - 1) / (s - 1)`` (the standard data: ``S = 421``, ``s = 85``, stride 5).

    Args:
      seed: a non-negative int or a ``np.random.SeedSequence``.
      resolution: ``s >= 3``, nodes per side of the returned arrays.
      solve_resolution: ``S``; ``None`` means ``2 s - 1`` (stride 2).
      f: constant right-hand side.
      **coefficient_kwargs: ``alpha``, ``tau``, ``high``, ``low`` of ``sample_coefficient``.

    Returns:
      ``(a, u)``, both ``[s, s]`` float32; ``u`` is zero on the boundary.
    """
    s = _check_resolution(resolution)
    if solve_resolution is None:
        solve_resolution = default_solve_resolution(s)
    stride = solve_stride(s, solve_resolution)
    if isinstance(f, bool) or not isinstance(f, numbers.Real):
        raise ValueError(f"f must be a real scalar, got {f!r}")
    a_fine = sample_coefficient(seed, solve_resolution, **coefficient_kwargs)
    u_fine = solve_darcy(a_fine, f)
    a = a_fine[::stride, ::stride].astype(np.float32)
    u = u_fine[::stride, ::stride].astype(np.float32)
    return a, u
