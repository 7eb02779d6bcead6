"""Tests of the STATUS frame of firmware_bridge.codec: the legacy layout, the signal/boot_id trailer, the axis unit
byte, and what is refused and counted."""

from __future__ import annotations

import re
import struct

import numpy as np
import pytest

from firmware_bridge.codec import (
    STATUS_AXIS_UNIT_BYTES,
    STATUS_TRAILER_BYTES,
    cobs_decode,
    cobs_encode,
    decode_body,
    decode_frame,
    encode,
    encode_body,
    layouts,
)
from firmware_bridge.errors import FramingError, ProtocolError
from firmware_bridge.frames import (
    PROTOCOL_VERSION,
    AxisUnit,
    MsgType,
    SignalKind,
    Status,
)
from tests.support.codec_cases import (
    FRAMES_DIR,
    body_with_crc,
    counted,
    samples,
    status_payload,
)

_STATUS = samples.GOLDEN["status_signal"]


def test_legacy_status_reads_as_counts_of_an_unknown_boot() -> None:
    status = decode_frame((FRAMES_DIR / "status.bin").read_bytes())
    assert isinstance(status, Status)
    assert status.signal is SignalKind.COUNTS and status.boot_id == 0


def test_status_encoding_is_the_legacy_layout_plus_the_trailer() -> None:
    old_body = cobs_decode((FRAMES_DIR / "status.bin").read_bytes()[:-1])
    legacy = decode_body(old_body)
    old_payload = old_body[4:-4]
    for signal, boot_id in [(SignalKind.COUNTS, 0), (SignalKind.REFLECTANCE, 0xFEDCBA98)]:
        frame = Status(**{**legacy.__dict__, "signal": signal, "boot_id": boot_id})
        trailer = struct.pack("<BI", int(signal), boot_id)
        assert len(trailer) == STATUS_TRAILER_BYTES
        expected = body_with_crc(
            struct.pack("<BBH", PROTOCOL_VERSION, MsgType.STATUS, len(old_payload) + STATUS_TRAILER_BYTES)
            + old_payload
            + trailer
        )
        assert encode_body(frame) == expected
        assert decode_body(expected) == frame


def test_golden_status_signal_bytes() -> None:
    body = cobs_decode((FRAMES_DIR / "status_signal.bin").read_bytes()[:-1])
    assert body[-4 - STATUS_TRAILER_BYTES : -4] == bytes.fromhex("01 0d f0 ad 8b")  # ABSORBANCE, 0x8badf00d LE
    status = decode_body(body)
    assert isinstance(status, Status)
    assert (status.signal, status.boot_id) == (SignalKind.ABSORBANCE, 0x8BADF00D)


@pytest.mark.parametrize("code", [3, 0x7F, 0xFF])
def test_status_with_an_unknown_signal_is_refused_andcounted(code: int) -> None:
    body = status_payload(struct.pack("<BI", code, 1))
    with pytest.raises(ProtocolError, match=rf"^expected a STATUS signal of 0 \(COUNTS\), .*, got {code}$"):
        decode_body(body)
    assert counted(cobs_encode(body) + b"\x00").malformed == 1


@pytest.mark.parametrize("trailer_bytes", [1, 2, 4, 7, 9, 10])
def test_status_with_a_trailer_of_the_wrong_length_is_refused_andcounted(trailer_bytes: int) -> None:
    body = status_payload(bytes([1] * trailer_bytes))
    end = len(body) - 8 - trailer_bytes
    message = (
        f"expected a STATUS payload of {end} bytes, or {end + STATUS_TRAILER_BYTES} with its signal/boot_id trailer, "
        f"or {end + STATUS_TRAILER_BYTES + STATUS_AXIS_UNIT_BYTES} with its axis_unit, got {end + trailer_bytes}"
    )
    with pytest.raises(FramingError, match="^" + re.escape(message) + "$"):
        decode_body(body)
    assert counted(cobs_encode(body) + b"\x00").malformed == 1


def test_golden_status_cm1_bytes() -> None:
    body = cobs_decode((FRAMES_DIR / "status_cm1.bin").read_bytes()[:-1])
    end = len(body) - 4 - STATUS_TRAILER_BYTES - STATUS_AXIS_UNIT_BYTES
    assert body[end:-4] == bytes.fromhex("01 fe ca ad 0b 01")  # ABSORBANCE, 0x0badcafe LE, then axis_unit 1 = cm-1
    status = decode_body(body)
    assert isinstance(status, Status)
    assert status.axis_unit is AxisUnit.CM_1
    np.testing.assert_array_equal(status.axis()[[0, 1, 234]], [899.25, 903.125, 899.25 + 3.875 * 234])
    np.testing.assert_allclose(status.wavelengths_nm()[[0, 234]], [1e7 / 899.25, 1e7 / 1806.0], rtol=1e-15)


