"""What the daemon knows of the device from its frames, as plain values: the signal and wavelength axis a STATUS
announces, device-supplied text made safe for the log, detector full scale per pixel format, the device's sequence
numbers (:class:`SeqTracker`)."""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass
from typing import Callable

import numpy as np

from edge.metrics import Counters
from firmware_bridge.frames import PixelFormat, Status

log = logging.getLogger("edge.daemon")

#: Detector full scale per pixel format (for the instrument-health fractions); float frames have none.
FULL_SCALE_COUNTS: dict[PixelFormat, float | None] = {
    PixelFormat.UINT16: 65535.0,
    PixelFormat.UINT32: 4294967295.0,
    PixelFormat.FLOAT32: None,
}
#: Longest device-supplied text (device id, firmware version, NACK detail) written to the log, characters.
DEVICE_TEXT_MAX = 80


@dataclass(frozen=True)
class DeviceView:
    """What the device has announced, as the inference thread last saw it: its valid STATUS (None until one
    arrived), the signal its spectra carry and its wavelength axis (None without a valid STATUS)."""

    status: Status | None
    signal: str
    wavelengths_nm: np.ndarray | None


class Greeter:
    """Greets the device (HELLO) so that it announces itself, at most once per interval (housekeeping and
    inference thread)."""

    def __init__(self, send_hello: Callable[[], bool]) -> None:
        self._send_hello = send_hello
        self.last_hello = -float("inf")

    def greet(self, min_interval_s: float) -> None:
        now = time.monotonic()
        if now - self.last_hello > min_interval_s:
            self.last_hello = now
            self._send_hello()


def status_signal(status: Status) -> str:
    """What a STATUS frame says the device's spectra carry: ``counts``, ``absorbance`` or ``reflectance``
    (``Status.signal.name.lower()``); ``counts`` for a device that does not say (protocol v1)."""
    signal_kind = getattr(status, "signal", None)
    if signal_kind is None:
        return "counts"
    return str(getattr(signal_kind, "name", signal_kind)).lower()


def printable(text: object, limit: int = DEVICE_TEXT_MAX) -> str:
    """Device-supplied text made safe for one log line: control characters (newline, ESC of ANSI sequences, ...)
    escaped as ``\\xNN``/``\\uNNNN``, cut to ``limit`` characters.  A hostile device cannot forge log lines.

    >>> printable("SIM-01\\n2026-01-01 INFO edge.daemon: forged\\x1b[2J")
    'SIM-01\\\\n2026-01-01 INFO edge.daemon: forged\\\\x1b[2J'
    >>> printable("x" * 100, limit=5)
    'xxxxx...'
    """
    s = str(text)
    cut = len(s) > limit
    s = s[:limit]
    out = "".join(c if c.isprintable() else c.encode("unicode_escape").decode("ascii") for c in s)
    return out + ("..." if cut else "")


def status_axis_problem(status: Status) -> tuple[str | None, np.ndarray | None]:
    """Check the calibration a STATUS frame announces: ``(problem, None)`` when it cannot be a detector's
    wavelength axis (fewer than 2 pixels, a polynomial that overflows or gives NaN, an axis that is not strictly
    monotonic), else ``(None, wavelengths_nm)`` (read-only)."""
    n = int(status.pixel_count)
    if n < 2:
        return f"expected at least 2 pixels, got {n}", None
    try:
        with np.errstate(all="ignore"):
            wl = np.asarray(status.wavelengths_nm(), dtype=np.float64)
    except (ValueError, FloatingPointError, OverflowError, TypeError) as exc:
        return f"the wavelength polynomial cannot be evaluated: {exc}", None
    if wl.shape != (n,):
        return f"expected a wavelength axis of {n} pixels, got shape {wl.shape}", None
    if not np.isfinite(wl).all():
        bad = int(np.argmin(np.isfinite(wl)))
        return f"the wavelength polynomial is not finite at pixel {bad} ({wl[bad]})", None
    d = np.diff(wl)
    if not ((d > 0).all() or (d < 0).all()):
        return "the wavelength axis is not strictly monotonic", None
    wl.flags.writeable = False  # one immutable array per STATUS: the engine's checks judge it once, by identity
    return None, wl


