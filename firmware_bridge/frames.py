"""Messages of the spectrolite serial protocol as frozen dataclasses, with their wire codes as IntEnums.

These are plain values: the byte layouts live in :mod:`firmware_bridge.codec` (and in ``PROTOCOL.md``); nothing here
does I/O.  Units are part of every field name (``timestamp_us``, ``integration_time_us``, ``detector_temp_c``).

Spectra carry their pixel values as a read-only one-dimensional numpy array whose dtype follows the
``pixel_format`` (``uint16``, ``uint32`` or ``float32``); two spectra are equal when every field is equal and the
arrays are equal byte for byte, so ``decode(encode(f)) == f`` is an exact statement.

>>> import numpy as np
>>> s = Spectrum(seq=7, timestamp_us=1_000, integration_time_us=5_000, counts=np.array([1, 2, 3], np.uint16))
>>> s.pixel_count, s.pixel_format.name
(3, 'UINT16')
"""

from __future__ import annotations

import dataclasses
import enum
import secrets
from collections.abc import Iterable
from dataclasses import dataclass, field
from typing import Any, ClassVar, TypeVar, Union

import numpy as np
import numpy.typing as npt

from firmware_bridge.errors import ProtocolError
from firmware_bridge.wire import (
    MAX_SAMPLE_ID_BYTES,
    MAX_SAMPLE_TAG_FRAMES,
    NM_PER_CM_1,
    PIXEL_DTYPES,
    PROTOCOL_VERSION,
    AxisUnit,
    CommandCode,
    MsgType,
    NackCode,
    PixelFormat,
    SignalKind,
    SpectrumFlags,
)

__all__ = [
    "PROTOCOL_VERSION",
    "MsgType",
    "PixelFormat",
    "SpectrumFlags",
    "CommandCode",
    "NackCode",
    "SignalKind",
    "AxisUnit",
    "NM_PER_CM_1",
    "Spectrum",
    "Dark",
    "Reference",
    "Line",
    "LINE_SEQ_MODULUS",
    "Hello",
    "Status",
    "Command",
    "Ack",
    "Nack",
    "Annotation",
    "SampleTag",
    "Frame",
    "PIXEL_DTYPES",
    "draw_boot_id",
]


_E = TypeVar("_E", bound=enum.IntEnum)
#: The field names of each frame class built by ``Spectrum._of_checked``, in declaration order.
_FIELD_NAMES: dict[type, tuple[str, ...]] = {}


def _enum(cls: type[_E], value: Any, what: str) -> _E:
    try:
        return cls(value)
    except ValueError:
        known = ", ".join(f"{m.value} ({m.name})" for m in cls)
        raise ProtocolError(f"expected {what} one of {known}, got {value!r}") from None


def _pixel_format_of(counts: npt.NDArray[Any]) -> PixelFormat:
    for fmt, dtype in PIXEL_DTYPES.items():
        if counts.dtype.kind == dtype.kind and counts.dtype.itemsize == dtype.itemsize:
            return fmt
    raise ProtocolError(f"expected counts of dtype uint16, uint32 or float32, got {counts.dtype}")


