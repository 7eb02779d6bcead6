"""What the MQTT publisher has handed to paho and not yet seen acknowledged, and its counters.

:class:`InFlight` maps paho's message ids (mid) back to outbox ids, keeps the acknowledgements that arrive before
``publish()`` returns, the acknowledged ids waiting to be deleted from the outbox in one transaction, and the ids
re-sent after a reconnect (nothing newer goes out until they are acknowledged or RESYNC_TIMEOUT_S passes).  One
lock guards all of it; it is never held while calling into paho or the outbox (see :mod:`edge.publish.mqtt`).
"""

from __future__ import annotations

import threading
import time
from dataclasses import dataclass

from paho.mqtt.reasoncodes import ReasonCode

__all__ = ["InFlight", "PublisherStats", "COUNTERS"]

#: The publisher's counters (see ``edge.publish.mqtt.PublisherStats``).
COUNTERS = ("connects", "disconnects", "connect_failures", "sent_live", "sent_backlog", "acked", "rejected",
            "sent_without_outbox", "lost_outbox_unavailable", "outbox_errors", "commands_received",
            "commands_ignored", "broker_switches", "sessions_taken_over", "broker_failovers")


@dataclass(frozen=True)
class PublisherStats:
    """Counters since :meth:`MqttPublisher.start` (monotonic, for ``.../metrics``)."""

    connected: bool
    connects: int  #: successful CONNACKs
    disconnects: int  #: established connections lost or closed
    connect_failures: int  #: connection attempts that failed (refused, TLS, auth, network, closed before CONNACK)
    sent_live: int  #: messages handed to paho as soon as they were stored
    sent_backlog: int  #: messages replayed from the outbox by the drain thread
    acked: int  #: outbox messages acknowledged by the broker (and then deleted)
    rejected: int  #: acknowledgements with an MQTT 5 failure reason code (deleted too: a retry cannot succeed)
    sent_without_outbox: int  #: sent live although the outbox could not store them
    lost_outbox_unavailable: int  #: neither stored nor sent (outbox refused while disconnected)
    outbox_errors: int  #: OutboxError raised by put/ack/pending
    inflight: int  #: outbox messages handed to paho and not yet acknowledged
    commands_received: int  #: command messages handed to on_command (retained ones too: it refuses them)
    commands_ignored: int  #: messages on topics that are not a command (or with no on_command)
    broker_switches: int  #: connections moved to new broker settings by :meth:`MqttPublisher.switch_broker`
    sessions_taken_over: int  #: connections the broker closed because another client connected with this client id
    broker_failovers: int  #: reconnect attempts moved to the next of several brokers (``mqtt.brokers``)
    broker_index: int  #: which of ``mqtt.brokers`` (0-based, in order) is being used or tried now; 0 with one broker


