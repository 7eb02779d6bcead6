"""Rate-limited logging of repeated events: one line per kind of event and interval, with counts."""

from __future__ import annotations

from collections.abc import Callable

__all__ = ["LOG_INTERVAL_S", "LogLimiter"]

#: At most one log line per kind of event (eviction, refusal, disk error) and interval, with a count.
LOG_INTERVAL_S = 60.0


class LogLimiter:
    """At most one log line per kind of event and ``interval_s``; the events in between are summed into the next
    line, so a disk that stays full logs a line a minute with counts, not a line per message."""

    def __init__(self, interval_s: float, clock: Callable[[], float]) -> None:
        self.interval_s = interval_s
        self.clock = clock
        self._last: dict[str, float] = {}
        self._events: dict[str, int] = {}
        self._amount: dict[str, int] = {}

    def event(self, kind: str, amount: int = 1) -> tuple[int, int] | None:
        """Count one event; return (events, summed amount) since the last line when a line is due, else None."""
        self._events[kind] = self._events.get(kind, 0) + 1
        self._amount[kind] = self._amount.get(kind, 0) + int(amount)
        now = self.clock()
        last = self._last.get(kind)
        if last is not None and now - last < self.interval_s:
            return None
        self._last[kind] = now
        return self._events.pop(kind), self._amount.pop(kind)
