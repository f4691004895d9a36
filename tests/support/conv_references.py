"""Numpy references for the convolution bounds tests: the explicit convolution matrix
and its spectral norms (zero and circular padding), and HWIO -> OIHW."""

import numpy as np


def explicit_matrix(oihw, n: int, padding: str = "zero") -> np.ndarray:
    """The stride-1 "same" cross-correlation on ``[n, n, c_in]`` as a matrix, entry by entry
    from ``y[p, q, o] = sum K[o, i, u, v] x[p + u - lo, q + v - lo, i]`` with
    ``lo = (k - 1) // 2`` (XLA's "SAME"), zero outside ``[0, n)`` or wrapping around
    (numpy loops). Rows ``(p, q, o)``, columns ``(p, q, i)``, NHWC order."""
    oihw = np.asarray(oihw, np.float64)
    c_out, c_in, k, _ = oihw.shape
    lo = (k - 1) // 2
    m = np.zeros((n, n, c_out, n, n, c_in))
    for p in range(n):
        for q in range(n):
            for u in range(k):
                for v in range(k):
                    a, b = p + u - lo, q + v - lo
                    if padding == "circular":
                        a, b = a % n, b % n
                    elif not (0 <= a < n and 0 <= b < n):
                        continue
                    m[p, q, :, a, b, :] += oihw[:, :, u, v]
    return m.reshape(n * n * c_out, n * n * c_in)


def zero_norm(oihw, n: int) -> float:
    """Spectral norm of the zero-padding convolution at size ``n`` (numpy SVD)."""
    return float(np.linalg.norm(explicit_matrix(oihw, n), 2))


def circular_norm(oihw, n: int) -> float:
    """Spectral norm of the circular convolution at size ``n``: the largest singular value
    of the kernel's 2-D DFT over the ``n x n`` frequencies (Sedghi et al. 2019; numpy)."""
    symbols = np.fft.fft2(np.asarray(oihw, np.float64), s=(n, n), axes=(-2, -1))
    return float(np.linalg.svd(np.moveaxis(symbols, (0, 1), (-2, -1)), compute_uv=False).max())


def oihw_of(hwio) -> np.ndarray:
    return np.transpose(np.asarray(hwio), (3, 2, 0, 1))
