"""Split-conformal prediction intervals: half-widths calibrated on held-out absolute residuals (the selection rows',
and the training rows' out of fold: :mod:`trainer.pipeline.calibrate`).

With ``n`` calibration residuals the half-width is their ``ceil((n + 1) * coverage)``-th smallest absolute
value, which guarantees coverage of at least ``coverage`` on new exchangeable rows (Lei et al. 2018,
"Distribution-free predictive inference for regression"). The calibration rows must not have trained the model,
nor chosen it: :func:`nested_oof_predictions` gives training rows out-of-fold predictions of the whole fitting
procedure, model selection included. The pipeline uses those and the selection rows, and measures the coverage
reached on the test rows; :func:`residual_shift` says, per test split, whether its errors are larger than the
calibration rows' (the guarantee then no longer applies there, whatever the OOD monitor says).
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Sequence
from typing import Any

import numpy as np

from edge.intervals import IntervalModel
from trainer.errors import CalibrationError
from trainer.splits import grouped_folds

log = logging.getLogger(__name__)

__all__ = ["fit_intervals", "empirical_coverage", "min_calibration_rows", "nested_oof_predictions", "residual_shift"]

#: A test split whose absolute residuals exceed the calibration rows' at this two-sided rank-test p-value, by a
#: median ratio above 1, is reported as shifted (:func:`residual_shift`).
SHIFT_P_VALUE = 0.01


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


def residual_shift(calibration: np.ndarray, test: np.ndarray) -> list[dict[str, float | bool | None]]:
    """Whether a test split's errors look like the calibration rows' errors, per target.

    The conformal guarantee holds for rows exchangeable with the calibration rows. A split can sit inside the
    spectra's distribution (no OOD alarm) and still have larger errors: other reference-method errors, another
    concentration design, a slope change between two campaigns. This compares the absolute residuals of the two
    sets with a two-sided Mann-Whitney rank test.

    Parameters
    ----------
    calibration : ndarray, shape (n, n_targets)
        The held-out residuals the intervals were calibrated on.
    test : ndarray, shape (m, n_targets)
        ``y_true - y_pred`` of the deployed model on the test split.

    Returns
    -------
    list of dict, one per target
        ``median_abs_test``, ``median_abs_calibration``, ``ratio`` (test over calibration; None when the
        calibration median is 0), ``p_value`` and ``shifted`` (``p_value`` below :data:`SHIFT_P_VALUE` and the test
        errors larger).
    """
    from scipy.stats import mannwhitneyu

    cal = np.abs(np.asarray(calibration, dtype=np.float64).reshape(np.shape(calibration)[0], -1))
    tst = np.abs(np.asarray(test, dtype=np.float64).reshape(np.shape(test)[0], -1))
    if cal.shape[1] != tst.shape[1] or cal.shape[0] == 0 or tst.shape[0] == 0:
        raise CalibrationError(f"residual shift: expected non-empty residuals with the same targets, got "
                               f"{cal.shape} and {tst.shape}")
    out: list[dict[str, float | bool | None]] = []
    for j in range(cal.shape[1]):
        m_cal, m_tst = float(np.median(cal[:, j])), float(np.median(tst[:, j]))
        p = float(mannwhitneyu(tst[:, j], cal[:, j], alternative="two-sided").pvalue)
        ratio = m_tst / m_cal if m_cal > 0 else None  # no ratio to a calibration set predicted exactly
        larger = m_tst > m_cal if ratio is None else ratio > 1.0
        out.append({"median_abs_test": m_tst, "median_abs_calibration": m_cal, "ratio": ratio, "p_value": p,
                    "shifted": bool(p < SHIFT_P_VALUE and larger)})
    return out


def nested_oof_predictions(
    X: np.ndarray,
    Y: np.ndarray,
    groups: np.ndarray,
    *,
    fit_fn: Callable[[np.ndarray, np.ndarray, np.ndarray], Any],
    folds: int,
    seed: int,
    progress: str | None = None,
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
    progress : str, optional
        Logs a line named so after each outer fold (with the time spent and an estimate of the rest).

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
    pairs = grouped_folds(groups, folds, seed=seed)
    t0 = time.perf_counter()
    for i, (fit_idx, held_idx) in enumerate(pairs):
        model = fit_fn(X[fit_idx], Y[fit_idx], groups[fit_idx])
        out = np.asarray(model.predict(X[held_idx]), dtype=np.float64).reshape(held_idx.size, -1)
        if out.shape[1] != Y.shape[1]:
            raise CalibrationError(f"nested CV: expected predictions of {Y.shape[1]} targets, got {out.shape[1]}")
        pred[held_idx] = out
        if progress is not None:
            spent = time.perf_counter() - t0
            log.info("%s: fold %d/%d done, %.0f s (about %.0f s to go)", progress, i + 1, len(pairs), spent,
                     spent / (i + 1) * (len(pairs) - i - 1))
    return pred
