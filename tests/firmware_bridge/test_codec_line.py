"""LINE frames (many spectra of one push-broom line): layout, limits, saturated length, streaming, C reference."""

from __future__ import annotations

import struct
import zlib
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.codec import (
    MAX_ENCODED_BYTES,
    MAX_LINE_ENCODED_BYTES,
    MAX_LINE_PAYLOAD_BYTES,
    MAX_LINE_SPECTRA,
    MAX_PIXELS,
    FrameDecoder,
    cobs_encode,
    decode_body,
    decode_frame,
    encode,
    encode_body,
)
from firmware_bridge.errors import FramingError, ProtocolError
from firmware_bridge.frames import PROTOCOL_VERSION, Hello, Line, MsgType, PixelFormat, Spectrum, SpectrumFlags
from tests.support.c_reference import compile_c, encode_request, run_driver

#: Header bytes of a LINE payload (PROTOCOL.md); the pixels follow.
LINE_HEADER_BYTES = 28
#: Spectra of the line whose payload passes the 16-bit payload_len (1,024 x 40 uint16 pixels = 81,948 bytes).
BIG_LINE_SHAPE = (MAX_LINE_SPECTRA, 40)


def a_line(shape: tuple[int, int] = (4, 8), dtype: str = "<u2", seq: int = 7, seed: int = 0) -> Line:
    rng = np.random.default_rng(seed)
    counts = rng.integers(1, 60_000, shape).astype(dtype)
    return Line(seq=seq, timestamp_us=123_456, integration_time_us=2_000, counts=counts, averages=3,
                flags=SpectrumFlags.TRIGGERED, detector_temp_c=21.25)


def body_with_crc(head: bytes) -> bytes:
    return head + struct.pack("<I", zlib.crc32(head))


@pytest.mark.parametrize("dtype", ["<u2", "<u4", "<f4"])
def test_a_line_round_trips_in_every_pixel_format(dtype: str) -> None:
    line = a_line((5, 13), dtype)
    body = encode_body(line)
    assert body[1] == MsgType.LINE == 0x13
    assert struct.unpack_from("<H", body, 2)[0] == len(body) - 8  # short line: payload_len is exact
    assert len(body) == 8 + LINE_HEADER_BYTES + 5 * 13 * np.dtype(dtype).itemsize
    assert decode_frame(encode(line)) == line


def test_the_line_header_is_the_spectrum_header_with_the_spectrum_count() -> None:
    line = a_line((3, 2))
    payload = encode_body(line)[4:-4]
    assert struct.unpack_from("<IQIHHBBHf", payload) == (7, 123_456, 2_000, 3, 2, 1, 4, 3, 21.25)
    assert payload[LINE_HEADER_BYTES:] == line.counts.tobytes()  # spectrum 0 first, row after row


def test_each_spectrum_of_a_line_has_its_own_seq_wrapping_at_2_32() -> None:
    line = a_line((3, 4), seq=0xFFFF_FFFE)
    spectra = line.spectra()
    assert [s.seq for s in spectra] == [0xFFFF_FFFE, 0xFFFF_FFFF, 0]
    assert all(isinstance(s, Spectrum) and s.pixel_count == 4 for s in spectra)
    assert [s.counts.tolist() for s in spectra] == line.counts.tolist()
    assert {(s.timestamp_us, s.integration_time_us, s.averages, s.flags) for s in spectra} == {
        (123_456, 2_000, 3, SpectrumFlags.TRIGGERED)
    }


@pytest.mark.parametrize("dtype", [np.uint16, np.uint32, np.float32])
def test_a_lines_spectra_equal_the_spectra_built_from_its_rows(dtype: type) -> None:
    """Line.spectra() builds each spectrum from the line's checked row without checking or copying it again: the
    same spectrum as ``Spectrum(counts=row, ...)``, its counts read-only and of the line's pixel format."""
    line = Line(seq=9, timestamp_us=5, integration_time_us=7, counts=np.arange(12).reshape(3, 4).astype(dtype),
                averages=2, flags=SpectrumFlags.SATURATED, detector_temp_c=float("nan"))
    for i, spectrum in enumerate(line.spectra()):
        built = Spectrum(seq=9 + i, timestamp_us=5, integration_time_us=7, counts=line.counts[i], averages=2,
                         flags=SpectrumFlags.SATURATED, detector_temp_c=float("nan"))
        assert type(spectrum) is Spectrum and spectrum == built
        assert spectrum.pixel_format is built.pixel_format is line.pixel_format
        assert list(vars(spectrum)) == list(vars(built))
        assert spectrum.counts.dtype == built.counts.dtype and not spectrum.counts.flags.writeable
        assert type(spectrum.flags) is SpectrumFlags and spectrum.saturated_count == 0


