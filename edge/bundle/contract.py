"""The frame contract of a bundle: what a raw frame must look like, and whether a device fits another bundle.

:class:`FrameContract` is the manifest's ``input_contract`` as a frozen value: pixel count, pixel formats, the
wavelength range the instrument's axis must cover (in the unit of the bundle's grid) and what frames carry
(:data:`FRAME_SIGNALS`). :func:`counts_from_signal` expresses processed spectra as the counts a ``counts`` bundle
reads, for offline evaluation.
"""

from __future__ import annotations

from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edge.errors import InputContractError
from firmware_bridge.frames import AxisUnit

__all__ = [
    "FRAME_SIGNALS",
    "PIXEL_FORMATS",
    "OFFLINE_DARK_COUNTS",
    "OFFLINE_WHITE_COUNTS",
    "counts_from_signal",
    "FrameContract",
]

#: What raw frames carry, as the device announces it (``firmware_bridge.frames.SignalKind``, lower case): ``counts``
#: are raw detector counts that the pipeline's leading ``counts`` step converts with dark and white reference
#: spectra; ``absorbance`` and ``reflectance`` frames carry an already processed signal and need no references.
FRAME_SIGNALS: Final[tuple[str, ...]] = ("counts", "absorbance", "reflectance")
#: Flat dark and white levels (counts) with which :meth:`edge.bundle.Bundle.frames_from_signal` expresses spectra
#: as counts.
OFFLINE_DARK_COUNTS: Final[float] = 1000.0
OFFLINE_WHITE_COUNTS: Final[float] = 50000.0
#: Pixel formats a contract may accept (names of ``firmware_bridge.frames.PixelFormat``, lower case).
PIXEL_FORMATS: Final[tuple[str, ...]] = ("uint16", "uint32", "float32")


def counts_from_signal(
    X: npt.ArrayLike, quantity: str
) -> tuple[npt.NDArray[np.float64], npt.NDArray[np.float64], npt.NDArray[np.float64]]:
    """Counts (and the flat dark and white references) that a ``counts`` step with ``quantity`` turns back into
    ``X``: ``dark + (white - dark) * ratio``, the ratio being ``10 ** -X`` for absorbance, ``X`` otherwise."""
    A = np.asarray(X, dtype=np.float64)
    n = A.shape[-1]
    dark, white = np.full(n, OFFLINE_DARK_COUNTS), np.full(n, OFFLINE_WHITE_COUNTS)
    ratio = np.power(10.0, -A) if quantity == "absorbance" else A
    return dark + (white - dark) * ratio, dark, white


