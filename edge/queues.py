"""Bounded hand-over queue between the daemon's threads, with a drop policy and counters for anything dropped.

:class:`queue.Queue` cannot evict its oldest item or keep some items undroppable, which is what the daemon needs:
spectra may be dropped under overload (every drop counted), control frames (dark/white references, device
status, command acknowledgements) never are, because losing one would silently change every later prediction.

Policies (``queues.policy`` in the configuration):

- ``drop_oldest``: a full queue evicts its oldest *droppable* item to make room (freshest data wins; the usual
  choice for monitoring, where a late prediction is worth less than a current one);
- ``drop_newest``: a full queue refuses the new droppable item;
- ``block``: the producer waits until there is room (back-pressure; for the serial reader this pushes the
  overload into the operating system's serial buffer, where it becomes CRC errors and sequence gaps, which are
  counted too).

Undroppable items are always accepted, even above the bound (they are rare: one per reference or command).

>>> q = BoundedQueue(2, "drop_oldest")
>>> [q.put(i) for i in range(3)], q.dropped, q.get(0.0), q.get(0.0)
([True, True, True], 1, 1, 2)
"""

from __future__ import annotations

import threading
import time
from collections import deque
from typing import Generic, Sequence, TypeVar

from edge.validation import fail, require_enum, require_int

__all__ = ["BoundedQueue", "QUEUE_POLICIES"]

#: Accepted values of ``policy``.
QUEUE_POLICIES = ("drop_oldest", "drop_newest", "block")

T = TypeVar("T")


class BoundedQueue(Generic[T]):
    """Thread-safe FIFO of at most ``maxsize`` droppable items (see the module docstring for the policies).

    Parameters
    ----------
    maxsize : int
        Bound on the number of items (>= 1).
    policy : str
        One of :data:`QUEUE_POLICIES`.
    """

    def __init__(self, maxsize: int, policy: str = "drop_oldest") -> None:
        require_int(maxsize, "maxsize", ValueError, minimum=1)
        require_enum(policy, "policy", ValueError, QUEUE_POLICIES)
        self.maxsize = maxsize
        self.policy = policy
        self._items: deque[tuple[T, bool]] = deque()
        self._undroppable = 0  # items in _items that may not be dropped (so the droppable count needs no scan)
        self._cond = threading.Condition()
        self._closed = False
        self.dropped = 0  #: items evicted or refused
        self.high_water = 0  #: largest length seen

    def __len__(self) -> int:
        with self._cond:
            return len(self._items)

    def close(self) -> None:
        """Wake every waiting producer and consumer; later puts are refused, gets drain what is left."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed

    def put(self, item: T, *, droppable: bool = True, timeout_s: float | None = None) -> bool:
        """Append ``item``; return False when it was refused (dropped) instead.

        Parameters
        ----------
        item : object
            What to hand over.
        droppable : bool
            False for items that must never be dropped (accepted even above the bound).
        timeout_s : float or None
            With policy ``block``: longest wait for room (None waits until room or :meth:`close`); when it
            expires the item is dropped and counted.
        """
        with self._cond:
            accepted = self._put_locked(item, droppable, timeout_s)
            self._cond.notify_all()
            return accepted

    def put_many(self, items: Sequence[tuple[T, bool]], *, timeout_s: float | None = None) -> list[bool]:
        """Append ``(item, droppable)`` pairs in order, as :meth:`put` would one by one, under one lock and with one
        wake-up of the consumers (what a reader that read several frames at once hands over); return, per item,
        whether it was accepted.  With policy ``block`` the wait for room is per item, ``timeout_s`` each."""
        with self._cond:
            accepted = [self._put_locked(item, droppable, timeout_s) for item, droppable in items]
            self._cond.notify_all()
            return accepted

    def _put_locked(self, item: T, droppable: bool, timeout_s: float | None) -> bool:
        """:meth:`put` with the lock held, without the final wake-up (a wait for room wakes the consumers first)."""
        if self._closed:
            if droppable:
                self.dropped += 1
                return False
            self._items.append((item, droppable))  # still delivered to a draining consumer
            self._undroppable += 1
            return True
        if droppable and self._n_droppable() >= self.maxsize:
            if self.policy == "drop_newest":
                self.dropped += 1
                return False
            if self.policy == "drop_oldest":
                self._evict_oldest_droppable()
            else:  # block
                deadline = None if timeout_s is None else time.monotonic() + timeout_s
                while self._n_droppable() >= self.maxsize and not self._closed:
                    remaining = None if deadline is None else deadline - time.monotonic()
                    if remaining is not None and remaining <= 0.0:
                        self.dropped += 1
                        return False
                    self._cond.notify_all()  # what was appended before this item may be taken meanwhile
                    self._cond.wait(remaining)
                if self._closed:
                    self.dropped += 1
                    return False
        self._items.append((item, droppable))
        self._undroppable += not droppable
        self.high_water = max(self.high_water, len(self._items))
        return True

    def get(self, timeout_s: float | None = None) -> T | None:
        """Pop the oldest item, waiting up to ``timeout_s`` (None: until an item or :meth:`close`); None if none."""
        if timeout_s is not None and timeout_s <= 0.0 and not self._items:
            return None  # a poll of an empty queue needs no lock (reading a deque's length is atomic)
        with self._cond:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while not self._items:
                if self._closed:
                    return None
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0.0:
                    return None
                self._cond.wait(remaining)
            item, droppable = self._items.popleft()
            self._undroppable -= not droppable
            self._cond.notify_all()
            return item

    def get_many(self, max_items: int, timeout_s: float | None = None) -> list[T]:
        """Pop up to ``max_items`` of the oldest items, waiting up to ``timeout_s`` for the first one (None: until
        an item or :meth:`close`); an empty list if none came.  Never waits for more than one: a lone item is
        returned at once, and whatever queued up meanwhile comes with it (the daemon's micro-batches)."""
        if max_items < 1:
            fail(ValueError, "max_items", "an integer >= 1", max_items)
        if timeout_s is not None and timeout_s <= 0.0 and not self._items:
            return []
        with self._cond:
            deadline = None if timeout_s is None else time.monotonic() + timeout_s
            while not self._items:
                if self._closed:
                    return []
                remaining = None if deadline is None else deadline - time.monotonic()
                if remaining is not None and remaining <= 0.0:
                    return []
                self._cond.wait(remaining)
            n = min(max_items, len(self._items))
            taken = [self._items.popleft() for _ in range(n)]
            self._undroppable -= sum(not droppable for _, droppable in taken)
            out = [item for item, _ in taken]
            self._cond.notify_all()
            return out

    def _n_droppable(self) -> int:
        return len(self._items) - self._undroppable

    def _evict_oldest_droppable(self) -> None:
        for i, (_, droppable) in enumerate(self._items):
            if droppable:
                del self._items[i]
                self.dropped += 1
                return