@dataclass(frozen=True, eq=False)
class Spectrum:
    """One spectrum as the detector read it.

    Parameters
    ----------
    seq : int
        Sequence number, uint32, incremented by the device for every spectrum-like frame it sends.
    timestamp_us : int
        Device clock at the end of the exposure, microseconds, uint64.
    integration_time_us : int
        Exposure time, microseconds, uint32.
    counts : ndarray, shape (pixel_count,), dtype uint16 | uint32 | float32
        Pixel values; stored read-only and little-endian.  ``pixel_format`` follows from the dtype.  What they
        mean is the device's :attr:`Status.signal`: raw detector values for :attr:`SignalKind.COUNTS` (the
        default, and every device that does not say), or an already processed absorbance or reflectance.
    averages : int
        Number of scans averaged into this spectrum, uint16 (>= 1).
    saturated_count : int
        Number of pixels at the ADC's full scale, uint16.
    flags : SpectrumFlags
        Bit flags, uint8.
    detector_temp_c : float
        Detector temperature, degrees Celsius, float32 on the wire (NaN when the device has no sensor).
    """

    MSG_TYPE: ClassVar[MsgType] = MsgType.SPECTRUM

    seq: int
    timestamp_us: int
    integration_time_us: int
    counts: npt.NDArray[Any]
    averages: int = 1
    saturated_count: int = 0
    flags: SpectrumFlags = SpectrumFlags.NONE
    detector_temp_c: float = float("nan")
    pixel_format: PixelFormat = field(init=False)

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts)
        if counts.ndim != 1:
            raise ProtocolError(f"expected a one-dimensional counts array, got shape {counts.shape}")
        fmt = _pixel_format_of(counts)
        counts = counts.astype(PIXEL_DTYPES[fmt], copy=True)  # own, little-endian copy
        counts.flags.writeable = False
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "pixel_format", fmt)
        object.__setattr__(self, "flags", SpectrumFlags(self.flags))

    @property
    def pixel_count(self) -> int:
        """Number of pixels in ``counts``."""
        return int(self.counts.shape[0])

    @classmethod
    def _of_checked(cls, seqs: Iterable[int], rows: Iterable[Any], **fields: Any) -> list["Spectrum"]:
        """Spectra of values already checked and converted as ``__post_init__`` would (``counts`` read-only,
        one-dimensional, of ``pixel_format``'s little-endian dtype; ``flags`` a SpectrumFlags), one per ``seq`` and
        ``counts`` row of ``seqs`` and ``rows``, every other field given in ``fields``, nothing copied
        (:meth:`Line.spectra`)."""
        names = _FIELD_NAMES.get(cls)
        if names is None:
            names = _FIELD_NAMES[cls] = tuple(f.name for f in dataclasses.fields(cls))
        # every field in order, as __init__ sets them (seq and counts per spectrum below; a KeyError for one missing)
        template = {name: None if name in ("seq", "counts") else fields[name] for name in names}
        out = []
        for seq, row in zip(seqs, rows):
            spectrum = object.__new__(cls)
            values = spectrum.__dict__
            values.update(template)
            values["seq"], values["counts"] = seq, row
            out.append(spectrum)
        return out

    def _key(self) -> tuple[Any, ...]:
        temp = np.float32(self.detector_temp_c).tobytes()  # bitwise, so NaN equals NaN
        return (
            type(self),
            self.seq,
            self.timestamp_us,
            self.integration_time_us,
            self.averages,
            self.saturated_count,
            int(self.flags),
            temp,
            self.pixel_format,
            self.counts.tobytes(),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Spectrum):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def replace(self, **changes: Any) -> "Spectrum":
        """Return a copy with ``changes`` applied (``dataclasses.replace`` minus the derived ``pixel_format``)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True, eq=False)
class Dark(Spectrum):
    """A dark spectrum: same layout as :class:`Spectrum`, acquired with the light path blocked."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.DARK


