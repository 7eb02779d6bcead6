"""Byte layouts of the spectrolite serial protocol: the envelope, every payload, and the limits they imply.

Each layout is a :mod:`struct` format with a comment per field, mirrored as a table in
``firmware_bridge/PROTOCOL.md``.  The ``_``-prefixed structs are the codec package's own (the encoder and the decoder
share them); the ``MAX_*`` limits and sizes are public and re-exported by :mod:`firmware_bridge.codec`.

Frame on the wire::

    COBS( version:u8 | msg_type:u8 | payload_len:u16 | payload | crc32:u32 ) 0x00

all little-endian; the CRC-32 (IEEE 802.3, as :func:`zlib.crc32`) covers version to the end of the payload.
"""

from __future__ import annotations

import struct
from typing import Final, Union

from firmware_bridge.frames import PIXEL_DTYPES, PixelFormat
from firmware_bridge.wire import MAX_SAMPLE_ID_BYTES, MAX_SAMPLE_TAG_FRAMES  # the SampleTag frame checks them too

__all__ = [
    "BytesLike",
    "DELIMITER",
    "MAX_ANNOTATION_VALUES",
    "MAX_SAMPLE_ID_BYTES",
    "MAX_SAMPLE_TAG_FRAMES",
    "MAX_DEVICE_ID_BYTES",
    "MAX_ENCODED_BYTES",
    "MAX_FIRMWARE_VERSION_BYTES",
    "MAX_FRAME_BYTES",
    "MAX_LINE_ENCODED_BYTES",
    "MAX_LINE_FRAME_BYTES",
    "MAX_LINE_PAYLOAD_BYTES",
    "MAX_LINE_SPECTRA",
    "MAX_NACK_DETAIL_BYTES",
    "MAX_PAYLOAD_BYTES",
    "MAX_PIXELS",
    "max_line_spectra",
    "max_spectrum_pixels",
    "MAX_WAVELENGTH_COEFFS",
    "MAX_WIRE_BYTES",
    "STATUS_AXIS_UNIT_BYTES",
    "STATUS_TRAILER_BYTES",
]

# Envelope

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

# Payload layouts (mirrored in PROTOCOL.md)

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



def max_spectrum_pixels(signal: str) -> int:
    """Most pixels one SPECTRUM frame carries from a device that sends ``signal``: raw ``"counts"`` as uint16, a
    processed ``"absorbance"`` or ``"reflectance"`` as float32 (PROTOCOL.md).  A device with more pixels cannot
    send its spectra on this protocol, so no bundle may need more.  (A counts device whose DARK or REFERENCE goes
    out as uint32 or float32, as the simulator's scaled white does, is held to the float32 figure.)"""
    if signal not in ("counts", "absorbance", "reflectance"):
        raise ValueError(f"expected a signal 'counts', 'absorbance' or 'reflectance', got {signal!r}")
    return int(MAX_PIXELS[PixelFormat.UINT16 if signal == "counts" else PixelFormat.FLOAT32])


#: LINE: this header, then ``spectrum_count`` spectra of ``pixel_count`` pixels each in ``pixel_format``, spectrum 0
#: first.  The same 28 bytes as :data:`_SPECTRUM` with ``saturated_count`` replaced by ``spectrum_count``.
_LINE = struct.Struct(
    "<"
    "I"  # seq: uint32 of the line's first spectrum; spectrum i has seq + i (mod 2**32)
    "Q"  # timestamp_us: uint64, device clock at the end of the line's exposure, microseconds
    "I"  # integration_time_us: uint32, exposure time, microseconds
    "H"  # averages: uint16, scans averaged into each spectrum, >= 1
    "H"  # pixel_count: uint16, pixels of each spectrum, 1..MAX_PIXELS[pixel_format]
    "B"  # pixel_format: uint8, PixelFormat (1 = uint16, 2 = uint32, 3 = float32)
    "B"  # flags: uint8, SpectrumFlags bits of the whole line
    "H"  # spectrum_count: uint16, spectra that follow, 1..MAX_LINE_SPECTRA
    "f"  # detector_temp_c: float32, degrees Celsius, NaN when unknown
)  # 28 bytes; the pixels start 32 bytes into the frame body (4-byte aligned), little-endian

#: Most spectra of one LINE frame.
MAX_LINE_SPECTRA: Final = 1024
#: Largest body of a LINE frame (the only message allowed past :data:`MAX_FRAME_BYTES`): 4 MiB, e.g. 1,024 spectra
#: of 2,047 uint16 pixels.  Past 11,450 covered bytes CRC-32/IEEE has Hamming distance 3 (every error of 1 or 2 bits
#: and every burst of up to 32 bits detected), not 4.
MAX_LINE_FRAME_BYTES: Final = 4 * 1024 * 1024
#: Largest payload of a LINE frame.
MAX_LINE_PAYLOAD_BYTES: Final = MAX_LINE_FRAME_BYTES - _ENVELOPE.size - _CRC.size
#: Largest COBS-encoded LINE frame without its delimiter.
MAX_LINE_ENCODED_BYTES: Final = MAX_LINE_FRAME_BYTES + MAX_LINE_FRAME_BYTES // 254 + 1


def max_line_spectra(pixels: int, signal: str) -> int:
    """Most spectra one LINE frame carries at ``pixels`` pixels each from a device that sends ``signal`` (raw
    ``"counts"`` as uint16, a processed signal as float32): :data:`MAX_LINE_SPECTRA`, or fewer where the frame's
    4 MiB fill first (1,024 float32 spectra of 1,024 pixels do not fit)."""
    itemsize = 2 if signal == "counts" else 4
    max_spectrum_pixels(signal)  # refuses an unknown signal
    return int(min(MAX_LINE_SPECTRA, (MAX_LINE_PAYLOAD_BYTES - _LINE.size) // (max(1, int(pixels)) * itemsize)))


#: A LINE's envelope ``payload_len`` saturates here: 0xFFFF means "65,535 bytes or more, the frame's length says".
_LINE_PAYLOAD_LEN_SATURATED: Final = 0xFFFF

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

#: SAMPLE_TAG: this header, then ``id_len`` bytes of the sample id (printable ASCII).
_SAMPLE_TAG = struct.Struct(
    "<"
    "H"  # frames: uint16, the spectra that follow on the link which are this sample's, 1..MAX_SAMPLE_TAG_FRAMES
    "B"  # id_len: uint8, bytes of the sample id, 1..MAX_SAMPLE_ID_BYTES
)  # 3 bytes
