"""Golden protocol frames (how the ``*.bin`` files beside this script were made) and a seeded random-frame source.

Each ``<name>.bin`` holds ``firmware_bridge.codec.encode(GOLDEN[name])`` exactly as it goes on the wire (COBS body
plus the ``0x00`` delimiter).  They are the protocol's memory: a change of any byte layout makes
``tests/firmware_bridge/test_codec_golden.py`` fail until the protocol version is bumped and the files are
regenerated on purpose with::

    python tests/data/frames/samples.py

:data:`LEGACY` holds frames that older firmware sends and today's encoder no longer writes (a STATUS without its
signal/boot_id trailer): their ``.bin`` files are never regenerated, and the tests check that they still decode.

Every value is written out in integers (no ``exp``/``sin``), so the frames are identical on every platform.
:func:`random_frame` draws small frames of every message type from a numpy ``Generator``; the bit-flip stream test
and the C reference test use it.
"""

from __future__ import annotations

import math
import struct
import sys
from pathlib import Path

import numpy as np

from firmware_bridge.frames import (
    Ack,
    Annotation,
    AxisUnit,
    Command,
    CommandCode,
    Dark,
    Frame,
    Hello,
    Line,
    Nack,
    NackCode,
    Reference,
    SampleTag,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
)

HERE = Path(__file__).resolve().parent

_PIX = np.arange(650, dtype=np.int64)

