"""The simulator's run loop: a :class:`Simulator` serves a :class:`VirtualSpectrometer` on an endpoint.

It paces the stream (``rate_hz``), flips bits and drops bytes on the way out, and drops the connection on a
schedule.  ``Simulator.run(stop_event)`` blocks until the event is set (or the run is done with
``exit_when_done``), so it runs in a thread of a test as well as in the ``spectro-sim`` process.

Session rules.  The device streams only while a host has the port open (like a USB CDC device whose host side is
closed, it waits): on a pty it watches the master for hang-up, on TCP it accepts one client at a time.  When a host
arrives the device waits ``connect_delay_s`` (pyserial flushes its input buffer while it opens a port; a real
Arduino resets on open), then sends a delimiter, an unsolicited STATUS and, while streaming, a DARK and a REFERENCE
so the host can compute absorbance from the first spectrum.  Sequence numbers count every spectrum-like frame
(SPECTRUM, DARK, REFERENCE) and continue across sessions.
"""

from __future__ import annotations

import logging
import select
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from typing import Any

import numpy as np

from firmware_bridge.codec import FrameDecoder, encode
from firmware_bridge.frames import Frame, Spectrum
from firmware_bridge.simulator.config import SimulatorConfig
from firmware_bridge.simulator.device import VirtualSpectrometer
from firmware_bridge.simulator.endpoints import TICK_S, Endpoint, HostGone

__all__ = ["Simulator", "SimulatorCounters"]

_LOG = logging.getLogger(__name__)

#: How far the paced stream may fall behind its schedule and still catch up (the frames due meanwhile go out back to
#: back, as a device's frames wait in its link's buffer), seconds; beyond it the schedule starts again from now.  A
#: wake-up of the loop that comes a few hundred microseconds late would otherwise lose that time for good, and at
#: thousands of frames/s the stream fell short of ``rate_hz`` by a fifth.
CATCH_UP_S = 0.02


@dataclass
class SimulatorCounters:
    """What a :class:`Simulator` did (mutable, read after or during a run)."""

    sessions: int = 0
    disconnects: int = 0
    frames_sent: int = 0
    bytes_sent: int = 0
    bits_flipped: int = 0
    bytes_dropped: int = 0
    frames_received: int = 0
    frames_truncated: int = 0
    garbage_bursts: int = 0
    stalls: int = 0


