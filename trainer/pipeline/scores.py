"""Figures of one target (RMSEP, bias, SEP, R2; accuracy) and the JSON cleaning of ``metrics.json``."""

from __future__ import annotations

import math
from collections.abc import Mapping
from typing import Any

import numpy as np


def regression_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """RMSEP, bias (mean of prediction - reference), SEP (bias-corrected spread) and R2 of one target.

    Parameters
    ----------
    y_true, y_pred : ndarray, shape (n,)
    """
    yt = np.asarray(y_true, dtype=np.float64).ravel()
    yp = np.asarray(y_pred, dtype=np.float64).ravel()
    err = yp - yt
    ss_tot = float(np.sum((yt - yt.mean()) ** 2))
    n = yt.size
    return {
        "n": int(n),
        "rmsep": float(np.sqrt(np.mean(err**2))),
        "bias": float(err.mean()),
        "sep": float(err.std(ddof=1)) if n > 1 else 0.0,
        "r2": float(1.0 - np.sum(err**2) / ss_tot) if ss_tot > 0 else float("nan"),
    }


def classification_metrics(y_true: np.ndarray, y_pred: np.ndarray) -> dict[str, float]:
    """Accuracy (share of correctly predicted class indices)."""
    yt = np.asarray(y_true).ravel().astype(np.int64)
    yp = np.asarray(y_pred).ravel().astype(np.int64)
    return {"n": int(yt.size), "accuracy": float(np.mean(yt == yp))}


def clean_json(obj: Any) -> Any:
    """Replace non-finite floats by None and numpy scalars/arrays by Python values, recursively."""
    if isinstance(obj, Mapping):
        return {str(k): clean_json(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [clean_json(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return clean_json(obj.tolist())
    if isinstance(obj, (np.floating, float)):
        v = float(obj)
        return v if math.isfinite(v) else None
    if isinstance(obj, np.integer):
        return int(obj)
    if isinstance(obj, np.bool_):
        return bool(obj)
    return obj
