"""Signals that set :class:`threading.Event` objects, safely.

Setting an event from a Python signal handler can deadlock: the handler runs in the main thread between two
bytecodes, and when that thread was interrupted inside ``Event.wait`` while holding the event's internal (non
reentrant) lock, ``Event.set`` in the handler waits for that lock forever.  A process that loops on
``stop.wait(tick)`` in its main thread, as ``spectro-sim`` and ``spectro-edge run`` do, then ignores SIGTERM until
it is killed; it happened about once in a few hundred stops on a loaded machine.

:func:`events_on_signals` avoids every Python lock in signal context.  The handlers it installs do nothing; the
interpreter's C-level handler writes the signal number to a pipe (:func:`signal.set_wakeup_fd`, async-signal-safe)
and a small watcher thread reads it and sets the event.  The standard library has no such helper (``asyncio``
does this for its own loop only), hence this module.
"""

from __future__ import annotations

import logging
import os
import signal
import threading
from collections.abc import Iterator, Mapping
from contextlib import contextmanager
from types import FrameType

_LOG = logging.getLogger(__name__)


def _ignore(signum: int, _frame: FrameType | None) -> None:
    """Python-level handler: the work happens in the watcher thread (a handler must exist for the wakeup fd)."""


@contextmanager
def events_on_signals(events: Mapping[signal.Signals, threading.Event]) -> Iterator[None]:
    """Within the block, each signal in ``events`` sets its event; handlers and wakeup fd are restored afterwards.

    Outside the main thread (where Python cannot install handlers) this does nothing, so callers that run in a
    worker thread (tests, embedded use) keep working and are stopped through their events directly.
    """
    if threading.current_thread() is not threading.main_thread() or not events:
        yield
        return
    read_fd, write_fd = os.pipe()
    os.set_blocking(write_fd, False)  # the C handler must never block; a full pipe just drops a duplicate wakeup
    by_number = {int(sig): event for sig, event in events.items()}

    def _watch() -> None:
        while True:
            try:
                data = os.read(read_fd, 64)
            except OSError:
                return
            if not data:  # write end closed: the block is over
                return
            for signum in data:
                event = by_number.get(signum)
                if event is not None:
                    _LOG.info("signal %d received", signum)
                    event.set()

    watcher = threading.Thread(target=_watch, name="signal-watcher", daemon=True)
    watcher.start()
    previous_fd = signal.set_wakeup_fd(write_fd, warn_on_full_buffer=False)
    previous = {sig: signal.signal(sig, _ignore) for sig in by_number}
    try:
        yield
    finally:
        for sig, handler in previous.items():
            signal.signal(sig, handler)
        signal.set_wakeup_fd(previous_fd)
        os.close(write_fd)
        watcher.join(5.0)
        os.close(read_fd)
