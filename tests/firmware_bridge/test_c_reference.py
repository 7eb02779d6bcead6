"""The C99 reference codec in firmware_bridge/c/ against the Python codec, byte for byte, compiled with gcc here."""

from __future__ import annotations

import math
import re
import struct
import subprocess
import zlib
from dataclasses import replace
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge import codec
from firmware_bridge.codec import MAX_PIXELS, FrameDecoder, cobs_encode, encode, encode_body, layouts
from firmware_bridge.frames import (
    PIXEL_DTYPES,
    PROTOCOL_VERSION,
    Ack,
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
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
)
from tests.support.c_reference import (
    C_DIR,
    DRIVER_TIMEOUT_S,
    FRAMES_DIR,
    compile_c,
    encode_request,
    run_driver,
    samples,
)

#: Random vectors per run, and their seed.
N_RANDOM_VECTORS = 400
VECTOR_SEED = 4242
#: slp_result codes of spectrolite_proto.h.
ERR_BUFFER, ERR_RANGE, ERR_COBS, ERR_SHORT = -1, -2, -3, -4
ERR_OVERSIZE, ERR_CRC, ERR_VERSION, ERR_LENGTH = -5, -6, -7, -8


@pytest.fixture(scope="module")
def driver(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return compile_c(tmp_path_factory.mktemp("c_reference"), "slp_vectors.c")


def vectors() -> list[Frame]:
    """Golden frames, seeded random frames of every type, and the largest spectrum of each pixel format."""
    rng = np.random.default_rng(VECTOR_SEED)
    frames: list[Frame] = list(samples.GOLDEN.values())
    frames += [samples.random_frame(rng, max_pixels=int(rng.choice([8, 64, 700]))) for _ in range(N_RANDOM_VECTORS)]
    for fmt, dtype in PIXEL_DTYPES.items():
        n = MAX_PIXELS[fmt]
        raw = rng.integers(1, 256, n * dtype.itemsize, dtype=np.uint8)  # no zero byte: long 0xFF block runs
        frames.append(Spectrum(seq=9, timestamp_us=9, integration_time_us=9, counts=raw.view(dtype)))
    return frames


def test_c_encoder_matches_python_byte_for_byte(driver: Path) -> None:
    frames = vectors()
    assert {type(f) for f in frames} >= {type(g) for g in samples.GOLDEN.values()}
    assert {f.MSG_TYPE for f in frames} == set(MsgType)
    statuses = [f for f in frames if isinstance(f, Status)]
    assert {s.signal for s in statuses} == set(SignalKind)  # every signal kind and a spread of boot ids
    assert {s.axis_unit for s in statuses} == set(AxisUnit)  # nm (no axis_unit byte) and cm-1 (one more byte)
    assert len({s.boot_id for s in statuses}) > 10
    out = run_driver(driver, [encode_request(f) for f in frames])
    mismatches = [(i, f) for i, (f, line) in enumerate(zip(frames, out)) if line != encode(f).hex()]
    assert not mismatches, f"{len(mismatches)} of {len(frames)} differ, first: {mismatches[0]}"


def test_c_encoder_never_writes_past_a_short_buffer(driver: Path) -> None:
    frames = vectors()[: len(samples.GOLDEN) + 60]
    lines, expected = [], []
    for frame in frames:
        wire = encode(frame)
        request = encode_request(frame)[2:]
        for cap in (0, 1, len(wire) // 2, len(wire) - 1):
            lines.append(f"C {cap} {request}")
            expected.append(f"ERR {ERR_BUFFER}")
        lines.append(f"C {len(wire)} {request}")
        expected.append(wire.hex())
    assert run_driver(driver, lines) == expected


def test_c_decoder_accepts_python_frames(driver: Path) -> None:
    frames = vectors()
    out = run_driver(driver, ["D " + encode(f).hex() for f in frames])
    for frame, line in zip(frames, out):
        words = line.split()
        assert words[:2] == ["OK", encode_body(frame).hex()], frame
        if isinstance(frame, Hello):
            assert words[2:] == ["HELLO", str(frame.nonce)]
        elif isinstance(frame, Command):
            assert words[2:] == ["COMMAND", str(frame.command_id), str(int(frame.code)), str(frame.value)]
        else:
            assert len(words) == 2


def _wire(head: bytes) -> str:
    return "D " + (cobs_encode(head + struct.pack("<I", zlib.crc32(head))) + b"\x00").hex()


def test_c_decoder_rejects_bad_frames_like_python(driver: Path) -> None:
    good = bytearray(encode_body(Hello(nonce=1)))
    good[6] ^= 0x01
    cases = {
        "D " + (cobs_encode(bytes(good)) + b"\x00").hex(): ERR_CRC,
        _wire(struct.pack("<BBHI", PROTOCOL_VERSION + 1, MsgType.HELLO, 4, 1)): ERR_VERSION,
        _wire(struct.pack("<BBHI", PROTOCOL_VERSION, MsgType.HELLO, 5, 1)): ERR_LENGTH,
        "D 050102": ERR_COBS,
        "D 05010203040001": ERR_COBS,  # zero byte inside
        "D ff" + "11" * 254 + "01": ERR_COBS,  # non-canonical ending
        "D " + cobs_encode(b"\x01\x01\x00").hex(): ERR_SHORT,
        "D " + "01" * (codec.MAX_ENCODED_BYTES + 1): ERR_OVERSIZE,
        _wire(struct.pack("<BBH", PROTOCOL_VERSION, MsgType.SPECTRUM, 0) + bytes(codec.MAX_PAYLOAD_BYTES + 1)): (
            ERR_OVERSIZE
        ),
    }
    out = run_driver(driver, list(cases))
    assert out == [f"ERR {code}" for code in cases.values()]


#: Receive buffer of the slp_rx test: holds HELLO, COMMAND and short frames, as on a small device.
RX_CAP_BYTES = 64


def test_c_receiver_splits_a_stream_like_the_python_decoder(driver: Path) -> None:
    command = Command(command_id=7, code=CommandCode.REQUEST_DARK)
    ack = Ack(command_id=7, code=CommandCode.REQUEST_DARK)
    bad_crc = bytearray(encode_body(Hello(nonce=9)))
    bad_crc[4] ^= 0x40
    pieces: list[tuple[bytes, str]] = [
        (encode(command), "OK:" + encode_body(command).hex()),
        (b"\x05\x01\x00", f"ERR:{ERR_COBS}"),
        (b"\x00\x00", ""),  # idle delimiters: nothing
        (encode(Hello(nonce=3)), "OK:" + encode_body(Hello(nonce=3)).hex()),
        (b"\x07" * (RX_CAP_BYTES + 1) + b"\x00", f"ERR:{ERR_OVERSIZE}"),
        (b"\x07" * RX_CAP_BYTES + b"\x00", f"ERR:{ERR_COBS}"),  # fits, but is no frame
        (cobs_encode(bytes(bad_crc)) + b"\x00", f"ERR:{ERR_CRC}"),
        (encode(ack), "OK:" + encode_body(ack).hex()),
    ]
    stream = b"".join(p for p, _ in pieces)
    expected = " ".join(e for _, e in pieces if e)
    assert run_driver(driver, [f"R {RX_CAP_BYTES} {stream.hex()}", f"R {RX_CAP_BYTES} 0000"]) == [expected, "-"]
    # the Python decoder sees the same frames (its buffer is larger, so the long pieces count as malformed)
    decoder = FrameDecoder()
    assert decoder.feed(stream) == [command, Hello(nonce=3), ack]
    assert decoder.stats.frames_bad == 4


def test_c_decoder_never_accepts_garbage(driver: Path) -> None:
    rng = np.random.default_rng(VECTOR_SEED + 1)
    lines = ["D " + bytes(rng.integers(0, 256, int(rng.integers(1, 600)), dtype=np.uint8)).hex() for _ in range(300)]
    out = run_driver(driver, lines)
    assert all(line.startswith("ERR ") for line in out)


def test_c_encoder_refuses_what_python_refuses(driver: Path) -> None:
    spectrum = Spectrum(seq=1, timestamp_us=2, integration_time_us=3, counts=np.ones(4, np.uint16))
    assert encode_request(spectrum) == "E 16 1 2 3 1 4 1 0 0 7fc00000 0100010001000100"
    refused = {
        "E 16 1 2 3 0 4 1 0 0 7fc00000 0100010001000100": spectrum.replace(averages=0),
        "E 16 1 2 3 1 4 1 0 5 7fc00000 0100010001000100": spectrum.replace(saturated_count=5),
        "E 16 1 2 3 1 0 1 0 0 7fc00000 -": spectrum.replace(counts=np.ones(0, np.uint16)),
        "E 16 1 2 3 1 4 9 0 0 7fc00000 0100010001000100": None,  # no such pixel format
        "E 2 1 2 3 4 1 7fc00000 0 - - 0 0 0": Status(1, "", "", 4, (), 2, uptime_s=3),  # no wavelength coefficient
        "E 2 1 2 3 4 1 7fc00000 1 3ff0000000000000 - - 3 1 0": None,  # no such signal kind (Status refuses it below)
        "E 2 1 2 3 4 1 7fc00000 1 3ff0000000000000 - - 0 1 2": None,  # no such axis unit (Status refuses it below)
        encode_request(Nack(command_id=1, code=CommandCode.TRIGGER, reason=NackCode.BUSY, detail="z" * 129)): Nack(
            command_id=1, code=CommandCode.TRIGGER, reason=NackCode.BUSY, detail="z" * 129
        ),
    }
    out = run_driver(driver, list(refused))
    assert out == [f"ERR {ERR_RANGE}"] * len(refused)
    for frame in refused.values():
        if frame is not None:
            with pytest.raises((codec.ProtocolError, codec.FramingError)):
                encode(frame)
    with pytest.raises(codec.ProtocolError):
        Status(1, "", "", 4, (1.0,), 2, uptime_s=3, signal=3)  # type: ignore[arg-type]  # deliberately the wrong type
    with pytest.raises(codec.ProtocolError):
        Status(1, "", "", 4, (1.0,), 2, uptime_s=3, axis_unit=2)  # type: ignore[arg-type]  # deliberately the wrong type


def test_c_status_carries_the_trailer_like_python(driver: Path) -> None:
    status = samples.GOLDEN["status_signal"]
    assert isinstance(status, Status)
    cases = [
        replace(status, signal=kind, boot_id=boot_id)
        for kind in SignalKind
        for boot_id in (0, 1, 0x8BADF00D, 0xFFFF_FFFF)
    ]
    out = run_driver(driver, [encode_request(f) for f in cases])
    assert out == [encode(f).hex() for f in cases]
    request = encode_request(status).split()
    assert request[-3:] == ["1", str(0x8BADF00D), "0"]  # the driver line ends with signal, boot_id and axis_unit
    assert bytes.fromhex(out[0]) != (FRAMES_DIR / "status.bin").read_bytes()  # the trailer is always written


def test_c_status_writes_the_axis_unit_byte_only_for_cm1_like_python(driver: Path) -> None:
    ftir = samples.GOLDEN["status_cm1"]
    assert isinstance(ftir, Status) and ftir.axis_unit is AxisUnit.CM_1
    cases = [replace(ftir, axis_unit=unit, signal=kind) for unit in AxisUnit for kind in SignalKind]
    out = run_driver(driver, [encode_request(f) for f in cases])
    assert out == [encode(f).hex() for f in cases]
    golden = cases.index(ftir)  # cm-1, absorbance: the golden frame itself
    assert bytes.fromhex(out[golden]) == (FRAMES_DIR / "status_cm1.bin").read_bytes()
    nm_wire, cm1_wire = (bytes.fromhex(out[cases.index(replace(ftir, axis_unit=u))]) for u in AxisUnit)
    nm_body, cm1_body = (codec.cobs_decode(w[:-1]) for w in (nm_wire, cm1_wire))
    assert cm1_body[4:-4] == nm_body[4:-4] + bytes([AxisUnit.CM_1])  # nm: no byte at all
    assert len(cm1_body) - len(nm_body) == codec.STATUS_AXIS_UNIT_BYTES


def test_c_header_constants_match_python() -> None:
    header = (C_DIR / "spectrolite_proto.h").read_text(encoding="utf-8")

    def define(name: str) -> int:
        match = re.search(rf"#define {name} (\d+)u", header)
        assert match, name
        return int(match.group(1))

    assert define("SLP_PROTOCOL_VERSION") == PROTOCOL_VERSION
    assert define("SLP_MAX_FRAME_BYTES") == codec.MAX_FRAME_BYTES
    assert define("SLP_SPECTRUM_HEADER_BYTES") == layouts._SPECTRUM.size
    assert define("SLP_STATUS_HEADER_BYTES") == layouts._STATUS.size
    assert define("SLP_STATUS_TRAILER_BYTES") == codec.STATUS_TRAILER_BYTES
    assert define("SLP_STATUS_AXIS_UNIT_BYTES") == codec.STATUS_AXIS_UNIT_BYTES
    assert define("SLP_MAX_DEVICE_ID_BYTES") == codec.MAX_DEVICE_ID_BYTES
    assert define("SLP_MAX_FIRMWARE_VERSION_BYTES") == codec.MAX_FIRMWARE_VERSION_BYTES
    assert define("SLP_MAX_WAVELENGTH_COEFFS") == codec.MAX_WAVELENGTH_COEFFS
    assert define("SLP_MAX_NACK_DETAIL_BYTES") == codec.MAX_NACK_DETAIL_BYTES
    assert define("SLP_MAX_ANNOTATION_VALUES") == codec.MAX_ANNOTATION_VALUES
    assert define("SLP_SAMPLE_TAG_HEADER_BYTES") == layouts._SAMPLE_TAG.size
    assert define("SLP_MAX_SAMPLE_ID_BYTES") == codec.MAX_SAMPLE_ID_BYTES
    assert define("SLP_MAX_SAMPLE_TAG_FRAMES") == codec.MAX_SAMPLE_TAG_FRAMES
    enums = {name: int(value, 0) for name, value in re.findall(r"(SLP_\w+) = (0x[0-9A-Fa-f]+|\d+)", header)}
    for prefix, enum in [
        ("SLP_MSG_", MsgType),
        ("SLP_CMD_", CommandCode),
        ("SLP_NACK_", NackCode),
        ("SLP_PIXEL_", PixelFormat),
        ("SLP_FLAG_", SpectrumFlags),
    ]:
        in_c = {k[len(prefix) :]: v for k, v in enums.items() if k.startswith(prefix)}
        in_py = {str(m.name): int(m.value) for m in enum if m.value}  # type: ignore[attr-defined]  # the loop mixes IntEnum and IntFlag classes
        assert in_c == in_py, prefix
    in_c = {k[len("SLP_SIGNAL_") :]: v for k, v in enums.items() if k.startswith("SLP_SIGNAL_")}
    assert in_c == {m.name: int(m.value) for m in SignalKind}  # COUNTS = 0 included
    in_c = {k[len("SLP_AXIS_") :]: v for k, v in enums.items() if k.startswith("SLP_AXIS_")}
    assert in_c == {m.name: int(m.value) for m in AxisUnit}  # NM = 0 included


def test_example_device_talks_to_the_python_codec(tmp_path: Path) -> None:
    device = compile_c(tmp_path, "example_device.c")
    host = b"".join(
        [
            encode(Hello(nonce=7)),
            b"\x13\x37garbage\x00",  # noise on the line: dropped by the device
            encode(Command(command_id=1, code=CommandCode.TRIGGER, value=2)),
            encode(Command(command_id=2, code=CommandCode.SET_AVERAGING, value=0)),
            encode(Command(command_id=3, code=CommandCode.REQUEST_DARK)),
            encode(Status(0, "too long for a device's receive buffer", "", 1, (1.0,), 1)),  # dropped
            encode(Command(command_id=4, code=CommandCode.START_STREAM)),
        ]
    )
    result = subprocess.run([str(device)], input=host, capture_output=True, timeout=DRIVER_TIMEOUT_S)
    assert result.returncode == 0, result.stderr
    decoder = FrameDecoder()
    frames = decoder.feed(result.stdout)
    assert decoder.stats.frames_bad == 0 and decoder.stats.bytes_pending == 0
    boot = Status(
        nonce=0,
        device_id="example-0001",
        firmware_version="0.1.0",
        pixel_count=650,
        wavelength_coeffs_nm=(900.0, 1.0, -1.0e-5),
        integration_time_us=20_000,
        averages=1,
        detector_temp_c=24.5,
        uptime_s=1,
        signal=SignalKind.COUNTS,
        boot_id=frames[0].boot_id if isinstance(frames[0], Status) else -1,
    )
    assert boot.boot_id != 0  # drawn at boot, never 0, the same for the whole boot
    assert frames[:3] == [boot, replace(boot, nonce=7), Ack(command_id=1, code=CommandCode.TRIGGER)]
    spectra, rest = frames[3:5], frames[5:]
    assert [type(s) for s in spectra] == [Spectrum, Spectrum]
    for seq, spectrum in enumerate(spectra):
        assert isinstance(spectrum, Spectrum) and spectrum.seq == seq
        assert spectrum.pixel_count == 650 and spectrum.counts.dtype == np.uint16
        assert math.isnan(spectrum.detector_temp_c)
    assert rest[0] == Nack(
        command_id=2,
        code=CommandCode.SET_AVERAGING,
        reason=NackCode.VALUE_OUT_OF_RANGE,
        detail="expected 1..1000 scans",
    )
    assert rest[1] == Ack(command_id=3, code=CommandCode.REQUEST_DARK)
    assert isinstance(rest[2], Dark) and type(rest[2]) is Dark and rest[2].seq == 2
    assert rest[3:] == [Nack(command_id=4, code=CommandCode.START_STREAM, reason=NackCode.NOT_SUPPORTED)]
    assert boot.wavelengths_nm()[[0, 649]] == pytest.approx([900.0, 900.0 + 649 - 1e-5 * 649**2])
