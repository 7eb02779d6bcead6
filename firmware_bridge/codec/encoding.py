"""Encoding: a message of :mod:`firmware_bridge.frames` to its frame body, then to the bytes on the wire."""

from __future__ import annotations

import math
import operator
import struct
import zlib
from typing import Callable, Final, SupportsIndex, cast

from firmware_bridge.codec.cobs import cobs_encode
from firmware_bridge.codec.layouts import (
    _ACK,
    _ANNOTATION,
    _COMMAND,
    _CRC,
    _ENVELOPE,
    _HELLO,
    _LINE,
    _LINE_PAYLOAD_LEN_SATURATED,
    _NACK,
    _SAMPLE_TAG,
    _SPECTRUM,
    _STATUS,
    _STATUS_AXIS_UNIT,
    _STATUS_TRAILER,
    DELIMITER,
    MAX_ANNOTATION_VALUES,
    MAX_DEVICE_ID_BYTES,
    MAX_FIRMWARE_VERSION_BYTES,
    MAX_LINE_PAYLOAD_BYTES,
    MAX_LINE_SPECTRA,
    MAX_NACK_DETAIL_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_PIXELS,
    MAX_SAMPLE_ID_BYTES,
    MAX_SAMPLE_TAG_FRAMES,
    MAX_WAVELENGTH_COEFFS,
)
from firmware_bridge.errors import FramingError, ProtocolError
from firmware_bridge.frames import (
    PROTOCOL_VERSION,
    Ack,
    Annotation,
    AxisUnit,
    Command,
    Dark,
    Frame,
    Hello,
    Line,
    Nack,
    Reference,
    SampleTag,
    Spectrum,
    Status,
)

__all__ = ["encode", "encode_body"]

_U8, _U16, _U32, _U64 = 0xFF, 0xFFFF, 0xFFFF_FFFF, 0xFFFF_FFFF_FFFF_FFFF


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


def _payload_line(frame: Line) -> bytes:
    fmt = frame.pixel_format
    n, pixels = frame.spectrum_count, frame.pixel_count
    if not 1 <= n <= MAX_LINE_SPECTRA:
        raise FramingError(f"expected 1..{MAX_LINE_SPECTRA} spectra in a LINE, got {n}")
    if not 1 <= pixels <= MAX_PIXELS[fmt]:
        raise FramingError(f"expected 1..{MAX_PIXELS[fmt]} pixels of {fmt.name.lower()} per spectrum, got {pixels}")
    size = _LINE.size + frame.counts.nbytes
    if size > MAX_LINE_PAYLOAD_BYTES:
        raise FramingError(
            f"expected a LINE payload of at most {MAX_LINE_PAYLOAD_BYTES} bytes, got {size} "
            f"({n} spectra of {pixels} {fmt.name.lower()} pixels)"
        )
    header = _LINE.pack(
        _uint("seq", frame.seq, _U32),
        _uint("timestamp_us", frame.timestamp_us, _U64),
        _uint("integration_time_us", frame.integration_time_us, _U32),
        _uint("averages", frame.averages, _U16, 1),
        pixels,
        int(fmt),
        _uint("flags", int(frame.flags), _U8),
        n,
        0.0,
    )
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


def _payload_sample_tag(frame: SampleTag) -> bytes:
    sample_id = _utf8("sample_id", frame.sample_id, MAX_SAMPLE_ID_BYTES)  # printable ASCII (SampleTag checks it)
    frames = _uint("frames", frame.frames, MAX_SAMPLE_TAG_FRAMES, 1)
    return _SAMPLE_TAG.pack(frames, _uint("id_len", len(sample_id), MAX_SAMPLE_ID_BYTES, 1)) + sample_id


def _payload_annotation(frame: Annotation) -> bytes:
    values = frame.values
    if len(values) > MAX_ANNOTATION_VALUES:
        raise ProtocolError(f"expected at most {MAX_ANNOTATION_VALUES} annotation values, got {len(values)}")
    return _ANNOTATION.pack(_uint("seq", frame.seq, _U32), len(values)) + struct.pack(f"<{len(values)}d", *values)


_ENCODERS: Final[dict[type, Callable[..., bytes]]] = {
    Spectrum: _payload_spectrum,
    Dark: _payload_spectrum,
    Reference: _payload_spectrum,
    Line: _payload_line,
    Hello: _payload_hello,
    Status: _payload_status,
    Command: _payload_command,
    Ack: _payload_ack,
    Nack: _payload_nack,
    Annotation: _payload_annotation,
    SampleTag: _payload_sample_tag,
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
        When the frame would exceed :data:`MAX_FRAME_BYTES` (too many pixels), or a :class:`Line`
        :data:`MAX_LINE_FRAME_BYTES` or :data:`MAX_LINE_SPECTRA`.
    TypeError
        When ``frame`` is not a message of the protocol.
    """
    try:
        payload_of = _ENCODERS[type(frame)]
    except KeyError:
        raise TypeError(f"expected a protocol message (Spectrum, Hello, ...), got {type(frame).__name__}") from None
    payload = payload_of(frame)
    payload_len = len(payload)
    if isinstance(frame, Line):  # the one message past MAX_FRAME_BYTES: its 16-bit length field saturates
        payload_len = min(payload_len, _LINE_PAYLOAD_LEN_SATURATED)
    elif payload_len > MAX_PAYLOAD_BYTES:  # pragma: no cover - every layout above bounds itself
        raise FramingError(f"expected a payload of at most {MAX_PAYLOAD_BYTES} bytes, got {payload_len}")
    head = _ENVELOPE.pack(PROTOCOL_VERSION, int(frame.MSG_TYPE), payload_len) + payload
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
