"""The command intake (edge/command_queue.py): signed commands are served first and never refused because of
unsigned ones; every refusal is counted and answered within the response budget, the rest counted as suppressed."""

from __future__ import annotations

import threading
from collections import Counter
from dataclasses import dataclass

from edge.command_queue import CommandQueue, RefusalReason, Refusals


@dataclass(frozen=True)
class Cmd:
    authenticated: bool
    n: int


def test_a_flood_of_unsigned_commands_neither_refuses_nor_delays_a_signed_one() -> None:
    q = CommandQueue(max_authenticated=4, max_unauthenticated=3)
    accepted = [q.put(Cmd(False, i)) for i in range(200)]
    assert accepted.count(True) == 3 and accepted[:3] == [True] * 3
    assert q.put(Cmd(True, 1000)) and q.put(Cmd(True, 1001))
    assert [q.get(0.0).n for _ in range(5)] == [1000, 1001, 0, 1, 2]
    assert q.get(0.0) is None and len(q) == 0


def test_the_signed_lane_is_bounded_too_and_get_wakes_on_put_and_close() -> None:
    q = CommandQueue(max_authenticated=1, max_unauthenticated=1)
    assert q.put(Cmd(True, 1)) and not q.put(Cmd(True, 2)) and q.pending(True) == 1
    q.get(0.0)
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.get(30.0)))
    t.start()
    q.put(Cmd(False, 3))
    t.join(30.0)
    assert got == [Cmd(False, 3)]
    q.close()
    assert q.get(None) is None and not q.put(Cmd(True, 4))


class FakeClock:
    def __init__(self) -> None:
        self.now = 100.0

    def __call__(self) -> float:
        return self.now


def test_refusals_are_counted_and_answered_within_a_budget_per_lane() -> None:
    counts: Counter[str] = Counter()
    answers: list[tuple[str, str | None, str]] = []
    clock = FakeClock()
    r = Refusals(count=lambda name: counts.update([name]), respond=lambda *a: answers.append(a), clock=clock,
                 burst=5, rate_per_s=1.0)
    sent = [r.refuse(RefusalReason.QUEUE_FULL, "reload_bundle", f"u-{i}", "too many") for i in range(200)]
    assert sent.count(True) == 5 == len(answers)
    assert counts["commands_dropped"] == 200 and counts["command_responses_suppressed"] == 195
    # The flood used up the unsigned budget, not the signed one.
    assert r.refuse(RefusalReason.QUEUE_FULL, "capture_dark", "op-1", "too many", authenticated=True)
    clock.now += 2.0  # two more tokens
    assert [r.refuse(RefusalReason.STALE, "capture_dark", f"s-{i}", "old") for i in range(3)] == [True, True, False]
    assert counts["commands_refused"] == 3 and counts["commands_refused_stale"] == 3
    assert counts["command_responses_suppressed"] == 196
    r.refuse(RefusalReason.RETAINED, "capture_dark", None, "retained")
    assert counts["commands_refused_retained"] == 1 and counts["commands_refused"] == 4
