"""What the codec tests share (tests/firmware_bridge/test_codec_*.py): the golden frame samples, Hypothesis strategies
of every message type, and helpers that feed a decoder and check its byte accounting."""

from __future__ import annotations

import math
import struct
import zlib
from pathlib import Path

from hypothesis import strategies as st
from hypothesis.extra import numpy as hnp

from firmware_bridge import codec
from firmware_bridge.codec import (
    MAX_ENCODED_BYTES,
    DecoderStats,
    FrameDecoder,
    cobs_decode,
    encode,
)
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
    SampleTag,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
)
from tests.support.scripts import load_script

FRAMES_DIR = Path(__file__).resolve().parents[1] / "data" / "frames"

samples = load_script(FRAMES_DIR / "samples.py", "frame_samples")

# ---------------------------------------------------------------------------------------------------------------
# Strategies
# ---------------------------------------------------------------------------------------------------------------

u8 = st.integers(0, 0xFF)
u16 = st.integers(0, 0xFFFF)
u32 = st.integers(0, 0xFFFF_FFFF)
u64 = st.integers(0, 0xFFFF_FFFF_FFFF_FFFF)
#: float32-representable values, NaN included (the quiet one: a signalling NaN cannot survive float64 anyway).
f32 = st.floats(width=32, allow_nan=False) | st.just(math.nan)
f64 = st.floats(allow_nan=False) | st.just(math.nan)
finite_f64 = st.floats(allow_nan=False, allow_infinity=False)


def utf8_text(max_bytes: int) -> st.SearchStrategy[str]:
    return st.text(st.characters(exclude_categories=["Cs"]), max_size=max_bytes).filter(
        lambda s: len(s.encode("utf-8")) <= max_bytes
    )


@st.composite
def spectra(draw: st.DrawFn, max_pixels: int = 300) -> Spectrum:
    cls = draw(st.sampled_from([Spectrum, Dark, Reference]))
    fmt = draw(st.sampled_from(list(PixelFormat)))
    counts = draw(hnp.arrays(PIXEL_DTYPES[fmt], st.integers(1, max_pixels)))
    n = counts.shape[0]
    return cls(
        seq=draw(u32),
        timestamp_us=draw(u64),
        integration_time_us=draw(u32),
        counts=counts,
        averages=draw(st.integers(1, 0xFFFF)),
        saturated_count=draw(st.integers(0, n)),
        flags=SpectrumFlags(draw(u8)),
        detector_temp_c=draw(f32),
    )


statuses = st.builds(
    Status,
    nonce=u32,
    device_id=utf8_text(codec.MAX_DEVICE_ID_BYTES),
    firmware_version=utf8_text(codec.MAX_FIRMWARE_VERSION_BYTES),
    pixel_count=u16,
    wavelength_coeffs_nm=st.lists(finite_f64, min_size=1, max_size=codec.MAX_WAVELENGTH_COEFFS).map(tuple),
    integration_time_us=u32,
    averages=st.integers(1, 0xFFFF),
    detector_temp_c=f32,
    uptime_s=u32,
    signal=st.sampled_from(list(SignalKind)),
    boot_id=u32,
    axis_unit=st.sampled_from(list(AxisUnit)),
)
command_codes = st.sampled_from(list(CommandCode))
frames_strategy: st.SearchStrategy[Frame] = st.one_of(
    spectra(),
    st.builds(Hello, nonce=u32),
    statuses,
    st.builds(Command, command_id=u32, code=command_codes, value=u32),
    st.builds(Ack, command_id=u32, code=command_codes),
    st.builds(
        Nack,
        command_id=u32,
        code=command_codes,
        reason=st.sampled_from(list(NackCode)),
        detail=utf8_text(codec.MAX_NACK_DETAIL_BYTES),
    ),
    st.builds(
        Annotation, seq=u32, values=st.lists(f64, max_size=codec.MAX_ANNOTATION_VALUES).map(tuple)
    ),
    st.builds(
        SampleTag,
        sample_id=st.text(st.characters(min_codepoint=0x20, max_codepoint=0x7E), min_size=1,
                          max_size=codec.MAX_SAMPLE_ID_BYTES).filter(lambda s: s == s.strip(" ")),
        frames=st.integers(1, codec.MAX_SAMPLE_TAG_FRAMES),
    ),
)


def assert_bytes_accounted(stats: DecoderStats) -> None:
    """Every byte fed is in exactly one of the byte counters."""
    assert stats.bytes_fed == stats.bytes_ok + stats.bytes_skipped + stats.empty_frames + stats.bytes_pending
    assert stats.bytes_pending <= MAX_ENCODED_BYTES


def feed_chunks(decoder: FrameDecoder, data: bytes, cuts: list[int]) -> list[Frame]:
    out: list[Frame] = []
    edges = sorted({0, len(data), *(c % (len(data) + 1) for c in cuts)})
    for a, b in zip(edges, edges[1:]):
        out += decoder.feed(data[a:b])
        assert_bytes_accounted(decoder.stats)
    return out


def body_with_crc(head: bytes) -> bytes:
    """``head`` (envelope + payload) followed by its correct CRC-32."""
    return head + struct.pack("<I", zlib.crc32(head))



GOOD_HELLO = encode(Hello(nonce=5))


def counted(wire: bytes) -> DecoderStats:
    """Feed ``wire`` (one bad frame) then a good HELLO: the stats, checked to count exactly one bad frame."""
    decoder = FrameDecoder()
    assert decoder.feed(wire + GOOD_HELLO) == [Hello(nonce=5)]  # the next frame always survives
    stats = decoder.stats
    assert stats.frames_ok == 1 and stats.frames_bad == 1
    assert stats.bytes_skipped == len(wire) and stats.bytes_ok == len(GOOD_HELLO)
    assert_bytes_accounted(stats)
    return stats


def status_payload(trailer: bytes) -> bytes:
    """The body of the legacy golden STATUS with ``trailer`` appended (length and CRC fixed)."""
    legacy = cobs_decode((FRAMES_DIR / "status.bin").read_bytes()[:-1])
    payload = legacy[4:-4] + trailer
    return body_with_crc(struct.pack("<BBH", PROTOCOL_VERSION, MsgType.STATUS, len(payload)) + payload)