@dataclass(frozen=True)
class FrameContract:
    """What a raw frame must look like for this bundle (the daemon checks every frame against it).

    Attributes
    ----------
    pixel_count_min, pixel_count_max : int
        Accepted number of pixels (channels) per frame, inclusive.
    wavelength_min, wavelength_max : float
        Range (in ``wavelength_unit``) that the instrument's wavelength axis must cover.
    wavelength_unit : str
        ``nm`` or ``cm-1``: the unit of the bundle's wavelength grid (``wavelength_grid.unit``), in which a device's
        axis is judged (:meth:`axis_from_nm` converts one given in nm).
    pixel_formats : tuple of str
        Accepted pixel formats (see :data:`PIXEL_FORMATS`).
    frame_signal : str
        One of :data:`FRAME_SIGNALS`; ``counts`` needs dark and white reference spectra.
    """

    pixel_count_min: int
    pixel_count_max: int
    wavelength_min: float
    wavelength_max: float
    wavelength_unit: str
    pixel_formats: tuple[str, ...]
    frame_signal: str

    @property
    def needs_references(self) -> bool:
        """True when frames are raw counts that need dark and white reference spectra."""
        return self.frame_signal == "counts"

    def axis_from_nm(self, wavelengths_nm: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """A device axis given in nm (``Status.wavelengths_nm()``) in ``wavelength_unit`` (``1e7 / nm`` for cm-1).

        >>> c = FrameContract(1, 10, 900.0, 1800.0, "cm-1", ("uint16",), "counts")
        >>> c.axis_from_nm([10_000.0, 5_000.0]).tolist()
        [1000.0, 2000.0]
        """
        return AxisUnit.from_symbol(self.wavelength_unit).from_nm(wavelengths_nm)

    def check(
        self,
        n_pixels: int,
        *,
        wavelengths: npt.ArrayLike | None = None,
        pixel_format: str | None = None,
        wavelengths_nm: npt.ArrayLike | None = None,
    ) -> None:
        """Raise :class:`~edge.errors.InputContractError` when a frame does not match this contract.

        Parameters
        ----------
        n_pixels : int
            Number of pixels in the frame.
        wavelengths : ndarray, shape (n_pixels,), optional
            The instrument's wavelength axis in ``wavelength_unit``; it must cover the contract's range.
        pixel_format : str, optional
            Pixel format name of the frame (case-insensitive, e.g. ``UINT16``).
        wavelengths_nm : ndarray, shape (n_pixels,), optional
            The instrument's axis in nm instead (``Status.wavelengths_nm()``), converted with :meth:`axis_from_nm`
            and checked as ``wavelengths``; the message then also names the axis in nm.  Not both.
        """
        if wavelengths_nm is not None and wavelengths is not None:
            raise TypeError("expected wavelengths= (in wavelength_unit) or wavelengths_nm=, got both")
        if not self.pixel_count_min <= n_pixels <= self.pixel_count_max:
            want = (
                f"{self.pixel_count_min}"
                if self.pixel_count_min == self.pixel_count_max
                else f"{self.pixel_count_min} to {self.pixel_count_max}"
            )
            raise InputContractError(f"expected {want} pixels, got {n_pixels}")
        if pixel_format is not None and pixel_format.lower() not in self.pixel_formats:
            raise InputContractError(f"expected pixel format in {list(self.pixel_formats)}, got {pixel_format.lower()}")
        if wavelengths_nm is not None:
            nm = np.asarray(wavelengths_nm, dtype=np.float64)
            self._check_axis(n_pixels, self.axis_from_nm(nm), nm)
        elif wavelengths is not None:
            self._check_axis(n_pixels, np.asarray(wavelengths, dtype=np.float64), None)

    def _check_axis(self, n_pixels: int, wl: npt.NDArray[np.float64], nm: npt.NDArray[np.float64] | None) -> None:
        """The axis ``wl`` (in ``wavelength_unit``) against the contract; ``nm``, the device's axis in nm it was
        converted from, is named in the message too when the contract's unit is another."""
        problem = None
        if wl.shape != (n_pixels,):
            problem = f"expected {n_pixels} wavelengths, got shape {wl.shape}"
        elif not np.isfinite(wl).all():
            problem = "expected finite wavelengths, got NaN or inf"
        else:
            lo, hi = float(wl.min()), float(wl.max())
            slack = 1e-9 * max(1.0, abs(self.wavelength_max))
            if lo > self.wavelength_min + slack or hi < self.wavelength_max - slack:
                problem = (
                    f"expected a wavelength axis covering {self.wavelength_min:g}-{self.wavelength_max:g} "
                    f"{self.wavelength_unit}, got {lo:g}-{hi:g} {self.wavelength_unit}"
                )
        if problem is None:
            return
        if nm is not None and self.wavelength_unit != "nm" and nm.size > 0:
            with np.errstate(all="ignore"):
                nm_lo, nm_hi = float(np.nanmin(nm)), float(np.nanmax(nm))
            problem += f" (the device's axis, {nm_lo:g}-{nm_hi:g} nm, in the bundle's {self.wavelength_unit})"
        raise InputContractError(problem)

    def unmet_by_devices_of(self, other: FrameContract) -> str | None:
        """Why a device that meets ``other`` may not meet this contract, or None when every such device does.

        The daemon uses it for a reload before the device has announced itself: what the bundle in service accepts
        is then the best knowledge of the device, and a bundle that accepts less may refuse every frame.

        >>> a = FrameContract(256, 256, 900.0, 1700.0, "nm", ("uint16",), "counts")
        >>> a.unmet_by_devices_of(a) is None
        True
        >>> FrameContract(512, 512, 900.0, 1700.0, "nm", ("uint16",), "counts").unmet_by_devices_of(a)
        'expected 512 pixels, the bundle in service takes 256'
        """

        def count(c: FrameContract) -> str:
            lo, hi = c.pixel_count_min, c.pixel_count_max
            return f"{lo}" if lo == hi else f"{lo} to {hi}"

        if self.frame_signal != other.frame_signal:
            return f"expected {self.frame_signal} frames, the bundle in service takes {other.frame_signal}"
        if not (self.pixel_count_min <= other.pixel_count_min and other.pixel_count_max <= self.pixel_count_max):
            return f"expected {count(self)} pixels, the bundle in service takes {count(other)}"
        missing = sorted(set(other.pixel_formats) - set(self.pixel_formats))
        if missing:
            return f"expected pixel formats {list(self.pixel_formats)}, the bundle in service also takes {missing}"
        if self.wavelength_unit != other.wavelength_unit:
            return f"expected an axis in {self.wavelength_unit}, the bundle in service has {other.wavelength_unit}"
        slack = 1e-9 * max(1.0, abs(self.wavelength_max))
        if self.wavelength_min < other.wavelength_min - slack or self.wavelength_max > other.wavelength_max + slack:
            return (f"expected an axis covering {self.wavelength_min:g}-{self.wavelength_max:g} "
                    f"{self.wavelength_unit}, the bundle in service needs only {other.wavelength_min:g}-"
                    f"{other.wavelength_max:g} {other.wavelength_unit}")
        return None

    def to_dict(self) -> dict[str, Any]:
        """Manifest form (without the unit, which lives in ``wavelength_grid``)."""
        return {
            "pixel_count_min": self.pixel_count_min,
            "pixel_count_max": self.pixel_count_max,
            "wavelength_min": self.wavelength_min,
            "wavelength_max": self.wavelength_max,
            "pixel_formats": list(self.pixel_formats),
            "frame_signal": self.frame_signal,
        }
