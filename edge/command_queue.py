"""The daemon's command intake: two bounded lanes (authenticated commands first) and the one place where a command
that will not run is refused: counted, logged at most once a minute per reason, and answered within a budget.

Why two lanes.  Commands are parsed on paho's network thread and executed one at a time by the housekeeping
thread.  With one queue, a flood of unauthenticated commands (anyone allowed by the broker to publish on
``.../cmd/+`` while ``commands.require_auth`` is false) fills it, and an operator's signed command behind them waits
or is dropped.  Here signed commands (``RemoteCommand.authenticated``) have a lane of their own, served first, so
no number of unauthenticated commands delays or drops one.  (An unsigned operator command is indistinguishable
from the flood; that is what ``require_auth`` and the HMAC key are for.)

Why a response budget.  Every refused or dropped command is answered on ``.../cmd/<name>/response`` (``ok`` false,
``error`` says why), but a flood must not turn into a flood of responses filling the outbox.  Responses to refusals
draw from a token bucket (:data:`RESPONSE_BURST` at once, then :data:`RESPONSE_RATE_PER_S` a second), one bucket
for authenticated commands and one for everything else, so a flood cannot use up the operator's answers.  A
refusal beyond the budget is not answered but counted (``command_responses_suppressed``) and summed into the next
log line.  So every command is accounted for: it runs (and its execution answers), or it is refused and either
answered or counted as suppressed.

>>> from types import SimpleNamespace as Cmd
>>> q = CommandQueue(max_authenticated=2, max_unauthenticated=1)
>>> q.put(Cmd(authenticated=False, n=1)), q.put(Cmd(authenticated=False, n=2)), q.put(Cmd(authenticated=True, n=3))
(True, False, True)
>>> [q.get(0.0).n, q.get(0.0).n, q.get(0.0)]
[3, 1, None]
"""

from __future__ import annotations

import enum
import logging
import threading
import time
from collections import deque
from collections.abc import Callable
from typing import Any, Protocol

from edge.publish.log_limit import LOG_INTERVAL_S, LogLimiter
from edge.validation import require_int

__all__ = [
    "CommandQueue",
    "Refusals",
    "RefusalReason",
    "MAX_PENDING_AUTHENTICATED",
    "MAX_PENDING_UNAUTHENTICATED",
    "RESPONSE_BURST",
    "RESPONSE_RATE_PER_S",
]

log = logging.getLogger("edge.daemon")

#: Signed commands waiting for the housekeeping thread (more are refused: "too many commands pending").
MAX_PENDING_AUTHENTICATED = 64
#: Unsigned commands waiting for the housekeeping thread: what a flood can queue up.
MAX_PENDING_UNAUTHENTICATED = 16
#: Refusal responses sent at once, per bucket (authenticated / other), before the rate applies.
RESPONSE_BURST = 20
#: Refusal responses per second, per bucket, once the burst is spent.
RESPONSE_RATE_PER_S = 1.0


class _Command(Protocol):
    authenticated: bool


class RefusalReason(str, enum.Enum):
    """Why a command does not run; each has its counter (:data:`COUNTERS`)."""

    INVALID = "invalid"  #: the parser refused it (malformed, unsigned under require_auth, replayed, ...)
    STALE = "stale"  #: issued more than commands.max_age_s ago
    RETAINED = "retained"  #: delivered as a retained MQTT message
    QUEUE_FULL = "queue_full"  #: its lane was full


#: Counters incremented per reason (each also counted in ``commands_refused`` except a full queue, which is a drop).
COUNTERS: dict[RefusalReason, tuple[str, ...]] = {
    RefusalReason.INVALID: ("commands_refused",),
    RefusalReason.STALE: ("commands_refused", "commands_refused_stale"),
    RefusalReason.RETAINED: ("commands_refused", "commands_refused_retained"),
    RefusalReason.QUEUE_FULL: ("commands_dropped",),
}


