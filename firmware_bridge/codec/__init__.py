"""Binary framing of the spectrolite serial protocol: COBS + CRC-32 envelope, payload layouts, incremental decoder.

Pure code, no I/O: :func:`encode` turns a message (see :mod:`firmware_bridge.frames`) into the bytes to write on
the wire, :func:`decode_frame` turns the bytes of one delimited frame back into a message, and
:class:`FrameDecoder` splits an arbitrary byte stream into frames, counting and skipping bad ones.  The byte
layouts are mirrored as tables in ``firmware_bridge/PROTOCOL.md``; the C reference encoder in
``firmware_bridge/c/`` produces the same bytes.

The parts, one module each: :mod:`~firmware_bridge.codec.layouts` (the byte layouts and limits),
:mod:`~firmware_bridge.codec.cobs` (byte stuffing), :mod:`~firmware_bridge.codec.encoding`,
:mod:`~firmware_bridge.codec.decoding`, :mod:`~firmware_bridge.codec.stream` (:class:`FrameDecoder`) and
:mod:`~firmware_bridge.codec.errors`.

>>> import numpy as np
>>> from firmware_bridge.frames import Command, CommandCode
>>> wire = encode(Command(command_id=1, code=CommandCode.TRIGGER, value=3))
>>> wire.hex(" ")
'04 01 20 09 02 01 01 01 03 03 03 01 01 05 07 bb f0 f3 00'
>>> FrameDecoder().feed(wire)
[Command(command_id=1, code=<CommandCode.TRIGGER: 3>, value=3)]
"""

from __future__ import annotations

from firmware_bridge.codec.cobs import cobs_decode, cobs_encode
from firmware_bridge.codec.decoding import decode_body, decode_frame
from firmware_bridge.codec.encoding import encode, encode_body
from firmware_bridge.codec.errors import CrcError, OversizeError, UnknownTypeError, VersionError
from firmware_bridge.codec.layouts import (
    DELIMITER,
    MAX_ANNOTATION_VALUES,
    MAX_DEVICE_ID_BYTES,
    MAX_ENCODED_BYTES,
    MAX_FIRMWARE_VERSION_BYTES,
    MAX_FRAME_BYTES,
    MAX_LINE_ENCODED_BYTES,
    MAX_LINE_FRAME_BYTES,
    MAX_LINE_PAYLOAD_BYTES,
    MAX_LINE_SPECTRA,
    MAX_NACK_DETAIL_BYTES,
    MAX_PAYLOAD_BYTES,
    MAX_PIXELS,
    MAX_SAMPLE_ID_BYTES,
    MAX_SAMPLE_TAG_FRAMES,
    MAX_WAVELENGTH_COEFFS,
    MAX_WIRE_BYTES,
    STATUS_AXIS_UNIT_BYTES,
    STATUS_TRAILER_BYTES,
    BytesLike,
    max_line_spectra,
    max_spectrum_pixels,
)
from firmware_bridge.codec.stream import DecoderStats, FrameDecoder
from firmware_bridge.errors import FramingError as FramingError  # the base errors, as callers catch them here
from firmware_bridge.errors import ProtocolError as ProtocolError

__all__ = [
    "MAX_FRAME_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_ENCODED_BYTES",
    "MAX_WIRE_BYTES",
    "MAX_PIXELS",
    "max_line_spectra",
    "max_spectrum_pixels",
    "MAX_LINE_SPECTRA",
    "MAX_LINE_FRAME_BYTES",
    "MAX_LINE_PAYLOAD_BYTES",
    "MAX_LINE_ENCODED_BYTES",
    "MAX_DEVICE_ID_BYTES",
    "MAX_FIRMWARE_VERSION_BYTES",
    "MAX_WAVELENGTH_COEFFS",
    "MAX_NACK_DETAIL_BYTES",
    "MAX_ANNOTATION_VALUES",
    "MAX_SAMPLE_ID_BYTES",
    "MAX_SAMPLE_TAG_FRAMES",
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