@dataclass(frozen=True, eq=False)
class Reference(Spectrum):
    """A white-reference (100 % transmittance or reflectance) spectrum: same layout as :class:`Spectrum`."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.REFERENCE


#: Sequence numbers wrap at 2**32: the spectrum ``i`` of a :class:`Line` has ``seq = (line.seq + i) % 2**32``.
LINE_SEQ_MODULUS = 1 << 32


@dataclass(frozen=True, eq=False)
class Line:
    """One line of a line-scan (push-broom, hyperspectral) camera: ``spectrum_count`` spectra of the same pixel count
    exposed together, sent as one frame and predicted as one batch.

    The line numbers its spectra: spectrum ``i`` has ``seq = (seq + i) % 2**32``, and the device's next
    spectrum-like frame carries ``seq + spectrum_count``, so gap detection and the de-duplication key
    ``(device_id, boot_id, seq)`` work per spectrum exactly as for :class:`Spectrum` frames.

    Parameters
    ----------
    seq : int
        Sequence number of the line's first spectrum, uint32.
    timestamp_us : int
        Device clock at the end of the line's exposure, microseconds, uint64 (every spectrum of the line shares it).
    integration_time_us : int
        Exposure time, microseconds, uint32.
    counts : ndarray, shape (spectrum_count, pixel_count), dtype uint16 | uint32 | float32
        Pixel values, spectrum 0 first; stored read-only, C-contiguous and little-endian.
    averages : int
        Scans averaged into each spectrum, uint16 (>= 1).
    flags : SpectrumFlags
        Bit flags of the whole line, uint8: SATURATED means some pixel of the line reached full scale (the line
        carries no per-spectrum count, so every spectrum of it is taken as saturated).
    detector_temp_c : float
        Detector temperature, degrees Celsius, float32 on the wire (NaN when unknown).

    >>> line = Line(seq=10, timestamp_us=0, integration_time_us=1_000, counts=np.ones((3, 4), np.uint16))
    >>> line.spectrum_count, line.pixel_count, [s.seq for s in line.spectra()]
    (3, 4, [10, 11, 12])
    """

    MSG_TYPE: ClassVar[MsgType] = MsgType.LINE

    seq: int
    timestamp_us: int
    integration_time_us: int
    counts: npt.NDArray[Any]
    averages: int = 1
    flags: SpectrumFlags = SpectrumFlags.NONE
    detector_temp_c: float = float("nan")
    pixel_format: PixelFormat = field(init=False)

    def __post_init__(self) -> None:
        counts = np.asarray(self.counts)
        if counts.ndim != 2:
            raise ProtocolError(f"expected a two-dimensional (spectra, pixels) counts array, got shape {counts.shape}")
        fmt = _pixel_format_of(counts)
        counts = np.ascontiguousarray(counts.astype(PIXEL_DTYPES[fmt], copy=True))  # own, little-endian copy
        counts.flags.writeable = False
        object.__setattr__(self, "counts", counts)
        object.__setattr__(self, "pixel_format", fmt)
        object.__setattr__(self, "flags", SpectrumFlags(self.flags))

    @property
    def spectrum_count(self) -> int:
        """Number of spectra in the line (rows of ``counts``)."""
        return int(self.counts.shape[0])

    @property
    def pixel_count(self) -> int:
        """Number of pixels of each spectrum (columns of ``counts``)."""
        return int(self.counts.shape[1])

    def seq_of(self, index: int) -> int:
        """Sequence number of the line's spectrum ``index``: ``(seq + index) % 2**32``."""
        return (self.seq + index) % LINE_SEQ_MODULUS

    def spectra(self) -> tuple[Spectrum, ...]:
        """The line's spectra as :class:`Spectrum` values, in order, each with its own ``seq`` (:meth:`seq_of`) and
        the line's timestamp, integration time, averages, flags and temperature (``saturated_count`` 0: the line
        has none per spectrum; its SATURATED flag is kept).

        Each spectrum's ``counts`` is a read-only view of its row of the line's own, checked array (rather than a
        copy checked again: a line of 256 is split for every frame the daemon predicts on), equal to what
        ``Spectrum(counts=row, ...)`` would hold."""
        base = self.seq
        return tuple(Spectrum._of_checked(
            ((base + i) % LINE_SEQ_MODULUS for i in range(len(self.counts))),
            self.counts,
            timestamp_us=self.timestamp_us,
            integration_time_us=self.integration_time_us,
            averages=self.averages,
            saturated_count=0,
            flags=self.flags,
            detector_temp_c=self.detector_temp_c,
            pixel_format=self.pixel_format,
        ))

    def _key(self) -> tuple[Any, ...]:
        return (
            self.seq,
            self.timestamp_us,
            self.integration_time_us,
            self.averages,
            int(self.flags),
            np.float32(self.detector_temp_c).tobytes(),  # bitwise, so NaN equals NaN
            self.pixel_format,
            self.counts.shape,
            self.counts.tobytes(),
        )

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Line):
            return NotImplemented
        return self._key() == other._key()

    def __hash__(self) -> int:
        return hash(self._key())

    def replace(self, **changes: Any) -> "Line":
        """Return a copy with ``changes`` applied (``dataclasses.replace`` minus the derived ``pixel_format``)."""
        return dataclasses.replace(self, **changes)


@dataclass(frozen=True)
class Hello:
    """Host -> device greeting; the device answers with a :class:`Status`.

    Parameters
    ----------
    nonce : int
        uint32 chosen by the host, echoed in the :class:`Status` reply.
    """

    MSG_TYPE: ClassVar[MsgType] = MsgType.HELLO

    nonce: int = 0


