"""The SAMPLE_TAG frame (PROTOCOL.md, issue 16): the device's ``tag_sample``.  Its bytes, what the frame and the
decoder refuse (counted ``malformed``, never raised), and that an older host skips it as an unknown type.  The
golden file and the C encoder's parity run in test_codec_golden.py and test_c_reference.py with every type."""

from __future__ import annotations

import struct
import zlib

import pytest

from firmware_bridge.codec import FrameDecoder, cobs_encode, encode
from firmware_bridge.errors import ProtocolError
from firmware_bridge.frames import MsgType, SampleTag


def _wire(payload: bytes, msg_type: int = MsgType.SAMPLE_TAG) -> bytes:
    head = bytes([1, msg_type]) + struct.pack("<H", len(payload)) + payload
    return cobs_encode(head + struct.pack("<I", zlib.crc32(head))) + b"\x00"


def test_its_bytes_are_the_documented_layout() -> None:
    payload = struct.pack("<HB", 3, 16) + b"LAB 2026/12-04#7"
    assert encode(SampleTag("LAB 2026/12-04#7", 3)) == _wire(payload)
    assert FrameDecoder().feed(_wire(payload)) == [SampleTag("LAB 2026/12-04#7", 3)]


@pytest.mark.parametrize(("sample_id", "frames", "message"), [
    ("", 1, "expected a sample id of 1-64 printable ASCII"),
    ("x" * 65, 1, "expected a sample id of 1-64"),
    (" LAB-1", 1, "without a space at either end, got ' LAB-1'"),
    ("LAB-1 ", 1, "without a space at either end"),
    ("LAB\t1", 1, "printable ASCII"),
    ("LAB-\u00b5", 1, "printable ASCII"),
    ("LAB-1", 0, "expected sample tag frames in 1..1000, got 0"),
    ("LAB-1", 1001, "expected sample tag frames in 1..1000, got 1001"),
])
def test_the_frame_refuses_what_the_command_refuses(sample_id: str, frames: int, message: str) -> None:
    with pytest.raises(ProtocolError, match=message):
        SampleTag(sample_id, frames)


@pytest.mark.parametrize("payload", [
    struct.pack("<HB", 0, 3) + b"abc",  # frames 0
    struct.pack("<HB", 1001, 3) + b"abc",  # frames over the limit
    struct.pack("<HB", 1, 0),  # no id
    struct.pack("<HB", 1, 65) + b"x" * 65,  # id too long
    struct.pack("<HB", 1, 3) + b"a\x00c",  # not printable
    struct.pack("<HB", 1, 3) + b"\xb5bc",  # not ASCII
    struct.pack("<HB", 1, 3) + b"ab ",  # trailing space
    struct.pack("<HB", 1, 4) + b"abc",  # id_len past the payload
    struct.pack("<H", 1),  # shorter than the header
])
def test_a_bad_sample_tag_is_counted_malformed_and_the_next_frame_still_decodes(payload: bytes) -> None:
    decoder = FrameDecoder()
    good = encode(SampleTag("LAB-2", 2))
    assert decoder.feed(_wire(payload) + good) == [SampleTag("LAB-2", 2)]
    assert decoder.stats.malformed == 1 and decoder.stats.frames_ok == 1


def test_a_host_that_does_not_know_the_type_skips_it_as_unknown() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(_wire(struct.pack("<HB", 1, 3) + b"abc", msg_type=0x3F)) == []
    assert decoder.stats.unknown_type == 1