def test_a_line_past_65535_payload_bytes_saturates_its_length_field() -> None:
    line = a_line(BIG_LINE_SHAPE)
    body = encode_body(line)
    assert len(body) - 8 > 0xFFFF
    assert struct.unpack_from("<H", body, 2)[0] == 0xFFFF
    wire = encode(line)
    assert MAX_ENCODED_BYTES < len(wire) <= MAX_LINE_ENCODED_BYTES + 1
    assert decode_frame(wire) == line


def test_a_line_with_a_wrong_length_field_is_malformed() -> None:
    body = bytearray(encode_body(a_line((2, 3))))
    struct.pack_into("<H", body, 2, len(body) - 9)
    with pytest.raises(FramingError, match=r"expected a LINE payload_len of 40 \(from the frame size\), got 39"):
        decode_body(body_with_crc(bytes(body[:-4])))
    big = bytearray(encode_body(a_line(BIG_LINE_SHAPE)))
    struct.pack_into("<H", big, 2, 0xFFFE)
    with pytest.raises(FramingError, match="expected a LINE payload_len of 65535"):
        decode_body(body_with_crc(bytes(big[:-4])))


def test_the_encoder_refuses_lines_past_their_limits() -> None:
    with pytest.raises(FramingError, match=f"expected 1..{MAX_LINE_SPECTRA} spectra in a LINE, got 1025"):
        encode(a_line((MAX_LINE_SPECTRA + 1, 2)))
    too_wide = MAX_PIXELS[PixelFormat.UINT16] + 1
    with pytest.raises(FramingError, match=f"expected 1..{too_wide - 1} pixels of uint16 per spectrum, got {too_wide}"):
        encode(a_line((2, too_wide)))
    with pytest.raises(FramingError, match=f"expected a LINE payload of at most {MAX_LINE_PAYLOAD_BYTES} bytes, got"):
        encode(a_line((MAX_LINE_SPECTRA, 2_048)))  # 4 MiB of pixels + the header
    with pytest.raises(ProtocolError, match=r"expected a two-dimensional \(spectra, pixels\) counts array, got shape"):
        Line(seq=0, timestamp_us=0, integration_time_us=0, counts=np.zeros(4, np.uint16))


@pytest.mark.parametrize(
    ("header", "extra", "message"),
    [
        ((1, 0, 1, 1, 4, 1, 0, 0, 0.0), b"", "expected 1..1024 spectra in a LINE, got 0"),
        ((1, 0, 1, 1, 4, 1, 0, 1025, 0.0), bytes(1025 * 8), "expected 1..1024 spectra in a LINE, got 1025"),
        ((1, 0, 1, 1, 4, 9, 0, 1, 0.0), bytes(8), "expected pixel_format 1, 2 or 3, got 9"),
        ((1, 0, 1, 0, 4, 1, 0, 1, 0.0), bytes(8), "expected averages >= 1, got 0"),
        ((1, 0, 1, 1, 4, 1, 0, 2, 0.0), bytes(8), "expected a LINE payload of 44 bytes, got 36"),
    ],
)
def test_the_decoder_refuses_malformed_lines(header: tuple[float, ...], extra: bytes, message: str) -> None:
    payload = struct.pack("<IQIHHBBHf", *header) + extra
    head = struct.pack("<BBH", PROTOCOL_VERSION, MsgType.LINE, min(len(payload), 0xFFFF)) + payload
    decoder = FrameDecoder()
    assert decoder.feed(cobs_encode(body_with_crc(head)) + b"\x00") == []
    assert decoder.stats.malformed == 1
    with pytest.raises((FramingError, ProtocolError), match=message.replace("(", r"\(").replace(")", r"\)")):
        decode_body(body_with_crc(head))


