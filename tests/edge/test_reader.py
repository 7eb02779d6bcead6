"""The daemon's reader thread (:class:`edge.daemon.reader.Reader`) on a real pty: a burst of frames reaches the
frames queue in order, in a few hand-overs (one wake-up of the inference thread each), not one per frame."""

from __future__ import annotations

import os
import threading
import time
import tty
from typing import Any

import numpy as np

from edge.daemon.reader import Reader
from edge.daemon.values import _Received
from edge.metrics import Counters
from edge.queues import BoundedQueue
from firmware_bridge.codec import encode
from firmware_bridge.frames import Annotation, Spectrum
from firmware_bridge.transport import SerialTransport

#: Spectra of the burst (with one annotation each): about 20 kB, five times what one pty read returns.
N_SPECTRA = 60
#: Generous bound for the burst to arrive (CI runs on 2 busy cores); not a speed claim.
PATIENCE_S = 30.0


class CountingQueue(BoundedQueue[_Received]):
    """The frames queue, counting the hand-overs (each wakes the inference thread once)."""

    def __init__(self, maxsize: int = 10_000, policy: str = "drop_oldest") -> None:
        super().__init__(maxsize, policy)
        self.hand_overs = 0

    def put(self, item: Any, *, droppable: bool = True, timeout_s: float | None = None) -> bool:
        self.hand_overs += 1
        return super().put(item, droppable=droppable, timeout_s=timeout_s)

    def put_many(self, items: Any, *, timeout_s: float | None = None) -> list[bool]:
        self.hand_overs += 1
        return super().put_many(items, timeout_s=timeout_s)


def _burst() -> list[Any]:
    frames: list[Any] = []
    for seq in range(N_SPECTRA):
        frames.append(Spectrum(seq=seq, timestamp_us=seq * 250, integration_time_us=200,
                               counts=np.full(256, seq, dtype=np.uint16)))
        frames.append(Annotation(seq=seq, values=(float(seq),)))
    return frames


def test_a_burst_reaches_the_queue_in_order_in_a_few_hand_overs() -> None:
    frames = _burst()
    queue = CountingQueue()
    counters = Counters()
    got = _read_burst(queue, counters, frames, keep_annotations=True, until=len(frames))
    assert got == frames  # nothing lost, nothing reordered
    assert counters.get("frames_in") == len(frames)
    # One wake-up per frame before; now one per read burst (a pty read returns at most 4 kB: ~7 spectra here)
    assert queue.hand_overs <= len(frames) // 4, queue.hand_overs


def _read_burst(queue: BoundedQueue[_Received], counters: Counters, frames: list[Any], *, keep_annotations: bool,
                until: int) -> list[Any]:
    """Write ``frames`` to a real pty in one write and run a Reader on the other end until ``until`` frames reached
    the queue (or the patience ran out); the frames taken off the queue, in order."""
    master, slave = os.openpty()
    tty.setraw(slave)
    tty.setraw(master)
    stop = threading.Event()
    got: list[Any] = []
    with SerialTransport(os.ttyname(slave), read_timeout_s=0.05) as transport:
        reader = threading.Thread(
            target=Reader(transport, queue, counters, stop, keep_annotations=keep_annotations).run, daemon=True)
        reader.start()
        try:
            writer = threading.Thread(target=os.write, args=(master, b"".join(encode(f) for f in frames)),
                                      daemon=True)
            writer.start()
            deadline = time.monotonic() + PATIENCE_S
            while counters.get("frames_in") < len(frames) and time.monotonic() < deadline:
                time.sleep(0.01)
            while len(got) < until and time.monotonic() < deadline:
                got += [item.frame for item in queue.get_many(1000, 0.1)]
            writer.join(PATIENCE_S)
        finally:
            stop.set()
            reader.join(PATIENCE_S)
            os.close(master)
            os.close(slave)
    return got


def test_annotations_not_forwarded_are_counted_by_the_reader_and_never_queued() -> None:
    frames = _burst()
    counters = Counters()
    got = _read_burst(CountingQueue(), counters, frames, keep_annotations=False, until=N_SPECTRA)
    assert got == [f for f in frames if isinstance(f, Spectrum)]  # every spectrum, in order, and nothing else
    assert counters.get("annotation_frames") == N_SPECTRA
    assert counters.get("frames_in") == len(frames)


def test_the_queues_room_is_the_spectras_when_annotations_are_not_forwarded() -> None:
    """A full frames queue (nobody taking frames off it while the burst arrives) keeps ``maxsize`` spectra; with
    annotations queued as well, half of its room went to them."""
    frames, room = _burst(), N_SPECTRA // 2
    kept: dict[bool, list[Any]] = {}
    for keep in (False, True):
        queue, counters = CountingQueue(room, "drop_newest"), Counters()
        kept[keep] = _read_burst(queue, counters, frames, keep_annotations=keep, until=room)
        assert queue.dropped == len(frames) - room - (0 if keep else N_SPECTRA)  # each drop counted by the queue
    assert [f.seq for f in kept[False]] == list(range(room))  # the first `room` spectra, in order
    assert [f.seq for f in kept[True] if isinstance(f, Spectrum)] == list(range(room // 2))