@dataclass(frozen=True)
class Status:
    """Device identity and settings, sent in reply to :class:`Hello` and whenever they change.

    Parameters
    ----------
    nonce : int
        uint32 echoed from the :class:`Hello` this answers (0 when unsolicited).
    device_id : str
        Serial number or name, UTF-8, at most 64 bytes.
    firmware_version : str
        Firmware version string, UTF-8, at most 32 bytes.
    pixel_count : int
        Number of pixels in every spectrum the device sends, uint16.
    wavelength_coeffs_nm : tuple of float
        Calibration polynomial of the spectral axis, float64, lowest order first: ``axis(i) = sum(c[k] * i**k)``
        for pixel index ``i``, in ``axis_unit``; 1 to 6 coefficients.  The name is the protocol's first one: the
        values are nm for every device that does not announce another unit (and then ``wavelength_nm(i)``).
    integration_time_us : int
        Current integration time, microseconds, uint32.
    averages : int
        Current number of scans averaged, uint16.
    detector_temp_c : float
        Detector temperature, degrees Celsius, float32 on the wire.
    uptime_s : int
        Seconds since the device started, uint32.
    signal : SignalKind
        What the device's SPECTRUM frames carry: raw detector counts (which need DARK and REFERENCE frames) or an
        already processed absorbance or reflectance; uint8 on the wire.  :attr:`SignalKind.COUNTS` for devices
        that do not say (a STATUS without its trailer).
    boot_id : int
        uint32 the device draws at random at every boot (power-up, reset); never 0 when sent, 0 = unknown (a
        STATUS without its trailer).  ``seq`` restarts at 0 when a device reboots, so ``(device_id, boot_id, seq)``
        is the key that tells two spectra apart across reboots.
    axis_unit : AxisUnit
        Unit of the calibration polynomial: :attr:`AxisUnit.NM` (wavelength; every device that does not say) or
        :attr:`AxisUnit.CM_1` (wavenumber, FTIR instruments); uint8 on the wire, written only when not nm.
        :meth:`axis` gives the axis in this unit, :meth:`wavelengths_nm` always in nm.

    >>> ftir = Status(0, "ftir", "1.0", 3, (1000.0, 1000.0), 1000, axis_unit=AxisUnit.CM_1)
    >>> ftir.axis().tolist(), ftir.wavelengths_nm().tolist()
    ([1000.0, 2000.0, 3000.0], [10000.0, 5000.0, 3333.3333333333335])
    """

    MSG_TYPE: ClassVar[MsgType] = MsgType.STATUS

    nonce: int
    device_id: str
    firmware_version: str
    pixel_count: int
    wavelength_coeffs_nm: tuple[float, ...]
    integration_time_us: int
    averages: int = 1
    detector_temp_c: float = float("nan")
    uptime_s: int = 0
    signal: SignalKind = SignalKind.COUNTS
    boot_id: int = 0
    axis_unit: AxisUnit = AxisUnit.NM

    def __post_init__(self) -> None:
        object.__setattr__(self, "wavelength_coeffs_nm", tuple(float(c) for c in self.wavelength_coeffs_nm))
        object.__setattr__(self, "signal", _enum(SignalKind, self.signal, "a signal kind"))
        object.__setattr__(self, "axis_unit", _enum(AxisUnit, self.axis_unit, "an axis unit"))

    def axis(self) -> npt.NDArray[np.float64]:
        """Spectral axis of each pixel in :attr:`axis_unit` (nm or cm-1), shape (pixel_count,): the polynomial."""
        index = np.arange(self.pixel_count, dtype=np.float64)
        coeffs = np.asarray(self.wavelength_coeffs_nm, dtype=np.float64)
        return np.asarray(np.polynomial.polynomial.polyval(index, coeffs), dtype=np.float64)

    def wavelengths_nm(self) -> npt.NDArray[np.float64]:
        """Wavelength of each pixel, nm, shape (pixel_count,): the polynomial, or ``1e7 / wavenumber`` for a cm-1
        device (a descending axis for an ascending wavenumber one; a zero wavenumber gives inf)."""
        axis = self.axis()
        return axis if self.axis_unit is AxisUnit.NM else self.axis_unit.to_nm(axis)

    def axis_in(self, unit: AxisUnit | str) -> npt.NDArray[np.float64]:
        """The axis in ``unit`` (an :class:`AxisUnit` or its symbol ``"nm"``/``"cm-1"``), shape (pixel_count,):
        the polynomial itself when ``unit`` is the device's own, else converted through nm."""
        target = AxisUnit.from_symbol(unit) if isinstance(unit, str) else _enum(AxisUnit, unit, "an axis unit")
        if target is self.axis_unit:
            return self.axis()
        return target.from_nm(self.wavelengths_nm())

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Status):
            return NotImplemented
        return _status_key(self) == _status_key(other)

    def __hash__(self) -> int:
        return hash(_status_key(self))


def draw_boot_id(previous: int = 0) -> int:
    """A fresh :attr:`Status.boot_id`: a random uint32 from the OS's entropy (never a seed), never 0 or ``previous``.

    >>> 0 < draw_boot_id() <= 0xFFFF_FFFF
    True
    """
    while True:
        boot_id = secrets.randbits(32)
        if boot_id not in (0, previous):
            return boot_id


