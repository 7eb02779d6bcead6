"""Tests of firmware_bridge.codec's encoder: out-of-range fields and what is not a message are refused."""

from __future__ import annotations

import math

import numpy as np
import pytest

from firmware_bridge.codec import (
    encode,
)
from firmware_bridge.errors import FramingError, ProtocolError
from firmware_bridge.frames import (
    Annotation,
    Command,
    CommandCode,
    Frame,
    Hello,
    Nack,
    NackCode,
    Spectrum,
    Status,
)
from tests.support.codec_cases import (
    samples,
)

_SPEC = Spectrum(seq=1, timestamp_us=2, integration_time_us=3, counts=np.arange(1, 11, dtype=np.uint16))
_STATUS = samples.GOLDEN["status_signal"]


@pytest.mark.parametrize(
    ("frame", "error", "message"),
    [
        (_SPEC.replace(seq=-1), ProtocolError, "expected seq in 0..4294967295, got -1"),
        (_SPEC.replace(seq=2**32), ProtocolError, "expected seq in 0..4294967295, got 4294967296"),
        (_SPEC.replace(seq=1.5), ProtocolError, "expected an integer seq, got 1.5"),
        (_SPEC.replace(timestamp_us=2**64), ProtocolError, "expected timestamp_us in 0..18446744073709551615"),
        (_SPEC.replace(averages=0), ProtocolError, "expected averages in 1..65535, got 0"),
        (_SPEC.replace(saturated_count=11), ProtocolError, "expected saturated_count in 0..10, got 11"),
        (_SPEC.replace(detector_temp_c=1e39), ProtocolError, "expected a float32-representable detector_temp_c"),
        (_SPEC.replace(counts=np.zeros(0, np.uint16)), FramingError, "expected 1..5614 pixels of uint16, got 0"),
        (_SPEC.replace(flags=0x100), ProtocolError, "expected flags in 0..255, got 256"),
        (Hello(nonce=-5), ProtocolError, "expected nonce in 0..4294967295, got -5"),
        (
            Status(**{**_STATUS.__dict__, "device_id": "x" * 65}),
            ProtocolError,
            "expected device_id of at most 64 UTF-8 bytes, got 65",
        ),
        (
            Status(**{**_STATUS.__dict__, "firmware_version": "\u00e9" * 17}),
            ProtocolError,
            "expected firmware_version of at most 32 UTF-8 bytes, got 34",
        ),
        (
            Status(**{**_STATUS.__dict__, "device_id": "\ud800"}),
            ProtocolError,
            "expected device_id encodable as UTF-8",
        ),
        (
            Status(**{**_STATUS.__dict__, "wavelength_coeffs_nm": ()}),
            ProtocolError,
            "expected 1..6 wavelength coefficients, got 0",
        ),
        (
            Status(**{**_STATUS.__dict__, "wavelength_coeffs_nm": (1.0,) * 7}),
            ProtocolError,
            "expected 1..6 wavelength coefficients, got 7",
        ),
        (
            Status(**{**_STATUS.__dict__, "wavelength_coeffs_nm": (900.0, math.inf)}),
            ProtocolError,
            "expected finite wavelength coefficients",
        ),
        (Status(**{**_STATUS.__dict__, "pixel_count": 70_000}), ProtocolError, "expected pixel_count in 0..65535"),
        (Status(**{**_STATUS.__dict__, "boot_id": 2**32}), ProtocolError, "expected boot_id in 0..4294967295"),
        (Status(**{**_STATUS.__dict__, "boot_id": -1}), ProtocolError, "expected boot_id in 0..4294967295, got -1"),
        (Command(command_id=1, code=CommandCode.TRIGGER, value=-1), ProtocolError, "expected value in 0..4294967295"),
        (
            Nack(command_id=1, code=CommandCode.TRIGGER, reason=NackCode.BUSY, detail="y" * 129),
            ProtocolError,
            "expected detail of at most 128 UTF-8 bytes, got 129",
        ),
        (Annotation(seq=1, values=(0.0,) * 65), ProtocolError, "expected at most 64 annotation values, got 65"),
    ],
)
def test_encode_refuses_out_of_range_fields(frame: Frame, error: type[Exception], message: str) -> None:
    with pytest.raises(error, match="^" + message.replace("(", r"\(").replace(".", r"\.")):
        encode(frame)


def test_encode_refuses_what_is_not_a_message() -> None:
    with pytest.raises(TypeError, match="expected a protocol message"):
        encode(b"hello")  # type: ignore[arg-type]  # deliberately the wrong type
