"""The outbox on a really full disk: a small tmpfs the test mounts itself, the real Outbox, real SQLite (issue #18).

Before the fix the write-ahead log alone filled a 2 MB filesystem, evicting needed room that a full disk no longer
had (``database or disk is full``, nothing evicted), ``drop_oldest`` kept the oldest messages and lost every new
one, acknowledgements failed for good, and every lost message logged an ERROR line.  These tests fill 2 MB and
8 MB filesystems with the broker "down" (nothing acknowledged), then bring it "up" (everything pending is
acknowledged as a publisher would), and check which messages survive, that the counters add up, that the WAL
stays bounded, and that the log says so in a few lines.

Mounting needs root (the CI and development containers run as root); elsewhere these tests skip with the reason.
"""

from __future__ import annotations

import contextlib
import logging
import os
import re
import shutil
import sqlite3
import subprocess
from collections.abc import Iterator
from pathlib import Path

import pytest

from edge.errors import OutboxError
from edge.publish.disk_space import RESERVE_WAL_BOUNDS, WAL_BOUND_FRACTION, WAL_BOUND_MAX_BYTES, WAL_BOUND_MIN_BYTES
from edge.publish.log_limit import LOG_INTERVAL_S
from edge.publish.messages import OodStats, TargetValue, prediction_message
from edge.publish.outbox import Outbox
from edge.publish.schema import Quality, decode, encode

MIB = 1024 * 1024
TOPIC = "spectrolite/plant-a/line-3/nir-01/prediction"
#: Predictions put while the broker is down, per byte of filesystem: several times what the disk holds.
PUTS_PER_FS_BYTE = 1 / 300
#: Of the filesystem, at least this fraction must hold messages when the disk is the bound (the rest: SQLite's
#: own pages, the WAL, the reserve and the headroom).  Before the fix the WAL alone took all of a 2 MB disk.
MIN_USED_FRACTION = 0.4
#: While the broker is up: a new prediction per step, and everything pending acknowledged every ACK_EVERY steps.
ACK_EVERY = 10
PENDING_BATCH = 200
#: Log lines allowed from edge.publish.outbox per phase (one per kind of event: eviction, reserve, store error).
MAX_LOG_LINES = 3
EVICTION_LINE = re.compile(r"(\d+) message\(s\) in (\d+) eviction\(s\)")


class ManualClock:
    """The outbox's log rate-limit clock, advanced by the test only (no timing in the assertions)."""

    def __init__(self) -> None:
        self.now_s = 0.0

    def __call__(self) -> float:
        return self.now_s


@contextlib.contextmanager
def _tmpfs(where: Path, size_bytes: int) -> Iterator[Path]:
    """Mount a tmpfs of ``size_bytes`` at ``where``; skip the test when that is impossible; always unmount."""
    if os.name != "posix" or shutil.which("mount") is None or shutil.which("umount") is None:
        pytest.skip("needs mount(8) and umount(8) to mount a small tmpfs")
    if os.geteuid() != 0:
        pytest.skip("mounting a small tmpfs needs root (CI and the development container run as root)")
    where.mkdir(parents=True, exist_ok=True)
    done = subprocess.run(["mount", "-t", "tmpfs", "-o", f"size={size_bytes}", "tmpfs", str(where)],
                          capture_output=True, text=True, check=False)
    if done.returncode != 0:
        pytest.skip(f"cannot mount a tmpfs here (no CAP_SYS_ADMIN in this container?): {done.stderr.strip()}")
    try:
        yield where
    finally:
        if subprocess.run(["umount", str(where)], capture_output=True, check=False).returncode != 0:
            subprocess.run(["umount", "-l", str(where)], capture_output=True, check=False)


def _payload(seq: int) -> bytes:
    """A real prediction message (about 530 bytes) whose ``seq`` tells which one it is."""
    return encode(prediction_message(
        device_id="nir-01", seq=seq, device_timestamp_us=seq * 1000, model_id="tablets-pls", model_version="3",
        targets=[TargetValue("api", "%w/w", 12.5, 12.1, 12.9)], quality_flags=[Quality.OUT_OF_DISTRIBUTION],
        ood=OodStats(t2=3.0, q=0.1, t2_limit=9.5, q_limit=0.4), interval_coverage=0.9, latency_ms=2.5,
        time_unix_s=1_700_000_000.0 + seq))