def _status_key(s: Status) -> tuple[Any, ...]:
    return (
        s.nonce,
        s.device_id,
        s.firmware_version,
        s.pixel_count,
        np.asarray(s.wavelength_coeffs_nm, dtype="<f8").tobytes(),
        s.integration_time_us,
        s.averages,
        np.float32(s.detector_temp_c).tobytes(),
        s.uptime_s,
        int(s.signal),
        s.boot_id,
        int(s.axis_unit),
    )


@dataclass(frozen=True)
class Command:
    """Host -> device request; answered by :class:`Ack` or :class:`Nack` carrying the same ``command_id``.

    Parameters
    ----------
    command_id : int
        uint32 chosen by the host to match the reply.
    code : CommandCode
        What to do.
    value : int
        Argument of the command, uint32 (see :class:`CommandCode`); 0 when unused.
    """

    MSG_TYPE: ClassVar[MsgType] = MsgType.COMMAND

    command_id: int
    code: CommandCode
    value: int = 0

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", _enum(CommandCode, self.code, "a command code"))


@dataclass(frozen=True)
class Ack:
    """Device -> host: the command ``command_id`` was carried out."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.ACK

    command_id: int
    code: CommandCode

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", _enum(CommandCode, self.code, "a command code"))


@dataclass(frozen=True)
class Nack:
    """Device -> host: the command ``command_id`` was refused for ``reason``; ``detail`` is free UTF-8 text."""

    MSG_TYPE: ClassVar[MsgType] = MsgType.NACK

    command_id: int
    code: CommandCode
    reason: NackCode
    detail: str = ""

    def __post_init__(self) -> None:
        object.__setattr__(self, "code", _enum(CommandCode, self.code, "a command code"))
        object.__setattr__(self, "reason", _enum(NackCode, self.reason, "a NACK reason"))


@dataclass(frozen=True)
class Annotation:
    """Simulator -> host: the known reference values of the spectrum ``seq`` (for scoring on a test bench).

    Real firmware never sends this; the edge ignores it unless asked to record it.

    Parameters
    ----------
    seq : int
        Sequence number of the :class:`Spectrum` these values belong to.
    values : tuple of float
        Reference values, float64, one per target, in the dataset's units.
    """

    MSG_TYPE: ClassVar[MsgType] = MsgType.ANNOTATION

    seq: int
    values: tuple[float, ...]

    def __post_init__(self) -> None:
        object.__setattr__(self, "values", tuple(float(v) for v in self.values))

    def __eq__(self, other: object) -> bool:
        if not isinstance(other, Annotation):
            return NotImplemented
        return (self.seq, np.asarray(self.values, "<f8").tobytes()) == (
            other.seq,
            np.asarray(other.values, "<f8").tobytes(),
        )

    def __hash__(self) -> int:
        return hash((self.seq, np.asarray(self.values, "<f8").tobytes()))


@dataclass(frozen=True)
class SampleTag:
    """Device -> host: the next ``frames`` spectra it sends are those of lab sample ``sample_id`` (the device's own
    ``tag_sample``: a barcode reader or a sample button on the instrument), so the lab's reference value can be
    joined to them; the spectra are the ones that follow this frame on the link, in order.

    Parameters
    ----------
    sample_id : str
        1-64 printable ASCII characters, no space at either end.
    frames : int
        Spectra tagged, 1..1000.
    """

    MSG_TYPE: ClassVar[MsgType] = MsgType.SAMPLE_TAG

    sample_id: str
    frames: int = 1

    def __post_init__(self) -> None:
        sid = self.sample_id
        if (not isinstance(sid, str) or not 0 < len(sid) <= MAX_SAMPLE_ID_BYTES or sid != sid.strip(" ")
                or any(not " " <= c <= "~" for c in sid)):
            raise ProtocolError(f"expected a sample id of 1-{MAX_SAMPLE_ID_BYTES} printable ASCII characters without "
                                f"a space at either end, got {sid!r:.80}")
        if not isinstance(self.frames, int) or not 1 <= self.frames <= MAX_SAMPLE_TAG_FRAMES:
            raise ProtocolError(f"expected sample tag frames in 1..{MAX_SAMPLE_TAG_FRAMES}, got {self.frames!r}")


#: Any message of the protocol.
Frame = Union[Spectrum, Dark, Reference, Line, Hello, Status, Command, Ack, Nack, Annotation, SampleTag]
