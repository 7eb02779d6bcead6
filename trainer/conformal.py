"""Split-conformal prediction intervals: half-widths calibrated on the selection rows' absolute residuals.

With ``n`` calibration residuals the half-width is their ``ceil((n + 1) * coverage)``-th smallest absolute
value, which guarantees coverage of at least ``coverage`` on new exchangeable rows (Lei et al. 2018,
"Distribution-free predictive inference for regression"). The calibration rows must not have trained the model,
nor chosen it: :func:`nested_oof_predictions` gives training rows out-of-fold predictions of the whole fitting
procedure, model selection included. The pipeline uses those and the selection rows, and measures the coverage
reached on the test rows.
"""

from __future__ import annotations

import math
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge.intervals import IntervalModel
from trainer.errors import CalibrationError
from trainer.splits import grouped_folds

__all__ = ["fit_intervals", "empirical_coverage", "min_calibration_rows", "nested_oof_predictions"]


def min_calibration_rows(coverage: float) -> int:
    """Fewest calibration rows for which a finite conformal half-width exists at ``coverage``."""
    return int(math.ceil(coverage / (1.0 - coverage) - 1e-9))


def fit_intervals(
    residuals_sel: np.ndarray, coverage: float = 0.9, *, target_names: Sequence[str] = ()
) -> IntervalModel:
    """Calibrate per-target half-widths from held-out residuals.

    Parameters
    ----------
    residuals_sel : ndarray, shape (n,) or (n, n_targets)
        ``y_true - y_pred`` on calibration (selection) rows, in target units.
    coverage : float
        Nominal coverage in (0, 1).
    target_names : sequence of str, optional

    Returns
    -------
    edge.intervals.IntervalModel
    """
    r = np.asarray(residuals_sel, dtype=np.float64)
    r = r[:, None] if r.ndim == 1 else r
    if r.ndim != 2 or r.shape[0] == 0:
        raise CalibrationError(f"intervals: expected residuals of shape (n, n_targets), got {np.shape(residuals_sel)}")
    if not np.all(np.isfinite(r)):
        raise CalibrationError("intervals: residuals contain NaN or infinite values")
    if not 0.0 < coverage < 1.0:
        raise CalibrationError(f"intervals.coverage: expected 0 < coverage < 1, got {coverage}")
    n = r.shape[0]
    rank = int(math.ceil((n + 1) * coverage))
    if rank > n:
        raise CalibrationError(
            f"intervals: coverage {coverage:g} needs at least {min_calibration_rows(coverage)} calibration rows, "
            f"got {n}"
        )
    q_hat = np.sort(np.abs(r), axis=0)[rank - 1]
    return IntervalModel(q_hat=q_hat, coverage=coverage, target_names=tuple(target_names), n_calibration=n)


def empirical_coverage(model: IntervalModel, y_true: np.ndarray, y_pred: np.ndarray) -> np.ndarray:
    """Share of rows whose reference value lies inside the interval, per target: shape (n_targets,)."""
    yt = np.asarray(y_true, dtype=np.float64)
    yp = np.asarray(y_pred, dtype=np.float64)
    yt = yt[:, None] if yt.ndim == 1 else yt
    yp = yp[:, None] if yp.ndim == 1 else yp
    lo, hi = model.interval(yp)
    return np.mean((yt >= lo) & (yt <= hi), axis=0)


def nested_oof_predictions(
    X: np.ndarray,
    Y: np.ndarray,
    groups: np.ndarray,
    *,
    fit_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], Any],
    folds: int,
    seed: int,
) -> np.ndarray:
    """Out-of-fold predictions of a whole fitting procedure, its model selection included (nested CV).

    For each grouped fold, ``fit_fn(X_fit, Y_fit, groups_fit)`` chooses and fits a model on the fold's fitting
    rows only (for PLS: the preprocessing candidate and the latent variables by its own inner grouped CV) and the
    model predicts the held-out rows. Residuals of a recipe chosen on the same rows are optimistic by the choice;
    these are held out from the choice as well as from the fit, as split-conformal calibration needs.

    Parameters
    ----------
    X : ndarray, shape (n, ...)
        Training spectra.
    Y : ndarray, shape (n, n_targets)
        Reference values.
    groups : ndarray, shape (n,)
        Rows of a group stay in one fold.
    fit_fn : callable
        ``fit_fn(X_fit, Y_fit, groups_fit) -> model`` with ``model.predict(X) -> (m, n_targets)``.
    folds, seed : int
        Outer fold count and fold shuffling seed.

    Returns
    -------
    ndarray, shape (n, n_targets), float64
    """
    Y = np.asarray(Y, dtype=np.float64)
    Y = Y[:, None] if Y.ndim == 1 else Y
    if X.shape[0] != Y.shape[0] or groups.shape[0] != Y.shape[0]:
        raise CalibrationError(f"nested CV: expected X, Y and groups with the same rows, got {X.shape[0]}, "
                               f"{Y.shape[0]} and {groups.shape[0]}")
    pred = np.full(Y.shape, np.nan)
    for fit_idx, held_idx in grouped_folds(groups, folds, seed=seed):
        model = fit_fn(X[fit_idx], Y[fit_idx], groups[fit_idx])
        out = np.asarray(model.predict(X[held_idx]), dtype=np.float64).reshape(held_idx.size, -1)
        if out.shape[1] != Y.shape[1]:
            raise CalibrationError(f"nested CV: expected predictions of {Y.shape[1]} targets, got {out.shape[1]}")
        pred[held_idx] = out
    return pred
