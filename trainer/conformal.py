"""Split-conformal prediction intervals: half-widths calibrated on the selection rows' absolute residuals.

With ``n`` calibration residuals the half-width is their ``ceil((n + 1) * coverage)``-th smallest absolute
value, which guarantees coverage of at least ``coverage`` on new exchangeable rows (Lei et al. 2018,
"Distribution-free predictive inference for regression"). The calibration rows must not have trained the model;
the pipeline uses the selection rows and measures the coverage reached on the test rows.
"""

from __future__ import annotations

import math
from collections.abc import Sequence

import numpy as np

from edge.intervals import IntervalModel
from trainer.errors import CalibrationError

__all__ = ["fit_intervals", "empirical_coverage", "min_calibration_rows"]


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
