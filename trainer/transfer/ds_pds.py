"""Fitting DS and PDS from paired spectra: (piecewise) direct standardisation, regularised towards the identity."""

from __future__ import annotations

from collections.abc import Callable, Sequence
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.errors import CalibrationError, DataError
from trainer.transfer.model import DEFAULT_PDS_WINDOWS, DEFAULT_RCOND, METHODS, FloatArray, TransferModel


def _check_pair(X_master: npt.ArrayLike, X_slave: npt.ArrayLike) -> tuple[FloatArray, FloatArray]:
    Xm = np.asarray(X_master, dtype=np.float64)
    Xs = np.asarray(X_slave, dtype=np.float64)
    if Xm.ndim != 2 or Xs.ndim != 2:
        raise DataError(f"expected 2-D master and slave spectra, got shapes {Xm.shape} and {Xs.shape}")
    if Xm.shape != Xs.shape:
        raise DataError(f"expected paired master and slave spectra of one shape, got {Xm.shape} and {Xs.shape}")
    if Xm.shape[0] < 2:
        raise DataError(f"expected at least 2 transfer samples, got {Xm.shape[0]}")
    if not (np.all(np.isfinite(Xm)) and np.all(np.isfinite(Xs))):
        raise DataError("expected finite transfer spectra, got NaN or inf")
    return Xm, Xs


def _pinv_solve(A: FloatArray, B: FloatArray, rcond: float, alpha: float) -> FloatArray:
    """Minimum-norm (truncated SVD, or ridge when ``alpha > 0``) solution of ``A @ X = B``; batched over axis 0."""
    U, s, Vt = np.linalg.svd(A, full_matrices=False)
    smax = s.max(axis=-1, keepdims=True) if s.size else s
    if alpha > 0:
        inv = s / (s * s + alpha * (smax * smax))
    else:
        with np.errstate(divide="ignore"):
            inv = np.where(s > rcond * smax, 1.0 / np.where(s > 0, s, 1.0), 0.0)
    UtB = np.swapaxes(U, -1, -2) @ B
    return np.swapaxes(Vt, -1, -2) @ (inv[..., :, None] * UtB)


def fit_ds(
    X_master: npt.ArrayLike,
    X_slave: npt.ArrayLike,
    *,
    rcond: float = DEFAULT_RCOND,
    alpha: float = 0.0,
    toward_identity: bool = True,
) -> TransferModel:
    """Direct standardisation from paired transfer spectra.

    Parameters
    ----------
    X_master, X_slave : ndarray, shape (n, p)
        The same ``n`` samples on the master and the slave (absorbance on the model grid, rows paired).
    rcond : float
        Relative singular-value cut-off of the pseudo-inverse.
    alpha : float
        Ridge strength relative to the largest squared singular value (0: truncated SVD only).
    toward_identity : bool
        Regularise towards ``F = I`` (default) instead of ``F = 0`` (classic DS).

    Returns
    -------
    TransferModel
    """
    Xm, Xs = _check_pair(X_master, X_slave)
    mm, ms = Xm.mean(axis=0), Xs.mean(axis=0)
    A, B = Xs - ms, Xm - mm
    p = Xm.shape[1]
    if toward_identity:
        F = np.eye(p) + _pinv_solve(A, B - A, rcond, alpha)
    else:
        F = _pinv_solve(A, B, rcond, alpha)
    return TransferModel("ds", F, mm - ms @ F, n_transfer=int(Xm.shape[0]))


def _window_bounds(p: int, window: int) -> tuple[np.ndarray, np.ndarray]:
    half = window // 2
    i = np.arange(p)
    lo = np.clip(i - half, 0, max(p - window, 0))
    hi = np.minimum(lo + window, p)
    return lo, hi


def _pds_matrix(A: FloatArray, B: FloatArray, window: int, rcond: float, toward_identity: bool) -> FloatArray:
    """Banded ``F`` (p, p) regressing each centred master channel ``B[:, i]`` on the slave window around ``i``."""
    p = A.shape[1]
    w = min(window, p)
    lo, _ = _window_bounds(p, w)
    idx = lo[:, None] + np.arange(w)[None, :]  # (p, w) slave channels of each master channel
    Aw = np.transpose(A[:, idx], (1, 0, 2))  # (p, n, w)
    target = B.T[:, :, None]  # (p, n, 1)
    if toward_identity:
        target = target - A.T[:, :, None]
    coef = _pinv_solve(Aw, target, rcond, 0.0)[:, :, 0]  # (p, w)
    F = np.zeros((p, p))
    cols = np.repeat(np.arange(p), w)
    F[idx.ravel(), cols] = coef.ravel()
    if toward_identity:
        F[np.arange(p), np.arange(p)] += 1.0
    return F


