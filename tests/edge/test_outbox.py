"""Tests of edge.publish.outbox: order, acknowledgement, kill -9 safety, the size bound policy and a full disk."""

from __future__ import annotations

import os
import signal
import sqlite3
import subprocess
import sys
import textwrap
import threading
from pathlib import Path

import pytest

from edge.errors import OutboxError
from edge.publish.messages import Priority
from edge.publish.outbox import CLEAR_FRACTION, Outbox, OutboxFullError

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Messages a killed writer must have committed before it is killed (enough to kill it mid-stream).
KILL_AFTER_COMMITS = 300


def _topics(ob: Outbox) -> list[str]:
    return [m.topic for m in ob.pending(10_000)]


def test_put_pending_ack_keeps_order_and_survives_reopen(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    with Outbox(path) as ob:
        ids = [ob.put(f"t/{i}", f"p{i}".encode(), qos=i % 3, retain=i == 0) for i in range(10)]
        assert ids == sorted(ids) and len(set(ids)) == 10
        first = ob.pending(3)
        assert [m.id for m in first] == ids[:3]
        assert first[0].payload == b"p0" and first[0].retain is True and first[1].qos == 1
        assert [m.id for m in ob.pending(3, exclude=set(ids[:2]))] == ids[2:5]
        assert ob.ack(ids[:4]) == 4
        assert ob.ack([ids[0], 999_999]) == 0  # already delivered or unknown: ignored
        assert len(ob) == 6
    with Outbox(path) as ob:
        assert [m.id for m in ob.pending(100)] == ids[4:]
        assert ob.pending_bytes == sum(len(f"t/{i}") + len(f"p{i}") for i in range(4, 10))
        assert ob.put("t/x", b"x") > ids[-1]  # ids never reused (AUTOINCREMENT)


def test_wal_mode_and_caller_mistakes(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite") as ob:
        assert ob._conn.execute("PRAGMA journal_mode").fetchone()[0] == "wal"
        with pytest.raises(ValueError, match="qos"):
            ob.put("t", b"x", qos=3)
        with pytest.raises(TypeError, match="payload"):
            ob.put("t", "text")  # type: ignore[arg-type]  # deliberately the wrong type
        with pytest.raises(ValueError, match="topic"):
            ob.put("", b"x")
    with pytest.raises(OutboxError, match="closed"):
        ob.put("t", b"x")


def test_second_user_of_the_same_file_gets_a_clear_error(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite") as ob:
        ob.put("t", b"x")
        with pytest.raises(OutboxError, match="in use by another process"):
            Outbox(tmp_path / "ob.sqlite")


def test_corrupt_file_is_moved_aside(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    path.write_bytes(b"this is not a database" * 100)
    with Outbox(path) as ob:
        assert ob.stats().recovered_corrupt == 1
        assert len(ob) == 0
        ob.put("t", b"x")
    assert len(list(tmp_path.glob("ob.sqlite.corrupt-*"))) == 1


WRITER = textwrap.dedent("""
    import sys
    from edge.publish.outbox import Outbox
    ob = Outbox(sys.argv[1])
    i = 0
    while True:
        i += 1
        msg_id = ob.put("spectrolite/s/l/d/prediction", b"payload-%d" % i, 1)
        print("put", msg_id, i, flush=True)
        if msg_id % 3 == 0:
            ob.ack([msg_id])
            print("ack", msg_id, flush=True)
""")


def test_kill_9_loses_nothing_committed(tmp_path: Path) -> None:
    path = tmp_path / "ob.sqlite"
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-c", WRITER, str(path)], stdout=subprocess.PIPE, env=env, text=True)
    put: dict[int, int] = {}
    acked: set[int] = set()
    try:
        assert proc.stdout is not None
        for line in proc.stdout:
            parts = line.split()
            if parts[0] == "put":
                put[int(parts[1])] = int(parts[2])
            else:
                acked.add(int(parts[1]))
            if len(put) >= KILL_AFTER_COMMITS:
                proc.send_signal(signal.SIGKILL)
                break
    finally:
        proc.kill()
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()
    with Outbox(path) as ob:
        assert ob.stats().recovered_corrupt == 0
        assert ob._conn.execute("PRAGMA integrity_check").fetchone()[0] == "ok"
        stored = {m.id: m.payload for m in ob.pending(100_000)}
    for msg_id, i in put.items():
        if msg_id in acked:
            assert msg_id not in stored
        elif msg_id % 3 or msg_id in stored:  # an ack in progress at the kill may or may not have committed
            assert stored[msg_id] == b"payload-%d" % i
    # anything else stored was committed after the last line we read (or acked but not yet reported)
    assert all(msg_id > max(put) or msg_id in put for msg_id in stored)


def test_drop_oldest_evicts_lowest_priority_first(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite", max_messages=6) as ob:
        ob.put("metrics/1", b"m", priority=Priority.LOW)
        ob.put("pred/1", b"p", priority=Priority.NORMAL)
        ob.put("metrics/2", b"m", priority=Priority.LOW)
        ob.put("pred/2", b"p", priority=Priority.NORMAL)
        ob.put("alert/1", b"a", priority=Priority.HIGH)
        ob.put("pred/3", b"p", priority=Priority.NORMAL)
        assert not ob.full
        ob.put("pred/4", b"p", priority=Priority.NORMAL)  # evicts metrics/1 (oldest, lowest)
        ob.put("pred/5", b"p", priority=Priority.NORMAL)  # evicts metrics/2
        assert _topics(ob) == ["pred/1", "pred/2", "alert/1", "pred/3", "pred/4", "pred/5"]
        ob.put("pred/6", b"p", priority=Priority.NORMAL)  # no metrics left: evicts the oldest prediction
        assert _topics(ob) == ["pred/2", "alert/1", "pred/3", "pred/4", "pred/5", "pred/6"]
        with pytest.raises(OutboxFullError, match="refused a low-priority message"):
            ob.put("metrics/3", b"m", priority=Priority.LOW)  # may not evict predictions
        ob.put("alert/2", b"a", priority=Priority.HIGH)  # evicts the oldest prediction
        assert _topics(ob) == ["alert/1", "pred/3", "pred/4", "pred/5", "pred/6", "alert/2"]
        stats = ob.stats()
        assert (stats.evicted, stats.refused, stats.full) == (4, 1, True)
        assert stats.pending_messages == 6


def test_full_flag_clears_below_the_low_watermark(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite", max_messages=20) as ob:
        ids = [ob.put("t", b"x") for _ in range(21)]
        assert ob.full
        ob.ack(ids[1:2])
        assert ob.full  # 19 of 20 stored: above the 90 % watermark
        ob.ack(ids[2:4])
        assert len(ob) <= CLEAR_FRACTION * 20
        assert not ob.full


def test_refuse_new_keeps_the_backlog(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite", max_messages=3, full_policy="refuse_new") as ob:
        for i in range(3):
            ob.put(f"t/{i}", b"x", priority=Priority.LOW)
        with pytest.raises(OutboxFullError):
            ob.put("t/3", b"x", priority=Priority.HIGH)
        assert _topics(ob) == ["t/0", "t/1", "t/2"]
        assert ob.stats().refused == 1 and ob.full


def test_byte_bound_and_oversized_message(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite", max_bytes=2048) as ob:
        for i in range(4):
            ob.put("t", bytes(500))  # 501 bytes each with the topic
        assert len(ob) == 4 and ob.pending_bytes == 2004
        ob.put("t", bytes(500))
        assert len(ob) == 4 and ob.stats().evicted == 1
        with pytest.raises(OutboxFullError, match="exceeds outbox.max_bytes"):
            ob.put("t", bytes(4096))


def _limit_file_pages(ob: Outbox, extra_pages: int) -> None:
    """Make SQLite report SQLITE_FULL ("database or disk is full") a few pages from now, like a full disk."""
    pages = ob._conn.execute("PRAGMA page_count").fetchone()[0]
    ob._conn.execute(f"PRAGMA max_page_count = {pages + extra_pages}")


def test_disk_full_with_drop_oldest_evicts_and_keeps_storing(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite") as ob:
        _limit_file_pages(ob, 40)
        for i in range(2000):  # ~1 MB: far more than 40 pages
            ob.put("spectrolite/s/l/d/prediction", os.urandom(500), priority=Priority.NORMAL)
        stats = ob.stats()
        assert stats.evicted > 0 and stats.store_errors == 0 and stats.full
        assert stats.stored == 2000
        kept = ob.pending(100_000)
        assert 0 < len(kept) < 2000
        assert [m.id for m in kept] == sorted(m.id for m in kept)
        assert kept[-1].id == max(m.id for m in kept)  # the newest message is kept, the oldest went


def test_disk_full_with_refuse_new_raises_outbox_error_not_sqlite(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite", full_policy="refuse_new") as ob:
        _limit_file_pages(ob, 10)
        with pytest.raises(OutboxError, match="full") as err:
            for _ in range(2000):
                ob.put("t", os.urandom(500))
        assert not isinstance(err.value, sqlite3.Error)
        stats = ob.stats()
        assert stats.store_errors == 1 and stats.full
        stored = len(ob)
        ob.ack([m.id for m in ob.pending(stored // 2)])  # delivering frees pages: storing works again
        ob.put("t", os.urandom(500))
        assert len(ob) == stored - stored // 2 + 1
        assert not ob.full  # below 90 % of what was stored when the disk filled up


def test_disk_full_when_nothing_may_be_evicted(tmp_path: Path) -> None:
    with Outbox(tmp_path / "ob.sqlite") as ob:
        for _ in range(200):
            ob.put("t", os.urandom(500), priority=Priority.NORMAL)
        _limit_file_pages(ob, 0)  # the "disk" is full of predictions
        with pytest.raises(OutboxError, match="disk is full"):
            ob.put("t", os.urandom(20_000), priority=Priority.LOW)  # metrics may not evict predictions
        stats = ob.stats()
        assert stats.store_errors == 1 and stats.full and stats.pending_messages == 200
        ob.put("t", os.urandom(2_000), priority=Priority.NORMAL)  # a prediction may evict older ones
        assert ob.stats().evicted > 0


def test_concurrent_producers_and_acker(tmp_path: Path) -> None:
    n_threads, per_thread = 4, 200
    with Outbox(tmp_path / "ob.sqlite") as ob:
        def produce(k: int) -> None:
            for i in range(per_thread):
                ob.put(f"t/{k}", i.to_bytes(4, "big"))

        threads = [threading.Thread(target=produce, args=(k,)) for k in range(n_threads)]
        for t in threads:
            t.start()
        acked = 0
        while any(t.is_alive() for t in threads) or len(ob):
            batch = ob.pending(50)
            acked += ob.ack([m.id for m in batch])
        for t in threads:
            t.join()
        assert acked == n_threads * per_thread
        stats = ob.stats()
        assert (stats.stored, stats.delivered, stats.pending_messages, stats.pending_bytes) == (800, 800, 0, 0)
