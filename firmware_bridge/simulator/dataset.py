"""The spectra a simulator streams: a dataset (or the synthetic one), and the polynomial that announces its axis.

Spectral axis.  The device announces the dataset's axis as a polynomial of the pixel index in the axis's own unit:
nm for grating instruments (NIR), cm-1 for FTIR ones (MIR), whose axis is even in wavenumber and which no
low-order polynomial in nm can state.  The unit is ``SimulatorConfig.axis_unit``, or, when that is None, the
dataset's own ``axis_unit`` entry (a 0-d string array ``"nm"`` or ``"cm-1"``, as
:func:`~firmware_bridge.synthetic.make_synthetic_dataset` writes it), else nm.  The ``.npz`` files of
``../shared/datasets`` carry no unit (their READMEs say which are in cm-1), and their ranges overlap (600-1898 nm,
799-1911 cm-1), so no range can tell them apart: serve an FTIR one with ``axis_unit`` cm-1 (``spectro-sim
--axis-unit cm-1``).  The detector model always works in true nm (``1e7 / wavenumber``); drifts and
recalibrations of the axis are in the axis's unit.
"""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt

from firmware_bridge.frames import AxisUnit
from firmware_bridge.simulator.config import SimulatorConfig, SimulatorError, as_axis_unit
from firmware_bridge.synthetic import load_npz, make_synthetic_dataset

__all__ = ["dataset_axis_unit", "fit_wavelength_polynomial", "load_dataset", "load_spectra"]


def dataset_axis_unit(data: dict[str, npt.NDArray[Any]], configured: AxisUnit | None = None) -> AxisUnit:
    """Unit of a dataset's ``wavelengths``: ``configured`` when given, else the dataset's ``axis_unit`` entry (a 0-d
    string array ``"nm"`` or ``"cm-1"``), else nm.

    No range check can do better: the shared NIR sets (600-1898 nm) and FTIR sets (799-1911 cm-1) overlap, so a
    dataset that does not say is taken as nm and a cm-1 one must be named (``--axis-unit cm-1``).

    >>> dataset_axis_unit({"axis_unit": np.array("cm-1")}), dataset_axis_unit({}, AxisUnit.CM_1).symbol
    (<AxisUnit.CM_1: 1>, 'cm-1')
    """
    if configured is not None:
        return as_axis_unit(configured)
    stated = data.get("axis_unit")
    if stated is None:
        return AxisUnit.NM
    raw = np.asarray(stated)
    if raw.ndim != 0 or raw.dtype.kind not in "US":
        raise SimulatorError(f"expected the dataset's axis_unit as one string 'nm' or 'cm-1', got {raw!r}")
    return as_axis_unit(str(raw))


def _target_columns(data: dict[str, npt.NDArray[Any]], targets: tuple[str, ...], n_columns: int) -> list[int]:
    """Columns of the dataset's ``y`` that hold ``targets``, in that order, found by its ``target_names`` (a dataset
    without them has ``target_0``, ``target_1``, ...: :func:`~firmware_bridge.synthetic.load_npz`).

    >>> _target_columns({"target_names": np.array(["moisture", "fat"])}, ("fat", "moisture"), 2)
    [1, 0]
    """
    names = [str(n) for n in np.asarray(data["target_names"]).reshape(-1)]
    if len(names) != n_columns:
        raise SimulatorError(f"expected one target name per column of y ({n_columns}), got {len(names)}: {names}")
    missing = [t for t in targets if t not in names]
    if missing:
        raise SimulatorError(f"expected targets of the dataset ({', '.join(names)}), got {', '.join(missing)}")
    return [names.index(t) for t in targets]


