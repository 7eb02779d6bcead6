"""An emptied outbox gives its space back to the filesystem on every Python the edge runs on (#15, Python 3.10).

SQLite frees one page per step of ``PRAGMA incremental_vacuum``; ``sqlite3.Connection.execute`` steps a statement
that returns no rows once from Python 3.11 on (to its end on 3.10).  Through ``execute`` the outbox therefore gave
back a single page per attempt on 3.11 (a database that held a long outage's backlog kept its size for good) and
everything at once on 3.10 (writing every moved page to the WAL in one go, past the WAL's bound on a full disk:
tests/edge/test_outbox_disk_full.py failed on 3.10).  ``edge.publish.disk_space.vacuum_pages`` steps it to the end
on both; the outbox frees its pages in steps the WAL bound can hold.
"""

from __future__ import annotations

import sqlite3
from pathlib import Path

from edge.publish.disk_space import vacuum_pages
from edge.publish.outbox import Outbox

TOPIC = "spectrolite/plant-a/line-3/nir-01/prediction"
#: What the outbox keeps for reuse once empty (edge.publish.outbox.Outbox._shrink), pages.
KEPT_FREE_PAGES = 1024


def test_vacuum_pages_frees_as_many_pages_as_asked(tmp_path: Path) -> None:
    conn = sqlite3.connect(tmp_path / "db.sqlite", isolation_level=None)
    conn.execute("PRAGMA auto_vacuum=INCREMENTAL")
    conn.execute("CREATE TABLE t (x BLOB)")
    conn.executemany("INSERT INTO t VALUES (?)", [(b"x" * 1000,)] * 3000)
    conn.execute("DELETE FROM t")
    before = conn.execute("PRAGMA freelist_count").fetchone()[0]
    vacuum_pages(conn, 100)
    assert conn.execute("PRAGMA freelist_count").fetchone()[0] == before - 100
    conn.close()


def test_an_emptied_outbox_shrinks_its_database(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    payload = b"{" + b"0" * 800 + b"}"
    with Outbox(path) as ob:
        for _ in range(12):
            ob.put_many([(TOPIC, payload, 1, False, 1)] * 1000)
    full_bytes = path.stat().st_size
    with Outbox(path) as ob:
        page_size = 4096
        while batch := ob.pending(500):
            ob.ack([m.id for m in batch])
        assert len(ob) == 0
    emptied_bytes = path.stat().st_size
    assert full_bytes > 2 * (KEPT_FREE_PAGES + 64) * page_size, "expected a database larger than what is kept"
    assert emptied_bytes <= (KEPT_FREE_PAGES + 64) * page_size, (
        f"expected the emptied outbox to give its pages back ({full_bytes} bytes full), got {emptied_bytes} bytes")
