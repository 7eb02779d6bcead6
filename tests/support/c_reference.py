"""The C99 reference codec (firmware_bridge/c/) built with gcc and driven line by line, for the tests that compare
it with the Python codec: :func:`compile_c`, :func:`run_driver` and the driver's ``E`` line of a frame
(:func:`encode_request`)."""

from __future__ import annotations

import shutil
import struct
import subprocess
from pathlib import Path

import pytest

from firmware_bridge.frames import (
    Ack,
    Annotation,
    Command,
    Frame,
    Hello,
    Line,
    Nack,
    SampleTag,
    Spectrum,
    Status,
)
from tests.support.scripts import load_script

__all__ = ["C_DIR", "DRIVER_TIMEOUT_S", "FRAMES_DIR", "GCC_FLAGS", "compile_c", "encode_request", "run_driver",
           "samples"]

REPO = Path(__file__).resolve().parents[2]
C_DIR = REPO / "firmware_bridge" / "c"
FRAMES_DIR = REPO / "tests" / "data" / "frames"
#: Exactly the flags firmware builds must pass.
GCC_FLAGS = ["-std=c99", "-Wall", "-Wextra", "-Werror", "-pedantic", "-O2"]
#: Bound of one gcc build or driver run (a hang, not a speed goal).
DRIVER_TIMEOUT_S = 60

#: tests/data/frames/samples.py: the golden frames and a random frame of any type.
samples = load_script(FRAMES_DIR / "samples.py", "frame_samples_c")


def compile_c(out_dir: Path, main_source: str) -> Path:
    """Build ``spectrolite_proto.c`` + ``main_source`` with :data:`GCC_FLAGS`; a warning fails the build."""
    gcc = shutil.which("gcc")
    if gcc is None:
        pytest.fail("expected gcc on PATH to build the C reference codec (apt-get install gcc), found none")
    exe = out_dir / Path(main_source).stem
    result = subprocess.run(
        [gcc, *GCC_FLAGS, "spectrolite_proto.c", main_source, "-o", str(exe)],
        cwd=C_DIR,
        capture_output=True,
        text=True,
        timeout=DRIVER_TIMEOUT_S,
    )
    assert result.returncode == 0 and not result.stderr, f"gcc failed on {main_source}:\n{result.stderr}"
    return exe


def run_driver(exe: Path, lines: list[str]) -> list[str]:
    result = subprocess.run(
        [str(exe)], input="\n".join(lines) + "\n", capture_output=True, text=True, timeout=DRIVER_TIMEOUT_S
    )
    assert result.returncode == 0, result.stderr
    out = result.stdout.splitlines()
    assert len(out) == len(lines)
    return out


def _hex(raw: bytes) -> str:
    return raw.hex() if raw else "-"


def _f64_bits(values: tuple[float, ...]) -> list[str]:
    return [struct.pack("<d", v)[::-1].hex() for v in values]


def encode_request(frame: Frame) -> str:
    """The driver's ``E`` line for ``frame`` (see slp_vectors.c)."""
    f32 = f"{samples.f32_bits(getattr(frame, 'detector_temp_c', 0.0)):x}"
    if isinstance(frame, (Spectrum, Line)):  # the same layout but one field
        count = frame.saturated_count if isinstance(frame, Spectrum) else frame.spectrum_count
        fields = [
            frame.MSG_TYPE, frame.seq, frame.timestamp_us, frame.integration_time_us, frame.averages,
            frame.pixel_count, int(frame.pixel_format), int(frame.flags), count, f32, _hex(frame.counts.tobytes()),
        ]  # fmt: skip
    elif isinstance(frame, Hello):
        fields = [frame.MSG_TYPE, frame.nonce]
    elif isinstance(frame, Status):
        fields = [
            frame.MSG_TYPE, frame.nonce, frame.integration_time_us, frame.uptime_s, frame.pixel_count,
            frame.averages, f32, len(frame.wavelength_coeffs_nm), *_f64_bits(frame.wavelength_coeffs_nm),
            _hex(frame.device_id.encode()), _hex(frame.firmware_version.encode()), int(frame.signal), frame.boot_id,
            int(frame.axis_unit),
        ]  # fmt: skip
    elif isinstance(frame, Command):
        fields = [frame.MSG_TYPE, frame.command_id, int(frame.code), frame.value]
    elif isinstance(frame, Ack):
        fields = [frame.MSG_TYPE, frame.command_id, int(frame.code)]
    elif isinstance(frame, Nack):
        fields = [frame.MSG_TYPE, frame.command_id, int(frame.code), int(frame.reason), _hex(frame.detail.encode())]
    elif isinstance(frame, Annotation):
        fields = [frame.MSG_TYPE, frame.seq, len(frame.values), *_f64_bits(frame.values)]
    elif isinstance(frame, SampleTag):
        fields = [frame.MSG_TYPE, frame.frames, _hex(frame.sample_id.encode("ascii"))]
    else:  # pragma: no cover
        raise AssertionError(type(frame))
    return "E " + " ".join(str(int(f)) if isinstance(f, int) else str(f) for f in fields)
