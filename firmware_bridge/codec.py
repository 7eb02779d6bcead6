"""Binary framing of the spectrolite serial protocol: COBS + CRC-32 envelope, payload layouts, incremental decoder.

Pure code, no I/O: :func:`encode` turns a message (see :mod:`firmware_bridge.frames`) into the bytes to write on
the wire, :func:`decode_frame` turns the bytes of one delimited frame back into a message, and
:class:`FrameDecoder` splits an arbitrary byte stream into frames, counting and skipping bad ones.  The byte
layouts below are mirrored as tables in ``firmware_bridge/PROTOCOL.md``; the C reference encoder in
``firmware_bridge/c/`` produces the same bytes.

Frame on the wire::

    COBS( version:u8 | msg_type:u8 | payload_len:u16 | payload | crc32:u32 ) 0x00

all little-endian; the CRC-32 (IEEE 802.3, as :func:`zlib.crc32`) covers version to the end of the payload.

Why COBS is written here rather than taken from the ``cobs`` package: that package ships as a source
distribution only (a C compiler is needed at install time on the device), and a pure-Python codec built on C-speed
primitives is fast enough.  :func:`cobs_encode` splits on zero bytes with :meth:`bytes.split` and emits one code
byte per run; :func:`cobs_decode` walks the chain of code bytes in a ``bytearray``, overwriting each with the zero
it stands for (one three-statement loop step per block; a block ends at each zero byte of the frame), and needs
slicing only for the rare frames with 254 non-zero bytes in a row.  A 650-pixel ``uint16`` spectrum of real counts
has a few dozen blocks and decodes several times faster than the 10 MB/s goal (``spectro-bench codec`` measures
it); the slowest input there is, an all-zero spectrum with one block per byte, comes down to about that rate.

>>> import numpy as np
>>> from firmware_bridge.frames import Command, CommandCode
>>> wire = encode(Command(command_id=1, code=CommandCode.TRIGGER, value=3))
>>> wire.hex(" ")
'04 01 20 09 02 01 01 01 03 03 03 01 01 05 07 bb f0 f3 00'
>>> FrameDecoder().feed(wire)
[Command(command_id=1, code=<CommandCode.TRIGGER: 3>, value=3)]
"""

from __future__ import annotations

import math
import operator
import struct
import zlib
from dataclasses import dataclass
from typing import Callable, Final, SupportsIndex, Union, cast

import numpy as np

from firmware_bridge.errors import FramingError, ProtocolError
from firmware_bridge.frames import (
    PIXEL_DTYPES,
    PROTOCOL_VERSION,
    Ack,
    Annotation,
    AxisUnit,
    Command,
    CommandCode,
    Dark,
    Frame,
    Hello,
    MsgType,
    Nack,
    NackCode,
    PixelFormat,
    Reference,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
)

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_ENCODED_BYTES",
    "MAX_WIRE_BYTES",
    "MAX_PIXELS",
    "MAX_DEVICE_ID_BYTES",
    "MAX_FIRMWARE_VERSION_BYTES",
    "MAX_WAVELENGTH_COEFFS",
    "MAX_NACK_DETAIL_BYTES",
    "MAX_ANNOTATION_VALUES",
    "STATUS_TRAILER_BYTES",
    "STATUS_AXIS_UNIT_BYTES",
    "DELIMITER",
    "BytesLike",
    "CrcError",
    "OversizeError",
    "VersionError",
    "UnknownTypeError",
    "DecoderStats",
    "FrameDecoder",
    "encode",
    "encode_body",
    "decode_frame",
    "decode_body",
    "cobs_encode",
    "cobs_decode",
]

# --------------------------------------------------------------------------------------------------------------
# Envelope
# --------------------------------------------------------------------------------------------------------------

#: Frame delimiter on the wire; COBS guarantees it never occurs inside a frame.
DELIMITER: Final = b"\x00"

#: What the decoding functions accept: any contiguous buffer of bytes.
BytesLike = Union[bytes, bytearray, memoryview]

_ENVELOPE = struct.Struct(
    "<"
    "B"  # version: PROTOCOL_VERSION; frames of any other version are refused
    "B"  # msg_type: MsgType
    "H"  # payload_len: number of payload bytes that follow, 0..MAX_PAYLOAD_BYTES
)
_CRC = struct.Struct(
    "<"
    "I"  # crc32: CRC-32/IEEE (zlib.crc32) of version..payload, i.e. of every byte before it
)

#: Largest frame body before byte stuffing: envelope (4) + payload + CRC (4).  The CRC covers at most
#: ``MAX_FRAME_BYTES - 4 = 11260`` bytes (90,080 bits), inside the 91,607-bit range where CRC-32/IEEE has Hamming
#: distance 4: every error of 1, 2 or 3 bits in a frame, and every burst of up to 32 bits, is detected.
MAX_FRAME_BYTES: Final = 11_264
#: Largest payload of any message.
MAX_PAYLOAD_BYTES: Final = MAX_FRAME_BYTES - _ENVELOPE.size - _CRC.size
#: Largest COBS-encoded frame without its delimiter: one code byte per started block of 254 bytes.
MAX_ENCODED_BYTES: Final = MAX_FRAME_BYTES + MAX_FRAME_BYTES // 254 + 1
#: Largest frame on the wire, delimiter included: size a receive buffer (or a firmware's transmit buffer) with it.
MAX_WIRE_BYTES: Final = MAX_ENCODED_BYTES + 1
_MIN_FRAME_BYTES: Final = _ENVELOPE.size + _CRC.size

