"""Decoding: the bytes of one delimited frame back to a message, every field checked before it is trusted."""

from __future__ import annotations

import math
import struct
import zlib
from typing import Callable, Final

import numpy as np

from firmware_bridge.codec.cobs import cobs_decode
from firmware_bridge.codec.errors import CrcError, OversizeError, UnknownTypeError, VersionError
from firmware_bridge.codec.layouts import (
    _ACK,
    _ANNOTATION,
    _COMMAND,
    _CRC,
    _ENVELOPE,
    _HELLO,
    _LINE,
    _LINE_PAYLOAD_LEN_SATURATED,
    _MIN_FRAME_BYTES,
    _NACK,
    _SAMPLE_TAG,
    _SPECTRUM,
    _STATUS,
    _STATUS_AXIS_UNIT,
    _STATUS_TRAILER,
    DELIMITER,
    MAX_ANNOTATION_VALUES,
    MAX_DEVICE_ID_BYTES,
    MAX_ENCODED_BYTES,
    MAX_FIRMWARE_VERSION_BYTES,
    MAX_FRAME_BYTES,
    MAX_LINE_ENCODED_BYTES,
    MAX_LINE_FRAME_BYTES,
    MAX_LINE_SPECTRA,
    MAX_NACK_DETAIL_BYTES,
    MAX_PIXELS,
    MAX_SAMPLE_ID_BYTES,
    MAX_WAVELENGTH_COEFFS,
    BytesLike,
)
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
    Line,
    MsgType,
    Nack,
    NackCode,
    PixelFormat,
    Reference,
    SampleTag,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
)

__all__ = ["decode_body", "decode_frame", "max_body_bytes", "max_encoded_bytes"]

_COMMAND_CODES: Final = frozenset(int(c) for c in CommandCode)
_NACK_CODES: Final = frozenset(int(c) for c in NackCode)
_PIXEL_FORMATS: Final = {int(f): f for f in PixelFormat}
_SIGNAL_KINDS: Final = {int(k): k for k in SignalKind}
_AXIS_UNITS: Final = {int(u): u for u in AxisUnit}


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