def _seqs(ob: Outbox) -> list[int]:
    return [int(decode(m.payload)["seq"]) for m in ob.pending(10_000_000)]


def _wal_bound(size_bytes: int) -> int:
    return int(min(WAL_BOUND_MAX_BYTES, max(WAL_BOUND_MIN_BYTES, size_bytes * WAL_BOUND_FRACTION)))


def _outbox_lines(caplog: pytest.LogCaptureFixture) -> list[logging.LogRecord]:
    return [r for r in caplog.records if r.name == "edge.publish.outbox"]


def _open(path: Path, clock: ManualClock, **kwargs: object) -> Outbox:
    ob = Outbox(path, **kwargs)  # type: ignore[arg-type]  # **kwargs of object: Outbox's keyword arguments
    ob._clock = clock  # the log rate limit reads this clock; nothing else does
    return ob


def _broker_up(ob: Outbox, first_seq: int, n_new: int) -> list[int]:
    """A publisher with the broker up: live predictions keep coming, everything pending is acknowledged in
    batches, oldest first, until the backlog is gone.  Returns the seqs acknowledged, in order."""
    delivered: list[int] = []

    def ack_all_pending() -> None:
        while batch := ob.pending(PENDING_BATCH):
            delivered.extend(int(decode(m.payload)["seq"]) for m in batch)
            ob.ack([m.id for m in batch])

    for k in range(n_new):
        if k % ACK_EVERY == 0:  # the broker acknowledges the backlog as soon as it is back
            ack_all_pending()
        ob.put(TOPIC, _payload(first_seq + k))
    ack_all_pending()
    return delivered


@pytest.mark.parametrize("size_mib", [2, 8])
def test_drop_oldest_on_a_full_disk_keeps_the_newest_and_delivers_them(
        tmp_path: Path, caplog: pytest.LogCaptureFixture, size_mib: int) -> None:
    size = size_mib * MIB
    n_down = int(size * PUTS_PER_FS_BYTE)
    clock = ManualClock()
    caplog.set_level(logging.DEBUG, logger="edge.publish.outbox")
    with _tmpfs(tmp_path / "fs", size) as fs:
        ob = _open(fs / "outbox.sqlite", clock)
        try:
            # broker down: nothing is acknowledged; the disk, not max_bytes, is the bound
            for seq in range(n_down):
                ob.put(TOPIC, _payload(seq))  # drop_oldest never refuses a prediction while older ones exist
            down = ob.stats()
            kept = _seqs(ob)
            wal_bytes = (fs / "outbox.sqlite-wal").stat().st_size
            down_lines = _outbox_lines(caplog)

            assert down.evicted > 0 and down.store_errors == 0 and down.refused == 0
            assert down.stored == n_down
            assert down.pending_messages == len(kept) == down.stored - down.evicted
            assert kept == list(range(n_down - len(kept), n_down))  # the newest, every one of them, in order
            assert down.pending_bytes >= MIN_USED_FRACTION * size
            assert down.full
            assert wal_bytes <= 2 * _wal_bound(size)  # the WAL is bounded (it was the whole disk before)
            assert (fs / "outbox.sqlite-reserve").stat().st_size == RESERVE_WAL_BOUNDS * _wal_bound(size)
            assert len(down_lines) <= MAX_LOG_LINES, [r.getMessage() for r in down_lines]
            assert not [r for r in down_lines if r.levelno >= logging.ERROR]

            # a minute later the next eviction reports everything evicted since the first report, with counts
            clock.now_s += LOG_INTERVAL_S
            seq = n_down
            while ob.stats().evicted == down.evicted:
                ob.put(TOPIC, _payload(seq))
                seq += 1
            reported = [EVICTION_LINE.search(r.getMessage()) for r in _outbox_lines(caplog)]
            counts = [(int(m.group(1)), int(m.group(2))) for m in reported if m]
            assert len(counts) == 2
            assert sum(msgs for msgs, _ in counts) == ob.stats().evicted
            assert counts[1][1] > 1  # many evictions, one line

            # broker up: the backlog and every new prediction are delivered; nothing more is evicted or refused
            before = ob.stats()
            backlog = _seqs(ob)
            n_up = len(backlog)
            delivered = _broker_up(ob, seq, n_up)
            up = ob.stats()
            assert delivered == backlog + list(range(seq, seq + n_up))
            assert up.evicted == before.evicted and up.store_errors == 0 and up.refused == 0
            assert up.pending_messages == 0 and up.delivered == len(delivered)
            assert up.stored == up.delivered + up.evicted  # every stored message was delivered or evicted
            assert not up.full
            assert (fs / "outbox.sqlite-wal").stat().st_size <= 2 * _wal_bound(size)
        finally:
            ob.close()
        with contextlib.closing(sqlite3.connect(fs / "outbox.sqlite")) as db:
            assert db.execute("PRAGMA integrity_check").fetchone()[0] == "ok"


