"""The spectra a device archived (``spectro-edge export``'s ``.npz``), read back as the frames the edge received.

:class:`LineArchive` holds the export's per-row arrays; :meth:`LineArchive.frame` rebuilds, for one row, the
:class:`firmware_bridge.frames.Spectrum`, the :class:`edge.references.ReferenceSet` in use and the device axis, so
that the deployed bundle can be run on it with the edge's own :class:`edge.inference.InferenceEngine`, and
:func:`training_signal` turns rows into the training quantity (absorbance, ...) on the training axis with the
bundle's own leading ``counts`` step and the edge's ``resample`` step, so they can join the training data.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data.npz import read_npz
from trainer.errors import DataError

__all__ = ["LineArchive", "load_line_archive", "pixel_dtype", "training_signal"]

#: Arrays every export carries (``edge.archive.export_npz``) that the update reads.
_REQUIRED = ("X", "wavelengths", "target_names", "sample_id", "seq", "device_timestamp_us", "received_unix_s",
             "integration_time_us", "signal", "outcome", "prediction", "bundle_sha256", "model_version",
             "dark_spectra", "dark_index", "white_spectra", "white_index", "axis_is_pixel_index")
#: Those of them with one entry per archived spectrum.
_PER_ROW = ("sample_id", "seq", "device_timestamp_us", "received_unix_s", "integration_time_us", "signal", "outcome",
            "prediction", "bundle_sha256", "model_version", "dark_index", "white_index")


@dataclass(frozen=True)
class LineArchive:
    """The rows of one export, as arrays (shapes: ``n`` rows, ``p`` pixels, ``t`` exported targets)."""

    path: Path
    X: np.ndarray  # (n, p) values as received (counts for a counts device)
    wavelengths: np.ndarray  # (p,) the device axis in nm (or the bundle's grid, see ``axis_is_pixel_index``)
    axis_is_pixel_index: bool
    target_names: tuple[str, ...]
    sample_id: np.ndarray  # (n,) str, "" when untagged
    seq: np.ndarray
    device_timestamp_us: np.ndarray
    received_unix_s: np.ndarray
    integration_time_us: np.ndarray
    signal: np.ndarray
    outcome: np.ndarray
    prediction: np.ndarray  # (n, t) what the device published (NaN for a rejected spectrum)
    bundle_sha256: np.ndarray
    model_version: np.ndarray
    dark_spectra: np.ndarray
    dark_index: np.ndarray
    white_spectra: np.ndarray
    white_index: np.ndarray

    @property
    def n(self) -> int:
        """Number of archived spectra."""
        return int(self.X.shape[0])

    def references(self, i: int) -> Any:
        """The :class:`edge.references.ReferenceSet` row ``i`` was judged with (the export's dark and white)."""
        from edge.references import ReferenceKind, ReferenceSet, ReferenceSpectrum

        t_us = int(self.integration_time_us[i])

        def ref(kind: Any, spectra: np.ndarray, index: np.ndarray) -> Any:
            k = int(index[i])
            if k < 0:
                return None
            return ReferenceSpectrum(kind, spectra[k], captured_at_s=float(self.received_unix_s[i]),
                                     integration_time_us=t_us if t_us > 0 else None)

        return ReferenceSet(dark=ref(ReferenceKind.DARK, self.dark_spectra, self.dark_index),
                            reference=ref(ReferenceKind.WHITE, self.white_spectra, self.white_index))

    def frame(self, i: int, pixel_dtype: np.dtype[Any]) -> tuple[Any, Any, np.ndarray | None]:
        """``(Spectrum, ReferenceSet, device axis in nm or None)`` of row ``i``, the values cast back to
        ``pixel_dtype`` (the export keeps them as float32, exact for 16-bit counts)."""
        from firmware_bridge.frames import Spectrum

        spectrum = Spectrum(seq=int(self.seq[i]), timestamp_us=int(self.device_timestamp_us[i]),
                            integration_time_us=max(int(self.integration_time_us[i]), 1),
                            counts=self.X[i].astype(pixel_dtype))
        return spectrum, self.references(i), None if self.axis_is_pixel_index else self.wavelengths


def load_line_archive(path: str | Path) -> LineArchive:
    """Read an export of ``spectro-edge export``; :class:`DataError` naming the file and what is missing."""
    path = Path(path)
    arrays = read_npz(
        path, missing=f"{path}: no such archive export (write one with `spectro-edge export ARCHIVE --out F.npz`)",
        unreadable=lambda exc: f"{path.name}: expected a .npz written by spectro-edge export, got {exc}")
    missing = [k for k in _REQUIRED if k not in arrays]
    if missing:
        raise DataError(f"{path.name}: expected the arrays of a spectro-edge export, got none named "
                        f"{', '.join(missing)}")
    X = np.asarray(arrays["X"], dtype=np.float64)
    n = X.shape[0] if X.ndim == 2 else -1
    if n < 1:
        raise DataError(f"{path.name}: expected X of shape (rows, pixels) with at least one row, got {X.shape}")
    for key in _PER_ROW:
        if arrays[key].shape[:1] != (n,):
            raise DataError(f"{path.name}: expected {key} with {n} rows (one per spectrum), got shape "
                            f"{arrays[key].shape}")
    return LineArchive(
        path=path, X=X, wavelengths=np.asarray(arrays["wavelengths"], dtype=np.float64),
        axis_is_pixel_index=bool(arrays["axis_is_pixel_index"]),
        target_names=tuple(str(t) for t in arrays["target_names"]),
        sample_id=arrays["sample_id"].astype(str), seq=arrays["seq"].astype(np.int64),
        device_timestamp_us=arrays["device_timestamp_us"].astype(np.int64),
        received_unix_s=arrays["received_unix_s"].astype(np.float64),
        integration_time_us=arrays["integration_time_us"].astype(np.int64), signal=arrays["signal"].astype(str),
        outcome=arrays["outcome"].astype(str), prediction=np.asarray(arrays["prediction"], dtype=np.float64),
        bundle_sha256=arrays["bundle_sha256"].astype(str), model_version=arrays["model_version"].astype(str),
        dark_spectra=np.asarray(arrays["dark_spectra"], dtype=np.float64),
        dark_index=arrays["dark_index"].astype(np.int64),
        white_spectra=np.asarray(arrays["white_spectra"], dtype=np.float64),
        white_index=arrays["white_index"].astype(np.int64),
    )


def pixel_dtype(line: LineArchive, bundle: Any) -> np.dtype[Any]:
    """The pixel format the device most likely sent: the first of the bundle's accepted formats that holds every
    exported value exactly (uint16, uint32, then float32)."""
    from firmware_bridge.frames import PIXEL_DTYPES, PixelFormat

    allowed = [PixelFormat[name] for name in bundle.input_contract.pixel_formats if name in PixelFormat.__members__]
    X = line.X
    integral = bool(np.all(X == np.rint(X))) and float(X.min(initial=0.0)) >= 0.0
    for fmt in (PixelFormat.UINT16, PixelFormat.UINT32, PixelFormat.FLOAT32):
        if allowed and fmt not in allowed:
            continue
        if fmt is PixelFormat.FLOAT32 or (integral and float(X.max(initial=0.0)) <= np.iinfo(PIXEL_DTYPES[fmt]).max):
            return PIXEL_DTYPES[fmt]
    return PIXEL_DTYPES[PixelFormat.FLOAT32]


def training_signal(line: LineArchive, rows: np.ndarray, bundle: Any, engine: Any, grid: np.ndarray,
                    unit: str) -> tuple[np.ndarray, np.ndarray]:
    """Rows ``rows`` of the archive in the training quantity on the training axis ``grid`` (in ``unit``).

    The bundle's leading ``counts`` step (when it has one) converts each row with its own dark and white reference;
    the edge's ``resample`` step then maps the device axis onto ``grid`` (skipped when the axes are equal).
    Returns ``(X, ok)``: ``X`` shape (len(rows), len(grid)), and which rows converted (a row without references,
    or with an axis that does not cover the grid, is ``False`` and its values NaN).
    """
    from edge.errors import EdgeError
    from edge.preprocess import CountsConversion, Resample

    steps = getattr(bundle.pipeline, "steps", ())
    counts = steps[0] if steps and isinstance(steps[0], CountsConversion) else None
    out = np.full((rows.size, grid.size), np.nan)
    ok = np.zeros(rows.size, dtype=bool)
    if line.axis_is_pixel_index:
        if line.X.shape[1] != grid.size:
            raise DataError(f"{line.path.name}: the archive has no wavelength axis (pixel index) and "
                            f"{line.X.shape[1]} pixels; expected {grid.size} pixels (the training axis) to use them")
        axis = grid
    elif np.array_equal(line.wavelengths, bundle.wavelengths):
        axis = line.wavelengths  # the bundle's grid, stored by the archive when the device sent no axis
    else:
        axis = np.asarray(engine.device_axis(line.wavelengths), dtype=np.float64)
    same_axis = axis.shape == grid.shape and np.allclose(axis, grid, rtol=0.0, atol=1e-9 * float(np.ptp(grid)))
    resample = None if same_axis else Resample(grid=np.asarray(grid, dtype=np.float64), unit=unit)
    for k, i in enumerate(rows):
        refs = line.references(int(i))
        x = line.X[int(i)]
        try:
            if counts is not None:
                if refs.dark is None or refs.reference is None:
                    continue
                x = counts.transform(x, dark=refs.dark.counts, reference=refs.reference.counts)
            if resample is not None:
                x = resample.transform(x, wavelengths=axis)
        except (EdgeError, ValueError):
            continue
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if np.all(np.isfinite(x)):
            out[k], ok[k] = x, True
    return out, ok