class Simulator:
    """Run a :class:`VirtualSpectrometer` on an endpoint until stopped.

    Parameters
    ----------
    config : SimulatorConfig
        What to stream and how.
    endpoint : Endpoint
        :class:`PtyEndpoint` or :class:`TcpEndpoint` (not opened yet).
    device : VirtualSpectrometer, optional
        The device; built from ``config`` when omitted.

    Examples
    --------
    In a thread of a test (the endpoint's ``address`` is what the host opens)::

        sim = Simulator(SimulatorConfig(count=100, rate_hz=0), PtyEndpoint())
        stop = threading.Event()
        ready = threading.Event()
        thread = threading.Thread(target=sim.run, args=(stop,), kwargs={"on_ready": lambda a: ready.set()})
    """

    def __init__(self, config: SimulatorConfig, endpoint: Endpoint, device: VirtualSpectrometer | None = None) -> None:
        self.config = config
        self.endpoint = endpoint
        self.device = device or VirtualSpectrometer.from_config(config)
        self.counters = SimulatorCounters()
        self._fault_rng = np.random.default_rng([config.seed, 1])
        self._decoder = FrameDecoder()
        self._last_drop_at = 0

    @property
    def address(self) -> str:
        """What the host opens: the pty symlink path or the ``socket://`` URL (after :meth:`run` opened it)."""
        return self.endpoint.address

    def _garble(self, data: bytes) -> bytes:
        faults = self.config.faults
        if not (faults.bit_flip_rate or faults.drop_byte_rate):
            return data
        buf = np.frombuffer(data, dtype=np.uint8).copy()
        if faults.bit_flip_rate:
            hit = np.flatnonzero(self._fault_rng.random(buf.size) < faults.bit_flip_rate)
            if hit.size:
                bits = self._fault_rng.integers(0, 8, hit.size).astype(np.uint8)
                buf[hit] ^= np.left_shift(np.uint8(1), bits).astype(np.uint8)
                self.counters.bits_flipped += int(hit.size)
        if faults.drop_byte_rate:
            keep = self._fault_rng.random(buf.size) >= faults.drop_byte_rate
            self.counters.bytes_dropped += int(buf.size - np.count_nonzero(keep))
            buf = buf[keep]
        return buf.tobytes()

    def _wire(self, frame: Frame) -> bytes:
        data = encode(frame)
        every = self.config.faults.truncate_every
        if every and type(frame) is Spectrum and self.device.streamed and self.device.streamed % every == 0:
            cut = int(self._fault_rng.integers(1, len(data) - 1))
            self.counters.frames_truncated += 1
            data = data[:cut] + b"\x00"
        return self._garble(data)

    def _send(self, frames: Sequence[Frame], stop: threading.Event, *, lead: bytes = b"") -> None:
        if not frames and not lead:
            return
        payload = lead + b"".join(self._wire(f) for f in frames)
        self.endpoint.write(payload, stop)
        self.counters.frames_sent += len(frames)
        self.counters.bytes_sent += len(payload)

    def _after_spectrum(self, stop: threading.Event) -> None:
        """Garbage bursts and stalls scheduled after the spectrum just streamed."""
        faults, n = self.config.faults, self.device.streamed
        if faults.garbage_every and n % faults.garbage_every == 0:
            self.counters.garbage_bursts += 1
            self.endpoint.write(self._fault_rng.integers(0, 256, 64, dtype=np.uint8).tobytes(), stop)
        if faults.stall_every and n % faults.stall_every == 0 and not self.device.done:
            self.counters.stalls += 1
            _LOG.info("stalling for %.2f s after %d spectra", faults.stall_for_s, n)
            stop.wait(faults.stall_for_s)

    def _unplug(self, stop: threading.Event) -> bool:
        """Drop the link for ``disconnect_for_s`` and bring it back; returns False when stopped meanwhile."""
        faults = self.config.faults
        self.counters.disconnects += 1
        _LOG.info("unplugging for %.2f s after %d spectra", faults.disconnect_for_s, self.device.streamed)
        self.endpoint.drop()
        if stop.wait(faults.disconnect_for_s):
            return False
        self.endpoint.open()
        return True

    def run(self, stop_event: threading.Event | None = None, *, on_ready: Callable[[str], Any] | None = None) -> int:
        """Serve until ``stop_event`` is set (or ``count`` is done with ``exit_when_done``); returns 0.

        ``on_ready(address)`` is called once the endpoint is open, with the path or URL the host should open.
        """
        stop = stop_event or threading.Event()
        device = self.device
        self.endpoint.open()
        if on_ready is not None:
            on_ready(self.endpoint.address)
        in_session = False
        next_due = time.monotonic()
        done_at: float | None = None
        try:
            while not stop.is_set():
                now = time.monotonic()
                if device.done and done_at is None:
                    done_at = now
                    _LOG.info("sent %d spectra; done", device.streamed)
                if done_at is not None and self.config.exit_when_done and now - done_at >= self.config.linger_s:
                    break
                if not self.endpoint.host_present():
                    if in_session:
                        _LOG.info("host closed the port")
                        in_session = False
                    stop.wait(TICK_S)
                    continue
                try:
                    if not in_session:
                        if stop.wait(self.config.connect_delay_s) or not self.endpoint.host_present():
                            continue
                        in_session = True
                        self.counters.sessions += 1
                        self._decoder.reset()
                        self._send(device.session_start(), stop, lead=b"\x00")
                        next_due = time.monotonic()
                    out: list[Frame] = []
                    for frame in self._decoder.feed(self.endpoint.read()):
                        self.counters.frames_received += 1
                        out.extend(device.handle(frame))
                    self._send(out, stop)
                    if device.streaming and not device.done and time.monotonic() >= next_due:
                        streamed_before = device.streamed
                        self._send(device.stream_next(), stop)
                        period = device.period_s * max(1, device.streamed - streamed_before)  # a LINE: n spectra
                        next_due = (max(next_due + period, time.monotonic() - max(period, CATCH_UP_S)) if period
                                    else time.monotonic())
                        if device.streamed != streamed_before:  # not when a reboot left the device waiting
                            self._after_spectrum(stop)
                        every = self.config.faults.disconnect_every
                        if (
                            every
                            and device.streamed % every == 0
                            and device.streamed != self._last_drop_at
                            and not device.done
                        ):
                            self._last_drop_at = device.streamed
                            in_session = False
                            if not self._unplug(stop):
                                break
                            continue
                except HostGone:
                    _LOG.info("host went away mid-transfer")
                    in_session = False
                    continue
                wait = TICK_S
                if device.streaming and not device.done:
                    wait = min(wait, max(0.0, next_due - time.monotonic()))
                fd = self.endpoint.fileno()
                if wait > 0 and fd is not None:
                    select.select([fd], [], [], wait)
        finally:
            self.endpoint.close()
        _LOG.info(
            "simulator stopped: %d spectra, %d frames, %d sessions, %d disconnects",
            device.streamed,
            self.counters.frames_sent,
            self.counters.sessions,
            self.counters.disconnects,
        )
        return 0
