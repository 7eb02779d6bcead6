"""Durable store-and-forward outbox: every outgoing MQTT message is committed to SQLite (WAL) before it is sent.

API (stable; :mod:`edge.mqtt` drains it, the daemon only needs :meth:`Outbox.from_config` and :meth:`Outbox.stats`)::

    ob = Outbox(path, max_messages=..., max_bytes=..., full_policy="drop_oldest", synchronous="normal")
    ob = Outbox.from_config(cfg.outbox)
    ob.put(topic, payload: bytes, qos=1, retain=False, priority=Priority.NORMAL) -> int   # id, committed
    ob.pending(limit=100, exclude=frozenset(), *, after_id=0, max_id=None) -> list[OutboxMessage]  # oldest first
    ob.ack(ids) -> int                      # delivered: deleted (call only once the broker acknowledged)
    len(ob), ob.last_id, ob.pending_bytes, ob.stats() -> OutboxStats, ob.full -> bool, ob.close()

Guarantees
----------
* **Crash safety.** ``put`` returns only after its transaction is committed to the write-ahead log; a process
  crash (``kill -9``) at any moment loses nothing that was committed and never corrupts the database
  (``synchronous="normal"``).  ``synchronous="full"`` also survives a power cut, at one fsync per message.
* **Order.** Ids increase with insertion; :meth:`pending` returns the oldest first, so a backlog replays in the
  order it was produced.  A message is removed only by :meth:`ack`, which the publisher calls when the broker
  acknowledged it (PUBACK for QoS 1, PUBCOMP for QoS 2, the socket write for QoS 0); anything unacknowledged
  at a crash is sent again after the restart (at-least-once: subscribers deduplicate on ``seq``).
* **Bound and policy when full.** The outbox holds at most ``max_messages`` messages and ``max_bytes`` bytes
  of topic+payload.  With ``full_policy="drop_oldest"`` (default) a message that does not fit evicts the oldest
  messages of the lowest priority first (metrics, then predictions), but never a message of higher priority
  than itself: a metrics message may evict only older metrics, a prediction older metrics and predictions,
  a drift alert, status or command response anything (oldest and lowest first).
  When nothing may be evicted, or with ``full_policy="refuse_new"`` (keep the backlog, refuse new
  messages), :meth:`put` raises :class:`OutboxFullError`.  Every eviction and refusal is counted and raises
  the :attr:`full` alert flag, which clears when usage falls below 90 % of both bounds (and, after a full disk,
  below 80 % of the bytes stored when the disk filled up).
* **Disk full.** ``sqlite3.OperationalError`` ("database or disk is full", I/O errors) never escapes: with
  ``drop_oldest`` the outbox evicts the oldest 10 % of the messages it may evict (same rule as above), whose
  pages SQLite reuses, and retries (up to three times); otherwise :meth:`put` raises :class:`OutboxError` (counted as ``store_errors``, ``full`` raised).  The
  publisher then sends the message live without durability (see :mod:`edge.mqtt`), so live data keeps flowing.
* **One process.** The database is opened in exclusive locking mode: a second daemon on the same file gets a
  clear :class:`OutboxError` instead of sending every message twice.  A file that is not a database is moved
  aside (``<name>.corrupt-<unix time>``) and a fresh outbox is started, counted as ``recovered_corrupt``.

Why hand-written: no maintained library offers a small, durable, size-bounded, priority-aware MQTT outbox;
the standard library's ``sqlite3`` does the hard part.
"""

from __future__ import annotations

import logging
import os
import sqlite3
import threading
import time
from collections.abc import Iterable
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import OutboxError
from edge.messages import Priority

if TYPE_CHECKING:
    from edge.config import OutboxConfig

__all__ = ["Outbox", "OutboxMessage", "OutboxStats", "OutboxFullError", "FULL_POLICIES", "CLEAR_FRACTION"]

log = logging.getLogger(__name__)

