"""The outbox's marks (:attr:`edge.publish.outbox.Outbox.marks`): small named values, such as the daemon's last
device seq (:mod:`edge.daemon.seq_mark`), kept in the outbox database's ``marks`` table and committed with the
messages they describe.

A thread stages marks (:meth:`OutboxMarks.stage`); they are written in the same transaction as the next message
that thread commits, or alone by :meth:`OutboxMarks.flush` (and when the outbox closes).  So a mark is never
committed before the messages its thread committed ahead of staging it, and while that thread commits messages it
costs no transaction (no fsync with ``synchronous="full"``) of its own.
"""

from __future__ import annotations

import logging
import sqlite3
import threading
from typing import Callable

from edge.errors import OutboxError
from edge.publish.log_limit import LogLimiter

__all__ = ["OutboxMarks"]

log = logging.getLogger("edge.publish.outbox")


class OutboxMarks:
    """The marks of one outbox database: those stored and those staged by a thread and not yet written.

    Parameters
    ----------
    conn : sqlite3.Connection
        The outbox's connection.
    lock : threading.RLock
        The outbox's lock (every use of ``conn`` holds it).
    check_open : callable()
        Raises OutboxError once the outbox is closed.
    logs : LogLimiter
        The outbox's log rate limit.
    """

    def __init__(self, conn: sqlite3.Connection, lock: threading.RLock, check_open: Callable[[], None],
                 logs: LogLimiter) -> None:
        self._conn = conn
        self._lock = lock
        self._check_open = check_open
        self._logs = logs
        self._due: dict[str, str] = {}
        self._thread: int | None = None

    def stage(self, marks: dict[str, str]) -> None:
        """Stage ``marks`` (name -> value): written with the next message the calling thread commits."""
        with self._lock:
            self._due.update(marks)
            self._thread = threading.get_ident()

    def flush(self) -> bool:
        """Write the staged marks now, in a transaction of their own; False when the database refused them (they
        stay staged; logged at most once a minute)."""
        with self._lock:
            self._check_open()
            return self.flush_locked()

    def stored(self) -> dict[str, str]:
        """The marks stored (not those only staged), by name.  OutboxError when they cannot be read."""
        with self._lock:
            self._check_open()
            try:
                return {str(k): str(v) for k, v in self._conn.execute("SELECT name, value FROM marks")}
            except sqlite3.Error as exc:
                raise OutboxError(f"cannot read the outbox's marks: {exc}") from exc

    # --------------------------------------------------------------------- for the outbox (its lock held)
    def due(self) -> dict[str, str] | None:
        """The staged marks when the calling thread staged them, else None (another thread's commit leaves them)."""
        return self._due if self._due and self._thread == threading.get_ident() else None

    def write(self, marks: dict[str, str]) -> None:
        """Store ``marks``, replacing those of the same names, in the open transaction."""
        self._conn.executemany("INSERT OR REPLACE INTO marks (name, value) VALUES (?, ?)", list(marks.items()))

    def written(self, marks: dict[str, str] | None) -> None:
        """``marks`` (what :meth:`due` returned) were committed."""
        if marks:
            self._due = {}

    def flush_locked(self) -> bool:
        if not self._due:
            return True
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self.write(self._due)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            if self._conn.in_transaction:
                self._conn.execute("ROLLBACK")
            if self._logs.event("marks_error") is not None:
                log.error("outbox cannot store its marks: %s", exc)
            return False
        self._due = {}
        return True