def test_nm_status_is_written_without_the_axis_unit_byte() -> None:
    """An nm device's STATUS is byte for byte the layout before the axis unit existed: trailer last."""
    for name in ("status_signal", "status_cm1"):
        status = samples.GOLDEN[name]
        assert isinstance(status, Status)
        nm = Status(**{**status.__dict__, "axis_unit": AxisUnit.NM})
        cm1 = Status(**{**status.__dict__, "axis_unit": AxisUnit.CM_1})
        nm_payload, cm1_payload = encode_body(nm)[4:-4], encode_body(cm1)[4:-4]
        assert cm1_payload == nm_payload + bytes([AxisUnit.CM_1])
        assert len(cm1_payload) - len(nm_payload) == STATUS_AXIS_UNIT_BYTES
        assert decode_body(encode_body(nm)).axis_unit is AxisUnit.NM
        assert decode_body(encode_body(cm1)) == cm1 != nm


def test_a_cm1_status_is_not_a_size_an_older_host_accepts() -> None:
    """Hosts before the axis unit byte accepted a STATUS of ``end`` or ``end + 5`` bytes only: they count a cm-1
    STATUS as malformed instead of reading its wavenumbers as nm."""
    body = encode_body(samples.GOLDEN["status_cm1"])
    payload = body[4:-4]
    _, _, _, _, _, _, n_coeffs, id_len, fw_len = layouts._STATUS.unpack_from(payload)
    end = layouts._STATUS.size + 8 * n_coeffs + id_len + fw_len
    assert len(payload) not in (end, end + STATUS_TRAILER_BYTES)


@pytest.mark.parametrize("code", [0, 2, 0x7F, 0xFF])
def test_status_with_an_unknown_or_explicit_nm_axis_unit_is_refused_andcounted(code: int) -> None:
    body = status_payload(struct.pack("<BIB", 1, 1, code))
    if code == 0:
        message = r"^expected no STATUS axis_unit byte for nm, got an explicit 0 \(nm is sent as no byte\)$"
    else:
        message = rf"^expected a STATUS axis_unit of 1 \(cm-1\), got {code}$"
    with pytest.raises(ProtocolError, match=message):
        decode_body(body)
    assert counted(cobs_encode(body) + b"\x00").malformed == 1
    assert decode_body(status_payload(struct.pack("<BIB", 1, 1, 1))).axis_unit is AxisUnit.CM_1  # the known one


def test_status_axis_unit_must_be_an_axis_unit() -> None:
    assert Status(**{**_STATUS.__dict__, "axis_unit": 1}).axis_unit is AxisUnit.CM_1
    with pytest.raises(ProtocolError, match=r"^expected an axis unit one of 0 \(NM\), 1 \(CM_1\), got 5$"):
        Status(**{**_STATUS.__dict__, "axis_unit": 5})


def test_status_signal_must_be_a_signal_kind() -> None:
    assert Status(**{**_STATUS.__dict__, "signal": 2}).signal is SignalKind.REFLECTANCE
    with pytest.raises(ProtocolError, match="^expected a signal kind one of 0 \\(COUNTS\\)"):
        Status(**{**_STATUS.__dict__, "signal": 9})


def test_status_equality_includes_signal_boot_id_and_axis_unit() -> None:
    assert _STATUS != Status(**{**_STATUS.__dict__, "signal": SignalKind.COUNTS})
    assert _STATUS != Status(**{**_STATUS.__dict__, "boot_id": _STATUS.boot_id + 1})
    assert _STATUS != Status(**{**_STATUS.__dict__, "axis_unit": AxisUnit.CM_1})
    assert hash(_STATUS) == hash(Status(**_STATUS.__dict__))


def test_status_defaults_keep_old_callers_working() -> None:
    status = Status(1, "dev", "fw", 10, (500.0, 1.0), 1000)
    assert (status.signal, status.boot_id, status.axis_unit) == (SignalKind.COUNTS, 0, AxisUnit.NM)
    assert decode_frame(encode(status)) == status
