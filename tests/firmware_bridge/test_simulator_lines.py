"""``spectro-sim --line-spectra N``: LINE frames of N consecutive spectra, numbered per spectrum, on a real pty."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.codec import decode_frame, encode, max_line_spectra
from firmware_bridge.frames import Dark, Line, Reference, SignalKind, SpectrumFlags, Status
from firmware_bridge.physics import DetectorModel
from firmware_bridge.simulator import SimulatorConfig, SimulatorError, VirtualSpectrometer
from firmware_bridge.transport import SerialTransport

REPO = Path(__file__).resolve().parents[2]
#: Deadline of reading the simulator's frames from the pty (a liveness bound, not a speed goal).
READ_DEADLINE_S = 30.0


def _device(**kwargs: object) -> VirtualSpectrometer:
    cfg = SimulatorConfig(synthetic_samples=40, synthetic_channels=64, seed=3, **kwargs)  # type: ignore[arg-type]  # **kwargs of object: SimulatorConfig fields
    return VirtualSpectrometer.from_config(cfg)


def test_lines_carry_consecutive_spectra_each_numbered_and_the_count_is_kept() -> None:
    frames = list(_device(count=50, line_spectra=16).iter_frames())
    assert [type(f) for f in frames] == [Status, Dark, Reference, Line, Line, Line, Line]
    lines = [f for f in frames if isinstance(f, Line)]
    assert [(line.seq, line.spectrum_count, line.pixel_count) for line in lines] == [
        (2, 16, 64), (18, 16, 64), (34, 16, 64), (50, 2, 64)]  # the last line ends the count of 50
    assert all(line.counts.dtype == np.uint16 for line in lines)
    assert len({line.counts[0].tobytes() for line in lines}) == 4  # different samples, not one row repeated


def test_a_line_reads_the_rows_spectra_would_carry() -> None:
    # the same rows, read as one exposure: close to the SPECTRUM frames of the same samples (other noise draws)
    spectra = [f for f in _device(count=8).iter_frames() if type(f).__name__ == "Spectrum"]
    (line,) = [f for f in _device(count=8, line_spectra=8).iter_frames() if isinstance(f, Line)]
    rows = np.stack([s.counts for s in spectra]).astype(float)
    assert np.abs(line.counts.astype(float) - rows).max() < 0.05 * rows.max()


def test_a_processed_signal_streams_float32_lines() -> None:
    frames = list(_device(count=10, line_spectra=4, signal=SignalKind.ABSORBANCE).iter_frames())
    lines = [f for f in frames if isinstance(f, Line)]
    assert [line.spectrum_count for line in lines] == [4, 4, 2] and lines[0].counts.dtype == np.float32
    assert not any(isinstance(f, (Dark, Reference)) for f in frames)


def test_the_line_size_is_bounded() -> None:
    with pytest.raises(SimulatorError, match="expected 0 \\(SPECTRUM frames\\) to 1024 spectra per line, got 1025"):
        SimulatorConfig(line_spectra=1025)
    # 1,024 float32 spectra of 1,024 pixels pass the frame's 4 MiB by 36 bytes; 1,023 fit, and uint16 counts fit.
    assert max_line_spectra(1024, "absorbance") == 1023 and max_line_spectra(1024, "counts") == 1024
    axis, y = np.linspace(900.0, 1700.0, 1024), np.zeros((1024, 1))
    config = SimulatorConfig(line_spectra=1024, signal=SignalKind.ABSORBANCE, seed=1)
    with pytest.raises(SimulatorError, match="expected at most 1023 spectra per LINE of 1024 float32 pixels "
                                             "\\(one LINE frame is at most 4 MiB\\), got 1024"):
        VirtualSpectrometer(np.full((1024, 1024), 0.5), axis, y, config)
    device = VirtualSpectrometer(np.full((1023, 1024), 0.5), axis, y[:1023],
                                 dataclasses.replace(config, line_spectra=1023))
    line = next(f for f in device.iter_frames() if isinstance(f, Line))
    assert line.spectrum_count == 1023 and decode_frame(encode(line)) == line


def test_the_detector_reads_a_line_as_rows_and_counts_saturation_over_all_of_them() -> None:
    model = DetectorModel(np.linspace(900.0, 1700.0, 32))
    absorbance = np.full((3, 32), 0.5)
    absorbance[1] = -3.0  # far brighter than the white: saturates
    exposure_us = model.auto_integration_time_us(0.4)  # absorbance 0.5 stays below full scale
    acq = model.measure(absorbance, exposure_us, np.random.default_rng(0))
    assert acq.counts.shape == (3, 32) and acq.saturated_count == 32


def test_spectro_sim_streams_lines_on_a_real_pty(tmp_path: Path) -> None:
    cmd = [sys.executable, "-m", "firmware_bridge.cli", "--pty", "--link", str(tmp_path / "dev"), "--rate", "0",
           "--count", "100", "--line-spectra", "32", "--synthetic-samples", "40", "--synthetic-channels", "64"]
    sim = subprocess.Popen(cmd, cwd=REPO, stdout=subprocess.PIPE, stderr=subprocess.DEVNULL)
    try:
        assert sim.stdout is not None
        path = sim.stdout.readline().decode().strip()
        lines: list[Line] = []
        with SerialTransport(path, read_timeout_s=0.05) as transport:
            deadline = time.monotonic() + READ_DEADLINE_S
            while sum(line.spectrum_count for line in lines) < 100 and time.monotonic() < deadline:
                lines += [f for f in transport.read_frames(0.2) if isinstance(f, Line)]
        assert [line.spectrum_count for line in lines] == [32, 32, 32, 4]
        assert [line.seq for line in lines] == [2, 34, 66, 98]
        assert all(line.flags & ~SpectrumFlags.SATURATED == SpectrumFlags.NONE for line in lines)
    finally:
        sim.terminate()
        sim.wait(timeout=30)
