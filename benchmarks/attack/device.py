"""Attacks by the device itself: a hostile STATUS (wavelength coefficients, pixel count) and forged frames (a
device id that would forge log lines, a sequence number that would count billions of lost frames), played by a
:class:`HostileDevice` on a pty pair."""

from __future__ import annotations

import os
import threading
import time
import tty
from typing import Any

from benchmarks.attack.rig import STEP_S, Result, Rig, wait_for

__all__ = ["FORGED_DEVICE_ID", "FORGED_SEQ", "HostileDevice", "forged_frames", "hostile_status", "sane_start"]

#: Device text that would forge a log line and clear an operator's terminal if logged as sent (finding 7).
FORGED_DEVICE_ID = "X\nCRITICAL forged\x1b[2J"
#: A forged sequence number (finding 7): counted as lost frames it would add 4.29e9 to ``frames_lost_seq_gap``.
FORGED_SEQ = 0xFFFFFFF0


class HostileDevice:
    """The device end of a pty pair, written frame by frame (the simulator's first session, then altered)."""

    def __init__(self) -> None:
        from firmware_bridge.frames import Dark, Reference, Status
        from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer

        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        dev = VirtualSpectrometer.from_config(SimulatorConfig(seed=0, synthetic_samples=500, synthetic_channels=256))
        start = dev.session_start()
        self.status = next(f for f in start if isinstance(f, Status))
        self.refs = [f for f in start if isinstance(f, (Dark, Reference))]
        self.spectra = [dev.stream_next()[0] for _ in range(20)]
        self.seq = 0
        self._stop = threading.Event()
        self._drain = threading.Thread(target=self._read, daemon=True)
        self._drain.start()

    def _read(self) -> None:
        import select

        while not self._stop.is_set():
            if select.select([self.master], [], [], 0.2)[0]:
                try:
                    os.read(self.master, 4096)
                except OSError:
                    return

    def send(self, *frames: Any) -> None:
        from firmware_bridge.codec import encode

        for f in frames:
            os.write(self.master, encode(f))

    def session(self, **status: Any) -> list[int]:
        """A STATUS (with ``status`` changed), the references and 20 spectra; returns the spectra's seqs."""
        import dataclasses

        self.send(dataclasses.replace(self.status, **status))
        for f in self.refs:
            self.send(dataclasses.replace(f, seq=self.seq))
            self.seq += 1
        seqs = []
        for s in self.spectra:
            self.send(dataclasses.replace(s, seq=self.seq))
            seqs.append(self.seq)
            self.seq += 1
        return seqs

    def close(self) -> None:
        self._stop.set()
        self._drain.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)


def sane_start(rig: Rig, dev: HostileDevice) -> list[int]:
    """Start the daemon on ``dev``, wait until it is online, play one sane session; returns its spectra's seqs."""
    rig.start_daemon(dev.path)
    wait_for(lambda: rig.status().get("state") == "online", STEP_S)
    time.sleep(1.0)
    sane = dev.session()
    wait_for(lambda: set(sane) <= set(rig.predictions()), STEP_S)
    return sane


def hostile_status(rig: Rig) -> Result:
    dev = HostileDevice()
    try:
        sane = sane_start(rig, dev)
        hostile = dev.session(wavelength_coeffs_nm=(900.0, 1e308, 1e308)) + dev.session(pixel_count=1)
        wait_for(lambda: rig.counters().get("spectra_in", 0) >= 60, STEP_S)
        preds = rig.predictions()
        ok_on_hostile = sorted(s for s in hostile if s in preds and preds[s].get("quality") == "ok")
        counters = rig.counters()
        refused = counters.get("device_status_refused", 0)
        return Result("hostile_status", refused >= 2 and not ok_on_hostile, 0, {
            "status_refused": refused, "spectra_after_hostile_status": len(hostile),
            "predicted_ok_on_hostile": len(ok_on_hostile),
            "rejected_device_status_invalid": counters.get("frames_rejected_device_status_invalid", 0),
            "sane_predicted": len(set(sane) & set(preds))})
    finally:
        dev.close()



def forged_frames(rig: Rig) -> Result:
    """A device id with a newline and an ANSI escape in STATUS, then a spectrum with seq 0xFFFFFFF0.  Holds if the
    log has neither the raw escape nor a line the device wrote, the jump is counted as a resynchronisation
    (``seq_jumps``) and not as billions of lost frames, and the daemon stays up."""
    dev = HostileDevice()
    try:
        sane_start(rig, dev)
        dev.session(device_id=FORGED_DEVICE_ID)
        import dataclasses

        dev.send(dataclasses.replace(dev.spectra[0], seq=FORGED_SEQ))
        wait_for(lambda: rig.counters().get("spectra_in", 0) >= 41, STEP_S)
        time.sleep(2.0)  # the next metrics message
        counters = rig.counters()
        log_text = rig.daemon_log()
        forged_line = any(line.startswith("CRITICAL forged") for line in log_text.splitlines())
        lost_gap = counters.get("frames_lost_seq_gap", 0)
        alive = rig.daemon is not None and rig.daemon.poll() is None
        held = alive and rig.restarts == 0 and "\x1b" not in log_text and not forged_line \
            and lost_gap < FORGED_SEQ // 2 and counters.get("seq_jumps", 0) >= 1
        return Result("forged_frames", held, 0, {
            "raw_escape_in_log": "\x1b" in log_text, "forged_log_line": forged_line,
            "frames_lost_seq_gap": lost_gap, "seq_jumps": counters.get("seq_jumps", 0), "daemon_alive": alive,
            "daemon_restarts": rig.restarts})
    finally:
        dev.close()