class CommandQueue:
    """Two bounded FIFO lanes of commands; :meth:`get` serves the authenticated lane first (thread-safe).

    Parameters
    ----------
    max_authenticated, max_unauthenticated : int
        Bound of each lane (>= 1); :meth:`put` refuses a command whose lane is full.
    """

    def __init__(self, max_authenticated: int = MAX_PENDING_AUTHENTICATED,
                 max_unauthenticated: int = MAX_PENDING_UNAUTHENTICATED) -> None:
        require_int(max_authenticated, "max_authenticated", ValueError, minimum=1)
        require_int(max_unauthenticated, "max_unauthenticated", ValueError, minimum=1)
        self._bounds = {True: max_authenticated, False: max_unauthenticated}
        self._lanes: dict[bool, deque[Any]] = {True: deque(), False: deque()}
        self._cond = threading.Condition()
        self._closed = False

    def __len__(self) -> int:
        with self._cond:
            return len(self._lanes[True]) + len(self._lanes[False])

    def pending(self, authenticated: bool) -> int:
        """Commands waiting in one lane."""
        with self._cond:
            return len(self._lanes[bool(authenticated)])

    def put(self, command: _Command) -> bool:
        """Append ``command`` to its lane; False (nothing queued) when the lane is full or the queue closed."""
        lane = bool(command.authenticated)
        with self._cond:
            if self._closed or len(self._lanes[lane]) >= self._bounds[lane]:
                return False
            self._lanes[lane].append(command)
            self._cond.notify()
            return True

    def get(self, timeout_s: float | None = None) -> Any:
        """The oldest authenticated command, else the oldest other one, waiting up to ``timeout_s``; None if none."""
        deadline = None if timeout_s is None else time.monotonic() + timeout_s
        with self._cond:
            while True:
                for lane in (True, False):
                    if self._lanes[lane]:
                        return self._lanes[lane].popleft()
                remaining = None if deadline is None else deadline - time.monotonic()
                if self._closed or (remaining is not None and remaining <= 0.0):
                    return None
                self._cond.wait(remaining)

    def close(self) -> None:
        """Refuse later puts and wake a waiting :meth:`get` (what is queued can still be taken)."""
        with self._cond:
            self._closed = True
            self._cond.notify_all()

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed


class _Bucket:
    """Token bucket: ``burst`` tokens, refilled at ``rate_per_s``."""

    def __init__(self, burst: int, rate_per_s: float, now: float) -> None:
        self.burst = float(burst)
        self.rate_per_s = rate_per_s
        self.tokens = float(burst)
        self.stamp = now

    def take(self, now: float) -> bool:
        self.tokens = min(self.burst, self.tokens + (now - self.stamp) * self.rate_per_s)
        self.stamp = now
        if self.tokens < 1.0:
            return False
        self.tokens -= 1.0
        return True


class Refusals:
    """Record the verdict on a command that will not run: counters, a rate-limited log line, a budgeted response.

    Parameters
    ----------
    count : callable(name)
        Increments a counter (the daemon's ``Counters.incr``).
    respond : callable(command, request_id, error)
        Publishes the ``ok: false`` response on ``.../cmd/<command>/response``.
    clock : callable
        Monotonic seconds (injectable for tests).
    """

    def __init__(self, *, count: Callable[[str], None], respond: Callable[[str, str | None, str], None],
                 clock: Callable[[], float] = time.monotonic, burst: int = RESPONSE_BURST,
                 rate_per_s: float = RESPONSE_RATE_PER_S,
                 unanswered: Callable[[str, str | None, str], None] | None = None) -> None:
        self._count = count
        self._respond = respond
        self._unanswered = unanswered  # told of each refusal past the response budget (the audit log records it)
        self._clock = clock
        now = clock()
        self._buckets = {True: _Bucket(burst, rate_per_s, now), False: _Bucket(burst, rate_per_s, now)}
        self._logs = LogLimiter(LOG_INTERVAL_S, clock)
        self._lock = threading.Lock()

    def refuse(self, reason: RefusalReason, command: str, request_id: str | None, error: str, *,
               authenticated: bool = False) -> bool:
        """Count, log and (within the budget) answer one refused command; return whether a response was sent.

        ``authenticated`` picks the response bucket: True only for a command whose HMAC was verified.
        """
        for name in COUNTERS[reason]:
            self._count(name)
        with self._lock:
            answered = self._buckets[bool(authenticated)].take(self._clock())
            due = self._logs.event(reason.value, 0 if answered else 1)
        if not answered:
            self._count("command_responses_suppressed")
        if due is not None:
            events, suppressed = due
            more = f" ({events} such refusal(s) in the last {LOG_INTERVAL_S:.0f} s, {suppressed} not answered: " \
                   "too many responses)" if events > 1 or suppressed else ""
            log.warning("command %s (request %s) refused, %s: %s%s", command, request_id, reason.value, error, more)
        if answered:
            self._respond(command, request_id, error)
        elif self._unanswered is not None:
            self._unanswered(command, request_id, error)
        return answered
