"""Tests of firmware_bridge.codec's stream decoder (FrameDecoder): each counter, and the bounded buffer."""

from __future__ import annotations

import struct

import pytest
from hypothesis import given, settings
from hypothesis import strategies as st

from firmware_bridge.codec import (
    MAX_ENCODED_BYTES,
    MAX_PAYLOAD_BYTES,
    FrameDecoder,
    OversizeError,
    UnknownTypeError,
    VersionError,
    cobs_encode,
    decode_body,
    decode_frame,
    encode_body,
)
from firmware_bridge.errors import BridgeError
from firmware_bridge.frames import (
    PROTOCOL_VERSION,
    Frame,
    Hello,
    MsgType,
)
from tests.support.codec_cases import (
    GOOD_HELLO,
    assert_bytes_accounted,
    body_with_crc,
    counted,
    feed_chunks,
)


def test_crc_error_iscounted() -> None:
    body = bytearray(encode_body(Hello(nonce=5)))
    body[5] ^= 0x10
    assert counted(cobs_encode(bytes(body)) + b"\x00").crc_errors == 1


def test_other_version_is_counted_and_named() -> None:
    body = body_with_crc(struct.pack("<BBHI", PROTOCOL_VERSION + 1, MsgType.HELLO, 4, 5))
    assert counted(cobs_encode(body) + b"\x00").bad_version == 1
    with pytest.raises(VersionError, match=f"expected protocol version {PROTOCOL_VERSION}, got 2"):
        decode_body(body)


def test_unknown_type_iscounted() -> None:
    body = body_with_crc(struct.pack("<BBHI", PROTOCOL_VERSION, 0x7E, 4, 5))
    assert counted(cobs_encode(body) + b"\x00").unknown_type == 1
    with pytest.raises(UnknownTypeError, match="got 0x7e"):
        decode_body(body)


@pytest.mark.parametrize(
    "wire",
    [
        b"\x05\x01\x02\x00",  # COBS block runs past the end of the frame
        cobs_encode(b"\x01\x01\x00") + b"\x00",  # shorter than an envelope
        cobs_encode(body_with_crc(struct.pack("<BBHI", PROTOCOL_VERSION, MsgType.HELLO, 9, 5))) + b"\x00",
        cobs_encode(body_with_crc(struct.pack("<BBHH", PROTOCOL_VERSION, MsgType.HELLO, 2, 5))) + b"\x00",
        cobs_encode(body_with_crc(struct.pack("<BBHIBI", PROTOCOL_VERSION, MsgType.COMMAND, 9, 1, 0x7F, 0)))
        + b"\x00",  # unknown CommandCode
        bytes.fromhex("ff" + "11" * 254 + "01 00"),  # non-canonical: empty block after a final 0xFF block
    ],
    ids=["cobs-overrun", "short", "length-field", "payload-size", "command-code", "non-canonical-cobs"],
)
def test_malformed_frames_arecounted(wire: bytes) -> None:
    assert counted(wire).malformed == 1
    with pytest.raises(BridgeError, match="^expected"):
        decode_frame(wire)


def test_oversize_frame_is_dropped_while_streaming_and_buffer_stays_bounded() -> None:
    huge = bytes([0x42]) * (3 * MAX_ENCODED_BYTES)
    decoder = FrameDecoder()
    out: list[Frame] = []
    for start in range(0, len(huge), 1000):
        out += decoder.feed(huge[start : start + 1000])
        assert decoder.stats.bytes_pending <= MAX_ENCODED_BYTES
        assert_bytes_accounted(decoder.stats)
    out += decoder.feed(b"\x00" + GOOD_HELLO)
    assert out == [Hello(nonce=5)]
    stats = decoder.stats
    assert (stats.oversize, stats.frames_bad, stats.bytes_skipped) == (1, 1, len(huge) + 1)


@given(
    st.lists(st.integers(MAX_ENCODED_BYTES - 2, MAX_ENCODED_BYTES + 2), min_size=1, max_size=3),
    st.lists(st.integers(0, 10**6), max_size=12),
)
@settings(max_examples=60, deadline=None)
def test_oversize_boundary_under_any_chunking(lengths: list[int], cuts: list[int]) -> None:
    stream = b"".join(b"\x07" * n + b"\x00" for n in lengths) + GOOD_HELLO
    decoder = FrameDecoder()
    assert feed_chunks(decoder, stream, cuts) == [Hello(nonce=5)]
    stats = decoder.stats
    assert stats.oversize == sum(n > MAX_ENCODED_BYTES for n in lengths)
    assert stats.frames_bad == len(lengths)
    assert stats.bytes_skipped == sum(lengths) + len(lengths)


def test_decoded_body_over_the_limit_is_oversize() -> None:
    payload = bytes(MAX_PAYLOAD_BYTES + 10)  # zeros: COBS adds a single byte
    body = body_with_crc(struct.pack("<BBH", PROTOCOL_VERSION, MsgType.SPECTRUM, len(payload) & 0xFFFF) + payload)
    encoded = cobs_encode(body)
    assert len(encoded) <= MAX_ENCODED_BYTES < len(encoded) + 45
    assert counted(encoded + b"\x00").oversize == 1
    with pytest.raises(OversizeError):
        decode_frame(encoded)


def test_reset_discards_a_partial_frame_as_truncated() -> None:
    decoder = FrameDecoder()
    decoder.feed(GOOD_HELLO[:6])
    decoder.reset()
    assert decoder.feed(GOOD_HELLO) == [Hello(nonce=5)]
    stats = decoder.stats
    assert (stats.truncated, stats.bytes_skipped, stats.frames_ok) == (1, 6, 1)
    assert_bytes_accounted(stats)


def test_idle_delimiters_are_not_errors() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(b"\x00\x00" + GOOD_HELLO + b"\x00") == [Hello(nonce=5)]
    assert (decoder.stats.empty_frames, decoder.stats.frames_bad) == (3, 0)


def test_feed_takes_bytearray_and_memoryview() -> None:
    decoder = FrameDecoder()
    assert decoder.feed(bytearray(GOOD_HELLO)) + decoder.feed(memoryview(GOOD_HELLO)) == [Hello(nonce=5)] * 2


def test_stats_is_a_frozen_snapshot() -> None:
    decoder = FrameDecoder()
    before = decoder.stats
    decoder.feed(GOOD_HELLO)
    assert before.frames_ok == 0 and decoder.stats.frames_ok == 1
    with pytest.raises(AttributeError):
        before.frames_ok = 3  # type: ignore[misc]  # frozen