# --------------------------------------------------------------------------------------------------------------
# Payload layouts (mirrored in PROTOCOL.md)
# --------------------------------------------------------------------------------------------------------------

#: SPECTRUM, DARK and REFERENCE: this header, then ``pixel_count`` pixels in ``pixel_format``.
_SPECTRUM = struct.Struct(
    "<"
    "I"  # seq: uint32, incremented by the device for every spectrum-like frame
    "Q"  # timestamp_us: uint64, device clock at the end of the exposure, microseconds
    "I"  # integration_time_us: uint32, exposure time, microseconds
    "H"  # averages: uint16, scans averaged into this spectrum, >= 1
    "H"  # pixel_count: uint16, number of pixels that follow, 1..MAX_PIXELS[pixel_format]
    "B"  # pixel_format: uint8, PixelFormat (1 = uint16, 2 = uint32, 3 = float32)
    "B"  # flags: uint8, SpectrumFlags bits
    "H"  # saturated_count: uint16, pixels at the ADC's full scale, <= pixel_count
    "f"  # detector_temp_c: float32, degrees Celsius, NaN when unknown
)  # 28 bytes; the pixels start 32 bytes into the frame body (4-byte aligned), little-endian

#: Largest pixel count of a spectrum frame for each pixel format.
MAX_PIXELS: Final = {
    fmt: min(0xFFFF, (MAX_PAYLOAD_BYTES - _SPECTRUM.size) // dtype.itemsize) for fmt, dtype in PIXEL_DTYPES.items()
}

_HELLO = struct.Struct(
    "<"
    "I"  # nonce: uint32, echoed by the STATUS reply
)

#: STATUS: this header, then ``n_coeffs`` float64 coefficients, then the two UTF-8 strings (no terminator), then
#: :data:`_STATUS_TRAILER`, then, for a device whose axis is not in nm, :data:`_STATUS_AXIS_UNIT`.  The trailer is
#: optional on decoding: a STATUS that ends right after the strings (firmware written before it existed) reads as
#: ``signal=COUNTS, boot_id=0``.  The encoder always writes it, and the axis unit byte only when it is not nm, so an
#: nm device's STATUS is byte for byte what it was before the byte existed, and a host that predates it refuses a
#: cm-1 STATUS (a payload size it does not know) rather than reading wavenumbers as nm.
_STATUS = struct.Struct(
    "<"
    "I"  # nonce: uint32, echoed from the HELLO this answers, 0 when unsolicited
    "I"  # integration_time_us: uint32, current integration time, microseconds
    "I"  # uptime_s: uint32, seconds since the device started
    "H"  # pixel_count: uint16, pixels in every spectrum the device sends
    "H"  # averages: uint16, scans averaged per spectrum, >= 1
    "f"  # detector_temp_c: float32, degrees Celsius, NaN when unknown
    "B"  # n_coeffs: uint8, wavelength polynomial coefficients that follow, 1..MAX_WAVELENGTH_COEFFS
    "B"  # device_id_len: uint8, bytes of the device id string, 0..MAX_DEVICE_ID_BYTES
    "B"  # firmware_version_len: uint8, bytes of the firmware version string, 0..MAX_FIRMWARE_VERSION_BYTES
)  # 23 bytes
_STATUS_TRAILER = struct.Struct(
    "<"
    "B"  # signal: uint8, SignalKind of the SPECTRUM pixels (0 = raw counts, 1 = absorbance, 2 = reflectance)
    "I"  # boot_id: uint32, drawn at random by the device at every boot, never 0 when sent (0 = unknown)
)  # 5 bytes
#: Size of the STATUS trailer (``signal`` u8 + ``boot_id`` u32) after the firmware version string.
STATUS_TRAILER_BYTES: Final = _STATUS_TRAILER.size
_STATUS_AXIS_UNIT = struct.Struct(
    "<"
    "B"  # axis_unit: uint8, AxisUnit of the polynomial (1 = cm-1); absent = 0 = nm, never written as 0
)  # 1 byte, after the trailer
#: Size of the STATUS ``axis_unit`` byte that follows the trailer when the device's axis is not in nm.
STATUS_AXIS_UNIT_BYTES: Final = _STATUS_AXIS_UNIT.size
_F64 = struct.Struct("<d")  # one float64 (axis coefficient in nm or cm-1 per pixel**k, annotation value)

#: Longest device id of a STATUS frame, UTF-8 bytes.
MAX_DEVICE_ID_BYTES: Final = 64
#: Longest firmware version of a STATUS frame, UTF-8 bytes.
MAX_FIRMWARE_VERSION_BYTES: Final = 32
#: Most coefficients of the wavelength calibration polynomial (degree 5).
MAX_WAVELENGTH_COEFFS: Final = 6

_COMMAND = struct.Struct(
    "<"
    "I"  # command_id: uint32, chosen by the host, echoed by ACK/NACK
    "B"  # code: uint8, CommandCode
    "I"  # value: uint32, argument of the command (0 when unused)
)  # 9 bytes

_ACK = struct.Struct(
    "<"
    "I"  # command_id: uint32 of the COMMAND carried out
    "B"  # code: uint8, CommandCode of that COMMAND
)  # 5 bytes

#: NACK: this header, then ``detail_len`` bytes of UTF-8 text.
_NACK = struct.Struct(
    "<"
    "I"  # command_id: uint32 of the COMMAND refused
    "B"  # code: uint8, CommandCode of that COMMAND
    "B"  # reason: uint8, NackCode
    "B"  # detail_len: uint8, bytes of the detail text, 0..MAX_NACK_DETAIL_BYTES
)  # 7 bytes

#: Longest detail text of a NACK frame, UTF-8 bytes.
MAX_NACK_DETAIL_BYTES: Final = 128

#: ANNOTATION: this header, then ``n_values`` float64 values.
_ANNOTATION = struct.Struct(
    "<"
    "I"  # seq: uint32 of the SPECTRUM these reference values belong to
    "B"  # n_values: uint8, float64 values that follow, 0..MAX_ANNOTATION_VALUES
)  # 5 bytes

#: Most reference values of an ANNOTATION frame.
MAX_ANNOTATION_VALUES: Final = 64

_U8, _U16, _U32, _U64 = 0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF
_COMMAND_CODES: Final = frozenset(int(c) for c in CommandCode)
_NACK_CODES: Final = frozenset(int(c) for c in NackCode)
_PIXEL_FORMATS: Final = {int(f): f for f in PixelFormat}
_SIGNAL_KINDS: Final = {int(k): k for k in SignalKind}
_AXIS_UNITS: Final = {int(u): u for u in AxisUnit}


# --------------------------------------------------------------------------------------------------------------
# Errors
# --------------------------------------------------------------------------------------------------------------


class CrcError(FramingError):
    """The CRC-32 of a frame does not match its contents."""


class OversizeError(FramingError):
    """A frame is longer than :data:`MAX_FRAME_BYTES` (or its encoding longer than :data:`MAX_ENCODED_BYTES`)."""


class VersionError(ProtocolError):
    """A frame carries a protocol version other than :data:`~firmware_bridge.frames.PROTOCOL_VERSION`."""


class UnknownTypeError(ProtocolError):
    """A frame carries a message type byte that is not a :class:`~firmware_bridge.frames.MsgType`."""


# --------------------------------------------------------------------------------------------------------------
# COBS
# --------------------------------------------------------------------------------------------------------------


def cobs_encode(data: BytesLike) -> bytes:
    """Byte-stuff ``data`` with COBS so that the result contains no zero byte (delimiter not appended).

    The encoding is the canonical one: a run of 254 non-zero bytes at the very end is closed by its ``0xFF``
    code alone, without an empty trailing block.

    Parameters
    ----------
    data : bytes-like
        Any bytes.

    Returns
    -------
    bytes
        ``len(data) + len(data) // 254 + 1`` bytes at most, none of them zero.

    >>> cobs_encode(b"\\x11\\x00\\x00\\x22").hex(" ")
    '02 11 01 02 22'
    """
    out = bytearray()
    parts = bytes(data).split(b"\x00")
    last = len(parts) - 1
    for k, part in enumerate(parts):
        n = len(part)
        start = 0
        while n - start >= 254:
            out.append(0xFF)
            out += part[start : start + 254]
            start += 254
        rest = n - start
        if rest or n == 0 or k != last:
            out.append(rest + 1)
            out += part[start:]
    return bytes(out)


def cobs_decode(encoded: BytesLike) -> bytes:
    """Undo :func:`cobs_encode`.

    Parameters
    ----------
    encoded : bytes-like
        One COBS-encoded frame without its delimiter.

    Returns
    -------
    bytes
        The original bytes.

    Raises
    ------
    FramingError
        When ``encoded`` is empty, contains a zero byte, has a block running past its end, or is not in the
        canonical form :func:`cobs_encode` produces (so decoding is the exact inverse of encoding).

    >>> cobs_decode(bytes.fromhex("02 11 01 02 22")).hex(" ")
    '11 00 00 22'
    """
    raw = bytes(encoded)
    if not raw:
        raise FramingError("expected a COBS-encoded frame, got 0 bytes")
    if 0 in raw:
        raise FramingError(f"expected no zero byte inside a COBS frame, got one at offset {raw.index(0)}")
    return _cobs_decode_nonzero(raw)


def _cobs_decode_nonzero(encoded: bytes | bytearray) -> bytes:
    # Fast path: walk the chain of code bytes, replacing each by the zero it stands for.  When no block is a full
    # 0xFF block, the code byte of block k+1 sits exactly where block k's implied zero belongs, so the decoded
    # frame is the buffer minus its first byte.  ``encoded`` holds no zero byte, so every step advances.
    n = len(encoded)
    buf = bytearray(encoded)
    i = 0
    full_block = False
    if 0xFF in encoded:
        while i < n:
            code = buf[i]
            if code == 0xFF:
                full_block = True
            buf[i] = 0
            i += code
    else:  # no 0xFF byte at all, so no full block: the tighter loop (zero-heavy frames have many blocks)
        while i < n:
            code = buf[i]
            buf[i] = 0
            i += code
    if i != n:
        raise FramingError(f"expected COBS blocks ending at byte {n}, got a block running to byte {i}")
    if not full_block:
        del buf[0]
        return bytes(buf)
    return _cobs_decode_blocks(encoded)


def _cobs_decode_blocks(encoded: bytes | bytearray) -> bytes:
    # General path for frames with 0xFF blocks (254 non-zero bytes in a row, e.g. long runs of large counts).
    n = len(encoded)
    out = bytearray()
    i = 0
    previous = 0
    while True:
        code = encoded[i]
        j = i + code
        out += encoded[i + 1 : j]
        if j >= n:  # last block: its implied zero is the frame's end
            if code == 1 and previous == 0xFF:
                raise FramingError("expected a canonical COBS encoding, got an empty block after a 0xFF block")
            return bytes(out)
        if code != 0xFF:
            out.append(0)
        previous = code
        i = j


# --------------------------------------------------------------------------------------------------------------
# Encoding
# --------------------------------------------------------------------------------------------------------------


def _uint(name: str, value: object, maximum: int, minimum: int = 0) -> int:
    try:
        number = operator.index(cast(SupportsIndex, value))  # ints and numpy integers; not floats, not str
    except TypeError:
        raise ProtocolError(f"expected an integer {name}, got {value!r}") from None
    if not minimum <= number <= maximum:
        raise ProtocolError(f"expected {name} in {minimum}..{maximum}, got {number}")
    return number


def _float32(name: str, value: object) -> bytes:
    try:
        return struct.pack("<f", value)
    except (struct.error, OverflowError, TypeError):
        raise ProtocolError(f"expected a float32-representable {name}, got {value!r}") from None


def _utf8(name: str, text: object, max_bytes: int) -> bytes:
    if not isinstance(text, str):
        raise ProtocolError(f"expected a str {name}, got {type(text).__name__}")
    try:
        raw = text.encode("utf-8")
    except UnicodeEncodeError as exc:
        raise ProtocolError(f"expected {name} encodable as UTF-8, got {text!r} ({exc.reason})") from None
    if len(raw) > max_bytes:
        raise ProtocolError(f"expected {name} of at most {max_bytes} UTF-8 bytes, got {len(raw)}")
    return raw


def _payload_spectrum(frame: Spectrum) -> bytes:
    fmt = frame.pixel_format
    n = frame.pixel_count
    if not 1 <= n <= MAX_PIXELS[fmt]:
        raise FramingError(f"expected 1..{MAX_PIXELS[fmt]} pixels of {fmt.name.lower()}, got {n}")
    header = _SPECTRUM.pack(
        _uint("seq", frame.seq, _U32),
        _uint("timestamp_us", frame.timestamp_us, _U64),
        _uint("integration_time_us", frame.integration_time_us, _U32),
        _uint("averages", frame.averages, _U16, 1),
        n,
        int(fmt),
        _uint("flags", int(frame.flags), _U8),
        _uint("saturated_count", frame.saturated_count, n),
        0.0,
    )
    # float32 packed separately for a precise error; counts are already little-endian (see frames.Spectrum)
    return header[:-4] + _float32("detector_temp_c", frame.detector_temp_c) + frame.counts.tobytes()


def _payload_hello(frame: Hello) -> bytes:
    return _HELLO.pack(_uint("nonce", frame.nonce, _U32))


def _payload_status(frame: Status) -> bytes:
    coeffs = frame.wavelength_coeffs_nm
    if not 1 <= len(coeffs) <= MAX_WAVELENGTH_COEFFS:
        raise ProtocolError(f"expected 1..{MAX_WAVELENGTH_COEFFS} wavelength coefficients, got {len(coeffs)}")
    if not all(math.isfinite(c) for c in coeffs):
        raise ProtocolError(f"expected finite wavelength coefficients, got {coeffs}")
    device_id = _utf8("device_id", frame.device_id, MAX_DEVICE_ID_BYTES)
    firmware = _utf8("firmware_version", frame.firmware_version, MAX_FIRMWARE_VERSION_BYTES)
    header = _STATUS.pack(
        _uint("nonce", frame.nonce, _U32),
        _uint("integration_time_us", frame.integration_time_us, _U32),
        _uint("uptime_s", frame.uptime_s, _U32),
        _uint("pixel_count", frame.pixel_count, _U16),
        _uint("averages", frame.averages, _U16, 1),
        0.0,
        len(coeffs),
        len(device_id),
        len(firmware),
    )
    temp = _float32("detector_temp_c", frame.detector_temp_c)
    trailer = _STATUS_TRAILER.pack(_uint("signal", int(frame.signal), _U8), _uint("boot_id", frame.boot_id, _U32))
    unit = _uint("axis_unit", int(frame.axis_unit), _U8)
    axis_unit = b"" if unit == AxisUnit.NM else _STATUS_AXIS_UNIT.pack(unit)  # nm: the bytes of every older device
    return b"".join(
        (
            header[:16],
            temp,
            header[20:],
            struct.pack(f"<{len(coeffs)}d", *coeffs),
            device_id,
            firmware,
            trailer,
            axis_unit,
        )
    )


def _command_code(value: object) -> int:
    return _uint("command code", value, _U8)


def _payload_command(frame: Command) -> bytes:
    return _COMMAND.pack(
        _uint("command_id", frame.command_id, _U32), _command_code(frame.code), _uint("value", frame.value, _U32)
    )


def _payload_ack(frame: Ack) -> bytes:
    return _ACK.pack(_uint("command_id", frame.command_id, _U32), _command_code(frame.code))


def _payload_nack(frame: Nack) -> bytes:
    detail = _utf8("detail", frame.detail, MAX_NACK_DETAIL_BYTES)
    return (
        _NACK.pack(
            _uint("command_id", frame.command_id, _U32),
            _command_code(frame.code),
            _uint("reason", int(frame.reason), _U8),
            len(detail),
        )
        + detail
    )


def _payload_annotation(frame: Annotation) -> bytes:
    values = frame.values
    if len(values) > MAX_ANNOTATION_VALUES:
        raise ProtocolError(f"expected at most {MAX_ANNOTATION_VALUES} annotation values, got {len(values)}")
    return _ANNOTATION.pack(_uint("seq", frame.seq, _U32), len(values)) + struct.pack(f"<{len(values)}d", *values)


_ENCODERS: Final[dict[type, Callable[..., bytes]]] = {
    Spectrum: _payload_spectrum,
    Dark: _payload_spectrum,
    Reference: _payload_spectrum,
    Hello: _payload_hello,
    Status: _payload_status,
    Command: _payload_command,
    Ack: _payload_ack,
    Nack: _payload_nack,
    Annotation: _payload_annotation,
}


def encode_body(frame: Frame) -> bytes:
    """Return the frame body of ``frame`` before byte stuffing: envelope, payload and CRC.

    Parameters
    ----------
    frame : Frame
        Any message of :mod:`firmware_bridge.frames`.

    Returns
    -------
    bytes
        ``8 + payload_len`` bytes, at most :data:`MAX_FRAME_BYTES`.

    Raises
    ------
    ProtocolError
        When a field is out of the range its wire type can carry (message names the field and the range).
    FramingError
        When the frame would exceed :data:`MAX_FRAME_BYTES` (too many pixels).
    TypeError
        When ``frame`` is not a message of the protocol.
    """
    try:
        payload_of = _ENCODERS[type(frame)]
    except KeyError:
        raise TypeError(f"expected a protocol message (Spectrum, Hello, ...), got {type(frame).__name__}") from None
    payload = payload_of(frame)
    if len(payload) > MAX_PAYLOAD_BYTES:  # pragma: no cover - every layout above bounds itself
        raise FramingError(f"expected a payload of at most {MAX_PAYLOAD_BYTES} bytes, got {len(payload)}")
    head = _ENVELOPE.pack(PROTOCOL_VERSION, int(frame.MSG_TYPE), len(payload)) + payload
    return head + _CRC.pack(zlib.crc32(head))


def encode(frame: Frame) -> bytes:
    """Encode ``frame`` as the complete bytes to send on the wire, closing delimiter included.

    Parameters
    ----------
    frame : Frame
        Any message of :mod:`firmware_bridge.frames`.

    Returns
    -------
    bytes
        ``COBS(body) + b"\\x00"``, at most :data:`MAX_WIRE_BYTES` long.

    Raises
    ------
    ProtocolError, FramingError, TypeError
        As :func:`encode_body`.
    """
    return cobs_encode(encode_body(frame)) + DELIMITER


# --------------------------------------------------------------------------------------------------------------
# Decoding
# --------------------------------------------------------------------------------------------------------------


def _check_size(name: str, payload: bytes, expected: int) -> None:
    if len(payload) != expected:
        raise FramingError(f"expected a {name} payload of {expected} bytes, got {len(payload)}")


def _text(name: str, raw: bytes) -> str:
    try:
        return raw.decode("utf-8")
    except UnicodeDecodeError:
        raise ProtocolError(f"expected UTF-8 {name}, got {raw!r}") from None


def _decode_spectrum(cls: type[Spectrum], payload: bytes) -> Spectrum:
    if len(payload) < _SPECTRUM.size:
        raise FramingError(f"expected a spectrum payload of at least {_SPECTRUM.size} bytes, got {len(payload)}")
    seq, timestamp_us, integration_us, averages, n, fmt_code, flags, saturated, temp = _SPECTRUM.unpack_from(payload)
    fmt = _PIXEL_FORMATS.get(fmt_code)
    if fmt is None:
        raise ProtocolError(f"expected pixel_format 1, 2 or 3, got {fmt_code}")
    dtype = PIXEL_DTYPES[fmt]
    _check_size(cls.__name__, payload, _SPECTRUM.size + n * dtype.itemsize)
    if not 1 <= n <= MAX_PIXELS[fmt]:
        raise ProtocolError(f"expected 1..{MAX_PIXELS[fmt]} pixels, got {n}")
    if averages < 1:
        raise ProtocolError(f"expected averages >= 1, got {averages}")
    if saturated > n:
        raise ProtocolError(f"expected saturated_count <= pixel_count {n}, got {saturated}")
    counts = np.frombuffer(payload, dtype=dtype, count=n, offset=_SPECTRUM.size)
    return cls(
        seq=seq,
        timestamp_us=timestamp_us,
        integration_time_us=integration_us,
        counts=counts,
        averages=averages,
        saturated_count=saturated,
        flags=SpectrumFlags(flags),
        detector_temp_c=temp,
    )


def _decode_hello(payload: bytes) -> Hello:
    _check_size("HELLO", payload, _HELLO.size)
    return Hello(nonce=_HELLO.unpack(payload)[0])


def _decode_status(payload: bytes) -> Status:
    if len(payload) < _STATUS.size:
        raise FramingError(f"expected a STATUS payload of at least {_STATUS.size} bytes, got {len(payload)}")
    nonce, integration_us, uptime_s, pixel_count, averages, temp, n_coeffs, id_len, fw_len = _STATUS.unpack_from(
        payload
    )
    end = _STATUS.size + 8 * n_coeffs + id_len + fw_len  # where the strings end and the optional trailer starts
    with_trailer = end + _STATUS_TRAILER.size
    with_axis_unit = with_trailer + _STATUS_AXIS_UNIT.size
    if len(payload) not in (end, with_trailer, with_axis_unit):
        raise FramingError(
            f"expected a STATUS payload of {end} bytes, or {with_trailer} with its signal/boot_id trailer, or "
            f"{with_axis_unit} with its axis_unit, got {len(payload)}"
        )
    if not 1 <= n_coeffs <= MAX_WAVELENGTH_COEFFS:
        raise ProtocolError(f"expected 1..{MAX_WAVELENGTH_COEFFS} wavelength coefficients, got {n_coeffs}")
    if id_len > MAX_DEVICE_ID_BYTES or fw_len > MAX_FIRMWARE_VERSION_BYTES:
        raise ProtocolError(
            f"expected device_id <= {MAX_DEVICE_ID_BYTES} and firmware_version <= {MAX_FIRMWARE_VERSION_BYTES} "
            f"bytes, got {id_len} and {fw_len}"
        )
    if averages < 1:
        raise ProtocolError(f"expected averages >= 1, got {averages}")
    offset = _STATUS.size
    coeffs = struct.unpack_from(f"<{n_coeffs}d", payload, offset)
    if not all(math.isfinite(c) for c in coeffs):
        raise ProtocolError(f"expected finite wavelength coefficients, got {coeffs}")
    offset += 8 * n_coeffs
    device_id = _text("device_id", payload[offset : offset + id_len])
    firmware = _text("firmware_version", payload[offset + id_len : end])
    signal, boot_id = SignalKind.COUNTS, 0  # a STATUS without the trailer: raw counts, boot unknown
    if len(payload) > end:
        signal_code, boot_id = _STATUS_TRAILER.unpack_from(payload, end)
        found = _SIGNAL_KINDS.get(signal_code)
        if found is None:
            known = ", ".join(f"{int(k)} ({k.name})" for k in SignalKind)
            raise ProtocolError(f"expected a STATUS signal of {known}, got {signal_code}")
        signal = found
    axis_unit = AxisUnit.NM  # no axis_unit byte: nm, as every device before it
    if len(payload) == with_axis_unit:
        (unit_code,) = _STATUS_AXIS_UNIT.unpack_from(payload, with_trailer)
        unit = _AXIS_UNITS.get(unit_code)
        if unit is AxisUnit.NM:  # nm is never written: one encoding per STATUS, and nm devices' bytes unchanged
            raise ProtocolError("expected no STATUS axis_unit byte for nm, got an explicit 0 (nm is sent as no byte)")
        if unit is None:
            known = ", ".join(f"{int(u)} ({u.symbol})" for u in AxisUnit if u is not AxisUnit.NM)
            raise ProtocolError(f"expected a STATUS axis_unit of {known}, got {unit_code}")
        axis_unit = unit
    return Status(
        nonce=nonce,
        device_id=device_id,
        firmware_version=firmware,
        pixel_count=pixel_count,
        wavelength_coeffs_nm=coeffs,
        integration_time_us=integration_us,
        averages=averages,
        detector_temp_c=temp,
        uptime_s=uptime_s,
        signal=signal,
        boot_id=boot_id,
        axis_unit=axis_unit,
    )


def _code(raw: int) -> CommandCode:
    if raw not in _COMMAND_CODES:
        raise ProtocolError(f"expected a CommandCode {sorted(_COMMAND_CODES)}, got {raw}")
    return CommandCode(raw)


def _decode_command(payload: bytes) -> Command:
    _check_size("COMMAND", payload, _COMMAND.size)
    command_id, code, value = _COMMAND.unpack(payload)
    return Command(command_id=command_id, code=_code(code), value=value)


def _decode_ack(payload: bytes) -> Ack:
    _check_size("ACK", payload, _ACK.size)
    command_id, code = _ACK.unpack(payload)
    return Ack(command_id=command_id, code=_code(code))


def _decode_nack(payload: bytes) -> Nack:
    if len(payload) < _NACK.size:
        raise FramingError(f"expected a NACK payload of at least {_NACK.size} bytes, got {len(payload)}")
    command_id, code, reason, detail_len = _NACK.unpack_from(payload)
    _check_size("NACK", payload, _NACK.size + detail_len)
    if detail_len > MAX_NACK_DETAIL_BYTES:
        raise ProtocolError(f"expected a NACK detail of at most {MAX_NACK_DETAIL_BYTES} bytes, got {detail_len}")
    if reason not in _NACK_CODES:
        raise ProtocolError(f"expected a NackCode {sorted(_NACK_CODES)}, got {reason}")
    return Nack(
        command_id=command_id,
        code=_code(code),
        reason=NackCode(reason),
        detail=_text("detail", payload[_NACK.size :]),
    )


def _decode_annotation(payload: bytes) -> Annotation:
    if len(payload) < _ANNOTATION.size:
        raise FramingError(
            f"expected an ANNOTATION payload of at least {_ANNOTATION.size} bytes, got {len(payload)}"
        )
    seq, n_values = _ANNOTATION.unpack_from(payload)
    _check_size("ANNOTATION", payload, _ANNOTATION.size + 8 * n_values)
    if n_values > MAX_ANNOTATION_VALUES:
        raise ProtocolError(f"expected at most {MAX_ANNOTATION_VALUES} annotation values, got {n_values}")
    return Annotation(seq=seq, values=struct.unpack_from(f"<{n_values}d", payload, _ANNOTATION.size))


_DECODERS: Final[dict[int, Callable[[bytes], Frame]]] = {
    MsgType.SPECTRUM: lambda p: _decode_spectrum(Spectrum, p),
    MsgType.DARK: lambda p: _decode_spectrum(Dark, p),
    MsgType.REFERENCE: lambda p: _decode_spectrum(Reference, p),
    MsgType.HELLO: _decode_hello,
    MsgType.STATUS: _decode_status,
    MsgType.COMMAND: _decode_command,
    MsgType.ACK: _decode_ack,
    MsgType.NACK: _decode_nack,
    MsgType.ANNOTATION: _decode_annotation,
}


def decode_body(body: BytesLike) -> Frame:
    """Decode a frame body (already un-stuffed): check its CRC, version, length and type, then parse the payload.

    Parameters
    ----------
    body : bytes-like
        Envelope, payload and CRC, as :func:`encode_body` returns them.

    Returns
    -------
    Frame

    Raises
    ------
    OversizeError
        Longer than :data:`MAX_FRAME_BYTES`.
    CrcError
        The CRC does not match (checked before any other field is trusted).
    FramingError
        Shorter than an envelope, or ``payload_len`` disagrees with the body's length, or a payload is not the
        size its layout says.
    VersionError, UnknownTypeError, ProtocolError
        Wrong version, unknown message type, or a field outside its range (unknown enum code, bad UTF-8, ...).
    """
    if not isinstance(body, bytes):
        body = bytes(body)
    n = len(body)
    if n > MAX_FRAME_BYTES:
        raise OversizeError(f"expected a frame of at most {MAX_FRAME_BYTES} bytes, got {n}")
    if n < _MIN_FRAME_BYTES:
        raise FramingError(f"expected a frame of at least {_MIN_FRAME_BYTES} bytes, got {n}")
    crc = zlib.crc32(memoryview(body)[:-4])
    (sent,) = _CRC.unpack_from(body, n - 4)
    if crc != sent:
        raise CrcError(f"expected CRC-32 0x{crc:08x}, got 0x{sent:08x}")
    version, msg_type, payload_len = _ENVELOPE.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise VersionError(f"expected protocol version {PROTOCOL_VERSION}, got {version}")
    if payload_len != n - _MIN_FRAME_BYTES:
        raise FramingError(f"expected payload_len {n - _MIN_FRAME_BYTES} (from the frame size), got {payload_len}")
    decoder = _DECODERS.get(msg_type)
    if decoder is None:
        raise UnknownTypeError(f"expected a message type in {sorted(hex(t) for t in MsgType)}, got 0x{msg_type:02x}")
    return decoder(body[_ENVELOPE.size : n - 4])


def decode_frame(body: BytesLike) -> Frame:
    """Decode one COBS-encoded frame as it came off the wire.

    Parameters
    ----------
    body : bytes-like
        The bytes between two delimiters; one trailing ``0x00`` delimiter is allowed and ignored.

    Returns
    -------
    Frame

    Raises
    ------
    FramingError
        Bad COBS encoding (or a zero byte inside), too short, too long (:class:`OversizeError`), CRC mismatch
        (:class:`CrcError`), inconsistent length.
    ProtocolError
        Wrong version (:class:`VersionError`), unknown type (:class:`UnknownTypeError`), field out of range.

    >>> from firmware_bridge.frames import Hello
    >>> decode_frame(encode(Hello(nonce=42)))
    Hello(nonce=42)
    """
    raw = bytes(body)
    if raw.endswith(DELIMITER):
        raw = raw[:-1]
    if len(raw) > MAX_ENCODED_BYTES:
        raise OversizeError(f"expected an encoded frame of at most {MAX_ENCODED_BYTES} bytes, got {len(raw)}")
    return decode_body(cobs_decode(raw))


@dataclass(frozen=True)
class DecoderStats:
    """Counters of a :class:`FrameDecoder`, as a snapshot.

    Every byte fed is accounted for exactly once:
    ``bytes_fed == bytes_ok + bytes_skipped + empty_frames + bytes_pending``, and every delimited non-empty frame
    lands in exactly one of ``frames_ok`` or the error counters (their sum is :attr:`frames_bad`).

    Parameters
    ----------
    frames_ok : int
        Frames decoded and returned.
    crc_errors : int
        Frames whose CRC-32 did not match.
    oversize : int
        Frames longer than :data:`MAX_ENCODED_BYTES` on the wire, dropped while they streamed in.
    unknown_type : int
        Frames with a valid CRC and an unknown message type.
    malformed : int
        Frames with a bad COBS encoding, a length shorter than an envelope, a ``payload_len`` that disagrees with
        the frame, or a payload that breaks its layout (size, enum code, UTF-8, range).
    bad_version : int
        Frames with a valid CRC and a protocol version other than ours.
    truncated : int
        Partial frames discarded by :meth:`FrameDecoder.reset`.
    empty_frames : int
        Delimiters with nothing before them (idle fill, or a sender's leading delimiter); not errors.
    bytes_fed : int
        Bytes passed to :meth:`FrameDecoder.feed`.
    bytes_ok : int
        Bytes of returned frames, their delimiters included.
    bytes_skipped : int
        Bytes of rejected frames, their delimiters included.
    bytes_pending : int
        Bytes buffered of a frame whose delimiter has not arrived yet.
    """

    frames_ok: int = 0
    crc_errors: int = 0
    oversize: int = 0
    unknown_type: int = 0
    malformed: int = 0
    bad_version: int = 0
    truncated: int = 0
    empty_frames: int = 0
    bytes_fed: int = 0
    bytes_ok: int = 0
    bytes_skipped: int = 0
    bytes_pending: int = 0

    @property
    def frames_bad(self) -> int:
        """Frames rejected for any reason."""
        return (
            self.crc_errors + self.oversize + self.unknown_type + self.malformed + self.bad_version + self.truncated
        )


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, in chunks of any size, and get whole frames back.

    A frame ends at each ``0x00`` delimiter; the start of the stream counts as a delimiter.  A frame that fails
    any check is counted in :attr:`stats` and skipped, and decoding resumes after the next delimiter, so one bad
    frame never costs more than itself (and, when its delimiter is hit, its successor).  The buffer never holds
    more than :data:`MAX_ENCODED_BYTES`: a longer frame is dropped while it streams in and counted as oversize
    when its delimiter arrives.  :meth:`feed` does not raise on any data.

    >>> from firmware_bridge.frames import Hello
    >>> decoder = FrameDecoder()
    >>> wire = encode(Hello(nonce=1)) + b"garbage\\x00" + encode(Hello(nonce=2))
    >>> decoder.feed(wire[:5]) + decoder.feed(wire[5:])
    [Hello(nonce=1), Hello(nonce=2)]
    >>> decoder.stats.frames_ok, decoder.stats.frames_bad
    (2, 1)
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._discarding = False  # inside an oversize frame: drop bytes up to the next delimiter
        self._frames_ok = 0
        self._crc_errors = 0
        self._oversize = 0
        self._unknown_type = 0
        self._malformed = 0
        self._bad_version = 0
        self._truncated = 0
        self._empty_frames = 0
        self._bytes_fed = 0
        self._bytes_ok = 0
        self._bytes_skipped = 0

    @property
    def stats(self) -> DecoderStats:
        """Snapshot of the counters (a new frozen object on every access)."""
        return DecoderStats(
            frames_ok=self._frames_ok,
            crc_errors=self._crc_errors,
            oversize=self._oversize,
            unknown_type=self._unknown_type,
            malformed=self._malformed,
            bad_version=self._bad_version,
            truncated=self._truncated,
            empty_frames=self._empty_frames,
            bytes_fed=self._bytes_fed,
            bytes_ok=self._bytes_ok,
            bytes_skipped=self._bytes_skipped,
            bytes_pending=len(self._pending),
        )

    def reset(self) -> None:
        """Drop a partially received frame (after a reconnect, say), counting it as truncated."""
        if self._pending or self._discarding:
            self._bytes_skipped += len(self._pending)
            self._truncated += 1
        self._pending = bytearray()
        self._discarding = False

    def feed(self, data: BytesLike) -> list[Frame]:
        """Consume ``data`` and return the frames it completes, in order.

        Parameters
        ----------
        data : bytes-like
            The next bytes of the stream, any length (empty included).

        Returns
        -------
        list of Frame
            Frames whose delimiter is in ``data``; bad frames are counted in :attr:`stats`, never returned.
        """
        if isinstance(data, memoryview):
            data = data.tobytes()
        self._bytes_fed += len(data)
        frames: list[Frame] = []
        find = data.find
        start = 0
        end = find(0)
        while end >= 0:
            if self._pending or self._discarding:
                self._pending += data[start:end]
                segment = bytes(self._pending)
                self._pending = bytearray()
                if self._discarding or len(segment) > MAX_ENCODED_BYTES:
                    self._discarding = False
                    self._oversize += 1
                    self._bytes_skipped += len(segment) + 1
                else:
                    self._segment(segment, frames)
            elif end == start:
                self._empty_frames += 1
            else:
                self._segment(data[start:end], frames)
            start = end + 1
            end = find(0, start)
        rest = len(data) - start
        if rest:
            if self._discarding:
                self._bytes_skipped += rest
            elif len(self._pending) + rest > MAX_ENCODED_BYTES:
                self._bytes_skipped += len(self._pending) + rest
                self._pending = bytearray()
                self._discarding = True
            else:
                self._pending += data[start:]
        return frames

    def _segment(self, segment: bytes | bytearray, frames: list[Frame]) -> None:
        """Decode one non-empty frame (without its delimiter), counting the outcome."""
        size = len(segment) + 1  # with its delimiter
        try:
            if size > MAX_ENCODED_BYTES + 1:
                raise OversizeError(f"expected at most {MAX_ENCODED_BYTES} bytes, got {size - 1}")
            frame = decode_body(_cobs_decode_nonzero(segment))
        except CrcError:
            self._crc_errors += 1
        except OversizeError:
            self._oversize += 1
        except UnknownTypeError:
            self._unknown_type += 1
        except VersionError:
            self._bad_version += 1
        except (FramingError, ProtocolError, ValueError, struct.error):  # ValueError: frames.py invariants
            self._malformed += 1
        else:
            self._frames_ok += 1
            self._bytes_ok += size
            frames.append(frame)
            return
        self._bytes_skipped += size
