"""The unlabeled spectra of ``[pretrain] source``, in the training quantity on the training axis, without any
reference value: the ``[data]`` spectra of every row, or an ``.npz`` in the datasets' layout (a ``spectro-edge
export`` of counts converted with its own dark and white references)."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import numpy as np

from trainer.config.pretrain import PretrainConfig
from trainer.errors import DataError

__all__ = ["UnlabeledSpectra", "load_unlabeled"]

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class UnlabeledSpectra:
    """Spectra for the pretraining: ``X`` shape (n, n_channels) in the training quantity on the training axis.

    ``source`` says where they come from, ``skipped`` how many rows of it could not be used (no references, not
    finite, an axis that does not cover the training grid). It holds no reference value by construction.
    """

    X: np.ndarray
    source: str
    skipped: int = 0

    @property
    def rows(self) -> int:
        return int(self.X.shape[0])


def load_unlabeled(cfg: PretrainConfig, X_dataset: np.ndarray, wavelengths: np.ndarray, *, unit: str,
                   quantity: str, min_ratio: float) -> UnlabeledSpectra:
    """The spectra ``cfg.source`` names.

    Parameters
    ----------
    cfg : PretrainConfig
    X_dataset : ndarray, shape (n, n_channels)
        The ``[data]`` spectra of every row (only the spectra are handed over, never ``y``).
    wavelengths : ndarray, shape (n_channels,)
        The training axis.
    unit, quantity : str
        Axis unit and training quantity (``[instrument] quantity``) for converting an export's counts.
    min_ratio : float
        Ratio floor of the counts conversion (as the bundle's).
    """
    if cfg.path is None:
        X = np.asarray(X_dataset, dtype=np.float64)
        return UnlabeledSpectra(X=X, source="dataset")
    return _from_npz(cfg.path, np.asarray(wavelengths, dtype=np.float64), unit=unit, quantity=quantity,
                     min_ratio=min_ratio)


def _from_npz(path: Path, grid: np.ndarray, *, unit: str, quantity: str, min_ratio: float) -> UnlabeledSpectra:
    from edge.errors import EdgeError
    from edge.preprocess import CountsConversion, Resample

    if not path.is_file():
        raise DataError(f"pretrain.source: no such file {path}")
    try:
        with np.load(path, allow_pickle=False) as z:  # X, the axis and the references only: never y
            keys = set(z.files)
            if not {"X", "wavelengths"} <= keys:
                raise DataError(f"{path.name}: expected arrays X and wavelengths (the datasets' layout), got "
                                f"{', '.join(sorted(keys))}")
            X = np.asarray(z["X"], dtype=np.float64)
            axis = np.asarray(z["wavelengths"], dtype=np.float64)
            signal = z["signal"].astype(str) if "signal" in keys else None
            pixel_axis = bool(z["axis_is_pixel_index"]) if "axis_is_pixel_index" in keys else False
            refs = ({k: np.asarray(z[k]) for k in ("dark_spectra", "dark_index", "white_spectra", "white_index")}
                    if {"dark_spectra", "dark_index", "white_spectra", "white_index"} <= keys else None)
    except (OSError, ValueError) as exc:
        if isinstance(exc, DataError):
            raise
        raise DataError(f"{path.name}: not a readable .npz file ({exc})") from exc
    if X.ndim != 2 or X.shape[0] < 1 or axis.shape != (X.shape[1],):
        raise DataError(f"{path.name}: expected X of shape (rows, channels) and one wavelength per channel, got X "
                        f"{X.shape} and wavelengths {axis.shape}")
    if pixel_axis:
        if X.shape[1] != grid.size:
            raise DataError(f"{path.name}: the export has no wavelength axis and {X.shape[1]} pixels; expected "
                            f"{grid.size} (the training axis)")
        axis = grid
    counts = signal is not None and bool(np.any(signal == "counts"))
    conv = CountsConversion(quantity=quantity, min_ratio=min_ratio) if counts else None
    if counts and refs is None:
        raise DataError(f"{path.name}: expected dark_spectra/white_spectra with the counts of a spectro-edge "
                        "export, got none")
    same = axis.shape == grid.shape and np.allclose(axis, grid, rtol=0.0, atol=1e-9 * float(np.ptp(grid)))
    resample = None if same else Resample(grid=grid, unit=unit)
    out, skipped = [], 0
    for i in range(X.shape[0]):
        x = X[i]
        try:
            if conv is not None and refs is not None:
                d, w = int(refs["dark_index"][i]), int(refs["white_index"][i])
                if d < 0 or w < 0:
                    skipped += 1
                    continue
                x = conv.transform(x, dark=refs["dark_spectra"][d], reference=refs["white_spectra"][w])
            if resample is not None:
                x = resample.transform(x, wavelengths=axis)
        except (EdgeError, ValueError) as exc:
            if resample is not None and i == 0 and "cover" in str(exc):
                raise DataError(f"{path.name}: its axis does not cover the training axis ({exc})") from exc
            skipped += 1
            continue
        x = np.asarray(x, dtype=np.float64).reshape(-1)
        if np.all(np.isfinite(x)):
            out.append(x)
        else:
            skipped += 1
    if skipped:
        log.warning("pretrain.source %s: %d of %d rows skipped (no references, not finite, or off the axis)",
                    path.name, skipped, X.shape[0])
    if not out:
        raise DataError(f"{path.name}: expected at least one usable unlabeled spectrum, got none of {X.shape[0]}")
    return UnlabeledSpectra(X=np.stack(out), source=str(path.name), skipped=skipped)
