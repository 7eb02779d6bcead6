"""Rows as a loader read them, and the common finish: exclusions, missing references, class order, validation."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import numpy as np

from trainer.data.cells import _MISSING_POLICIES, _bool_hint, _class_names, _column_array, _matches
from trainer.data.dataset import SpectralDataset, validate_dataset
from trainer.errors import DataError, did_you_mean

log = logging.getLogger(__name__)


@dataclass
class _Raw:
    """What a loader read, before :func:`_finish` applies exclusions and the missing-reference policy.

    ``y`` holds regression values (NaN where missing) or, with preset ``class_names``, class indices;
    ``labels`` holds classification labels as text ("" where missing). ``columns`` are typed arrays, or lists of
    cell text typed after rows are dropped. ``missing`` says, per row, why it has no reference ("" when it has).
    """

    X: np.ndarray
    wavelengths: np.ndarray
    axis_unit: str
    target_names: tuple[str, ...]
    y: np.ndarray | None
    labels: list[str] | None
    class_names: tuple[str, ...] | None
    columns: dict[str, np.ndarray | list[str]]
    source: str
    missing: list[str]
    comma_decimal: bool = False


def _typed(
    columns: Mapping[str, np.ndarray | list[str]], rows: np.ndarray | None, comma: bool
) -> dict[str, np.ndarray]:
    out: dict[str, np.ndarray] = {}
    for k, v in columns.items():
        if isinstance(v, list):
            out[k] = _column_array(v if rows is None else [v[i] for i in rows], comma)
        else:
            out[k] = v if rows is None else v[rows]
    return out


def _exclusion_mask(columns: Mapping[str, np.ndarray], exclude: Mapping[str, Any], source: str) -> np.ndarray:
    """Rows matching any ``column = [values]`` of ``exclude``; every value must match at least one row."""
    n = next(iter(columns.values())).shape[0] if columns else 0
    mask = np.zeros(n, dtype=bool)
    for name, wanted in exclude.items():
        if name not in columns:
            known = ", ".join(sorted(columns)) or "none"
            raise DataError(f"data.exclude.{name}: {source} has no per-row column {name!r}"
                            f"{did_you_mean(name, columns)}; available: {known}")
        col = columns[name]
        absent = []
        for v in wanted if isinstance(wanted, (list, tuple)) else [wanted]:
            hit = _matches(col, v)
            if not hit.any():
                absent.append(v)
            mask |= hit
        if absent:
            present = ", ".join(str(v) for v in np.unique(col)[:12])
            raise DataError(
                f"data.exclude.{name}: expected values present in column {name!r}, got {len(absent)} that no row "
                f"has: {', '.join(map(repr, absent))} (values present: {present})" + _bool_hint(col, name, absent)
            )
    return mask


def _finish(
    raw: _Raw,
    *,
    exclude: Mapping[str, Any] | None,
    missing_reference: str,
    min_samples: int,
) -> SpectralDataset:
    """Drop excluded rows, then rows without a reference (or refuse them), order the classes, validate."""
    if missing_reference not in _MISSING_POLICIES:
        raise DataError(f"missing_reference: expected 'error' or 'drop', got {missing_reference!r}")
    n = raw.X.shape[0] if raw.X.ndim == 2 else 0
    if raw.labels is not None:
        n_ref = len(raw.labels)
    else:
        n_ref = raw.y.shape[0] if raw.y is not None and raw.y.ndim else -1
    if raw.X.ndim != 2 or n_ref != n or raw.y is not None and raw.y.ndim != 2:
        validate_dataset(  # raises the shape error, naming what was expected
            SpectralDataset(X=raw.X, wavelengths=raw.wavelengths, y=raw.y if raw.y is not None else np.zeros((0, 1)),
                            target_names=raw.target_names, source=raw.source, axis_unit=raw.axis_unit),
            min_samples=min_samples,
        )
        raise DataError(f"{raw.source}: expected {n} reference rows (one per spectrum), got {n_ref}")
    keep = np.ones(n, dtype=bool)
    if exclude:
        dropped = _exclusion_mask(_typed(raw.columns, None, raw.comma_decimal), exclude, raw.source)
        keep &= ~dropped
        log.info("%s: data.exclude dropped %d of %d rows", raw.source, int(dropped.sum()), n)
    missing = np.array([bool(m) for m in raw.missing], dtype=bool) if raw.missing else np.zeros(n, dtype=bool)
    lacking = np.flatnonzero(missing & keep)
    if lacking.size:
        reasons = list(dict.fromkeys(raw.missing[i] for i in lacking))
        shown = "; ".join(reasons[:5]) + (f"; ... ({len(reasons) - 5} more)" if len(reasons) > 5 else "")
        if missing_reference == "error":
            raise DataError(
                f"{raw.source}: expected a reference value for every row, got {lacking.size} of {int(keep.sum())} "
                f"rows without: {shown}. Fill them in, exclude them ([data] exclude) or set "
                "[data] missing_reference = \"drop\""
            )
        keep &= ~missing
        log.warning("%s: dropped %d of %d rows without a reference value (%s)", raw.source, lacking.size, n, shown)
    rows = np.flatnonzero(keep)
    class_names = raw.class_names
    if raw.labels is not None:
        labels, class_names = _class_names([raw.labels[i] for i in rows])
        y = np.array([class_names.index(v) for v in labels], dtype=np.int64).reshape(-1, 1)
    else:
        assert raw.y is not None
        y = raw.y[rows]
    ds = SpectralDataset(
        X=raw.X[rows],
        wavelengths=raw.wavelengths,
        y=y,
        target_names=raw.target_names,
        class_names=class_names,
        columns=_typed(raw.columns, rows, raw.comma_decimal),
        source=raw.source,
        axis_unit=raw.axis_unit,
    )
    return validate_dataset(ds, min_samples=min_samples)


def _check_unit(axis_unit: str | None) -> None:
    if axis_unit not in (None, "nm", "cm-1"):
        raise DataError(f"axis_unit: expected 'nm' or 'cm-1', got {axis_unit!r}")
