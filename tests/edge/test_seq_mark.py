"""Tests of edge.daemon.seq_mark and the resume of edge.daemon.device.SeqTracker: the last device seq a daemon
committed, kept in a real outbox database across a restart, and what the next daemon counts from it (the processes
themselves: tests/edge/test_seq_restart_e2e.py)."""

from __future__ import annotations

import json
import threading
from pathlib import Path
from typing import Any, Mapping, Sequence

import pytest

from edge.daemon.device import SEQ_GAP_MAX, SeqTracker
from edge.daemon.outbound import Outbound
from edge.daemon.seq_mark import MARK_FLUSH_S, SeqMark
from edge.metrics import Counters
from edge.publish.outbox import Outbox
from edge.publish.schema import MessageKind

DEVICE = "SIM-0001"
BOOT = 0x1234ABCD


def _tracker(resume: tuple[int, int] | None) -> tuple[SeqTracker, Counters]:
    counters = Counters()
    return SeqTracker(counters, resume), counters


@pytest.mark.parametrize("status_first", [True, False], ids=["status-first", "spectra-first"])
def test_the_same_session_counts_what_was_sent_between_two_processes(status_first: bool) -> None:
    tracker, counters = _tracker((BOOT, 100))
    if status_first:
        tracker.session(BOOT)
    for seq in (141, 142, 144):
        tracker.track(seq)
    if not status_first:  # the device announced itself after its first spectra
        tracker.session(BOOT)
    assert counters.get("frames_lost_seq_gap") == 40 + 1  # 101..140, then 143
    assert counters.get("seq_restarts") == 0 and counters.get("seq_jumps") == 0


@pytest.mark.parametrize("boot_id", [BOOT + 1, None], ids=["rebooted", "no-boot-id"])
def test_another_boot_id_or_none_counts_nothing(boot_id: int | None) -> None:
    tracker, counters = _tracker((BOOT, 100))
    tracker.session(boot_id)
    tracker.session(BOOT)  # only the first announcement resumes
    for seq in (500, 501):
        tracker.track(seq)
    assert counters.snapshot() == {}


def test_an_implausible_jump_or_a_step_back_across_the_restart_is_not_counted_as_lost() -> None:
    jump, counters = _tracker((BOOT, 100))
    jump.session(BOOT)
    jump.track(100 + 2 + SEQ_GAP_MAX)
    assert counters.get("seq_jumps") == 1 and counters.get("frames_lost_seq_gap") == 0
    back, counters = _tracker((BOOT, 100))
    back.session(BOOT)
    back.track(50)
    assert counters.get("seq_restarts") == 1 and counters.get("frames_lost_seq_gap") == 0


def test_the_mark_is_committed_with_the_next_message_of_its_thread_and_read_after_a_restart(tmp_path: Path) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as ob:
        mark = SeqMark(ob.marks, DEVICE)
        assert mark.resume is None
        mark.stage(BOOT, 41)
        other = threading.Thread(target=lambda: ob.put("t/other", b"x"))  # another thread's commit leaves it
        other.start()
        other.join()
        assert ob.marks.stored() == {}
        ob.put_many([("t/a", b"a", 1, False, 1), ("t/b", b"b", 1, False, 1)])  # this thread's: written with it
        assert json.loads(ob.marks.stored()[f"device_seq:{DEVICE}"]) == {"boot_id": BOOT, "seq": 41}
        mark.stage(BOOT, 42)
        ob.put("t/c", b"c")
        assert json.loads(ob.marks.stored()[f"device_seq:{DEVICE}"])["seq"] == 42
        mark.stage(BOOT, 43)  # no message: written at close (the daemon stopping)
    with Outbox(path) as ob:
        assert SeqMark(ob.marks, DEVICE).resume == (BOOT, 43)
        assert SeqMark(ob.marks, "OTHER-DEVICE").resume is None


def test_a_mark_no_message_carries_is_written_alone_at_most_every_flush_interval(tmp_path: Path) -> None:
    now = [0.0]
    with Outbox(tmp_path / "outbox.sqlite") as ob:
        mark = SeqMark(ob.marks, DEVICE, clock=lambda: now[0])
        mark.stage(BOOT, 7)
        mark.tick()
        assert ob.marks.stored() == {}
        now[0] += MARK_FLUSH_S
        mark.tick()
        assert json.loads(ob.marks.stored()[f"device_seq:{DEVICE}"])["seq"] == 7


@pytest.mark.parametrize("raw", ["not json", '{"boot_id": 0, "seq": 3}', '{"seq": 3}', '{"boot_id": 1, "seq": -1}',
                                 '{"boot_id": 1, "seq": 9, "seq": 3}'])  # a repeated key: read strictly, refused
def test_an_unreadable_mark_is_ignored(tmp_path: Path, raw: str) -> None:
    path = tmp_path / "outbox.sqlite"
    with Outbox(path) as ob:
        ob.marks.stage({f"device_seq:{DEVICE}": raw})
    with Outbox(path) as ob:
        assert SeqMark(ob.marks, DEVICE).resume is None


class _RecordingLink:
    """A link that records what reaches it, in order (the outbox commits are one per call)."""

    def __init__(self, log: list[str]) -> None:
        self.log = log

    def publish(self, kind: MessageKind, message: dict[str, Any], *, command: str | None = None) -> None:
        self.log.append(f"publish {kind.value} {message.get('n')}")

    def publish_many(self, messages: Sequence[tuple[MessageKind, dict[str, Any], str | None]]) -> list[None]:
        self.log.append("publish_many " + ",".join(str(m[1].get("n")) for m in messages))
        return [None] * len(messages)


@pytest.mark.parametrize(("kinds", "expected"), [
    (["p", "s", "p", "p"], ["publish prediction 0", "publish status None", "MARK", "publish_many 2,3"]),
    (["p", "p", "s"], ["MARK", "publish_many 0,1", "publish status None"]),
    (["s"], ["MARK", "publish status None"]),
    ([], ["MARK"]),
], ids=["status-between", "status-last", "status-only", "nothing"])
def test_the_mark_is_staged_right_before_the_batchs_last_outbox_commit(kinds: list[str], expected: list[str]) -> None:
    log: list[str] = []
    status: Mapping[str, Any] = {}
    link: Any = _RecordingLink(log)  # only what flush_batch uses of a Link
    out = Outbound(link, Counters(), lambda state: dict(status), lambda _m: None, 16)
    out.inference_ident = threading.get_ident()
    out.begin_batch()
    for n, k in enumerate(kinds):
        out.emit(MessageKind.STATUS if k == "s" else MessageKind.PREDICTION, {} if k == "s" else {"n": n})
    out.flush_batch(lambda: log.append("MARK"))
    assert log == expected