#: Policies when the outbox is full (see the module docstring).
FULL_POLICIES = ("drop_oldest", "refuse_new")
#: The ``full`` alert clears when both message count and bytes fall below this fraction of their bounds.
CLEAR_FRACTION = 0.9
#: On "disk full" (policy drop_oldest) this fraction of the stored messages, at least DISK_FULL_EVICT_MIN, is
#: evicted before retrying, up to DISK_FULL_RETRIES times.
DISK_FULL_EVICT_FRACTION = 0.1
DISK_FULL_EVICT_MIN = 8
DISK_FULL_RETRIES = 3
#: After a full disk the alert clears when the stored bytes fall below this fraction of the level it filled at.
DISK_FULL_CLEAR_FRACTION = 0.8

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
"""


class OutboxFullError(OutboxError):
    """The outbox is at its bound and the policy refuses the new message."""


@dataclass(frozen=True)
class OutboxMessage:
    """One stored message, as returned by :meth:`Outbox.pending`."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    priority: Priority
    created_unix_s: float


@dataclass(frozen=True)
class OutboxStats:
    """Counters since this process opened the outbox, and the current backlog."""

    pending_messages: int
    pending_bytes: int
    max_messages: int
    max_bytes: int
    full: bool  #: alert flag: evicting/refusing or disk full, until usage is back below CLEAR_FRACTION
    stored: int  #: messages committed by put
    delivered: int  #: messages removed by ack
    evicted: int  #: messages dropped to make room (policy drop_oldest)
    refused: int  #: puts refused because the outbox was full
    store_errors: int  #: puts that failed on the disk (full, I/O error)
    recovered_corrupt: int  #: unreadable database files moved aside at open


def _is_disk_full(exc: sqlite3.Error) -> bool:
    code = getattr(exc, "sqlite_errorcode", None)
    return code == sqlite3.SQLITE_FULL if code is not None else "full" in str(exc).lower()


