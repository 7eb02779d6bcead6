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
    monotonic), else ``(None, wavelengths_nm)``."""
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
    return None, wl


#: A forward jump of the device's sequence number larger than this is not counted as lost frames (one forged
#: ``seq = 0xFFFFFFF0`` would add 4.29e9 to ``frames_lost_seq_gap`` forever) but as a resynchronisation
#: (``seq_jumps``); at 1,000 spectra/s it is 100 s of frames.
SEQ_GAP_MAX = 100_000


class SeqTracker:
    """The device's sequence numbers, shared by SPECTRUM, DARK and REFERENCE frames: a gap is counted as lost frames
    (``frames_lost_seq_gap``), an implausible forward jump as a resynchronisation (``seq_jumps``), a step back as a
    restart (``seq_restarts``); :attr:`last` is the last seq seen (None before the first)."""

    def __init__(self, counters: Counters) -> None:
        self._counters = counters
        self.last: int | None = None

    def track(self, seq: int) -> None:
        last = self.last
        if last is not None:
            if seq > last + 1 + SEQ_GAP_MAX:  # implausible: a forged or corrupted seq, not lost frames
                self._counters.incr("seq_jumps")
                if self._counters.get("seq_jumps") <= 3:
                    log.warning("sequence number jumped from %d to %d: counted as a resynchronisation "
                                "(seq_jumps), not as %d lost frames", last, seq, seq - last - 1)
            elif seq > last + 1:
                self._counters.incr("frames_lost_seq_gap", seq - last - 1)
            elif seq <= last:
                self._counters.incr("seq_restarts")
        self.last = seq
