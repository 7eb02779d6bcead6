"""The :class:`SpectralDataset` every loader returns, and :func:`validate_dataset`, the checks at the door."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field, replace

import numpy as np

from trainer.errors import DataError, did_you_mean

#: Fewest rows a dataset may have: below this no calibration, cross-validation or conformal limit means anything.
MIN_SAMPLES = 10
@dataclass(frozen=True)
class SpectralDataset:
    """Spectra with their axis, reference values and per-row metadata.

    Parameters
    ----------
    X : ndarray, shape (n_samples, n_channels), float64
        Spectra, usually absorbance (log(1/T) or log(1/R)).
    wavelengths : ndarray, shape (n_channels,), float64
        Spectral axis, strictly monotonic, in ``axis_unit``.
    y : ndarray, shape (n_samples, n_targets)
        Reference values, float64 for regression; int64 class indices into ``class_names`` for classification.
    target_names : tuple of str, length n_targets
        Name of each column of ``y``.
    class_names : tuple of str or None
        Class labels when the dataset is a classification problem, else None.
    columns : mapping of str to ndarray, each shape (n_samples,)
        Per-row metadata such as ``split``, ``instrument``, ``sample_id``, ``groups`` or ``meta_*``.
    source : str
        Where the data came from (a file name), for messages and the report.
    axis_unit : str
        Unit of ``wavelengths``: ``"nm"`` or ``"cm-1"``.
    """

    X: np.ndarray
    wavelengths: np.ndarray
    y: np.ndarray
    target_names: tuple[str, ...]
    class_names: tuple[str, ...] | None = None
    columns: Mapping[str, np.ndarray] = field(default_factory=dict)
    source: str = "<memory>"
    axis_unit: str = "nm"

    @property
    def n_samples(self) -> int:
        """Number of rows (spectra)."""
        return int(self.X.shape[0])

    @property
    def n_channels(self) -> int:
        """Number of spectral channels."""
        return int(self.X.shape[1])

    @property
    def is_classification(self) -> bool:
        """True when ``y`` holds class indices into ``class_names``."""
        return self.class_names is not None

    def column(self, name: str) -> np.ndarray:
        """Per-row metadata column ``name``, shape (n_samples,); :class:`DataError` naming what exists if absent."""
        if name not in self.columns:
            known = ", ".join(sorted(self.columns)) or "none"
            raise DataError(f"{self.source}: no per-row column {name!r}; available columns: {known}")
        return self.columns[name]

    def select_targets(self, names: Sequence[str]) -> SpectralDataset:
        """Keep only the targets ``names`` (in that order); :class:`DataError` when one is missing."""
        if not names:
            raise DataError(f"{self.source}: expected at least one target name, got none")
        index = []
        for name in names:
            if name not in self.target_names:
                raise DataError(
                    f"{self.source}: target {name!r} not found{did_you_mean(name, self.target_names)}; "
                    f"available targets: {', '.join(self.target_names)}"
                )
            index.append(self.target_names.index(name))
        return replace(self, y=self.y[:, index], target_names=tuple(names))

    def subset(self, rows: np.ndarray) -> SpectralDataset:
        """Rows ``rows`` (integer indices or boolean mask) of every per-row array."""
        return replace(
            self,
            X=self.X[rows],
            y=self.y[rows],
            columns={k: v[rows] for k, v in self.columns.items()},
        )


def validate_dataset(ds: SpectralDataset, *, min_samples: int = MIN_SAMPLES) -> SpectralDataset:
    """Check shapes, finiteness, axis monotonicity, targets and row count; return ``ds`` unchanged when valid.

    Raises
    ------
    DataError
        With a message naming the file and what was expected, e.g. "expected 650 wavelengths, got 649".
    """
    src = ds.source
    X = ds.X
    if X.ndim != 2:
        raise DataError(f"{src}: expected X with 2 dimensions (samples x channels), got shape {X.shape}")
    n, p = X.shape
    if n < min_samples:
        raise DataError(f"{src}: expected at least {min_samples} samples, got {n}")
    if p < 2:
        raise DataError(f"{src}: expected at least 2 spectral channels, got {p}")
    bad = ~np.isfinite(X)
    if bad.any():
        rows = np.flatnonzero(bad.any(axis=1))
        raise DataError(
            f"{src}: X holds {int(bad.sum())} NaN/infinite values in {rows.size} spectra (first at row {int(rows[0])})"
        )
    # A flat spectrum (a dead or blocked detector, padding) is no measurement, and SNV or a normalisation of it
    # fails only after training, when the split that holds it is preprocessed.
    flat = np.flatnonzero(np.ptp(X, axis=1) == 0)
    if flat.size:
        r = int(flat[0])
        key = next((f", {k} {str(ds.columns[k][r])!r}" for k in ("sample_id", "file") if k in ds.columns), "")
        raise DataError(
            f"{src}: expected spectra that vary across channels, got {flat.size} constant spectra (first at row {r}"
            f"{key}: every channel {float(X[r, 0]):g}); remove them or list them in [data] exclude"
        )
    wl = ds.wavelengths
    if wl.ndim != 1 or wl.shape[0] != p:
        raise DataError(f"{src}: expected {p} wavelengths (one per channel), got shape {wl.shape}")
    if not np.all(np.isfinite(wl)):
        raise DataError(f"{src}: wavelength axis holds NaN/infinite values")
    step = np.diff(wl)
    if not (np.all(step > 0) or np.all(step < 0)):
        where = int(np.flatnonzero(np.sign(step) != np.sign(step[0]))[0]) + 1 if np.any(step != 0) else 1
        raise DataError(
            f"{src}: expected a strictly monotonic wavelength axis, but it turns or repeats at channel {where} "
            f"({wl[where - 1]:g} -> {wl[where]:g} {ds.axis_unit})"
        )
    y = ds.y
    if y.ndim != 2 or y.shape[0] != n:
        raise DataError(f"{src}: expected y with {n} rows (one per spectrum) and 2 dimensions, got shape {y.shape}")
    if y.shape[1] == 0:
        raise DataError(f"{src}: expected at least one target column, got none")
    if len(ds.target_names) != y.shape[1]:
        raise DataError(f"{src}: expected {y.shape[1]} target names (one per y column), got {len(ds.target_names)}")
    if ds.class_names is not None:
        if y.shape[1] != 1:
            raise DataError(f"{src}: classification expects one label column, got {y.shape[1]}")
        k = len(ds.class_names)
        if k < 2:
            raise DataError(f"{src}: classification expects at least 2 classes, got {k}")
        if y.min() < 0 or y.max() >= k:
            raise DataError(f"{src}: class indices must lie in [0, {k - 1}], got [{int(y.min())}, {int(y.max())}]")
    else:
        for j, name in enumerate(ds.target_names):
            missing = ~np.isfinite(y[:, j])
            if missing.any():
                raise DataError(
                    f"{src}: target {name!r} is missing (NaN) for {int(missing.sum())} of {n} samples "
                    f"(first at row {int(np.flatnonzero(missing)[0])})"
                )
    for key, col in ds.columns.items():
        if col.shape != (n,):
            raise DataError(f"{src}: expected column {key!r} with {n} rows, got shape {col.shape}")
    return ds


def _as_str_tuple(a: np.ndarray | Sequence[str]) -> tuple[str, ...]:
    return tuple(str(s) for s in np.asarray(a).ravel())