def test_refuse_new_on_a_full_disk_keeps_the_backlog_and_can_still_deliver_it(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    size = 2 * MIB
    n_down = int(size * PUTS_PER_FS_BYTE)
    clock = ManualClock()
    caplog.set_level(logging.DEBUG, logger="edge.publish.outbox")
    with _tmpfs(tmp_path / "fs", size) as fs:
        ob = _open(fs / "outbox.sqlite", clock, full_policy="refuse_new")
        try:
            refused: list[int] = []
            for seq in range(n_down):
                try:
                    ob.put(TOPIC, _payload(seq))
                except OutboxError as exc:
                    assert not isinstance(exc, sqlite3.Error)
                    refused.append(seq)
            down = ob.stats()
            kept = _seqs(ob)
            assert down.evicted == 0
            assert refused and kept == list(range(len(kept)))  # the backlog (the oldest) is kept
            assert refused == list(range(len(kept), n_down))  # and only the new ones refused
            assert down.stored + down.store_errors + down.refused == n_down
            assert down.pending_bytes >= MIN_USED_FRACTION * size
            errors = [r for r in _outbox_lines(caplog) if r.levelno >= logging.ERROR]
            assert len(errors) == 1  # not one per refused message

            # broker up: on the still-full disk, the whole backlog is acknowledged, then new messages store again
            delivered = _broker_up(ob, n_down, 3 * len(kept))
            up = ob.stats()
            assert delivered == kept + list(range(n_down, n_down + 3 * len(kept)))
            assert up.pending_messages == 0 and up.store_errors == down.store_errors
            assert up.stored == up.delivered
        finally:
            ob.close()


def test_drop_oldest_when_another_writer_fills_the_disk(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """Something else fills the filesystem to the last byte: the reserve lets the outbox evict and checkpoint."""
    size = 8 * MIB
    clock = ManualClock()
    caplog.set_level(logging.DEBUG, logger="edge.publish.outbox")
    with _tmpfs(tmp_path / "fs", size) as fs:
        ob = _open(fs / "outbox.sqlite", clock)
        try:
            n_before = size // 4 // 530  # about a quarter of the disk
            for seq in range(n_before):
                ob.put(TOPIC, _payload(seq))
            fd = os.open(fs / "filler", os.O_WRONLY | os.O_CREAT, 0o600)
            try:
                with pytest.raises(OSError, match="No space left"):
                    while True:
                        os.write(fd, b"\xff" * 4096)
            finally:
                os.close(fd)
            assert shutil.disk_usage(fs).free < 4096

            n_after = 2 * n_before
            for seq in range(n_before, n_before + n_after):
                ob.put(TOPIC, _payload(seq))
            st = ob.stats()
            kept = _seqs(ob)
            assert st.evicted > 0 and st.store_errors == 0 and st.stored == n_before + n_after
            assert kept == list(range(n_before + n_after - len(kept), n_before + n_after))
            assert st.pending_messages == len(kept) == st.stored - st.evicted
            messages = [r.getMessage() for r in _outbox_lines(caplog)]
            assert any("released" in m and "reserve" in m for m in messages)
            assert len(messages) <= MAX_LOG_LINES, messages

            delivered = _broker_up(ob, n_before + n_after, len(kept))
            assert delivered[:len(kept)] == kept
            assert ob.stats().pending_messages == 0
            assert (fs / "outbox.sqlite-reserve").stat().st_size == RESERVE_WAL_BOUNDS * _wal_bound(size)
        finally:
            ob.close()