def choose_pds_window(
    X_master: npt.ArrayLike,
    X_slave: npt.ArrayLike,
    *,
    windows: Sequence[int] = DEFAULT_PDS_WINDOWS,
    rcond: float = DEFAULT_RCOND,
    toward_identity: bool = True,
    score_transform: Callable[[FloatArray], FloatArray] | None = None,
) -> tuple[int, dict[int, float]]:
    """Choose the PDS window width by leave-one-out cross-validation over the transfer samples.

    Parameters
    ----------
    X_master, X_slave : ndarray, shape (n, p)
        Paired transfer spectra (n >= 3).
    windows : sequence of int
        Candidate widths (channels).
    rcond, toward_identity
        As :func:`fit_pds`.
    score_transform : callable, optional
        Applied to the reconstructed and the true master spectra before the squared error (for example the
        model's SNV + derivative, so the criterion weighs what the model sees rather than baseline offsets).

    Returns
    -------
    window : int
        The width with the lowest mean squared error (the smallest among ties within 1 %).
    cv_mse : dict of int to float
        Mean squared error per width.
    """
    Xm, Xs = _check_pair(X_master, X_slave)
    n, p = Xm.shape
    if n < 3:
        raise DataError(f"expected at least 3 transfer samples to cross-validate the PDS window, got {n}")
    tf = score_transform if score_transform is not None else (lambda X: X)
    cv: dict[int, float] = {}
    truth = tf(Xm)
    for w in sorted({int(v) for v in windows}):
        if w < 1:
            raise DataError(f"expected PDS windows >= 1 channel, got {w}")
        if w > p:
            continue
        pred = np.empty_like(Xm)
        for k in range(n):
            keep = np.arange(n) != k
            t = fit_pds(Xm[keep], Xs[keep], window=w, rcond=rcond, toward_identity=toward_identity)
            pred[k] = t.transform(Xs[k])
        cv[w] = float(np.mean((tf(pred) - truth) ** 2))
    if not cv:
        raise DataError(f"no PDS window fits {p} channels; tried {sorted(windows)}")
    best = min(cv.values())
    window = min(w for w, v in cv.items() if v <= best * 1.01)
    return window, cv


def fit_pds(
    X_master: npt.ArrayLike,
    X_slave: npt.ArrayLike,
    *,
    window: int | None = None,
    windows: Sequence[int] = DEFAULT_PDS_WINDOWS,
    rcond: float = DEFAULT_RCOND,
    toward_identity: bool = True,
    score_transform: Callable[[FloatArray], FloatArray] | None = None,
) -> TransferModel:
    """Piecewise direct standardisation from paired transfer spectra, with its additive offset.

    Parameters
    ----------
    X_master, X_slave : ndarray, shape (n, p)
        The same ``n`` samples on the master and the slave (absorbance on the model grid, rows paired).
    window : int, optional
        Window width (channels); chosen by :func:`choose_pds_window` over ``windows`` when None.
    windows, score_transform
        Cross-validation candidates and criterion (see :func:`choose_pds_window`).
    rcond : float
        Relative singular-value cut-off of each window's pseudo-inverse.
    toward_identity : bool
        Regress the master-minus-slave difference (default), so an unexplained direction passes unchanged.

    Returns
    -------
    TransferModel
    """
    Xm, Xs = _check_pair(X_master, X_slave)
    cv: dict[int, float] = {}
    if window is None:
        window, cv = choose_pds_window(
            Xm, Xs, windows=windows, rcond=rcond, toward_identity=toward_identity, score_transform=score_transform
        )
    if not isinstance(window, (int, np.integer)) or window < 1:
        raise DataError(f"expected a PDS window >= 1 channel, got {window!r}")
    mm, ms = Xm.mean(axis=0), Xs.mean(axis=0)
    F = _pds_matrix(Xs - ms, Xm - mm, int(window), rcond, toward_identity)
    return TransferModel("pds", F, mm - ms @ F, n_transfer=int(Xm.shape[0]), window=int(window), cv_mse=cv)


def fit_transfer(
    X_master: npt.ArrayLike, X_slave: npt.ArrayLike, *, method: str = "pds", window: int | None = None, **kwargs: Any
) -> TransferModel:
    """Fit ``method`` (``"ds"`` or ``"pds"``); keyword arguments go to :func:`fit_ds` / :func:`fit_pds`."""
    if method == "ds":
        if window is not None:
            raise CalibrationError("expected no window for DS (it maps the whole spectrum)")
        return fit_ds(X_master, X_slave, **kwargs)
    if method == "pds":
        return fit_pds(X_master, X_slave, window=window, **kwargs)
    raise CalibrationError(f"unknown transfer method {method!r}; expected one of {', '.join(METHODS)}")