def _decode_line(payload: bytes) -> Line:
    if len(payload) < _LINE.size:
        raise FramingError(f"expected a LINE payload of at least {_LINE.size} bytes, got {len(payload)}")
    seq, timestamp_us, integration_us, averages, pixels, fmt_code, flags, n, temp = _LINE.unpack_from(payload)
    fmt = _PIXEL_FORMATS.get(fmt_code)
    if fmt is None:
        raise ProtocolError(f"expected pixel_format 1, 2 or 3, got {fmt_code}")
    if not 1 <= n <= MAX_LINE_SPECTRA:
        raise ProtocolError(f"expected 1..{MAX_LINE_SPECTRA} spectra in a LINE, got {n}")
    if not 1 <= pixels <= MAX_PIXELS[fmt]:
        raise ProtocolError(f"expected 1..{MAX_PIXELS[fmt]} pixels per spectrum, got {pixels}")
    dtype = PIXEL_DTYPES[fmt]
    _check_size("LINE", payload, _LINE.size + n * pixels * dtype.itemsize)
    if averages < 1:
        raise ProtocolError(f"expected averages >= 1, got {averages}")
    counts = np.frombuffer(payload, dtype=dtype, count=n * pixels, offset=_LINE.size).reshape(n, pixels)
    return Line(
        seq=seq,
        timestamp_us=timestamp_us,
        integration_time_us=integration_us,
        counts=counts,
        averages=averages,
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


def _decode_sample_tag(payload: bytes) -> SampleTag:
    if len(payload) < _SAMPLE_TAG.size:
        raise FramingError(f"expected a SAMPLE_TAG payload of at least {_SAMPLE_TAG.size} bytes, got {len(payload)}")
    frames, id_len = _SAMPLE_TAG.unpack_from(payload)
    _check_size("SAMPLE_TAG", payload, _SAMPLE_TAG.size + id_len)
    if not 1 <= id_len <= MAX_SAMPLE_ID_BYTES:
        raise ProtocolError(f"expected a sample id of 1..{MAX_SAMPLE_ID_BYTES} bytes, got {id_len}")
    # SampleTag refuses frames out of 1..MAX_SAMPLE_TAG_FRAMES and an id that is not printable ASCII
    return SampleTag(sample_id=payload[_SAMPLE_TAG.size:].decode("latin-1"), frames=frames)


_DECODERS: Final[dict[int, Callable[[bytes], Frame]]] = {
    MsgType.SPECTRUM: lambda p: _decode_spectrum(Spectrum, p),
    MsgType.DARK: lambda p: _decode_spectrum(Dark, p),
    MsgType.REFERENCE: lambda p: _decode_spectrum(Reference, p),
    MsgType.LINE: _decode_line,
    MsgType.HELLO: _decode_hello,
    MsgType.STATUS: _decode_status,
    MsgType.COMMAND: _decode_command,
    MsgType.ACK: _decode_ack,
    MsgType.NACK: _decode_nack,
    MsgType.ANNOTATION: _decode_annotation,
    MsgType.SAMPLE_TAG: _decode_sample_tag,
}


def max_body_bytes(body: BytesLike) -> int:
    """Size limit of a frame body that starts with ``body``: :data:`MAX_LINE_FRAME_BYTES` for a LINE (its second
    byte, read before the CRC is checked: the CRC is checked right after, so a corrupted type byte cannot make a
    frame pass), :data:`MAX_FRAME_BYTES` for everything else."""
    return MAX_LINE_FRAME_BYTES if len(body) > 1 and body[1] == MsgType.LINE else MAX_FRAME_BYTES


def max_encoded_bytes(encoded: BytesLike) -> int:
    """Size limit of a COBS-encoded frame (no delimiter) that starts with ``encoded``: :data:`MAX_LINE_ENCODED_BYTES`
    when its body's type byte is LINE (a first COBS code of 3 or more puts the body's first two bytes right after
    it), else :data:`MAX_ENCODED_BYTES`.  Only the size limit depends on it; every check still follows."""
    if len(encoded) > 2 and encoded[0] >= 3 and encoded[2] == MsgType.LINE:
        return MAX_LINE_ENCODED_BYTES
    return MAX_ENCODED_BYTES


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
        Longer than :data:`MAX_FRAME_BYTES` (a LINE: :data:`MAX_LINE_FRAME_BYTES`).
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
    limit = max_body_bytes(body)
    if n > limit:
        raise OversizeError(f"expected a frame of at most {limit} bytes, got {n}")
    if n < _MIN_FRAME_BYTES:
        raise FramingError(f"expected a frame of at least {_MIN_FRAME_BYTES} bytes, got {n}")
    crc = zlib.crc32(memoryview(body)[:-4])
    (sent,) = _CRC.unpack_from(body, n - 4)
    if crc != sent:
        raise CrcError(f"expected CRC-32 0x{crc:08x}, got 0x{sent:08x}")
    version, msg_type, payload_len = _ENVELOPE.unpack_from(body)
    if version != PROTOCOL_VERSION:
        raise VersionError(f"expected protocol version {PROTOCOL_VERSION}, got {version}")
    if msg_type == MsgType.LINE:  # its 16-bit length saturates: 0xFFFF says "the frame's length"
        expected_len = min(n - _MIN_FRAME_BYTES, _LINE_PAYLOAD_LEN_SATURATED)
        if payload_len != expected_len:
            raise FramingError(
                f"expected a LINE payload_len of {expected_len} (from the frame size), got {payload_len}"
            )
    elif payload_len != n - _MIN_FRAME_BYTES:
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

    >>> from firmware_bridge.codec import encode
    >>> from firmware_bridge.frames import Hello
    >>> decode_frame(encode(Hello(nonce=42)))
    Hello(nonce=42)
    """
    raw = bytes(body)
    if raw.endswith(DELIMITER):
        raw = raw[:-1]
    limit = max_encoded_bytes(raw)
    if len(raw) > limit:
        raise OversizeError(f"expected an encoded frame of at most {limit} bytes, got {len(raw)}")
    return decode_body(cobs_decode(raw))