class InFlight:
    """Thread-safe ledger of the outbox messages in flight (``claimed``: outbox id -> QoS) and of the counters."""

    def __init__(self) -> None:
        self.lock = threading.Lock()
        self._mid_to_oid: dict[int, int | None] = {}
        self._early_acks: dict[int, ReasonCode | int] = {}
        self._claimed: dict[int, int] = {}
        self._acked_unflushed: list[int] = []
        self._acked_set: set[int] = set()
        self._resync_ids: set[int] = set()
        self._resync_deadline = 0.0
        self._counts = dict.fromkeys(COUNTERS, 0)

    def count(self, name: str, n: int = 1) -> None:
        with self.lock:
            self._counts[name] += n

    def stats(self, *, connected: bool, broker_index: int = 0) -> PublisherStats:
        """Snapshot of the counters."""
        with self.lock:
            return PublisherStats(connected=connected, inflight=len(self._claimed), broker_index=broker_index,
                                  **self._counts)

    def busy(self) -> bool:
        """Something is in flight, or acknowledged and not yet deleted from the outbox."""
        with self.lock:
            return bool(self._claimed) or bool(self._acked_unflushed)

    def _resyncing_locked(self) -> bool:
        if self._resync_ids and time.monotonic() < self._resync_deadline:
            return True
        self._resync_ids.clear()
        return False

    def resyncing(self) -> bool:
        """Messages re-sent after the last reconnect are still unacknowledged (and the resync has not timed out)."""
        with self.lock:
            return self._resyncing_locked()

    def resync_pending(self) -> bool:
        with self.lock:
            return bool(self._resync_ids)

    def claim(self, oid: int, qos: int, window: int, *, live: bool) -> bool:
        """Take ``oid`` into flight if ``window`` has room and it is not in flight or acknowledged already; a live
        message also waits while a resync is on."""
        with self.lock:
            if live:
                if self._resyncing_locked() or len(self._claimed) >= window or oid in self._claimed:
                    return False
            elif oid in self._claimed or oid in self._acked_set or len(self._claimed) >= window:
                return False
            self._claimed[oid] = qos
            return True

    def unclaim(self, oid: int) -> None:
        """``oid`` was not queued by paho after all: it stays in the outbox for the drain."""
        with self.lock:
            self._claimed.pop(oid, None)

    def room(self, window: int) -> tuple[int, set[int]]:
        """Free places in ``window`` and the outbox ids the drain must not send again (in flight or acknowledged)."""
        with self.lock:
            return window - len(self._claimed), set(self._claimed) | self._acked_set

    def any_in_flight_up_to(self, last_id: int) -> bool:
        with self.lock:
            return any(i <= last_id for i in self._claimed)

    def sent(self, mid: int, oid: int | None) -> ReasonCode | int | None:
        """Map paho's ``mid`` to ``oid``; return the acknowledgement when it already arrived (else None)."""
        with self.lock:
            if mid in self._early_acks:
                return self._early_acks.pop(mid)
            self._mid_to_oid[mid] = oid
            return None

    def acknowledged(self, mid: int, reason: ReasonCode | int) -> tuple[bool, int | None]:
        """paho's ``on_publish`` for ``mid``: (True, its outbox id), or (False, None) when ``publish()`` has not
        returned yet (the acknowledgement is kept for :meth:`sent`)."""
        with self.lock:
            if mid not in self._mid_to_oid:
                self._early_acks[mid] = reason
                return False, None
            return True, self._mid_to_oid.pop(mid)

    def complete(self, oid: int, *, failed: bool) -> int:
        """``oid`` is acknowledged (or refused for good): out of flight, due for deletion, counted.  Returns how many
        acknowledged ids wait for deletion."""
        with self.lock:
            self._claimed.pop(oid, None)
            self._resync_ids.discard(oid)
            if oid not in self._acked_set:
                self._acked_set.add(oid)
                self._acked_unflushed.append(oid)
            self._counts["rejected" if failed else "acked"] += 1
            return len(self._acked_unflushed)

    def unflushed(self) -> list[int]:
        """Acknowledged ids not yet deleted from the outbox."""
        with self.lock:
            return list(self._acked_unflushed)

    def flushed(self, ids: list[int]) -> None:
        """``ids`` were deleted from the outbox."""
        with self.lock:
            done = set(ids)
            self._acked_unflushed = [i for i in self._acked_unflushed if i not in done]
            self._acked_set -= done

    def connected(self, resync_timeout_s: float) -> int:
        """A new connection: paho re-sends what was in flight at QoS > 0; those ids must be acknowledged (within
        ``resync_timeout_s``) before anything newer is sent.  Returns their number."""
        with self.lock:
            self._counts["connects"] += 1
            self._resync_ids = {oid for oid, q in self._claimed.items() if q > 0}
            self._resync_deadline = time.monotonic() + resync_timeout_s
            return len(self._resync_ids)

    def disconnected(self, *, was_connected: bool) -> None:
        """A connection ended (a failed attempt when it never got its CONNACK); QoS 0 messages are not kept by
        paho across a reconnect, so they leave the flight for the drain to send again."""
        with self.lock:
            self._counts["disconnects" if was_connected else "connect_failures"] += 1
            for oid in [o for o, q in self._claimed.items() if q == 0]:
                del self._claimed[oid]

    def forget(self) -> int:
        """Another client replaces the current one: what was in flight on it is forgotten (still in the outbox, it
        goes out again as backlog).  Returns how many messages that was."""
        with self.lock:
            dropped = len(self._claimed)
            self._claimed.clear()
            self._mid_to_oid.clear()
            self._early_acks.clear()
            self._resync_ids.clear()
            self._counts["broker_switches"] += 1
            return dropped
