"""The outbox's disk bounds: the write-ahead log's bound, the free-space headroom and the reserve file.

The outbox (:mod:`edge.publish.outbox`) keeps one :class:`DiskSpace`; the policy it implements is described
there under "Disk full".  Every method that touches the database takes the outbox's connection and is called
with the outbox's lock held.
"""

from __future__ import annotations

import errno
import logging
import os
import sqlite3
import time
from pathlib import Path
from typing import Callable

from edge.publish.log_limit import LogLimiter

__all__ = ["DiskSpace", "wal_bound_bytes", "checkpoint", "vacuum_pages", "WAL_BOUND_FRACTION", "WAL_BOUND_MIN_BYTES",
           "WAL_BOUND_MAX_BYTES", "RESERVE_WAL_BOUNDS", "HEADROOM_WAL_BOUNDS",
           "FAR_ABOVE_HEADROOM_BYTES", "RECHECK_S"]

log = logging.getLogger("edge.publish.outbox")

#: Bound on the write-ahead log, as a fraction of the filesystem, clamped to [WAL_BOUND_MIN_BYTES,
#: WAL_BOUND_MAX_BYTES]: ``wal_autocheckpoint`` (pages) and ``journal_size_limit`` (bytes) are set from it.
WAL_BOUND_FRACTION = 1 / 64
WAL_BOUND_MIN_BYTES = 64 * 1024
WAL_BOUND_MAX_BYTES = 4 * 1024 * 1024
#: Size of the reserve file (``<outbox>-reserve``), in WAL bounds: released when the disk is full so that a
#: checkpoint and an eviction always have room, re-created once there is room again.
RESERVE_WAL_BOUNDS = 2
#: Free space kept on the filesystem besides the reserve, in WAL bounds: below it the database stops growing
#: (new messages reuse the pages of evicted ones) and the WAL and its checkpoints keep room to work.
HEADROOM_WAL_BOUNDS = 3
#: :meth:`DiskSpace.has_room` asks the filesystem (``statvfs``) for every message only when space is short: while
#: its last answer left at least FAR_ABOVE_HEADROOM_BYTES above the headroom, it asks again after RECHECK_S seconds
#: or once the messages stored since could have used half of that room (each charged twice its size plus a page),
#: whichever comes first.  A syscall per message was a few percent of the daemon's CPU at 100 frames/s; another
#: writer that fills the rest within that second is met by the reserve, as when it fills the disk between two
#: messages.
FAR_ABOVE_HEADROOM_BYTES = 64 * 1024 * 1024
RECHECK_S = 1.0


def wal_bound_bytes(directory: Path) -> int:
    """Bound on the write-ahead log for a database in ``directory``: WAL_BOUND_FRACTION of its filesystem,
    clamped to [WAL_BOUND_MIN_BYTES, WAL_BOUND_MAX_BYTES] (the maximum when the filesystem cannot be asked)."""
    try:
        directory.mkdir(parents=True, exist_ok=True)
        st = os.statvfs(directory)
    except (OSError, AttributeError):
        return WAL_BOUND_MAX_BYTES
    total = int(st.f_blocks) * int(st.f_frsize)
    return int(min(WAL_BOUND_MAX_BYTES, max(WAL_BOUND_MIN_BYTES, total * WAL_BOUND_FRACTION)))


def checkpoint(conn: sqlite3.Connection) -> None:
    """Copy the WAL into the database and truncate it (best effort: frees the WAL's space on a full disk)."""
    try:
        conn.execute("PRAGMA wal_checkpoint(TRUNCATE)").fetchall()
    except sqlite3.Error as exc:
        log.debug("outbox checkpoint failed: %s", exc)


def vacuum_pages(conn: sqlite3.Connection, pages: int) -> None:
    """Give up to ``pages`` free database pages back to the filesystem (``PRAGMA incremental_vacuum(N)``).

    SQLite frees one page per step of that statement.  ``Connection.execute`` steps it once from Python 3.11 on
    (it returns no rows), so it freed a single page however many were asked, and to the end on 3.10;
    ``executescript`` steps every statement to its end on both.

    Raises
    ------
    sqlite3.Error
        The vacuum failed (a full disk); the pages freed before stay freed.
    """
    conn.executescript(f"PRAGMA incremental_vacuum({int(pages)});")


