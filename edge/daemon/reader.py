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
#: Reader coalescing (see Reader.run): when the frames of the last hand-over came closer together than
#: COALESCE_BELOW_NS on average (ANNOTATION frames not counted), the reader pauses before it hands the next ones over,
#: long enough for about COALESCE_FRAMES frames at that rate (between COALESCE_MIN_S and COALESCE_MAX_S), and then
#: takes everything the port holds.  At 100 frames/s nothing waits; at thousands of frames/s the reader and the
#: inference thread wake once per burst and the burst is predicted as one batch.
COALESCE_BELOW_NS = 3_000_000
COALESCE_FRAMES = 16
COALESCE_MIN_S = 0.002
COALESCE_MAX_S = 0.008
#: Most frames one hand-over takes from the port after a coalescing pause (a pty read returns at most 4 KiB).
READ_BATCH_MAX = 256
#: Frames dropped by the full frames queue are logged at most once per this many seconds (with the totals).
DROP_LOG_EVERY_S = 10.0


class Reader:
    """Reads frames from ``transport`` onto ``frames`` until ``stop`` is set (the ``spectro-reader`` thread).

    Serial errors are counted (``serial_read_errors``) and logged; the transport reconnects itself.  Frames the
    full frames queue drops (the inference thread is behind) are counted by the queue (``frames_dropped_queue_full``)
    and logged here, at most once per :data:`DROP_LOG_EVERY_S`.  With ``keep_annotations=False`` (annotations are
    not forwarded: ``device.forward_annotations = false``) ANNOTATION frames are counted here
    (``annotation_frames``, as the inference thread would) and not queued: the queue's room is the spectra's.
    """

    def __init__(self, transport: Any, frames: BoundedQueue[_Received], counters: Counters,
                 stop: threading.Event, *, keep_annotations: bool = True) -> None:
        self._transport = transport
        self._frames = frames
        self._counters = counters
        self._stop = stop
        self._keep_annotations = keep_annotations
        self._drops_logged = 0  # the queue's drop count at the last log line
        self._drop_logged_at = -DROP_LOG_EVERY_S

    def run(self) -> None:
        last_ns, last_frames = 0, 1  # the last hand-over's first read, and how many frames it handed over
        while not self._stop.is_set():
            items, failed = self._read(READ_WAIT_S)
            if items:
                now_ns = items[0].received_ns
                # Coalescing: when frames come faster than one per COALESCE_BELOW_NS, let a burst gather, then take
                # what the port holds, so the reader and the inference thread wake once per burst, not per frame.
                gap_ns = (now_ns - last_ns) // last_frames
                if gap_ns < COALESCE_BELOW_NS and not failed:
                    time.sleep(min(COALESCE_MAX_S, max(COALESCE_MIN_S, COALESCE_FRAMES * gap_ns / 1e9)))
                    while len(items) < READ_BATCH_MAX and not failed:
                        more, failed = self._read(0.0)
                        if not more:
                            break
                        items += more
                last_ns = now_ns
                last_frames = max(1, sum(not isinstance(item.frame, Annotation) for item in items))
                self._hand_over(items)
            if failed:
                self._stop.wait(READ_WAIT_S)

    def _read(self, wait_s: float) -> tuple[list[_Received], bool]:
        """The frames one read of the transport gave, stamped with their arrival time, and whether it failed
        (counted in ``serial_read_errors`` and logged; the transport reconnects itself)."""
        try:
            frames = self._transport.read_frames(wait_s)
        except (BridgeError, OSError, ValueError) as exc:  # the transport reconnects itself; never die here
            self._counters.incr("serial_read_errors")
            log.warning("serial read failed: %s", exc)
            return [], True
        now_ns = time.monotonic_ns()
        return [_Received(frame, now_ns) for frame in frames], False

    def _hand_over(self, items: list[_Received]) -> None:
        """Put the frames on the frames queue in order, with one wake-up of the inference thread (spectra and
        annotations may be dropped there when it is full: counted by the queue); annotations that are not forwarded
        are only counted."""
        self._counters.incr("frames_in", len(items))
        if not self._keep_annotations:
            kept = [item for item in items if not isinstance(item.frame, Annotation)]
            if len(kept) != len(items):
                self._counters.incr("annotation_frames", len(items) - len(kept))
            items = kept
            if not items:  # nothing to wake the inference thread for
                return
        self._frames.put_many([(item, _droppable(item.frame)) for item in items])
        if self._frames.dropped != self._drops_logged:
            self._log_drops()

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


def _droppable(frame: Any) -> bool:
    """Frames the full frames queue may drop: spectra, lines and annotations, never references or control frames."""
    return isinstance(frame, (Spectrum, Line, Annotation)) and not isinstance(frame, (Dark, Reference))
