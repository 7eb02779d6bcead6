"""A daemon restarted while the device kept streaming gets no STATUS on its own (the device announces itself when a
host opens the port); a bundle that resamples the device's wavelength axis cannot predict without it.  The daemon
keeps such spectra (bounded), greets the device at once, and predicts them when the STATUS comes: none is lost.

Real parts: hand-written frames of the simulator on a real pty pair, the demo bundle trained by ``spectro-train
fit`` (it resamples the device axis), the daemon's threads.
"""

from __future__ import annotations

from pathlib import Path

import pytest

import edge.daemon.frames
from firmware_bridge.frames import Hello
from tests.support.daemon import DemoBundles, offline_stream, wait_for
from tests.support.pty_device import PtyDevice, serve_daemon

N_SPECTRA = 30


def test_spectra_before_the_status_wait_for_it_and_are_all_predicted(
        tmp_path: Path, demo_bundles: DemoBundles, pty_device: PtyDevice) -> None:
    stream = offline_stream(N_SPECTRA)
    daemon, link = serve_daemon(tmp_path, pty_device.path, demo_bundles.v1)
    try:
        assert daemon.engine.needs_device_axis
        pty_device.send(stream["dark"], stream["white"], *stream["spectra"])  # mid-stream: no STATUS
        wait_for(lambda: daemon.counters.get("spectra_waited_for_status") == N_SPECTRA, "the spectra to wait")
        wait_for(lambda: any(isinstance(f, Hello) for f in pty_device.received), "the daemon to greet the device")
        assert link.of_kind("prediction") == [] and daemon.counters.get("frames_rejected_input_contract") == 0
        pty_device.send(stream["status"])  # the device answers the greeting
        wait_for(lambda: len(link.of_kind("prediction")) == N_SPECTRA, "every waiting spectrum predicted")
    finally:
        daemon.stop()
    assert [m["seq"] for m in link.of_kind("prediction")] == [s.seq for s in stream["spectra"]]
    assert daemon.counters.get("frames_lost_seq_gap") == 0 and not daemon.failed


def test_spectra_are_rejected_and_counted_when_no_status_comes(
        tmp_path: Path, demo_bundles: DemoBundles, pty_device: PtyDevice, monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(edge.daemon.frames, "STATUS_WAIT_S", 0.5)
    stream = offline_stream(5)
    daemon, link = serve_daemon(tmp_path, pty_device.path, demo_bundles.v1)
    try:
        pty_device.send(stream["dark"], stream["white"], *stream["spectra"])
        wait_for(lambda: daemon.counters.get("frames_rejected_input_contract") == 5, "the spectra rejected")
    finally:
        daemon.stop()
    assert link.of_kind("prediction") == [] and not daemon.failed
