"""How often the outbox asks the filesystem for free space (issue #17: a ``statvfs`` per message was a few percent of
the daemon's CPU at 100 frames/s).  :class:`edge.publish.disk_space.DiskSpace` with the real SQLite connection of a
real :class:`edge.publish.outbox.Outbox`, ``os.statvfs`` counted (the real one, or a filesystem of a chosen size),
and a clock the test advances (no timing in the assertions).

With far more room than the headroom the filesystem is asked once per ``RECHECK_S`` or once half of that room could
have been used; when space is short, for every message, as before; a full disk (the reserve released) makes the
next message ask again at once.
"""

from __future__ import annotations

import os
import shutil
import sqlite3
import types
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.publish import disk_space
from edge.publish.disk_space import FAR_ABOVE_HEADROOM_BYTES, RECHECK_S, DiskSpace
from edge.publish.log_limit import LogLimiter
from edge.publish.outbox import Outbox

MESSAGE_BYTES = 900


class Clock:
    def __init__(self) -> None:
        self.now_s = 100.0

    def __call__(self) -> float:
        return self.now_s


class Statvfs:
    """``os.statvfs`` counted; ``free_bytes`` set: a filesystem with that much free (None: the real answer)."""

    def __init__(self, real: object) -> None:
        self.real = real
        self.calls = 0
        self.free_bytes: int | None = None

    def __call__(self, path: object) -> object:
        self.calls += 1
        if self.free_bytes is None:
            return self.real(path)  # type: ignore[operator]  # the real os.statvfs
        return types.SimpleNamespace(f_bavail=self.free_bytes // 4096, f_frsize=4096, f_blocks=1 << 30)


@pytest.fixture
def outbox(tmp_path: Path) -> Iterator[Outbox]:
    ob = Outbox(tmp_path / "outbox.sqlite")
    try:
        yield ob
    finally:
        ob.close()


@pytest.fixture
def statvfs(monkeypatch: pytest.MonkeyPatch) -> Statvfs:
    counted = Statvfs(os.statvfs)
    monkeypatch.setattr(disk_space.os, "statvfs", counted)
    return counted


def _disk(outbox: Outbox, clock: Clock) -> tuple[DiskSpace, sqlite3.Connection, int]:
    conn = outbox._conn  # the outbox's own connection: has_room reads its free pages when space is short
    page = int(conn.execute("PRAGMA page_size").fetchone()[0])
    return DiskSpace(outbox.path, LogLimiter(60.0, clock), clock), conn, page


def test_a_roomy_disk_is_asked_once_per_recheck_interval(outbox: Outbox, statvfs: Statvfs) -> None:
    clock = Clock()
    disk, conn, page = _disk(outbox, clock)
    if (shutil.disk_usage(outbox.path.parent).free - disk.headroom_bytes) < 4 * FAR_ABOVE_HEADROOM_BYTES:
        pytest.skip("the temporary directory's filesystem has too little room for this test")
    statvfs.calls = 0
    assert all(disk.has_room(conn, page, MESSAGE_BYTES) for _ in range(1000))
    assert statvfs.calls == 1, f"expected one statvfs for 1000 messages within {RECHECK_S} s, got {statvfs.calls}"
    clock.now_s += RECHECK_S
    assert disk.has_room(conn, page, MESSAGE_BYTES)
    assert statvfs.calls == 2, f"expected a second statvfs after {RECHECK_S} s, got {statvfs.calls}"


def test_the_room_the_messages_could_use_bounds_the_wait(outbox: Outbox, statvfs: Statvfs) -> None:
    clock = Clock()
    disk, conn, page = _disk(outbox, clock)
    statvfs.free_bytes = disk.headroom_bytes + FAR_ABOVE_HEADROOM_BYTES
    size = 1024 * 1024
    cheap = (FAR_ABOVE_HEADROOM_BYTES // 2) // (2 * size + page)  # charged against half the room above headroom
    statvfs.calls = 0
    for _ in range(1 + cheap):
        assert disk.has_room(conn, page, size)
    assert statvfs.calls == 1, f"expected one statvfs for the first {1 + cheap} messages, got {statvfs.calls}"
    assert disk.has_room(conn, page, size)
    assert statvfs.calls == 2, "expected a statvfs once half of the room could have been used"


def test_a_disk_short_of_room_is_asked_for_every_message(outbox: Outbox, statvfs: Statvfs) -> None:
    clock = Clock()
    disk, conn, page = _disk(outbox, clock)
    statvfs.free_bytes = disk.headroom_bytes + FAR_ABOVE_HEADROOM_BYTES - 4096
    statvfs.calls = 0
    for _ in range(50):
        assert disk.has_room(conn, page, MESSAGE_BYTES)
    assert statvfs.calls == 50, f"expected a statvfs per message below the margin, got {statvfs.calls}"
    statvfs.free_bytes = 0  # below the headroom: the answer comes from the database's free pages
    assert not disk.has_room(conn, page, MESSAGE_BYTES)
    assert statvfs.calls == 51


def test_a_full_disk_makes_the_next_message_ask_again(outbox: Outbox, statvfs: Statvfs) -> None:
    clock = Clock()
    disk, conn, page = _disk(outbox, clock)
    statvfs.free_bytes = disk.headroom_bytes + 4 * FAR_ABOVE_HEADROOM_BYTES
    assert disk.has_room(conn, page, MESSAGE_BYTES)
    statvfs.free_bytes = 0  # another writer filled the disk; SQLite said so and the outbox released the reserve
    disk.release_reserve()
    statvfs.calls = 0
    assert not disk.has_room(conn, page, MESSAGE_BYTES)
    assert statvfs.calls == 1
