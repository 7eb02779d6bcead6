"""Savitzky-Golay filter design (numpy least squares) and its application as a convolution.

Written here rather than taken from SciPy because the edge must not import SciPy. The coefficients are the
least-squares polynomial fit of a window (``numpy.linalg.pinv`` of the Vandermonde matrix of the window's
positions scaled to [-1, 1], which keeps it well conditioned for long windows), so the result equals
``scipy.signal.savgol_filter`` in the same mode to rounding (checked by the tests at 1e-10 relative).

Edge modes (same names and meaning as ``scipy.signal.savgol_filter``):

``"interp"`` (default, as in SciPy)
    Interior points use the centred kernel. For the first and last ``window // 2`` points a polynomial of degree
    ``polyorder`` is fitted to the first (last) ``window`` points and its ``deriv``-th derivative evaluated there.
``"mirror"``
    The signal is reflected about its end points without repeating them (``d c b | a b c d | c b a``).
``"nearest"``
    The end values are repeated.
``"wrap"``
    The signal is treated as periodic.
"""

from __future__ import annotations

import math

import numpy as np

from edge.preprocess.spec import FloatArray

__all__ = ["SAVGOL_MODES", "savgol_kernel", "savgol_edge_matrices", "savgol_pad_index", "convolve_rows"]

SAVGOL_MODES = ("interp", "mirror", "nearest", "wrap")


def _scale(window: int) -> float:
    """Positions are divided by this (half the window) so the Vandermonde matrix is well conditioned."""
    return float(max(window // 2, 1))


def _derivative_rows(positions: FloatArray, window: int, polyorder: int, deriv: int, delta: float) -> FloatArray:
    """Matrix D with D[i, k] = d^deriv/dt^deriv (u^k) at t = positions[i], u = t / scale, divided by delta**deriv."""
    s = _scale(window)
    u = positions / s
    d_mat = np.zeros((positions.shape[0], polyorder + 1))
    for k in range(deriv, polyorder + 1):
        d_mat[:, k] = math.factorial(k) / math.factorial(k - deriv) * u ** (k - deriv)
    return d_mat / (delta * s) ** deriv


def _pinv_vandermonde(window: int, polyorder: int) -> FloatArray:
    """Least-squares polynomial fit operator on the centred window scaled to [-1, 1]: shape (polyorder+1, window)."""
    half = window // 2
    u = np.arange(-half, half + 1, dtype=np.float64) / _scale(window)
    vander = np.vander(u, polyorder + 1, increasing=True)
    result: FloatArray = np.asarray(np.linalg.pinv(vander), dtype=np.float64)
    return result


def savgol_kernel(window: int, polyorder: int, deriv: int = 0, delta: float = 1.0) -> FloatArray:
    """Correlation coefficients h of the centred filter: ``y[i] = sum_j h[j] * x[i - window//2 + j]``.

    Parameters
    ----------
    window : int
        Odd window length (points).
    polyorder : int
        Degree of the fitted polynomial, ``< window``.
    deriv : int
        Order of the derivative (0 = smoothing).
    delta : float
        Sample spacing (axis units per channel) used to scale derivatives.

    Returns
    -------
    ndarray of float64, shape (window,)
    """
    d_mat = _derivative_rows(np.zeros(1), window, polyorder, deriv, delta)
    kernel: FloatArray = (d_mat @ _pinv_vandermonde(window, polyorder))[0]
    return kernel


def savgol_edge_matrices(
    window: int, polyorder: int, deriv: int = 0, delta: float = 1.0
) -> tuple[FloatArray, FloatArray]:
    """Matrices giving the ``"interp"`` edge values from the first/last ``window`` points.

    Returns
    -------
    left : ndarray, shape (window // 2, window)
        ``y[:half] = left @ x[:window]``.
    right : ndarray, shape (window // 2, window)
        ``y[-half:] = right @ x[-window:]``.
    """
    half = window // 2
    fit = _pinv_vandermonde(window, polyorder)
    left_pos = np.arange(-half, 0, dtype=np.float64)
    right_pos = np.arange(1, half + 1, dtype=np.float64)
    left: FloatArray = _derivative_rows(left_pos, window, polyorder, deriv, delta) @ fit
    right: FloatArray = _derivative_rows(right_pos, window, polyorder, deriv, delta) @ fit
    return left, right


def savgol_pad_index(n: int, half: int, mode: str) -> np.ndarray:
    """Indices padding a length-``n`` signal by ``half`` points each side in ``mode`` (mirror, nearest, wrap)."""
    idx = np.arange(-half, n + half)
    if mode == "mirror":
        idx = np.where(idx < 0, -idx, idx)
        idx = np.where(idx > n - 1, 2 * (n - 1) - idx, idx)
    elif mode == "nearest":
        idx = np.clip(idx, 0, n - 1)
    elif mode == "wrap":
        idx = idx % n
    else:
        raise ValueError(f"expected mode in ('mirror', 'nearest', 'wrap'), got {mode!r}")
    return idx


def convolve_rows(X: FloatArray, kernel_reversed: FloatArray) -> FloatArray:
    """'Valid' convolution of every row of a C-contiguous ``X`` (shape (n,) or (m, n)) with one kernel.

    A batch is convolved as one flat signal (one numpy call) and the windows that straddle two rows are dropped,
    so each output value is the same dot product, in the same order, as for a single spectrum.

    Returns
    -------
    ndarray, shape (n - w + 1,) or (m, n - w + 1); for a batch a strided view of a fresh array.
    """
    w = kernel_reversed.shape[0]
    if X.ndim == 1:
        out1: FloatArray = np.convolve(X, kernel_reversed, mode="valid")
        return out1
    m, n = X.shape
    flat = np.convolve(X.reshape(-1), kernel_reversed, mode="valid")  # length m*n - w + 1
    out2: FloatArray = np.lib.stride_tricks.as_strided(
        flat, shape=(m, n - w + 1), strides=(n * flat.itemsize, flat.itemsize), writeable=False
    )
    return out2
