"""The last device seq the daemon committed, per device session, kept across restarts: :class:`SeqMark`.

Frames the device sends while no daemon holds its port (the daemon restarting, killed, or not yet started) are
lost on the wire: opening a serial port flushes what the tty buffered.  So that the next daemon counts them
(``frames_lost_seq_gap``), the daemon keeps ``(boot_id, seq)`` of the last frame it handled, under the name
``device_seq:<device_id>`` in the outbox database (:attr:`edge.publish.outbox.Outbox.marks`), and at start-up
seeds its :class:`edge.daemon.device.SeqTracker` with it; the tracker compares it with the first seq it sees once
the device announces the same boot id (a new boot id: the device rebooted, its seq restarted, nothing is counted).

The mark is staged at the end of each batch of frames and committed in the same transaction as the batch's last
message (no transaction of its own while messages flow); a batch that made no message has its mark written
alone, at most once every :data:`MARK_FLUSH_S`, and when the daemon stops.  What a crash (``kill -9``, power cut)
can miss is described in docs/daemon.md ("Sequence numbers across restarts").
"""

from __future__ import annotations

import logging
import time
from typing import Callable, Protocol

from edge.errors import EdgeError
from edge.jsonstrict import loads_strict

__all__ = ["MARK_FLUSH_S", "MarkStore", "SeqMark"]

log = logging.getLogger("edge.daemon")

#: At most this often a mark staged by a batch that committed no message is written alone, seconds.
MARK_FLUSH_S = 1.0


class MarkStore(Protocol):
    """Where marks are kept (:class:`edge.publish.outbox_marks.OutboxMarks`)."""

    def stage(self, marks: dict[str, str]) -> None: ...

    def flush(self) -> bool: ...

    def stored(self) -> dict[str, str]: ...


class SeqMark:
    """The daemon's last committed device seq, as ``(boot_id, seq)``: :attr:`resume` is the previous process's
    (None: none kept, or no store), :meth:`stage` records this one's (inference thread).

    Parameters
    ----------
    store : MarkStore or None
        The outbox's marks; None keeps nothing (a link without an outbox).
    device_id : str
        This daemon's device id (the mark's name).
    clock : callable() -> float
        Monotonic seconds (when a mark is written alone).
    """

    def __init__(self, store: MarkStore | None, device_id: str,
                 clock: Callable[[], float] = time.monotonic) -> None:
        self._store = store
        self._name = f"device_seq:{device_id}"
        self._clock = clock
        self._staged: tuple[int, int] | None = None
        self._flushed_at = clock()
        self.resume = self._read()

    def _read(self) -> tuple[int, int] | None:
        if self._store is None:
            return None
        try:
            raw = self._store.stored().get(self._name)
        except EdgeError as exc:
            log.error("cannot read the last device seq of the previous run (%s): frames lost while no daemon held "
                      "the port are not counted", exc)
            return None
        if raw is None:
            return None
        try:
            doc = loads_strict(raw)
            boot_id, seq = doc["boot_id"], doc["seq"]
            if type(boot_id) is not int or type(seq) is not int or boot_id < 1 or seq < 0:
                raise ValueError(f"expected a positive boot_id and a seq >= 0, got {boot_id!r}, {seq!r}")
        except (ValueError, TypeError, KeyError) as exc:
            log.error("ignoring the unreadable last device seq %r (%s)", raw[:80], exc)
            return None
        log.info("the previous run committed seq %d of boot id %d last", seq, boot_id)
        return boot_id, seq

    def stage(self, boot_id: int | None, seq: int | None) -> None:
        """The last frame handled so far is ``seq`` of boot ``boot_id`` (nothing is kept without a boot id)."""
        if self._store is None or boot_id is None or seq is None or (boot_id, seq) == self._staged:
            return
        self._staged = (boot_id, seq)
        # json.dumps({"boot_id": boot_id, "seq": seq}) to the byte for two ints, without the encoder (once a batch)
        self._store.stage({self._name: f'{{"boot_id": {int(boot_id)}, "seq": {int(seq)}}}'})

    def tick(self, *, force: bool = False) -> None:
        """Write a mark no message carried, when :data:`MARK_FLUSH_S` has passed since the last time (or ``force``:
        the daemon stops)."""
        if self._store is None:
            return
        now = self._clock()
        if force or now - self._flushed_at >= MARK_FLUSH_S:
            self._flushed_at = now
            try:
                self._store.flush()
            except EdgeError as exc:  # the outbox closed under us: the daemon is stopping
                log.debug("the last device seq was not written: %s", exc)
