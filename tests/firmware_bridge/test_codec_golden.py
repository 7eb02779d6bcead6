"""Tests of firmware_bridge.codec against its golden frames and its documentation: bytes on disk, PROTOCOL.md, the
CRC's Hamming distance, the package's exports and doctests."""

from __future__ import annotations

import doctest
import importlib
import importlib.util
import pkgutil
import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

import firmware_bridge
from firmware_bridge import codec
from firmware_bridge.codec import (
    MAX_FRAME_BYTES,
    STATUS_AXIS_UNIT_BYTES,
    STATUS_TRAILER_BYTES,
    FrameDecoder,
    decode_body,
    decode_frame,
    encode,
    encode_body,
    layouts,
)
from firmware_bridge.errors import FramingError, ProtocolError
from firmware_bridge.frames import (
    AxisUnit,
    Command,
    CommandCode,
    MsgType,
    PixelFormat,
    SignalKind,
    Spectrum,
    Status,
)
from tests.support.codec_cases import (
    FRAMES_DIR,
    samples,
    status_payload,
)

#: CRC-32/IEEE 802.3 generator, x^32 included.
CRC32_POLY = 0x1_04C1_1DB7
#: Longest data word (bits) over which CRC-32/IEEE keeps Hamming distance 4 (Koopman 2002), checked below.
CRC32_HD4_MAX_DATA_BITS = 91_607


@pytest.mark.parametrize("name", sorted(samples.GOLDEN))
def test_golden_frames_byte_for_byte(name: str) -> None:
    path = FRAMES_DIR / f"{name}.bin"
    frame = samples.GOLDEN[name]
    golden = path.read_bytes()
    assert encode(frame) == golden
    assert decode_frame(golden) == frame


@pytest.mark.parametrize("name", sorted(samples.LEGACY))
def test_legacy_golden_frames_still_decode(name: str) -> None:
    golden = (FRAMES_DIR / f"{name}.bin").read_bytes()
    frame = samples.LEGACY[name]
    assert decode_frame(golden) == frame
    assert FrameDecoder().feed(golden) == [frame]
    assert name not in samples.GOLDEN  # never rewritten by samples.py


def test_golden_set_covers_every_message_type() -> None:
    assert {g.MSG_TYPE for g in samples.GOLDEN.values()} == set(MsgType)
    assert {g.pixel_format for g in samples.GOLDEN.values() if isinstance(g, Spectrum)} == set(PixelFormat)


def test_module_doctest_frame_matches_protocol_md_example() -> None:
    protocol_md = (Path(firmware_bridge.__file__).parent / "PROTOCOL.md").read_text(encoding="utf-8")
    wire = encode(Command(command_id=1, code=CommandCode.TRIGGER, value=3))
    assert wire.hex(" ") in protocol_md
    assert f"MAX_FRAME_BYTES = {MAX_FRAME_BYTES:_}" in protocol_md.replace(",", "_")


def test_protocol_md_quotes_the_status_trailer_errors_and_sizes() -> None:
    protocol_md = (Path(firmware_bridge.__file__).parent / "PROTOCOL.md").read_text(encoding="utf-8")
    for body in (
        status_payload(b"\x01\x02"),
        status_payload(struct.pack("<BI", 7, 1)),
        status_payload(struct.pack("<BIB", 1, 1, 2)),
    ):
        with pytest.raises((FramingError, ProtocolError)) as exc:
            decode_body(body)
        assert f"`{exc.value}`" in protocol_md
    largest = Status(
        nonce=1,
        device_id="d" * codec.MAX_DEVICE_ID_BYTES,
        firmware_version="f" * codec.MAX_FIRMWARE_VERSION_BYTES,
        pixel_count=1,
        wavelength_coeffs_nm=(1.0,) * codec.MAX_WAVELENGTH_COEFFS,
        integration_time_us=1,
        signal=SignalKind.REFLECTANCE,
        boot_id=1,
        axis_unit=AxisUnit.CM_1,
    )
    covered = len(encode_body(largest)) - layouts._CRC.size
    payload = covered - 4
    assert f"at most {payload} bytes" in protocol_md and f"STATUS (≤ {covered} bytes covered" in protocol_md
    assert covered * 8 <= 2_974  # inside the CRC's HD = 5 range, as the table there says
    assert f"({STATUS_TRAILER_BYTES} bytes, `STATUS_TRAILER_BYTES`" in protocol_md
    assert f"({STATUS_AXIS_UNIT_BYTES} byte, `STATUS_AXIS_UNIT_BYTES`" in protocol_md


def test_crc32_keeps_hamming_distance_4_over_the_largest_frame() -> None:
    # Undetected errors of a CRC are the multiples of its generator G.  Walk x^k mod G for k = 1, 2, ...: the first
    # k with x^k + x^a + 1 = 0 (mod G) for some 0 < a < k is the shortest weight-3 codeword; below it every error of
    # up to 3 bits is caught (weight-2 codewords x^k + 1 need k = order of x, which is far larger).
    seen: dict[int, int] = {}
    r = 1
    k = 0
    first_weight3 = None
    while first_weight3 is None:
        k += 1
        r <<= 1
        if r >> 32:
            r ^= CRC32_POLY
        assert r != 1, "x has a small order mod G"
        if (r ^ 1) in seen:
            first_weight3 = k
        seen.setdefault(r, k)
    # codeword of n bits = data + 32 CRC bits holds the pattern when n > first_weight3
    assert first_weight3 - 32 == CRC32_HD4_MAX_DATA_BITS
    assert (MAX_FRAME_BYTES - layouts._CRC.size) * 8 <= CRC32_HD4_MAX_DATA_BITS

    # and the bound is real for zlib's CRC-32: one bit past it, a 3-bit error goes unnoticed
    a = seen[r ^ 1]
    n_bits = first_weight3 + 1
    n_bytes = -(-n_bits // 8)
    data = bytes(np.random.default_rng(0).integers(1, 256, n_bytes - 4, dtype=np.uint8))
    codeword = bytearray(data + struct.pack("<I", zlib.crc32(data)))
    total = len(codeword) * 8
    for degree in (0, a, first_weight3):  # reflected CRC: bit i of byte j is sent at 8j + i, highest degree first
        pos = total - 1 - degree
        codeword[pos // 8] ^= 1 << (pos % 8)
    assert codeword[:-4] != data
    assert zlib.crc32(bytes(codeword[:-4])) == struct.unpack("<I", codeword[-4:])[0]


def test_package_exports_the_codec() -> None:
    assert firmware_bridge.FrameDecoder is FrameDecoder
    assert firmware_bridge.encode is encode


def test_codec_docstring_examples_hold() -> None:
    modules = [codec] + [
        importlib.import_module(info.name) for info in pkgutil.iter_modules(codec.__path__, codec.__name__ + ".")
    ]
    results = [doctest.testmod(module, optionflags=doctest.ELLIPSIS) for module in modules]
    assert sum(r.attempted for r in results) > 0 and sum(r.failed for r in results) == 0
