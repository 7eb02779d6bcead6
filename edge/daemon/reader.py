"""The reader thread: :class:`Reader` turns the serial transport's frames into received frames, stamped with their
arrival time, on the frames queue (spectra may be dropped there under overload, counted; nothing else is)."""

from __future__ import annotations

import logging
import threading
import time
from typing import Any

from edge.daemon.values import _Received
from edge.metrics import Counters
from edge.queues import BoundedQueue
from firmware_bridge.errors import BridgeError
from firmware_bridge.frames import Annotation, Dark, Line, Reference, Spectrum

log = logging.getLogger("edge.daemon")

#: Longest wait of one serial read; bounds how late the reader notices a stop request, seconds.
READ_WAIT_S = 0.2
#: Reader coalescing (see Reader.run): frames closer together than this (ns) make the reader pause COALESCE_S
#: before its next read.  At 100 frames/s nothing changes; at 1,000 frames/s a read returns 2-3 frames.
COALESCE_BELOW_NS = 3_000_000
COALESCE_S = 0.002
#: Frames dropped by the full frames queue are logged at most once per this many seconds (with the totals).
DROP_LOG_EVERY_S = 10.0


class Reader:
    """Reads frames from ``transport`` onto ``frames`` until ``stop`` is set (the ``spectro-reader`` thread).

    Serial errors are counted (``serial_read_errors``) and logged; the transport reconnects itself.  Frames the
    full frames queue drops (the inference thread is behind) are counted by the queue (``frames_dropped_queue_full``)
    and logged here, at most once per :data:`DROP_LOG_EVERY_S`.
    """

    def __init__(self, transport: Any, frames: BoundedQueue[_Received], counters: Counters,
                 stop: threading.Event) -> None:
        self._transport = transport
        self._frames = frames
        self._counters = counters
        self._stop = stop
        self._drops_logged = 0  # the queue's drop count at the last log line
        self._drop_logged_at = -DROP_LOG_EVERY_S

    def run(self) -> None:
        last_ns = 0
        while not self._stop.is_set():
            try:
                frames = self._transport.read_frames(READ_WAIT_S)
            except (BridgeError, OSError, ValueError) as exc:  # the transport reconnects itself; never die here
                self._counters.incr("serial_read_errors")
                log.warning("serial read failed: %s", exc)
                self._stop.wait(READ_WAIT_S)
                continue
            if not frames:
                continue
            now_ns = time.monotonic_ns()
            for frame in frames:
                droppable = isinstance(frame, (Spectrum, Line, Annotation)) and not isinstance(frame, (Dark, Reference))
                self._counters.incr("frames_in")
                self._frames.put(_Received(frame, now_ns), droppable=droppable)  # drops are counted by the queue
            if self._frames.dropped != self._drops_logged:
                self._log_drops()
            # Coalescing: when frames come faster than one per COALESCE_BELOW_NS, let a few gather before the next
            # read, so the reader and the inference thread wake once per burst instead of once per frame.
            if now_ns - last_ns < COALESCE_BELOW_NS:
                time.sleep(COALESCE_S)
            last_ns = now_ns

    def _log_drops(self) -> None:
        """Say that the full frames queue dropped frames (rate-limited: the first at once, then the totals at most
        once per :data:`DROP_LOG_EVERY_S`)."""
        now = time.monotonic()
        if now - self._drop_logged_at < DROP_LOG_EVERY_S:
            return
        dropped = self._frames.dropped
        log.warning("frames queue full (queues.frames_max %d, policy %s): %d frame(s) dropped since the last "
                    "report, %d in all (frames_dropped_queue_full); the inference thread is behind the device",
                    self._frames.maxsize, self._frames.policy, dropped - self._drops_logged, dropped)
        self._drops_logged = dropped
        self._drop_logged_at = now
