"""The one input contract: what a pipeline, and a bundle around it, takes from a device, and the one place that
judges a device's signal, pixel count, pixel format and wavelength axis against it.

:class:`InputContract` is read from a preprocessing spec's ``input`` object (channel count, axis range, unit,
tolerance); a bundle's reader adds what its manifest's ``input_contract`` says of raw frames (pixel count range,
pixel formats, frame signal) with :meth:`InputContract.with_frames`.  Every refusal is an
:class:`~edge.errors.InputContractError` worded "expected X, got Y"; one about the wavelength axis is an
:class:`~edge.errors.AxisContractError`, so a caller can remember the verdict for that axis without reading the
message.
"""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any, Final

import numpy as np
import numpy.typing as npt

from edge.errors import AxisContractError, ChannelCountError, InputContractError, SpecError
from edge.validation import require_enum, require_int, require_mapping, require_number, require_str
from firmware_bridge.frames import AxisUnit

__all__ = ["FRAME_SIGNALS", "PIXEL_FORMATS", "InputContract", "covering_problem"]

#: What raw frames carry, as the device announces it (``firmware_bridge.frames.SignalKind``, lower case): ``counts``
#: are raw detector counts that the pipeline's leading ``counts`` step converts with dark and white reference
#: spectra; ``absorbance`` and ``reflectance`` frames carry an already processed signal and need no references.
FRAME_SIGNALS: Final[tuple[str, ...]] = ("counts", "absorbance", "reflectance")
#: Pixel formats a contract may accept (names of ``firmware_bridge.frames.PixelFormat``, lower case).
PIXEL_FORMATS: Final[tuple[str, ...]] = ("uint16", "uint32", "float32")
#: The keys of a spec's ``input`` object.
_SPEC_KEYS: Final[frozenset[str]] = frozenset(
    {"n_channels", "wavelength_min", "wavelength_max", "wavelength_unit", "wavelength_tolerance"}
)


def _fmt(v: float) -> str:
    return repr(float(v))


def covering_problem(lo: float, hi: float, want_lo: float, want_hi: float, unit: str, slack: float) -> str | None:
    """Why an axis spanning ``lo``-``hi`` does not cover ``want_lo``-``want_hi`` (``slack`` allowed at each end),
    or None when it does: the one wording of a refused range, e.g. "expected a wavelength axis covering
    600-1898 nm, got 700-1898 nm".

    >>> covering_problem(700.0, 1898.0, 600.0, 1898.0, "nm", 0.0)
    'expected a wavelength axis covering 600-1898 nm, got 700-1898 nm'
    >>> covering_problem(590.0, 1900.0, 600.0, 1898.0, "nm", 0.0) is None
    True
    """
    if lo > want_lo + slack or hi < want_hi - slack:
        return f"expected a wavelength axis covering {want_lo:g}-{want_hi:g} {unit}, got {lo:g}-{hi:g} {unit}"
    return None


def _count(lo: int | None, hi: int | None) -> str:
    return f"{lo}" if lo == hi else f"{lo} to {hi}"


