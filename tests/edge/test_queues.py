"""Tests of edge.queues (the daemon's bounded hand-over queue) and edge.metrics (counters, latency window)."""

from __future__ import annotations

import threading

import pytest

from edge.metrics import Counters, LatencyWindow
from edge.queues import BoundedQueue


def _drain(q: BoundedQueue[int]) -> list[int]:
    out = []
    while (item := q.get(0.0)) is not None:
        out.append(item)
    return out


def test_drop_oldest_keeps_the_freshest_and_counts() -> None:
    q: BoundedQueue[int] = BoundedQueue(3, "drop_oldest")
    assert all(q.put(i) for i in range(5))
    assert (q.dropped, _drain(q)) == (2, [2, 3, 4])


def test_drop_newest_refuses_and_counts() -> None:
    q: BoundedQueue[int] = BoundedQueue(3, "drop_newest")
    assert [q.put(i) for i in range(5)] == [True, True, True, False, False]
    assert (q.dropped, _drain(q)) == (2, [0, 1, 2])


def test_undroppable_items_are_never_dropped_nor_evicted() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, "drop_oldest")
    q.put(100, droppable=False)
    for i in range(4):
        q.put(i)
    q.put(200, droppable=False)
    assert _drain(q) == [100, 2, 3, 200] and q.dropped == 2


def test_block_waits_for_room_and_times_out() -> None:
    q: BoundedQueue[int] = BoundedQueue(1, "block")
    assert q.put(1)
    assert q.put(2, timeout_s=0.05) is False and q.dropped == 1
    done = threading.Event()

    def producer() -> None:
        q.put(3)
        done.set()

    t = threading.Thread(target=producer)
    t.start()
    assert q.get(5.0) == 1
    t.join(5.0)
    assert done.is_set() and _drain(q) == [3]


def test_close_wakes_consumers_and_refuses_droppable_puts() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, "block")
    got: list[object] = []
    t = threading.Thread(target=lambda: got.append(q.get(None)))
    t.start()
    q.close()
    t.join(5.0)
    assert got == [None]
    assert q.put(1) is False and q.put(2, droppable=False) is True and q.get(0.0) == 2


@pytest.mark.parametrize("kwargs", [{"maxsize": 0}, {"maxsize": 1, "policy": "random"}])
def test_bad_queue_arguments(kwargs: dict) -> None:
    with pytest.raises(ValueError, match="expected"):
        BoundedQueue(**kwargs)


def test_counters_and_latency_window() -> None:
    c = Counters()
    threads = [threading.Thread(target=lambda: [c.incr("n") for _ in range(1000)]) for _ in range(4)]
    for t in threads:
        t.start()
    for t in threads:
        t.join()
    assert c.snapshot() == {"n": 4000} and c.get("absent") == 0
    w = LatencyWindow(capacity=100)
    assert w.summary()["count"] == 0
    for v in range(1, 201):
        w.add(float(v))
    s = w.summary()
    assert s["count"] == 100 and s["max_us"] == 200.0 and s["p50_us"] <= s["p95_us"] <= s["p99_us"] <= s["max_us"]
