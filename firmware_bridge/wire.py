"""The protocol's wire codes: the version byte, message types, pixel formats, flags, command and NACK codes, the
signal a spectrum carries and the unit of the device's axis, as IntEnums (byte layouts: ``PROTOCOL.md``).

They are part of :mod:`firmware_bridge.frames`' vocabulary and importable from there; this module only keeps the
codes apart from the frame values.
"""

from __future__ import annotations

import enum
from typing import Any

import numpy as np
import numpy.typing as npt

from firmware_bridge.errors import ProtocolError

__all__ = ["PROTOCOL_VERSION", "MsgType", "PixelFormat", "PIXEL_DTYPES", "SpectrumFlags", "CommandCode", "NackCode",
           "SignalKind", "NM_PER_CM_1", "AxisUnit", "MAX_SAMPLE_ID_BYTES", "MAX_SAMPLE_TAG_FRAMES"]

#: Version byte carried by every frame; a decoder refuses frames of any other version.
PROTOCOL_VERSION = 1
#: Longest sample id of a SAMPLE_TAG frame, bytes of printable ASCII (as the ``tag_sample`` command's).
MAX_SAMPLE_ID_BYTES = 64
#: Most spectra one SAMPLE_TAG frame tags (as the ``tag_sample`` command).
MAX_SAMPLE_TAG_FRAMES = 1000


class MsgType(enum.IntEnum):
    """Message type byte of a frame."""

    HELLO = 0x01  #: host -> device: who are you?
    STATUS = 0x02  #: device -> host: identity, pixel count, wavelength calibration, settings
    SPECTRUM = 0x10  #: device -> host: one sample spectrum
    DARK = 0x11  #: device -> host: a dark spectrum (shutter closed / lamp off)
    REFERENCE = 0x12  #: device -> host: a white (100 %) reference spectrum
    LINE = 0x13  #: device -> host: many spectra of one exposure (a push-broom line), one seq per spectrum
    COMMAND = 0x20  #: host -> device: change a setting or ask for something
    ACK = 0x21  #: device -> host: command accepted
    NACK = 0x22  #: device -> host: command refused, with a reason
    ANNOTATION = 0x30  #: simulator -> host: reference values of a spectrum (test benches only)
    SAMPLE_TAG = 0x31  #: device -> host: the next spectra are those of one lab sample (a barcode reader, a button)


class PixelFormat(enum.IntEnum):
    """Encoding of the pixel values of a spectrum."""

    UINT16 = 1
    UINT32 = 2
    FLOAT32 = 3


#: numpy dtype (little-endian) of each pixel format.
PIXEL_DTYPES: dict[PixelFormat, np.dtype[Any]] = {
    PixelFormat.UINT16: np.dtype("<u2"),
    PixelFormat.UINT32: np.dtype("<u4"),
    PixelFormat.FLOAT32: np.dtype("<f4"),
}


class SpectrumFlags(enum.IntFlag):
    """Bit flags of a spectrum frame."""

    NONE = 0
    SATURATED = 0x01  #: at least one pixel reached the ADC's full scale
    LAMP_OFF = 0x02  #: the light source was off during the exposure
    TRIGGERED = 0x04  #: the exposure was started by an external or commanded trigger
    TEMP_UNSTABLE = 0x08  #: the detector temperature was outside its regulation band


class CommandCode(enum.IntEnum):
    """Operation requested by a COMMAND frame; ``value`` is its argument."""

    SET_INTEGRATION_TIME = 0x01  #: value = integration time in microseconds
    SET_AVERAGING = 0x02  #: value = number of scans averaged per spectrum (>= 1)
    TRIGGER = 0x03  #: value = number of spectra to acquire now
    REQUEST_DARK = 0x04  #: acquire and send a DARK frame
    REQUEST_REFERENCE = 0x05  #: acquire and send a REFERENCE frame
    START_STREAM = 0x06  #: value = period in microseconds between spectra (0 = as fast as possible)
    STOP_STREAM = 0x07  #: stop streaming


class NackCode(enum.IntEnum):
    """Reason carried by a NACK frame."""

    UNKNOWN_COMMAND = 0x01
    VALUE_OUT_OF_RANGE = 0x02
    BUSY = 0x03
    NOT_SUPPORTED = 0x04
    INTERNAL_ERROR = 0x05


class SignalKind(enum.IntEnum):
    """What the pixel values of a device's SPECTRUM frames are, as its :class:`Status` announces.

    Only :attr:`COUNTS` needs DARK and REFERENCE frames on the host; the processed kinds arrive ready for a model
    trained on the same kind, as float32 pixels.
    """

    COUNTS = 0  #: raw detector values (or any signal linear in the light); the host needs DARK + REFERENCE
    ABSORBANCE = 1  #: decadic absorbance -log10(R), computed on the device; float32 pixels
    REFLECTANCE = 2  #: reflectance R = (S - D) / (W - D), 1.0 = the white standard, computed on the device; float32


#: ``wavelength_nm = NM_PER_CM_1 / wavenumber_cm_1`` (and back): 1 cm = 10**7 nm.
NM_PER_CM_1 = 1e7


class AxisUnit(enum.IntEnum):
    """Unit of a device's spectral axis, as its :class:`Status` announces it: the calibration polynomial is in it.

    Grating spectrometers (NIR, Vis) are calibrated in wavelength, nm; FTIR instruments (MIR) sample evenly in
    wavenumber, cm-1, and ``1e7 / nm`` is hyperbolic in the pixel index, so no low-order polynomial in nm could
    state their axis.  :attr:`symbol` is the unit's name in bundles and configs (``"nm"``, ``"cm-1"``).

    >>> AxisUnit.CM_1.symbol, AxisUnit.from_symbol("nm")
    ('cm-1', <AxisUnit.NM: 0>)
    >>> AxisUnit.CM_1.to_nm(np.array([1000.0, 2000.0])).tolist()
    [10000.0, 5000.0]
    """

    NM = 0  #: wavelength, nanometres
    CM_1 = 1  #: wavenumber, reciprocal centimetres (cm-1)

    @property
    def symbol(self) -> str:
        """The unit as bundles and training configs write it: ``"nm"`` or ``"cm-1"``."""
        return "nm" if self is AxisUnit.NM else "cm-1"

    @classmethod
    def from_symbol(cls, symbol: str) -> AxisUnit:
        """The unit named ``"nm"`` or ``"cm-1"``; :class:`ProtocolError` naming the known ones otherwise."""
        for unit in cls:
            if unit.symbol == symbol:
                return unit
        known = ", ".join(repr(u.symbol) for u in cls)
        raise ProtocolError(f"expected an axis unit of {known}, got {symbol!r}")

    def to_nm(self, axis: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """Wavelengths, nm, of an axis given in this unit (a new float64 array; a zero wavenumber gives inf)."""
        values = np.asarray(axis, dtype=np.float64)
        if self is AxisUnit.NM:
            return values.copy()
        with np.errstate(divide="ignore"):
            return np.asarray(NM_PER_CM_1 / values, dtype=np.float64)

    def from_nm(self, wavelengths_nm: npt.ArrayLike) -> npt.NDArray[np.float64]:
        """The axis in this unit of wavelengths given in nm (a new float64 array).  The reciprocal is its own
        inverse, so ``u.from_nm(u.to_nm(a))`` gives ``a`` back to a few units in the last place."""
        return self.to_nm(wavelengths_nm)  # 1e7 / x both ways; nm stays nm