#: A forward jump of the device's sequence number larger than this is not counted as lost frames (one forged
#: ``seq = 0xFFFFFFF0`` would add 4.29e9 to ``frames_lost_seq_gap`` forever) but as a resynchronisation
#: (``seq_jumps``); at 1,000 spectra/s it is 100 s of frames.
SEQ_GAP_MAX = 100_000
#: Gaps in the device's sequence numbers are logged at most once per this many seconds (all are counted).
GAP_LOG_EVERY_S = 10.0


class SeqTracker:
    """The device's sequence numbers, shared by SPECTRUM, DARK and REFERENCE frames (a LINE's spectra each have
    theirs): a gap is counted as lost frames (``frames_lost_seq_gap``; logged at most once per
    :data:`GAP_LOG_EVERY_S`), an implausible forward jump as a
    resynchronisation (``seq_jumps``), a step back as a restart (``seq_restarts``); :attr:`last` is the last seq
    seen (None before the first).

    ``resume`` is ``(boot_id, seq)``, the last seq the previous daemon process committed (:mod:`edge.daemon.seq_mark`):
    when the device's first boot id (:meth:`session`) is that one, the first seq of this process is compared with it,
    so frames the device sent while no daemon held the port are counted too.  Another boot id (the device rebooted,
    its seq restarted) or none (a protocol v1 device) counts nothing.
    """

    def __init__(self, counters: Counters, resume: tuple[int, int] | None = None) -> None:
        self._counters = counters
        self.last: int | None = None
        self._resume = resume  # until the device's first boot id is known
        self._first: int | None = None  # the first seq of this process
        self._resume_at: tuple[int, int] | None = None  # the same session: compare the next seq with this one
        self._gap_logged_at = -GAP_LOG_EVERY_S  # the last gap logged (monotonic seconds)

    def track(self, seq: int) -> None:
        last, resume_at = self.last, self._resume_at
        if resume_at is not None:
            self._resume_at = None
            self._resumed(resume_at, seq)
        elif last is not None:
            self._compare(last, seq)
        elif self._first is None:
            self._first = seq
        self.last = seq

    def session(self, boot_id: int | None) -> None:
        """The device announced ``boot_id`` (STATUS): on the first announcement, resume from the previous process's
        last seq when it is the same session."""
        resume, self._resume = self._resume, None
        if resume is None or boot_id is None or boot_id != resume[0]:
            return
        if self._first is None:  # nothing seen yet: the next seq is compared with the previous process's last
            self._resume_at = resume
        else:
            self._resumed(resume, self._first)

    def _resumed(self, resume: tuple[int, int], seq: int) -> None:
        """The first seq of this process after ``resume`` = ``(boot_id, seq)`` of the same session."""
        lost = seq - resume[1] - 1
        if 0 < lost <= SEQ_GAP_MAX:
            log.warning("%d frame(s) of boot id %s lost while no daemon held the port: seq %d to %d "
                        "(counted in frames_lost_seq_gap)", lost, resume[0], resume[1] + 1, seq - 1)
        self._compare(resume[1], seq, logged=True)

    def _compare(self, last: int, seq: int, *, logged: bool = False) -> None:
        if seq > last + 1 + SEQ_GAP_MAX:  # implausible: a forged or corrupted seq, not lost frames
            self._counters.incr("seq_jumps")
            if self._counters.get("seq_jumps") <= 3:
                log.warning("sequence number jumped from %d to %d: counted as a resynchronisation "
                            "(seq_jumps), not as %d lost frames", last, seq, seq - last - 1)
        elif seq > last + 1:
            self._counters.incr("frames_lost_seq_gap", seq - last - 1)
            now = time.monotonic()
            if not logged and now - self._gap_logged_at >= GAP_LOG_EVERY_S:  # rate-limited; the counter has all
                self._gap_logged_at = now
                log.warning("%d frame(s) lost before seq %d: seq %d to %d (counted in frames_lost_seq_gap, %d in all)",
                            seq - last - 1, seq, last + 1, seq - 1, self._counters.get("frames_lost_seq_gap"))
        elif seq <= last:
            self._counters.incr("seq_restarts")
