"""Opening the outbox's SQLite database: WAL journal with a bounded log, exclusive lock, the ``messages`` and
``marks`` tables, and a file that is not a database moved aside for a fresh one (see :mod:`edge.publish.outbox`)."""

from __future__ import annotations

import logging
import os
import sqlite3
import time
from pathlib import Path

from edge.errors import OutboxError

__all__ = ["open_database", "is_disk_full"]

log = logging.getLogger("edge.publish.outbox")

_SCHEMA = """
CREATE TABLE IF NOT EXISTS messages (
    id INTEGER PRIMARY KEY AUTOINCREMENT,
    topic TEXT NOT NULL,
    payload BLOB NOT NULL,
    qos INTEGER NOT NULL,
    retain INTEGER NOT NULL,
    priority INTEGER NOT NULL,
    created_unix_s REAL NOT NULL,
    size_bytes INTEGER NOT NULL
);
CREATE INDEX IF NOT EXISTS messages_by_priority ON messages (priority, id);
CREATE TABLE IF NOT EXISTS marks (name TEXT PRIMARY KEY, value TEXT NOT NULL);
"""


#: SQLite's result code SQLITE_FULL (``sqlite3.SQLITE_FULL`` exists from Python 3.11 only; the edge runs on 3.10).
SQLITE_FULL = 13


def is_disk_full(exc: sqlite3.Error) -> bool:
    """Whether ``exc`` says the disk (or the database's size limit) is full (``sqlite_errorcode``: Python 3.11+;
    the message on 3.10)."""
    code = getattr(exc, "sqlite_errorcode", None)
    return code == SQLITE_FULL if code is not None else "full" in str(exc).lower()


def _connect(path: Path, synchronous: str, wal_bound_bytes: int) -> sqlite3.Connection:
    conn = sqlite3.connect(str(path), isolation_level=None, check_same_thread=False, timeout=1.0)
    try:
        conn.execute("PRAGMA locking_mode=EXCLUSIVE")
        conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective only on a new database
        mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
        if str(mode).lower() != "wal":
            raise OutboxError(f"{path}: expected SQLite WAL journal mode, got {mode!r}")
        conn.execute(f"PRAGMA synchronous={synchronous}")
        # Bound the WAL: checkpoint every wal_bound bytes of frames, and truncate a WAL that an unusually large
        # transaction grew back to that size once it is reset, so its file is reused instead of growing.
        page_size = int(conn.execute("PRAGMA page_size").fetchone()[0])
        conn.execute(f"PRAGMA wal_autocheckpoint={max(8, wal_bound_bytes // page_size)}")
        conn.execute(f"PRAGMA journal_size_limit={wal_bound_bytes}")
        conn.executescript(_SCHEMA)
        check = conn.execute("PRAGMA quick_check").fetchone()[0]
        if check != "ok":
            raise sqlite3.DatabaseError(f"quick_check: {check}")
    except BaseException:
        conn.close()
        raise
    return conn


def open_database(path: Path, synchronous: str, wal_bound_bytes: int) -> tuple[sqlite3.Connection, bool]:
    """The outbox database at ``path`` (created with its directory if missing), and whether an unreadable file was
    moved aside (``<name>.corrupt-<unix time>``) for a fresh one.  OutboxError when it cannot be opened (another
    process holds it, no room, no permission)."""
    try:
        path.parent.mkdir(parents=True, exist_ok=True)
    except OSError as exc:
        raise OutboxError(f"{path.parent}: cannot create the outbox directory: {exc}") from exc
    try:
        return _connect(path, synchronous, wal_bound_bytes), False
    except OutboxError:
        raise
    except sqlite3.OperationalError as exc:
        if "locked" in str(exc).lower():
            raise OutboxError(f"{path}: outbox is in use by another process ({exc})") from exc
        raise OutboxError(f"{path}: cannot open the outbox: {exc}") from exc
    except sqlite3.DatabaseError as exc:
        aside = path.with_name(f"{path.name}.corrupt-{int(time.time())}")
        log.error("outbox %s is unreadable (%s); moved aside to %s, starting a fresh outbox",
                  path, exc, aside.name)
        try:
            os.replace(path, aside)
            for suffix in ("-wal", "-shm"):
                side = path.with_name(path.name + suffix)
                if side.exists():
                    os.replace(side, aside.with_name(aside.name + suffix))
            conn = _connect(path, synchronous, wal_bound_bytes)
        except (OSError, sqlite3.Error) as exc2:
            raise OutboxError(f"{path}: cannot recover the outbox: {exc2}") from exc2
        return conn, True