class Outbox:
    """Durable, bounded, ordered message store (thread-safe; one connection guarded by a lock).

    Parameters
    ----------
    path : path-like
        SQLite database file (created with its directory if missing).
    max_messages, max_bytes : int
        Bounds on the stored messages and on their topic+payload bytes.
    full_policy : {'drop_oldest', 'refuse_new'}
        What a message that does not fit does (see the module docstring).
    synchronous : {'normal', 'full'}
        SQLite durability: 'normal' survives process crashes, 'full' also power loss.
    """

    def __init__(
        self,
        path: str | os.PathLike[str],
        *,
        max_messages: int = 1_000_000,
        max_bytes: int = 256 * 1024 * 1024,
        full_policy: str = "drop_oldest",
        synchronous: str = "normal",
    ) -> None:
        if full_policy not in FULL_POLICIES:
            raise ValueError(f"full_policy: expected one of {FULL_POLICIES}, got {full_policy!r}")
        if synchronous not in ("normal", "full"):
            raise ValueError(f"synchronous: expected 'normal' or 'full', got {synchronous!r}")
        if max_messages < 1 or max_bytes < 1:
            raise ValueError(f"expected positive bounds, got max_messages={max_messages}, max_bytes={max_bytes}")
        self.path = Path(path)
        self.max_messages = int(max_messages)
        self.max_bytes = int(max_bytes)
        self.full_policy = full_policy
        self._synchronous = synchronous.upper()
        self._lock = threading.RLock()
        self._stored = self._delivered = self._evicted = self._refused = self._store_errors = 0
        self._recovered_corrupt = 0
        self._full = False
        self._disk_full_at_bytes = 0  # stored bytes when the disk last filled up (0: not full)
        self._closed = False
        self._conn = self._open()
        row = self._conn.execute("SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM messages").fetchone()
        self._count, self._bytes = int(row[0]), int(row[1])
        seq = self._conn.execute("SELECT seq FROM sqlite_sequence WHERE name = 'messages'").fetchone()
        self._last_id = int(seq[0]) if seq is not None else 0

    @classmethod
    def from_config(cls, cfg: OutboxConfig) -> Outbox:
        """Open the outbox described by the ``[outbox]`` section."""
        return cls(cfg.path, max_messages=cfg.max_messages, max_bytes=cfg.max_bytes,
                   full_policy=cfg.full_policy, synchronous=cfg.synchronous)

    # ------------------------------------------------------------------------------------------ open/close

    def _connect(self) -> sqlite3.Connection:
        conn = sqlite3.connect(str(self.path), isolation_level=None, check_same_thread=False, timeout=1.0)
        try:
            conn.execute("PRAGMA locking_mode=EXCLUSIVE")
            conn.execute("PRAGMA auto_vacuum=INCREMENTAL")  # effective only on a new database
            mode = conn.execute("PRAGMA journal_mode=WAL").fetchone()[0]
            if str(mode).lower() != "wal":
                raise OutboxError(f"{self.path}: expected SQLite WAL journal mode, got {mode!r}")
            conn.execute(f"PRAGMA synchronous={self._synchronous}")
            conn.executescript(_SCHEMA)
            check = conn.execute("PRAGMA quick_check").fetchone()[0]
            if check != "ok":
                raise sqlite3.DatabaseError(f"quick_check: {check}")
        except BaseException:
            conn.close()
            raise
        return conn

    def _open(self) -> sqlite3.Connection:
        try:
            self.path.parent.mkdir(parents=True, exist_ok=True)
        except OSError as exc:
            raise OutboxError(f"{self.path.parent}: cannot create the outbox directory: {exc}") from exc
        try:
            return self._connect()
        except OutboxError:
            raise
        except sqlite3.OperationalError as exc:
            if "locked" in str(exc).lower():
                raise OutboxError(f"{self.path}: outbox is in use by another process ({exc})") from exc
            raise OutboxError(f"{self.path}: cannot open the outbox: {exc}") from exc
        except sqlite3.DatabaseError as exc:
            aside = self.path.with_name(f"{self.path.name}.corrupt-{int(time.time())}")
            log.error("outbox %s is unreadable (%s); moved aside to %s, starting a fresh outbox",
                      self.path, exc, aside.name)
            try:
                os.replace(self.path, aside)
                for suffix in ("-wal", "-shm"):
                    side = self.path.with_name(self.path.name + suffix)
                    if side.exists():
                        os.replace(side, aside.with_name(aside.name + suffix))
                conn = self._connect()
            except (OSError, sqlite3.Error) as exc2:
                raise OutboxError(f"{self.path}: cannot recover the outbox: {exc2}") from exc2
            self._recovered_corrupt += 1
            return conn

    def close(self) -> None:
        """Checkpoint and close the database; further calls raise OutboxError."""
        with self._lock:
            if self._closed:
                return
            self._closed = True
            try:
                self._conn.execute("PRAGMA wal_checkpoint(TRUNCATE)")
            except sqlite3.Error as exc:  # pragma: no cover - best effort on a failing disk
                log.warning("outbox checkpoint at close failed: %s", exc)
            self._conn.close()

    def __enter__(self) -> Outbox:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()

    def _check_open(self) -> None:
        if self._closed:
            raise OutboxError(f"{self.path}: outbox is closed")

    # ------------------------------------------------------------------------------------------------ put

    def put(self, topic: str, payload: bytes, qos: int = 1, retain: bool = False,
            priority: Priority | int = Priority.NORMAL) -> int:
        """Commit one message and return its id (ids increase with insertion order).

        Raises
        ------
        ValueError, TypeError
            Caller mistakes: qos not in 0..2 or an empty topic (ValueError), a payload that is not bytes (TypeError).
        OutboxFullError
            The bound is reached and the policy refuses the message (counted in ``refused``).
        OutboxError
            The disk refused the write (counted in ``store_errors``).
        """
        if qos not in (0, 1, 2):
            raise ValueError(f"qos: expected 0, 1 or 2, got {qos!r}")
        if not isinstance(payload, (bytes, bytearray, memoryview)):
            raise TypeError(f"payload: expected bytes, got {type(payload).__name__}")
        if not topic:
            raise ValueError("topic: expected a non-empty topic, got ''")
        prio = Priority(priority)
        blob = bytes(payload)
        size = len(topic.encode("utf-8")) + len(blob)
        with self._lock:
            self._check_open()
            if size > self.max_bytes:
                self._refused += 1
                self._full = True
                raise OutboxFullError(f"message of {size} bytes exceeds outbox.max_bytes ({self.max_bytes})")
            need_msgs = self._count + 1 - self.max_messages
            need_bytes = self._bytes + size - self.max_bytes
            if need_msgs > 0 or need_bytes > 0:
                self._full = True
                if self.full_policy == "refuse_new" or not self._evict(prio, need_msgs, need_bytes):
                    self._refused += 1
                    raise OutboxFullError(
                        f"outbox full ({self._count} messages, {self._bytes} bytes; bounds "
                        f"{self.max_messages}, {self.max_bytes}); policy {self.full_policy} refused a "
                        f"{prio.name.lower()}-priority message")
            try:
                msg_id = self._insert(topic, blob, qos, retain, prio, size)
            except sqlite3.Error as exc:
                retried = False
                if _is_disk_full(exc):
                    self._full = True
                    self._disk_full_at_bytes = max(self._disk_full_at_bytes, self._bytes)
                if _is_disk_full(exc) and self.full_policy == "drop_oldest":
                    for _attempt in range(DISK_FULL_RETRIES):
                        batch = max(DISK_FULL_EVICT_MIN, int(self._count * DISK_FULL_EVICT_FRACTION))
                        if not self._evict(prio, batch, 0, partial_ok=True):
                            break
                        try:
                            msg_id = self._insert(topic, blob, qos, retain, prio, size)
                        except sqlite3.Error as exc2:
                            exc = exc2
                            continue
                        retried = True
                        break
                if not retried:
                    self._store_errors += 1
                    self._full = True
                    raise OutboxError(f"{self.path}: cannot store the message: {exc}") from exc
            self._stored += 1
            self._update_full_flag()
            return msg_id

    def _insert(self, topic: str, blob: bytes, qos: int, retain: bool, prio: Priority, size: int) -> int:
        try:
            cur = self._conn.execute(
                "INSERT INTO messages (topic, payload, qos, retain, priority, created_unix_s, size_bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (topic, blob, qos, int(bool(retain)), int(prio), time.time(), size))
        except sqlite3.Error:
            self._rollback()
            raise
        self._count += 1
        self._bytes += size
        self._last_id = int(cur.lastrowid or 0)
        return self._last_id

    def _rollback(self) -> None:
        if self._conn.in_transaction:
            try:
                self._conn.execute("ROLLBACK")
            except sqlite3.Error:  # pragma: no cover
                pass

    def _evict(self, prio: Priority, need_msgs: int, need_bytes: int, *, partial_ok: bool = False) -> bool:
        """Delete the oldest messages of priority <= ``prio`` (lowest first) to free room; True if enough."""
        freed_msgs = freed_bytes = 0
        victims: list[int] = []
        rows = self._conn.execute(
            "SELECT id, size_bytes FROM messages WHERE priority <= ? ORDER BY priority, id", (int(prio),))
        for msg_id, size in rows:
            if freed_msgs >= need_msgs and freed_bytes >= need_bytes:
                break
            victims.append(int(msg_id))
            freed_msgs += 1
            freed_bytes += int(size)
        rows.close()
        enough = freed_msgs >= need_msgs and freed_bytes >= need_bytes
        if not victims or (not enough and not partial_ok):
            return False
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            self._conn.executemany("DELETE FROM messages WHERE id = ?", [(v,) for v in victims])
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            log.error("outbox eviction failed: %s", exc)
            return False
        self._count -= freed_msgs
        self._bytes -= freed_bytes
        self._evicted += freed_msgs
        log.warning("outbox full: evicted %d oldest messages (priority <= %s, %d bytes)",
                    freed_msgs, prio.name.lower(), freed_bytes)
        return True

    def _update_full_flag(self) -> None:
        """Clear the alert once usage is below CLEAR_FRACTION of the bounds (and DISK_FULL_CLEAR_FRACTION of the
        level the disk filled at)."""
        if self._disk_full_at_bytes and self._bytes <= DISK_FULL_CLEAR_FRACTION * self._disk_full_at_bytes:
            self._disk_full_at_bytes = 0
        if self._full and not self._disk_full_at_bytes and (
                self._count <= CLEAR_FRACTION * self.max_messages and self._bytes <= CLEAR_FRACTION * self.max_bytes):
            self._full = False

    # ---------------------------------------------------------------------------------------- read / ack

    def pending(self, limit: int = 100, exclude: Iterable[int] = frozenset(), *, after_id: int = 0,
                max_id: int | None = None) -> list[OutboxMessage]:
        """Return up to ``limit`` stored messages, oldest first, skipping the ids in ``exclude`` (in flight).

        ``after_id`` and ``max_id`` restrict the result to ``after_id < id <= max_id`` (the publisher keeps the
        backlog of an outage apart from live messages this way).

        Raises
        ------
        OutboxError
            The database cannot be read.
        """
        excluded = set(exclude)
        out: list[OutboxMessage] = []
        if limit <= 0:
            return out
        with self._lock:
            self._check_open()
            try:
                upper = max_id if max_id is not None else (1 << 62)
                cur = self._conn.execute(
                    "SELECT id, topic, payload, qos, retain, priority, created_unix_s FROM messages "
                    "WHERE id > ? AND id <= ? ORDER BY id LIMIT ?", (after_id, upper, limit + len(excluded)))
                for row in cur:
                    if row[0] in excluded:
                        continue
                    out.append(OutboxMessage(id=int(row[0]), topic=row[1], payload=bytes(row[2]), qos=int(row[3]),
                                             retain=bool(row[4]), priority=Priority(row[5]),
                                             created_unix_s=float(row[6])))
                    if len(out) >= limit:
                        break
                cur.close()
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: cannot read the outbox: {exc}") from exc
        return out

    def ack(self, ids: int | Iterable[int]) -> int:
        """Remove delivered messages (one transaction) and return how many were still stored.

        Unknown ids (already acknowledged, or evicted) are ignored.

        Raises
        ------
        OutboxError
            The database cannot be written; the caller keeps the ids and retries later.
        """
        id_list = [ids] if isinstance(ids, int) else list(ids)
        if not id_list:
            return 0
        with self._lock:
            self._check_open()
            try:
                self._conn.execute("BEGIN IMMEDIATE")
                removed = removed_bytes = 0
                for start in range(0, len(id_list), 500):
                    chunk = [int(i) for i in id_list[start:start + 500]]
                    marks = ",".join("?" * len(chunk))
                    n, nbytes = self._conn.execute(
                        f"SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM messages WHERE id IN ({marks})",
                        chunk).fetchone()
                    self._conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
                    removed += int(n)
                    removed_bytes += int(nbytes)
                self._conn.execute("COMMIT")
            except sqlite3.Error as exc:
                self._rollback()
                raise OutboxError(f"{self.path}: cannot mark messages delivered: {exc}") from exc
            self._count -= removed
            self._bytes -= removed_bytes
            self._delivered += removed
            self._update_full_flag()
            if self._count == 0:
                self._shrink()
            return removed

    def _shrink(self) -> None:
        try:
            free = self._conn.execute("PRAGMA freelist_count").fetchone()[0]
            if free > 1024:
                self._conn.execute("PRAGMA incremental_vacuum")
        except sqlite3.Error as exc:  # pragma: no cover - best effort
            log.debug("outbox incremental vacuum failed: %s", exc)

    # ----------------------------------------------------------------------------------------- inspection

    def __len__(self) -> int:
        with self._lock:
            return self._count

    @property
    def last_id(self) -> int:
        """Id of the most recently stored message (0 if none ever was); ids are never reused."""
        with self._lock:
            return self._last_id

    @property
    def pending_bytes(self) -> int:
        """Topic+payload bytes currently stored."""
        with self._lock:
            return self._bytes

    @property
    def full(self) -> bool:
        """Alert flag: the outbox evicted or refused messages, or the disk is full (see CLEAR_FRACTION)."""
        with self._lock:
            return self._full

    def stats(self) -> OutboxStats:
        """Snapshot of the backlog and of the counters."""
        with self._lock:
            return OutboxStats(
                pending_messages=self._count, pending_bytes=self._bytes, max_messages=self.max_messages,
                max_bytes=self.max_bytes, full=self._full, stored=self._stored, delivered=self._delivered,
                evicted=self._evicted, refused=self._refused, store_errors=self._store_errors,
                recovered_corrupt=self._recovered_corrupt)