@dataclass(frozen=True)
class InputContract:
    """What a pipeline (and the bundle around it) accepts from a device.

    The first five fields are a spec's ``input`` object; the others are what a bundle's manifest adds about raw
    frames (:meth:`with_frames`) and are left at their defaults by a bare pipeline.

    Attributes
    ----------
    n_channels : int or None
        Channels per input spectrum; None when any count is accepted (a pipeline that starts by resampling
        takes the device axis as it comes, through ``wavelengths=``).
    wavelength_min, wavelength_max : float or None
        Axis range, in ``wavelength_unit``.  A device axis must cover it when :attr:`resamples` or
        :attr:`covers`, and start and end within ``wavelength_tolerance`` of it unless :attr:`resamples`.
    wavelength_unit : str
        ``"nm"`` (NIR) or ``"cm-1"`` (MIR): the unit in which a device's axis is judged (:meth:`axis_from_nm`
        converts one given in nm).
    wavelength_tolerance : float
        Allowed difference of the axis end points, in ``wavelength_unit``.
    resamples : bool
        The pipeline resamples the device's axis onto its own grid (set by :class:`edge.preprocess.Pipeline` from
        its steps): the axis's end points need not match the range, only cover it.
    covers : bool
        The device's axis must cover the range (a bundle's manifest says so of every frame), even when its end
        points are matched too.
    pixel_count_min, pixel_count_max : int or None
        Accepted pixels per frame, inclusive (None: any).
    pixel_formats : tuple of str
        Accepted pixel formats (see :data:`PIXEL_FORMATS`); empty: any.
    frame_signal : str or None
        One of :data:`FRAME_SIGNALS` (None: not declared); ``counts`` needs dark and white reference spectra.

    >>> c = InputContract(None, 900.0, 1700.0).with_frames(
    ...     pixel_count_min=256, pixel_count_max=256, pixel_formats=("uint16",), frame_signal="counts")
    >>> c.check(256, wavelengths=np.linspace(900.0, 1700.0, 256), pixel_format="UINT16")
    >>> c.check(512)
    Traceback (most recent call last):
    ...
    edge.errors.InputContractError: expected 256 pixels, got 512
    """

    n_channels: int | None = None
    wavelength_min: float | None = None
    wavelength_max: float | None = None
    wavelength_unit: str = "nm"
    wavelength_tolerance: float = 0.5
    resamples: bool = False
    covers: bool = False
    pixel_count_min: int | None = None
    pixel_count_max: int | None = None
    pixel_formats: tuple[str, ...] = ()
    frame_signal: str | None = None

    def __post_init__(self) -> None:
        E = SpecError
        if self.n_channels is not None:
            require_int(self.n_channels, "n_channels", E, minimum=1)
        for name in ("wavelength_min", "wavelength_max"):
            if getattr(self, name) is not None:
                object.__setattr__(self, name, require_number(getattr(self, name), name, E))
        if (self.wavelength_min is None) != (self.wavelength_max is None):
            raise SpecError("expected both wavelength_min and wavelength_max, or neither")
        if (
            self.wavelength_min is not None
            and self.wavelength_max is not None
            and self.wavelength_min > self.wavelength_max
        ):
            raise SpecError(
                f"expected wavelength_min <= wavelength_max, got {self.wavelength_min}-{self.wavelength_max}"
            )
        require_str(self.wavelength_unit, "wavelength_unit", E)
        tol = require_number(self.wavelength_tolerance, "wavelength_tolerance", E, minimum=0.0)
        object.__setattr__(self, "wavelength_tolerance", tol)
        if (self.pixel_count_min is None) != (self.pixel_count_max is None):
            raise SpecError("expected both pixel_count_min and pixel_count_max, or neither")
        if self.pixel_count_min is not None and self.pixel_count_max is not None:
            require_int(self.pixel_count_min, "pixel_count_min", E, minimum=1)
            require_int(self.pixel_count_max, "pixel_count_max", E, minimum=self.pixel_count_min)
        object.__setattr__(self, "pixel_formats", tuple(self.pixel_formats))
        for fmt in self.pixel_formats:
            require_enum(fmt, "pixel_formats", E, PIXEL_FORMATS)
        if self.frame_signal is not None:
            require_enum(self.frame_signal, "frame_signal", E, FRAME_SIGNALS)

    # ------------------------------------------------------------------------------------------- build
    @classmethod
    def from_wavelengths(cls, wavelengths: npt.ArrayLike, *, unit: str = "nm") -> InputContract:
        """Contract for spectra sampled on ``wavelengths`` (tolerance: half the smallest channel spacing)."""
        w = np.asarray(wavelengths, dtype=np.float64)
        if w.ndim != 1 or w.size == 0 or not np.all(np.isfinite(w)):
            raise SpecError(f"expected a non-empty finite 1-D wavelength axis, got shape {w.shape}")
        tol = float(np.abs(np.diff(w)).min()) / 2 if w.size > 1 else 0.0
        return cls(int(w.size), float(w.min()), float(w.max()), unit, tol)

    def with_frames(
        self,
        *,
        pixel_count_min: int,
        pixel_count_max: int,
        pixel_formats: tuple[str, ...],
        frame_signal: str,
        wavelength_min: float | None = None,
        wavelength_max: float | None = None,
        wavelength_unit: str | None = None,
    ) -> InputContract:
        """This contract plus what raw frames must look like (a bundle manifest's ``input_contract``): the device's
        axis must then cover the range (``wavelength_min``/``wavelength_max``/``wavelength_unit`` replace this
        contract's when given)."""
        return dataclasses.replace(
            self,
            pixel_count_min=pixel_count_min,
            pixel_count_max=pixel_count_max,
            pixel_formats=tuple(pixel_formats),
            frame_signal=frame_signal,
            covers=True,
            wavelength_min=self.wavelength_min if wavelength_min is None else wavelength_min,
            wavelength_max=self.wavelength_max if wavelength_max is None else wavelength_max,
            wavelength_unit=self.wavelength_unit if wavelength_unit is None else wavelength_unit,
        )

    # ------------------------------------------------------------------------------------------- spec
    def to_spec(self) -> dict[str, Any]:
        """The spec's ``input`` object (JSON-ready; what frames look like lives in the bundle manifest)."""
        return {
            "n_channels": self.n_channels,
            "wavelength_min": self.wavelength_min,
            "wavelength_max": self.wavelength_max,
            "wavelength_unit": self.wavelength_unit,
            "wavelength_tolerance": self.wavelength_tolerance,
        }

    @classmethod
    def from_spec(cls, d: object) -> InputContract:
        """Read the ``input`` object of a spec."""
        d = require_mapping(d, "", SpecError, "'input' as an object")
        extra = sorted(set(d) - _SPEC_KEYS)
        if extra:
            raise SpecError(f"unknown key(s) {', '.join(extra)} in 'input'; expected {', '.join(sorted(_SPEC_KEYS))}")
        return cls(
            n_channels=d.get("n_channels"),
            wavelength_min=d.get("wavelength_min"),
            wavelength_max=d.get("wavelength_max"),
            wavelength_unit=d.get("wavelength_unit", "nm"),
            wavelength_tolerance=d.get("wavelength_tolerance", 0.5),
        )

    def to_dict(self) -> dict[str, Any]:
        """The bundle manifest's ``input_contract`` form (without the unit, which lives in ``wavelength_grid``)."""
        return {
            "pixel_count_min": self.pixel_count_min,
            "pixel_count_max": self.pixel_count_max,
            "wavelength_min": self.wavelength_min,
            "wavelength_max": self.wavelength_max,
            "pixel_formats": list(self.pixel_formats),
            "frame_signal": self.frame_signal,
        }

    # ------------------------------------------------------------------------------------------- checks
    @property
    def needs_references(self) -> bool:
        """True when frames are raw counts that need dark and white reference spectra."""
        return self.frame_signal == "counts"

    def axis_from_nm(self, wavelengths_nm: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """A device axis given in nm (``Status.wavelengths_nm()``) in ``wavelength_unit`` (``1e7 / nm`` for cm-1).

        >>> InputContract(wavelength_unit="cm-1").axis_from_nm([10_000.0, 5_000.0]).tolist()
        [1000.0, 2000.0]
        """
        return AxisUnit.from_symbol(self.wavelength_unit).from_nm(wavelengths_nm)

    def check_channels(self, n_channels: int) -> None:
        """Raise :class:`~edge.errors.InputContractError` when spectra of ``n_channels`` channels are not what the
        pipeline takes ("expected 650 channels, got 512")."""
        if self.n_channels is not None and n_channels != self.n_channels:
            raise ChannelCountError(f"expected {self.n_channels} channels, got {n_channels}")

    def check(
        self,
        n_pixels: int,
        *,
        wavelengths: npt.ArrayLike | None = None,
        pixel_format: str | None = None,
        wavelengths_nm: npt.ArrayLike | None = None,
    ) -> None:
        """Raise :class:`~edge.errors.InputContractError` when a device's frame does not match this contract.

        Checked in this order: the pixel count (``pixel_count_min``..``pixel_count_max``), the pixel format, then
        the wavelength axis (:meth:`check_axis`, an :class:`~edge.errors.AxisContractError`).

        Parameters
        ----------
        n_pixels : int
            Number of pixels in the frame.
        wavelengths : ndarray, shape (n_pixels,), optional
            The instrument's wavelength axis in ``wavelength_unit``.
        pixel_format : str, optional
            Pixel format name of the frame (case-insensitive, e.g. ``UINT16``).
        wavelengths_nm : ndarray, shape (n_pixels,), optional
            The instrument's axis in nm instead (``Status.wavelengths_nm()``), converted with :meth:`axis_from_nm`
            and checked as ``wavelengths``; the message then also names the axis in nm.  Not both.
        """
        if wavelengths_nm is not None and wavelengths is not None:
            raise TypeError("expected wavelengths= (in wavelength_unit) or wavelengths_nm=, got both")
        lo, hi = self.pixel_count_min, self.pixel_count_max
        if lo is not None and hi is not None and not lo <= n_pixels <= hi:
            raise InputContractError(f"expected {_count(lo, hi)} pixels, got {n_pixels}")
        if pixel_format is not None and self.pixel_formats and pixel_format.lower() not in self.pixel_formats:
            raise InputContractError(f"expected pixel format in {list(self.pixel_formats)}, got {pixel_format.lower()}")
        if wavelengths_nm is not None:
            nm = np.asarray(wavelengths_nm, dtype=np.float64)
            try:
                self.check_axis(self.axis_from_nm(nm), n_pixels)
            except AxisContractError as exc:
                raise AxisContractError(self._with_nm(str(exc), nm)) from None
        elif wavelengths is not None:
            self.check_axis(wavelengths, n_pixels)

    def check_axis(self, wavelengths: npt.ArrayLike, n_channels: int) -> None:
        """Raise :class:`~edge.errors.AxisContractError` when ``wavelengths`` (in ``wavelength_unit``), the axis of
        spectra with ``n_channels`` channels, is not one this contract takes.

        In this order: its shape, finite values, then (with a range) covering the range when :attr:`resamples` or
        :attr:`covers` ("expected a wavelength axis covering 600-1898 nm, got 700-1898 nm"), and end points within
        ``wavelength_tolerance`` of it unless :attr:`resamples` ("expected wavelengths 600.0-1898.0 nm (within
        1.0), got ..."). A bare pipeline that resamples takes any axis here: its ``resample`` step judges it.
        """
        lo_c, hi_c = self.wavelength_min, self.wavelength_max
        if lo_c is None or hi_c is None or (self.resamples and not self.covers):
            return
        w = np.asarray(wavelengths, dtype=np.float64)
        if w.shape != (n_channels,):
            raise AxisContractError(f"expected wavelengths of shape ({n_channels},), got {w.shape}")
        if not np.isfinite(w).all():
            raise AxisContractError("expected finite wavelengths, got NaN or inf")
        lo, hi = float(w.min()), float(w.max())
        unit = self.wavelength_unit
        if self.covers or self.resamples:
            problem = covering_problem(lo, hi, lo_c, hi_c, unit, 1e-9 * max(1.0, abs(hi_c)))
            if problem is not None:
                raise AxisContractError(problem)
        tol = self.wavelength_tolerance
        if not self.resamples and not (abs(lo - lo_c) <= tol and abs(hi - hi_c) <= tol):
            raise AxisContractError(
                f"expected wavelengths {_fmt(lo_c)}-{_fmt(hi_c)} {unit} (within {_fmt(tol)}), "
                f"got {_fmt(lo)}-{_fmt(hi)} {unit}"
            )

    def _with_nm(self, problem: str, nm: npt.NDArray[np.float64]) -> str:
        """``problem`` plus the device's own axis in nm, when the contract's unit is another."""
        if self.wavelength_unit == "nm" or nm.size == 0:
            return problem
        with np.errstate(all="ignore"):
            nm_lo, nm_hi = float(np.nanmin(nm)), float(np.nanmax(nm))
        return f"{problem} (the device's axis, {nm_lo:g}-{nm_hi:g} nm, in the bundle's {self.wavelength_unit})"

    def unmet_by_devices_of(self, other: InputContract) -> str | None:
        """Why a device that meets ``other`` may not meet this contract, or None when every such device does.

        The daemon uses it for a reload before the device has announced itself: what the bundle in service accepts
        is then the best knowledge of the device, and a bundle that accepts less may refuse every frame.

        >>> a = InputContract(None, 900.0, 1700.0).with_frames(
        ...     pixel_count_min=256, pixel_count_max=256, pixel_formats=("uint16",), frame_signal="counts")
        >>> a.unmet_by_devices_of(a) is None
        True
        >>> dataclasses.replace(a, pixel_count_min=512, pixel_count_max=512).unmet_by_devices_of(a)
        'expected 512 pixels, the bundle in service takes 256'
        """
        if self.frame_signal != other.frame_signal:
            return f"expected {self.frame_signal} frames, the bundle in service takes {other.frame_signal}"
        lo, hi, o_lo, o_hi = self.pixel_count_min, self.pixel_count_max, other.pixel_count_min, other.pixel_count_max
        if lo is not None and hi is not None and not (
            o_lo is not None and o_hi is not None and lo <= o_lo and o_hi <= hi
        ):
            return f"expected {_count(lo, hi)} pixels, the bundle in service takes {_count(o_lo, o_hi)}"
        missing = sorted(set(other.pixel_formats) - set(self.pixel_formats)) if self.pixel_formats else []
        if missing:
            return f"expected pixel formats {list(self.pixel_formats)}, the bundle in service also takes {missing}"
        if self.wavelength_unit != other.wavelength_unit:
            return f"expected an axis in {self.wavelength_unit}, the bundle in service has {other.wavelength_unit}"
        w_lo, w_hi, o_wlo, o_whi = self.wavelength_min, self.wavelength_max, other.wavelength_min, other.wavelength_max
        if w_lo is None or w_hi is None or o_wlo is None or o_whi is None:
            return None
        slack = 1e-9 * max(1.0, abs(w_hi))
        if w_lo < o_wlo - slack or w_hi > o_whi + slack:
            return (f"expected an axis covering {w_lo:g}-{w_hi:g} {self.wavelength_unit}, the bundle in service "
                    f"needs only {o_wlo:g}-{o_whi:g} {other.wavelength_unit}")
        return None