def test_the_stream_decoder_takes_big_lines_in_any_chunking_among_other_frames() -> None:
    frames = [Hello(nonce=1), a_line(BIG_LINE_SHAPE, seed=1), a_line((3, 5), seed=2), Hello(nonce=2),
              a_line((300, 650), seed=3)]
    wire = b"".join(encode(f) for f in frames)
    rng = np.random.default_rng(5)
    cuts = sorted(rng.integers(0, len(wire), 40).tolist())
    decoder = FrameDecoder()
    got = []
    for start, end in zip([0, *cuts], [*cuts, len(wire)]):
        got += decoder.feed(wire[start:end])
    assert got == frames
    stats = decoder.stats
    assert stats.frames_ok == 5 and stats.frames_bad == 0 and stats.bytes_ok == len(wire)


def test_only_a_line_may_pass_the_frame_size_limit_while_streaming() -> None:
    # garbage that does not start like a LINE is still dropped at MAX_ENCODED_BYTES, while it streams in
    decoder = FrameDecoder()
    decoder.feed(b"\x42" * (3 * MAX_ENCODED_BYTES))
    assert decoder.stats.bytes_pending == 0
    decoder.feed(b"\x00")
    assert decoder.stats.oversize == 1
    # a SPECTRUM-typed body as long as a big line: oversize, not decoded
    payload = bytes(range(1, 201)) * 500
    fake = cobs_encode(body_with_crc(struct.pack("<BBH", PROTOCOL_VERSION, MsgType.SPECTRUM, 0xFFFF) + payload))
    decoder = FrameDecoder()
    assert decoder.feed(fake + b"\x00") == []
    assert decoder.stats.oversize == 1
    # something that starts like a LINE but runs past MAX_LINE_ENCODED_BYTES: dropped as it streams, never buffered
    head = bytes([0xFF, PROTOCOL_VERSION, MsgType.LINE])
    decoder = FrameDecoder()
    for _ in range(MAX_LINE_ENCODED_BYTES // 100_000 + 2):
        decoder.feed(head + b"\x42" * 100_000 if decoder.stats.bytes_fed == 0 else b"\x42" * 100_000)
        assert decoder.stats.bytes_pending <= MAX_LINE_ENCODED_BYTES
    decoder.feed(b"\x00" + encode(Hello(nonce=3)))
    assert decoder.stats.oversize == 1 and decoder.stats.frames_ok == 1


def test_every_single_bit_error_in_a_line_header_and_some_pixels_is_caught() -> None:
    body = encode_body(a_line((64, 200), seed=4))
    rng = np.random.default_rng(0)
    positions = list(range(0, 40 * 8)) + rng.integers(0, len(body) * 8, 300).tolist()
    for bit in positions:
        bad = bytearray(body)
        bad[bit // 8] ^= 1 << (bit % 8)
        with pytest.raises((FramingError, ProtocolError)):
            decode_body(bytes(bad))


def test_the_c_encoder_writes_lines_byte_for_byte_like_python(tmp_path: Path) -> None:
    driver = compile_c(tmp_path, "slp_vectors.c")
    rng = np.random.default_rng(17)
    lines = [a_line((int(rng.integers(1, 40)), int(rng.integers(1, 60))), dtype, seq=int(rng.integers(0, 2**32)),
                    seed=i) for i, dtype in enumerate(["<u2", "<u4", "<f4"] * 5)]
    lines.append(a_line(BIG_LINE_SHAPE, seed=99))  # payload_len saturated at 0xFFFF
    lines.append(Line(seq=1, timestamp_us=2, integration_time_us=3, counts=np.zeros((3, 7), np.uint16)))
    out = run_driver(driver, [encode_request(line) for line in lines])
    for line, got in zip(lines, out):
        assert got == encode(line).hex(), (line.spectrum_count, line.pixel_count, line.pixel_format)
    refused = run_driver(driver, [
        "E 19 1 2 3 1 2 1 0 0 0 -",  # no spectra
        "E 19 1 2 3 1 2 1 0 1025 0 " + "0100" * 2 * 1025,  # too many spectra
        "E 19 1 2 3 0 2 1 0 1 0 01000100",  # averages 0
        "E 19 1 2 3 1 2 9 0 1 0 01000100",  # no such pixel format
    ])
    assert refused == ["ERR -2"] * 4


def test_the_c_header_states_the_line_limits() -> None:
    header = (Path(__file__).resolve().parents[2] / "firmware_bridge" / "c" / "spectrolite_proto.h").read_text()
    assert "SLP_MSG_LINE = 0x13" in header
    assert f"#define SLP_MAX_LINE_SPECTRA {MAX_LINE_SPECTRA}u" in header
    assert f"#define SLP_MAX_LINE_FRAME_BYTES {MAX_LINE_PAYLOAD_BYTES + 8}uL" in header
