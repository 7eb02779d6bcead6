"""Tests of firmware_bridge.codec: every message type round trips, however the stream is chunked; COBS."""

from __future__ import annotations

import numpy as np
import pytest
from hypothesis import HealthCheck, given, settings
from hypothesis import strategies as st

from firmware_bridge import codec
from firmware_bridge.codec import (
    MAX_FRAME_BYTES,
    MAX_PIXELS,
    FrameDecoder,
    cobs_decode,
    cobs_encode,
    decode_frame,
    encode,
    encode_body,
)
from firmware_bridge.errors import FramingError
from firmware_bridge.frames import (
    PIXEL_DTYPES,
    Frame,
    Spectrum,
)
from tests.support.codec_cases import (
    feed_chunks,
    frames_strategy,
    samples,
)


@given(frames_strategy)
@settings(max_examples=300, suppress_health_check=[HealthCheck.too_slow])
def test_decode_inverts_encode_for_every_message_type(frame: Frame) -> None:
    wire = encode(frame)
    assert wire.endswith(b"\x00") and wire.count(0) == 1
    assert len(wire) <= codec.MAX_WIRE_BYTES
    decoded = decode_frame(wire)
    assert type(decoded) is type(frame)
    assert decoded == frame
    decoder = FrameDecoder()
    assert decoder.feed(wire) == [frame]
    assert decoder.stats.frames_ok == 1 and decoder.stats.bytes_ok == len(wire)


@given(st.lists(frames_strategy, min_size=1, max_size=8), st.lists(st.integers(0, 10**6), max_size=40))
@settings(max_examples=150, suppress_health_check=[HealthCheck.too_slow])
def test_same_frames_however_the_stream_is_chunked(frames: list[Frame], cuts: list[int]) -> None:
    stream = b"".join(encode(f) for f in frames)
    decoder = FrameDecoder()
    assert feed_chunks(decoder, stream, cuts) == frames
    stats = decoder.stats
    assert (stats.frames_ok, stats.frames_bad, stats.bytes_ok, stats.bytes_pending) == (
        len(frames),
        0,
        len(stream),
        0,
    )


def test_byte_by_byte_feed_matches_one_shot_feed() -> None:
    stream = b"".join(encode(f) for f in samples.GOLDEN.values())
    one_shot = FrameDecoder().feed(stream)
    decoder = FrameDecoder()
    trickled = [f for i in range(len(stream)) for f in decoder.feed(stream[i : i + 1])]
    assert trickled == one_shot == list(samples.GOLDEN.values())


@given(st.binary(max_size=3000))
@settings(max_examples=200)
def test_cobs_round_trip_and_no_zero_inside(data: bytes) -> None:
    encoded = cobs_encode(data)
    assert 0 not in encoded
    assert len(encoded) <= len(data) + len(data) // 254 + 1
    assert cobs_decode(encoded) == data


@pytest.mark.parametrize(
    ("data", "encoded"),
    [  # the examples of Cheshire & Baker's COBS (1999), as usually tabulated
        (b"\x00", "01 01"),
        (b"\x00\x00", "01 01 01"),
        (b"\x11\x22\x00\x33", "03 11 22 02 33"),
        (b"\x11\x22\x33\x44", "05 11 22 33 44"),
        (b"\x11\x00\x00\x00", "02 11 01 01 01"),
        (bytes(range(1, 255)), "ff " + bytes(range(1, 255)).hex(" ")),
        (bytes(range(0, 255)), "01 ff " + bytes(range(1, 255)).hex(" ")),
        (bytes(range(1, 256)), "ff " + bytes(range(1, 255)).hex(" ") + " 02 ff"),
    ],
)
def test_cobs_matches_the_canonical_examples(data: bytes, encoded: str) -> None:
    assert cobs_encode(data) == bytes.fromhex(encoded)
    assert cobs_decode(bytes.fromhex(encoded)) == data


def test_largest_spectra_round_trip() -> None:
    for fmt, dtype in PIXEL_DTYPES.items():
        n = MAX_PIXELS[fmt]
        counts = (np.arange(n) % 251 + 1).astype(dtype)
        frame = Spectrum(seq=1, timestamp_us=2, integration_time_us=3, counts=counts)
        body = encode_body(frame)
        assert len(body) <= MAX_FRAME_BYTES
        assert decode_frame(encode(frame)) == frame
        with pytest.raises(FramingError, match=f"expected 1..{n} pixels"):
            encode(frame.replace(counts=np.ones(n + 1, dtype)))
