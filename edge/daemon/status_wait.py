"""Spectra that wait for the device's STATUS (inference thread): :class:`StatusWait` keeps them while the bundle needs
the device's wavelength axis and the device has not announced it yet, greets the device so that it does, and hands
them back to be predicted on (or rejected, and counted, when no STATUS came)."""

from __future__ import annotations

import collections
import logging
import time
from typing import Callable

from edge.daemon.capture import REFERENCE_REQUEST_INTERVAL_S
from edge.daemon.device import Greeter
from edge.daemon.values import _Received
from edge.metrics import Counters
from firmware_bridge.frames import Line

__all__ = ["StatusWait"]

log = logging.getLogger("edge.daemon")


class StatusWait:
    """SPECTRUM and LINE frames waiting for the device's STATUS, oldest first.

    Parameters
    ----------
    counters : Counters
        ``spectra_waited_for_status`` counts every spectrum that waited (a LINE's each).
    greeter : Greeter
        Greets the device when the first frame starts waiting.
    frames_max : int
        At most this many frames wait (``queues.frames_max``); the oldest beyond is handed back at once.
    handle : callable(_Received)
        Predicts on (or rejects) a frame that waited.
    """

    def __init__(self, counters: Counters, greeter: Greeter, frames_max: int,
                 handle: Callable[[_Received], None]) -> None:
        self._counters = counters
        self._greeter = greeter
        self._frames_max = frames_max
        self._handle = handle
        self._items: collections.deque[_Received] = collections.deque()
        #: When the oldest waiting frame started waiting (monotonic seconds).
        self.since = 0.0

    def __len__(self) -> int:
        return len(self._items)

    def park(self, item: _Received) -> None:
        """Keep a frame until the device's STATUS gives its wavelength axis; greet the device so that it answers
        now."""
        if not self._items:
            self.since = time.monotonic()
            log.info("spectra wait for the device's STATUS (the bundle needs its wavelength axis); greeting it")
            self._greeter.greet(REFERENCE_REQUEST_INTERVAL_S)
        self._items.append(item)
        self._counters.incr("spectra_waited_for_status",
                            item.frame.spectrum_count if isinstance(item.frame, Line) else 1)
        if len(self._items) > self._frames_max:
            self._handle(self._items.popleft())  # rejected (no axis) and counted, never silently lost

    def release(self, why: str, *, status_known: bool) -> None:
        """Hand back every waiting frame, in order (rejected, and counted, when no STATUS came)."""
        if not self._items:
            return
        if not status_known:
            log.warning("%d spectra waited %.1f s for the device's STATUS in vain (%s)", len(self._items),
                        time.monotonic() - self.since, why)
        while self._items:
            self._handle(self._items.popleft())