class DiskSpace:
    """The free space, headroom and reserve file of the outbox database at ``path``.

    ``held`` says whether the reserve file holds its full size; ``logs`` rate-limits the reserve's warnings.
    """

    def __init__(self, path: Path, logs: LogLimiter, clock: Callable[[], float] = time.monotonic) -> None:
        self.path = path
        self.wal_bound_bytes = wal_bound_bytes(path.parent)
        self.reserve_path = path.with_name(path.name + "-reserve")
        self.reserve_bytes = RESERVE_WAL_BOUNDS * self.wal_bound_bytes
        self.headroom_bytes = HEADROOM_WAL_BOUNDS * self.wal_bound_bytes
        self.held = False
        self._logs = logs
        self._clock = clock
        self._roomy_until = 0.0  # has_room need not ask the filesystem before this time ...
        self._roomy_bytes = 0  # ... while the messages stored since were charged less than this

    def free_bytes(self) -> int | None:
        """Bytes available on the outbox's filesystem (None when it cannot be asked)."""
        try:
            st = os.statvfs(self.path.parent)
        except (OSError, AttributeError):  # AttributeError: no statvfs on this platform
            return None
        return int(st.f_bavail) * int(st.f_frsize)

    def has_room(self, conn: sqlite3.Connection, page_size: int, size: int) -> bool:
        """Whether a message of ``size`` bytes may be stored without eating into the headroom: there is more
        free space than the headroom, or the database has enough free pages (of evicted or delivered messages).
        The filesystem is asked at most once per :data:`RECHECK_S` while it has far more room than the headroom
        (:data:`FAR_ABOVE_HEADROOM_BYTES`)."""
        cost = 2 * size + page_size
        if self._roomy_bytes >= cost and self._clock() < self._roomy_until:
            self._roomy_bytes -= cost
            return True
        self._roomy_bytes = 0
        free = self.free_bytes()
        if free is None or free >= self.headroom_bytes:
            if free is not None and free - self.headroom_bytes >= FAR_ABOVE_HEADROOM_BYTES:
                self._roomy_until = self._clock() + RECHECK_S
                self._roomy_bytes = (free - self.headroom_bytes) // 2
            return True
        try:
            free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
        except sqlite3.Error:
            return False
        return free_pages >= (size + page_size - 1) // page_size + 2

    def make_reserve(self) -> bool:
        """Allocate the reserve file (real blocks, not a sparse file); True when it holds its full size."""
        try:
            st = os.stat(self.reserve_path)
            if st.st_size >= self.reserve_bytes and st.st_blocks * 512 >= self.reserve_bytes:
                return True
        except OSError:
            pass
        try:
            fd = os.open(self.reserve_path, os.O_WRONLY | os.O_CREAT, 0o600)
        except OSError as exc:
            log.debug("outbox reserve %s cannot be created: %s", self.reserve_path, exc)
            return False
        try:
            try:
                os.posix_fallocate(fd, 0, self.reserve_bytes)
            except (AttributeError, OSError) as exc:  # no fallocate here, or not on this filesystem
                if isinstance(exc, OSError) and exc.errno not in (errno.EOPNOTSUPP, errno.EINVAL, errno.ENOSYS):
                    raise
                chunk = b"\0" * 65536
                for offset in range(0, self.reserve_bytes, len(chunk)):
                    os.pwrite(fd, chunk[:self.reserve_bytes - offset], offset)
            os.fsync(fd)
        except OSError as exc:
            os.close(fd)
            self.reserve_path.unlink(missing_ok=True)
            log.debug("outbox reserve %s: no room (%s)", self.reserve_path, exc)
            return False
        os.close(fd)
        return True

    def release_reserve(self) -> None:
        """Give the reserve's space back to the filesystem (the disk is full)."""
        self._roomy_bytes = 0  # the next message asks the filesystem again
        if not self.held:
            return
        try:
            self.reserve_path.unlink(missing_ok=True)
        except OSError as exc:  # pragma: no cover - a directory we could write to a moment ago
            log.debug("outbox reserve %s cannot be removed: %s", self.reserve_path, exc)
            return
        self.held = False
        due = self._logs.event("reserve")
        if due is not None:
            log.warning("outbox %s: disk full; released the %d-byte disk reserve to evict and checkpoint "
                        "(%d time(s) since the last report)", self.path, self.reserve_bytes, due[0])

    def restore_reserve(self, conn: sqlite3.Connection, page_size: int) -> None:
        """Re-create the reserve once the filesystem has room for it and for the WAL; with too little room, give
        free database pages back to the filesystem first (incremental vacuum, in steps the WAL can hold)."""
        free = self.free_bytes()
        if free is None:
            return
        want = self.reserve_bytes + self.wal_bound_bytes
        for _step in range(64):
            if free >= want:
                break
            try:
                free_pages = int(conn.execute("PRAGMA freelist_count").fetchone()[0])
            except sqlite3.Error:
                return
            # moving a page writes it and its parent to the WAL: stay within half of what is free
            step = min(free_pages, (want - free) // page_size + 1, free // (4 * page_size))
            if step < 1:
                return
            try:
                vacuum_pages(conn, step)
            except sqlite3.Error as exc:
                log.debug("outbox incremental vacuum failed: %s", exc)
                return
            checkpoint(conn)
            free = self.free_bytes() or 0
        if free >= want:
            self.held = self.make_reserve()
