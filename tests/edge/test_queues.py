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


@pytest.mark.parametrize("policy", ["drop_oldest", "drop_newest"])
def test_put_many_is_put_one_by_one(policy: str) -> None:
    """What a reader hands over at once is queued, dropped and counted exactly as item by item (undroppable items
    included: they never count towards the bound)."""
    items = [(i, i % 5 != 2) for i in range(12)]
    one: BoundedQueue[int] = BoundedQueue(4, policy)
    many: BoundedQueue[int] = BoundedQueue(4, policy)
    accepted = [one.put(i, droppable=d) for i, d in items]
    assert many.put_many(items) == accepted
    assert (many.dropped, many.high_water) == (one.dropped, one.high_water) and many.dropped > 0
    assert _drain(many) == _drain(one)
    many.put_many([(99, False)] * 5 + [(7, True)] * 5)  # undroppable above the bound, then the bound holds
    assert _drain(many) == [99] * 5 + [7] * 4


def test_put_many_blocks_per_item_and_wakes_the_consumer_first() -> None:
    q: BoundedQueue[int] = BoundedQueue(2, "block")
    got: list[int] = []

    def consume() -> None:
        while len(got) < 6:
            got.extend(q.get_many(8, 1.0))

    consumer = threading.Thread(target=consume, daemon=True)
    consumer.start()
    assert q.put_many([(i, True) for i in range(6)]) == [True] * 6
    consumer.join(timeout=30)
    assert got == list(range(6)) and q.dropped == 0


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
