"""Durable store-and-forward outbox: every outgoing MQTT message is committed to SQLite (WAL) before it is sent.

API (stable; :mod:`edge.publish.mqtt` drains it, the daemon only needs :meth:`Outbox.from_config` and
:meth:`Outbox.stats`)::

    ob = Outbox(path, max_messages=..., max_bytes=..., full_policy="drop_oldest", synchronous="normal")
    ob = Outbox.from_config(cfg.outbox)
    ob.put(topic, payload: bytes, qos=1, retain=False, priority=Priority.NORMAL) -> int   # id, committed
    ob.put_many([(topic, payload, qos, retain, priority), ...]) -> list[int | OutboxError]  # one transaction
    ob.pending(limit=100, exclude=frozenset(), *, after_id=0, max_id=None) -> list[OutboxMessage]  # oldest first
    ob.ack(ids) -> int                      # delivered: deleted (call only once the broker acknowledged)
    len(ob), ob.last_id, ob.pending_bytes, ob.stats() -> OutboxStats, ob.full -> bool, ob.close()
    ob.marks.stage({name: value}); ob.marks.flush() -> bool; ob.marks.stored() -> dict  # .outbox_marks

Guarantees
----------
* **Crash safety.** ``put`` returns only after its transaction is committed to the write-ahead log; a process
  crash (``kill -9``) at any moment loses nothing that was committed and never corrupts the database
  (``synchronous="normal"``).  ``synchronous="full"`` also survives a power cut, at one fsync per message.
  :meth:`put_many` commits a batch in one transaction: a crash before it returns loses the whole batch (none of
  it was committed, none of it was reported stored), never part of what it reported.
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
* **Disk full.** The disk is a bound like the others, and the policy holds on it too.  The write-ahead log is
  bounded to 1/64 of the filesystem (64 KiB to 4 MiB: ``wal_autocheckpoint`` and ``journal_size_limit``), so it is
  checkpointed and its file reused instead of filling a small disk.  Below a headroom of free space (three WAL
  bounds) the database stops growing: a new message must fit in pages freed by delivered or evicted messages,
  so ``drop_oldest`` evicts the oldest 10 % of the messages it may evict (same priority rule as above), in
  transactions of half a WAL bound each (a deleted message's page is written to the WAL), and ``refuse_new``
  refuses the new message.  A reserve file ``<outbox>-reserve`` (two WAL bounds, preallocated) is released
  when the disk fills up anyway (another writer): it gives a checkpoint, an eviction and an :meth:`ack` the room
  a delete needs, and it is re-created (after an incremental vacuum if need be) once there is room; ``refuse_new``
  never spends it on new messages, so a backlog can always be delivered.  ``sqlite3.OperationalError``
  ("database or disk is full", I/O errors) never escapes: a message the policy or the disk refuses makes
  :meth:`put` raise :class:`OutboxError` (counted as ``store_errors``, ``full`` raised).  The publisher then
  sends the message live without durability (see :mod:`edge.publish.mqtt`), so live data keeps flowing.  Evictions,
  refusals and reserve releases log at most one line per kind a minute (LOG_INTERVAL_S), with counts.
  The disk bounds and the reserve file are :mod:`edge.publish.disk_space`; opening the database (and moving an
  unreadable file aside) is :mod:`edge.publish.outbox_db`; the records it returns (:class:`OutboxMessage`,
  :class:`OutboxStats`) and :class:`OutboxFullError` are :mod:`edge.publish.outbox_records` (re-exported here).
* **Marks.** Small named values a thread stages (:attr:`Outbox.marks`) are written in the transaction of the next
  message that thread commits, never before it (:mod:`edge.publish.outbox_marks`).
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
from collections.abc import Callable, Iterable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from edge.errors import OutboxError
from edge.publish.disk_space import DiskSpace, checkpoint, vacuum_pages
from edge.publish.log_limit import LOG_INTERVAL_S, LogLimiter
from edge.publish.messages import Priority
from edge.publish.outbox_db import is_disk_full, open_database
from edge.publish.outbox_marks import OutboxMarks
from edge.publish.outbox_records import OutboxFullError, OutboxMessage, OutboxStats, checked_message

if TYPE_CHECKING:
    from edge.config import OutboxConfig

__all__ = ["Outbox", "OutboxMessage", "OutboxStats", "OutboxFullError", "FULL_POLICIES", "CLEAR_FRACTION"]

log = logging.getLogger(__name__)

#: Policies when the outbox is full (see the module docstring).
FULL_POLICIES = ("drop_oldest", "refuse_new")
#: The ``full`` alert clears when both message count and bytes fall below this fraction of their bounds.
CLEAR_FRACTION = 0.9
#: On "disk full" (policy drop_oldest) this fraction of the messages that may be evicted, at least
#: DISK_FULL_EVICT_MIN, is evicted before retrying, up to DISK_FULL_RETRIES times.
DISK_FULL_EVICT_FRACTION = 0.1
DISK_FULL_EVICT_MIN = 8
DISK_FULL_RETRIES = 3
#: After a full disk the alert clears when the stored bytes fall below this fraction of the level it filled at.
DISK_FULL_CLEAR_FRACTION = 0.8


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
        #: clock of the log rate limit (tests may replace it)
        self._clock: Callable[[], float] = time.monotonic
        self._logs = LogLimiter(LOG_INTERVAL_S, lambda: self._clock())
        self._disk = DiskSpace(self.path, self._logs)
        self._conn, recovered = open_database(self.path, self._synchronous, self._disk.wal_bound_bytes)
        self._recovered_corrupt += int(recovered)
        self._page_size = int(self._conn.execute("PRAGMA page_size").fetchone()[0])
        #: Small named values committed with the next message of the thread that staged them (:mod:`.outbox_marks`).
        self.marks = OutboxMarks(self._conn, self._lock, self._check_open, self._logs)
        self._disk.held = self._disk.make_reserve()
        if not self._disk.held:
            log.warning("outbox %s: no room for its %d-byte disk reserve (%s bytes free); a full disk may stop "
                        "evictions until there is room", self.path, self._disk.reserve_bytes, self._disk.free_bytes())
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

    def close(self) -> None:
        """Checkpoint and close the database (the disk reserve file stays for the next open); further calls raise
        OutboxError."""
        with self._lock:
            if self._closed:
                return
            self.marks.flush_locked()
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
        blob, size = checked_message(topic, payload, qos)
        prio = Priority(priority)
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
            if not self._disk.has_room(self._conn, self._page_size, size):
                # The filesystem is down to its headroom: the database must not grow, so the message needs pages
                # of evicted (or delivered) messages.  drop_oldest evicts; refuse_new keeps the backlog.
                self._note_disk_full()
                if self.full_policy == "refuse_new" or not self._evict_for_disk(prio):
                    raise self._store_error(
                        f"disk nearly full ({self._disk.free_bytes()} bytes free, {self._disk.headroom_bytes} kept "
                        f"for the "
                        f"write-ahead log); policy {self.full_policy} refused a {prio.name.lower()}-priority "
                        "message")
            try:
                msg_id = self._insert(topic, blob, qos, retain, prio, size)
            except sqlite3.Error as exc:
                msg_id = self._insert_on_full_disk(exc, topic, blob, qos, retain, prio, size)
            self._stored += 1
            if not self._disk.held:
                self._disk.restore_reserve(self._conn, self._page_size)
            self._update_full_flag()
            return msg_id

    def put_many(
        self, messages: Sequence[tuple[str, bytes, int, bool, Priority | int]],
    ) -> list[int | OutboxError]:
        """Commit several messages, in order, in one transaction when they fit; return each one's id or the error
        that refused it (what :meth:`put` would have raised).

        The batch is one transaction when it fits within the bounds and the disk's headroom as a whole (one
        commit instead of one per message: what lets the daemon store thousands of predictions a second).
        Otherwise, or when that transaction fails, each message goes through :meth:`put` in turn, so evictions,
        refusals and a full disk are handled and counted exactly as for single messages.

        Parameters
        ----------
        messages : sequence of (topic, payload, qos, retain, priority)

        Raises
        ------
        ValueError, TypeError
            Caller mistakes, as :meth:`put` (checked for every message before anything is written).
        """
        rows: list[tuple[str, bytes, int, int, int, int]] = []
        for topic, payload, qos, retain, priority in messages:
            blob, size = checked_message(topic, payload, qos)
            rows.append((topic, blob, qos, int(bool(retain)), int(Priority(priority)), size))
        if not rows:
            return []
        with self._lock:
            self._check_open()
            total = sum(r[5] for r in rows)
            fits = (self._count + len(rows) <= self.max_messages and self._bytes + total <= self.max_bytes
                    and self._disk.has_room(self._conn, self._page_size, total))
            if fits:
                ids = self._insert_many(rows)
                if ids is not None:
                    self._stored += len(ids)
                    if not self._disk.held:
                        self._disk.restore_reserve(self._conn, self._page_size)
                    self._update_full_flag()
                    return list(ids)
        out: list[int | OutboxError] = []
        for topic, blob, qos, retain_flag, prio, _size in rows:
            try:
                out.append(self.put(topic, blob, qos, bool(retain_flag), prio))
            except OutboxError as exc:
                out.append(exc)
        return out

    def _insert_many(self, rows: list[tuple[str, bytes, int, int, int, int]]) -> list[int] | None:
        """Insert ``rows`` in one transaction; their ids, or None (rolled back, nothing counted) on any error."""
        now = time.time()
        ids: list[int] = []
        due = self.marks.due()  # staged by this thread: committed with these messages
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for topic, blob, qos, retain, prio, size in rows:
                cur = self._conn.execute(
                    "INSERT INTO messages (topic, payload, qos, retain, priority, created_unix_s, size_bytes) "
                    "VALUES (?, ?, ?, ?, ?, ?, ?)", (topic, blob, qos, retain, prio, now, size))
                ids.append(int(cur.lastrowid or 0))
            if due:
                self.marks.write(due)
            self._conn.execute("COMMIT")
        except sqlite3.Error as exc:
            self._rollback()
            log.debug("outbox batch of %d not committed (%s); storing its messages one by one", len(rows), exc)
            return None
        self._count += len(rows)
        self._bytes += sum(r[5] for r in rows)
        self._last_id = ids[-1]
        self.marks.written(due)
        return ids

    def _insert_on_full_disk(self, exc: sqlite3.Error, topic: str, blob: bytes, qos: int, retain: bool,
                             prio: Priority, size: int) -> int:
        """The insert failed: with drop_oldest on a full disk, release the reserve, checkpoint, evict and retry;
        otherwise (or when that fails too) count a store error and raise OutboxError."""
        if is_disk_full(exc):
            self._note_disk_full()
        if is_disk_full(exc) and self.full_policy == "drop_oldest":
            # refuse_new never spends the reserve on new messages: it is what lets ack() delete the backlog.
            self._disk.release_reserve()
            checkpoint(self._conn)
            for _attempt in range(DISK_FULL_RETRIES):
                if not self._evict_for_disk(prio):
                    break
                checkpoint(self._conn)
                try:
                    return self._insert(topic, blob, qos, retain, prio, size)
                except sqlite3.Error as exc2:
                    exc = exc2
                    if not is_disk_full(exc2):
                        break
        raise self._store_error(f"cannot store the message: {exc}") from exc

    def _store_error(self, reason: str) -> OutboxError:
        """Count a message the disk could not take, log it (rate-limited) and return the error to raise."""
        self._store_errors += 1
        self._full = True
        due = self._logs.event("store_error")
        if due is not None:
            log.error("outbox %s cannot store messages: %s (%d message(s) not stored since the last report, "
                      "%d in all)", self.path, reason, due[0], self._store_errors)
        return OutboxError(f"{self.path}: {reason}")

    def _note_disk_full(self) -> None:
        self._full = True
        self._disk_full_at_bytes = max(self._disk_full_at_bytes, self._bytes)

    def _evict_for_disk(self, prio: Priority) -> bool:
        """Evict the oldest DISK_FULL_EVICT_FRACTION of the messages (at least DISK_FULL_EVICT_MIN) that a message
        of priority ``prio`` may evict; True if any were."""
        batch = max(DISK_FULL_EVICT_MIN, int(self._count * DISK_FULL_EVICT_FRACTION))
        return self._evict(prio, batch, 0, partial_ok=True)

    def _insert(self, topic: str, blob: bytes, qos: int, retain: bool, prio: Priority, size: int) -> int:
        due = self.marks.due()  # staged by this thread: committed with this message
        try:
            if due:
                self._conn.execute("BEGIN IMMEDIATE")
            cur = self._conn.execute(
                "INSERT INTO messages (topic, payload, qos, retain, priority, created_unix_s, size_bytes) "
                "VALUES (?, ?, ?, ?, ?, ?, ?)", (topic, blob, qos, int(bool(retain)), int(prio), time.time(), size))
            if due:
                self.marks.write(due)
                self._conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            raise
        self.marks.written(due)
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
        """Delete the oldest messages of priority <= ``prio`` (lowest first) to free room; True if enough.

        A deleted message's page is written to the WAL, so the victims go in transactions of at most half the WAL
        bound each: the WAL is checkpointed and reused between them instead of growing by all they held."""
        picked_msgs = picked_bytes = 0
        victims: list[tuple[int, int]] = []
        rows = self._conn.execute(
            "SELECT id, size_bytes FROM messages WHERE priority <= ? ORDER BY priority, id", (int(prio),))
        for msg_id, size in rows:
            if picked_msgs >= need_msgs and picked_bytes >= need_bytes:
                break
            victims.append((int(msg_id), int(size)))
            picked_msgs += 1
            picked_bytes += int(size)
        rows.close()
        enough = picked_msgs >= need_msgs and picked_bytes >= need_bytes
        if not victims or (not enough and not partial_ok):
            return False
        freed_msgs = freed_bytes = 0
        chunk: list[int] = []
        chunk_bytes = 0
        for i, (msg_id, size) in enumerate(victims):
            chunk.append(msg_id)
            chunk_bytes += size + self._page_size // 8
            if chunk_bytes < self._disk.wal_bound_bytes // 2 and i + 1 < len(victims):
                continue
            try:
                n, nbytes = self._delete_on_any_disk(chunk)
            except sqlite3.Error as exc:
                due = self._logs.event("evict_error")
                if due is not None:
                    log.error("outbox %s: eviction failed: %s (%d failure(s) since the last report)", self.path,
                              exc, due[0])
                break
            freed_msgs += n
            freed_bytes += nbytes
            chunk, chunk_bytes = [], 0
        if freed_msgs == 0:
            return False
        self._count -= freed_msgs
        self._bytes -= freed_bytes
        self._evicted += freed_msgs
        due = self._logs.event("evicted", freed_msgs)
        if due is not None:
            log.warning("outbox full: evicted the oldest messages (priority <= %s): %d message(s) in %d eviction(s) "
                        "since the last report, %d in all; %d messages, %d bytes kept",
                        prio.name.lower(), due[1], due[0], self._evicted, self._count, self._bytes)
        return partial_ok or (freed_msgs >= need_msgs and freed_bytes >= need_bytes)

    def _delete(self, ids: list[int]) -> tuple[int, int]:
        """Delete ``ids`` in one transaction; return (messages, bytes) that were stored."""
        removed = removed_bytes = 0
        try:
            self._conn.execute("BEGIN IMMEDIATE")
            for start in range(0, len(ids), 500):
                chunk = ids[start:start + 500]
                marks = ",".join("?" * len(chunk))
                n, nbytes = self._conn.execute(
                    f"SELECT COUNT(*), COALESCE(SUM(size_bytes), 0) FROM messages WHERE id IN ({marks})",
                    chunk).fetchone()
                self._conn.execute(f"DELETE FROM messages WHERE id IN ({marks})", chunk)
                removed += int(n)
                removed_bytes += int(nbytes)
            self._conn.execute("COMMIT")
        except sqlite3.Error:
            self._rollback()
            raise
        return removed, removed_bytes

    def _delete_on_any_disk(self, ids: list[int]) -> tuple[int, int]:
        """:meth:`_delete`, and on a full disk release the reserve, checkpoint and try once more: a delete needs
        room in the write-ahead log, and the reserve is kept for exactly this."""
        try:
            return self._delete(ids)
        except sqlite3.Error as exc:
            if not is_disk_full(exc):
                raise
            self._note_disk_full()
            self._disk.release_reserve()
            checkpoint(self._conn)
            return self._delete(ids)

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
                removed, removed_bytes = self._delete_on_any_disk([int(i) for i in id_list])
            except sqlite3.Error as exc:
                raise OutboxError(f"{self.path}: cannot mark messages delivered: {exc}") from exc
            self._count -= removed
            self._bytes -= removed_bytes
            self._delivered += removed
            self._update_full_flag()
            if self._count == 0:
                self._shrink()
            if not self._disk.held:
                self._disk.restore_reserve(self._conn, self._page_size)
            return removed

    def _shrink(self) -> None:
        """The outbox is empty: give its free pages back to the filesystem, in steps of half the WAL bound with a
        checkpoint after each (a moved page is written to the WAL), until at most 1024 are left."""
        step = max(1, self._disk.wal_bound_bytes // (2 * self._page_size))
        try:
            for _ in range(1 << 16):
                free = int(self._conn.execute("PRAGMA freelist_count").fetchone()[0])
                if free <= 1024:
                    break
                vacuum_pages(self._conn, min(free - 1024, step))
                checkpoint(self._conn)
        except sqlite3.Error as exc:  # best effort: a full disk, say
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