#: name -> frame; one file ``<name>.bin`` each.
GOLDEN: dict[str, Frame] = {
    # the reference instrument's spectrum: 650 uint16 pixels, a lamp-like hump in the tens of thousands
    "spectrum_u16_650": Spectrum(
        seq=1234,
        timestamp_us=1_700_000_123_456,
        integration_time_us=20_000,
        counts=(2_000 + 40_000 - (_PIX - 325) ** 2 * 40_000 // 325**2 + _PIX * 7 % 97).astype(np.uint16),
        averages=4,
        saturated_count=0,
        flags=SpectrumFlags.TRIGGERED,
        detector_temp_c=24.5,
    ),
    # low counts: every other byte is zero, the COBS worst case (one block per pixel)
    "dark_u16_low_counts": Dark(
        seq=1235,
        timestamp_us=1_700_000_223_456,
        integration_time_us=20_000,
        counts=(40 + _PIX[:288] * 13 % 50).astype(np.uint16),
        averages=4,
        detector_temp_c=24.75,
    ),
    # 254 non-zero bytes end the body: the encoding ends on a full 0xFF block, with no empty block after it
    "spectrum_u16_ends_on_full_block": Spectrum(
        seq=0x01010101,
        timestamp_us=0x0101010101010101,
        integration_time_us=0x01010101,
        counts=(0x0101 + _PIX[:124] % 250).astype(np.uint16),
        averages=0x0101,
        saturated_count=1,
        flags=SpectrumFlags.SATURATED,
        detector_temp_c=24.5,
    ),
    "dark_u32": Dark(
        seq=7,
        timestamp_us=99,
        integration_time_us=1_000_000,
        counts=(_PIX[:16] * 100_003).astype(np.uint32),
        averages=1,
        flags=SpectrumFlags.LAMP_OFF,
        detector_temp_c=float("nan"),
    ),
    "reference_f32": Reference(
        seq=8,
        timestamp_us=2**63 + 5,
        integration_time_us=4_000,
        counts=np.array([0.0, -0.0, 1.5, 65535.0, float("inf"), float("nan"), 1e-40, -3.25], dtype=np.float32),
        averages=16,
        saturated_count=1,
        flags=SpectrumFlags.SATURATED | SpectrumFlags.TEMP_UNSTABLE,
        detector_temp_c=-10.25,
    ),
    # one line of a push-broom camera: 4 spectra of 48 uint16 pixels, each row its own hump; seqs 4000..4003
    "line_u16": Line(
        seq=4000,
        timestamp_us=1_700_000_323_456,
        integration_time_us=2_500,
        counts=np.stack(
            [(1_000 + r * 500 + 20_000 - (_PIX[:48] - 24) ** 2 * 30 + _PIX[:48] * 7 % 13) for r in range(4)]
        ).astype(np.uint16),
        averages=2,
        flags=SpectrumFlags.TRIGGERED,
        detector_temp_c=21.5,
    ),
    "hello": Hello(nonce=0xDEADBEEF),
    # a STATUS with its trailer: a device that streams processed absorbance, and the id of its current boot
    "status_signal": Status(
        nonce=0,
        device_id="spectro-\u00b5-0042",
        firmware_version="1.5.0",
        pixel_count=650,
        wavelength_coeffs_nm=(899.5, 1.25, -2.5e-5, 3.0e-9),
        integration_time_us=20_000,
        averages=4,
        detector_temp_c=24.5,
        uptime_s=86_400,
        signal=SignalKind.ABSORBANCE,
        boot_id=0x8BADF00D,
    ),
    # an FTIR device: its axis is even in wavenumber, so the polynomial is in cm-1 and the STATUS ends with the
    # axis_unit byte (1 = cm-1) after the trailer
    "status_cm1": Status(
        nonce=0x01020304,
        device_id="ftir-mir-0007",
        firmware_version="2.0.1",
        pixel_count=235,
        wavelength_coeffs_nm=(899.25, 3.875),
        integration_time_us=250_000,
        averages=32,
        detector_temp_c=24.25,
        uptime_s=3_600,
        signal=SignalKind.ABSORBANCE,
        boot_id=0x0BADCAFE,
        axis_unit=AxisUnit.CM_1,
    ),
    "command_set_integration_time": Command(
        command_id=17, code=CommandCode.SET_INTEGRATION_TIME, value=50_000
    ),
    "command_request_dark": Command(command_id=18, code=CommandCode.REQUEST_DARK),
    "ack": Ack(command_id=17, code=CommandCode.SET_INTEGRATION_TIME),
    "nack": Nack(
        command_id=19,
        code=CommandCode.SET_AVERAGING,
        reason=NackCode.VALUE_OUT_OF_RANGE,
        detail="expected averages in 1..1000, got 0",
    ),
    "annotation": Annotation(seq=1234, values=(12.5, -0.125, float("nan"), 1e300)),
    "sample_tag": SampleTag(sample_id="LAB 2026/12-04#7", frames=3),
}

#: name -> frame as older firmware encodes it; ``<name>.bin`` is pinned (never rewritten) and must keep decoding.
LEGACY: dict[str, Frame] = {
    # a STATUS written before the signal/boot_id trailer existed: it reads as raw counts, boot unknown
    "status": Status(
        nonce=0xDEADBEEF,
        device_id="spectro-\u00b5-0042",
        firmware_version="1.4.0-rc1",
        pixel_count=650,
        wavelength_coeffs_nm=(899.5, 1.25, -2.5e-5, 3.0e-9),
        integration_time_us=20_000,
        averages=4,
        detector_temp_c=24.5,
        uptime_s=86_400,
        signal=SignalKind.COUNTS,
        boot_id=0,
    ),
}


def _f32(rng: np.random.Generator) -> float:
    """A float32-representable value (NaN now and then, never a signalling NaN)."""
    if rng.random() < 0.05:
        return math.nan
    return float(np.float32(rng.normal(25.0, 10.0)))


def random_frame(rng: np.random.Generator, *, max_pixels: int = 48) -> Frame:
    """One small random frame of any message type, every field drawn over its wire range."""
    kind = int(rng.integers(10))
    u32 = lambda: int(rng.integers(0, 2**32))  # noqa: E731 - a one-line local draw reads better than a def
    if kind <= 2:
        cls = (Spectrum, Dark, Reference)[kind]
        n = int(rng.integers(1, max_pixels + 1))
        fmt = int(rng.integers(3))
        if fmt == 0:
            counts: np.ndarray = rng.integers(0, 2**16, n).astype(np.uint16)
        elif fmt == 1:
            counts = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32)
        else:
            counts = rng.integers(0, 2**32, n, dtype=np.uint64).astype(np.uint32).view(np.float32)
        return cls(
            seq=u32(),
            timestamp_us=int(rng.integers(0, 2**63)) * 2 + int(rng.integers(2)),
            integration_time_us=u32(),
            counts=counts,
            averages=int(rng.integers(1, 2**16)),
            saturated_count=int(rng.integers(0, n + 1)),
            flags=SpectrumFlags(int(rng.integers(0, 256))),
            detector_temp_c=_f32(rng),
        )
    if kind == 3:
        return Hello(nonce=u32())
    if kind == 4:
        return Status(
            nonce=u32(),
            device_id="".join(chr(int(c)) for c in rng.integers(32, 0x3000, int(rng.integers(0, 12)))),
            firmware_version=f"{int(rng.integers(10))}.{int(rng.integers(100))}",
            pixel_count=int(rng.integers(0, 2**16)),
            wavelength_coeffs_nm=tuple(float(v) for v in rng.normal(0.0, 100.0, int(rng.integers(1, 7)))),
            integration_time_us=u32(),
            averages=int(rng.integers(1, 2**16)),
            detector_temp_c=_f32(rng),
            uptime_s=u32(),
            signal=SignalKind(int(rng.integers(len(SignalKind)))),
            boot_id=u32(),
            axis_unit=AxisUnit(int(rng.integers(len(AxisUnit)))),
        )
    codes = list(CommandCode)
    code = codes[int(rng.integers(len(codes)))]
    if kind == 5:
        return Command(command_id=u32(), code=code, value=u32())
    if kind == 6:
        return Ack(command_id=u32(), code=code)
    if kind == 7:
        reasons = list(NackCode)
        return Nack(
            command_id=u32(),
            code=code,
            reason=reasons[int(rng.integers(len(reasons)))],
            detail="x" * int(rng.integers(0, 40)),
        )
    if kind == 9:
        text = "".join(chr(int(c)) for c in rng.integers(0x21, 0x7F, int(rng.integers(1, 65))))
        return SampleTag(sample_id=text, frames=int(rng.integers(1, 1001)))
    values = rng.normal(0.0, 50.0, int(rng.integers(0, 6)))
    return Annotation(seq=u32(), values=tuple(float(v) for v in values))


def f32_bits(value: float) -> int:
    """IEEE bits of ``value`` as packed into a float32 field."""
    return int.from_bytes(struct.pack("<f", value), "little")


def main() -> int:
    """Rewrite every golden ``.bin`` file from :data:`GOLDEN` (only when the protocol changes on purpose).

    The :data:`LEGACY` files are left alone: they are what old firmware sends.
    """
    from firmware_bridge.codec import encode

    for name, frame in GOLDEN.items():
        (HERE / f"{name}.bin").write_bytes(encode(frame))
        print(f"wrote {name}.bin")
    return 0


if __name__ == "__main__":
    sys.exit(main())