def load_dataset(
    config: SimulatorConfig,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64], AxisUnit]:
    """:func:`load_spectra` plus the unit of the axis (:func:`dataset_axis_unit`)."""
    if config.dataset_path is None:
        data = make_synthetic_dataset(
            config.synthetic_samples,
            seed=config.seed,
            n_channels=config.synthetic_channels,
            axis_unit=(config.axis_unit or AxisUnit.NM).symbol,
        )
    else:
        data = load_npz(config.dataset_path)
    unit = dataset_axis_unit(data, config.axis_unit)
    x = np.asarray(data["X"], dtype=np.float64)
    y = np.asarray(data["y"], dtype=np.float64)
    y = y.reshape(len(y), -1)
    wl = np.asarray(data["wavelengths"], dtype=np.float64)
    if config.targets is not None:
        y = y[:, _target_columns(data, config.targets, y.shape[1])]
    keep = np.arange(len(x))
    if config.split is not None:
        if "split" not in data:
            raise SimulatorError(f"expected a 'split' array in the dataset to select {config.split!r}, found none")
        keep = keep[np.asarray(data["split"]).astype(str) == config.split]
        if keep.size == 0:
            found = sorted(set(np.asarray(data["split"]).astype(str)))
            raise SimulatorError(f"expected rows with split {config.split!r}, found splits {found}")
    if config.rows is not None:
        keep = keep[config.rows]
        if keep.size == 0:
            raise SimulatorError(f"expected at least one row in {config.rows}, got none")
    return x[keep], wl, y[keep], unit


def load_spectra(
    config: SimulatorConfig,
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Absorbance rows, spectral axis and reference values to stream: ``(X (n, p), wavelengths (p,), y (n, k))``.

    ``wavelengths`` is in the dataset's own unit (nm, or cm-1: :func:`dataset_axis_unit`).
    """
    x, wl, y, _ = load_dataset(config)
    return x, wl, y


def fit_wavelength_polynomial(wavelengths_nm: npt.ArrayLike, *, tolerance_nm: float = 1e-3) -> tuple[float, ...]:
    """Lowest-degree (1 to 5) polynomial of the pixel index reproducing the axis within ``tolerance_nm``.

    Works in whatever unit the axis is in (nm, or cm-1 for a wavenumber axis; ``tolerance_nm`` is then in cm-1).
    The polynomial passes through the first and the last pixel (least squares under that constraint), so the
    announced axis spans exactly the dataset's range: a host that checks that a device covers a model's range, as
    the edge does, never refuses the dataset's own axis for rounding in its last decimals (the FTIR sets are
    rounded to 1e-3 cm-1).  Returns the coefficients lowest order first (the :class:`~firmware_bridge.frames.Status`
    convention); when no degree reaches the tolerance, the degree-5 fit.

    >>> axis = np.round(899.327 + 3.8575 * np.arange(235), 3)  # an FTIR axis, rounded as in fruit_puree_mir.npz
    >>> c = fit_wavelength_polynomial(axis)
    >>> ends = np.polynomial.polynomial.polyval([0.0, 234.0], c)
    >>> len(c), bool(ends[0] == axis[0]), bool(abs(ends[1] - axis[-1]) < 1e-9)
    (2, True, True)
    """
    wl = np.asarray(wavelengths_nm, dtype=np.float64)
    if wl.size < 2:
        return tuple(float(v) for v in wl)
    last = float(wl.size - 1)
    t = np.arange(wl.size, dtype=np.float64) / last  # pixel index scaled to 0..1: a well-conditioned fit
    first, span = float(wl[0]), float(wl[-1] - wl[0])
    rest = wl - (first + span * t)  # what the straight line through both ends leaves
    powers = last ** np.arange(6, dtype=np.float64)
    best: tuple[float, ...] = ()
    for degree in range(1, min(5, wl.size - 1) + 1):
        a = np.zeros(degree + 1)
        a[0], a[1] = first, span
        if degree >= 2:  # t (t - 1) t^k vanishes at both ends: t^(k+2) - t^(k+1)
            basis = np.stack([t * (t - 1.0) * t**k for k in range(degree - 1)], axis=1)
            q = np.linalg.lstsq(basis, rest, rcond=None)[0]
            for k, qk in enumerate(q):
                a[k + 2] += qk
                a[k + 1] -= qk
        coeffs = tuple(float(c) for c in a / powers[: degree + 1])  # in powers of the pixel index
        best = coeffs
        index = t * last
        if np.max(np.abs(np.polynomial.polynomial.polyval(index, coeffs) - wl)) <= tolerance_nm:
            break
    return best
