"""Records of the durable outbox (:mod:`edge.publish.outbox`): a stored message, the counters, the full error.

Re-exported by :mod:`edge.publish.outbox`; import them from there.
"""

from __future__ import annotations

from dataclasses import dataclass

from edge.errors import OutboxError
from edge.publish.messages import Priority

__all__ = ["OutboxFullError", "OutboxMessage", "OutboxStats", "checked_message"]


class OutboxFullError(OutboxError):
    """The outbox is at its bound and the policy refuses the new message."""


@dataclass(frozen=True)
class OutboxMessage:
    """One stored message, as returned by :meth:`Outbox.pending`."""

    id: int
    topic: str
    payload: bytes
    qos: int
    retain: bool
    priority: Priority
    created_unix_s: float


@dataclass(frozen=True)
class OutboxStats:
    """Counters since this process opened the outbox, and the current backlog."""

    pending_messages: int
    pending_bytes: int
    max_messages: int
    max_bytes: int
    full: bool  #: alert flag: evicting/refusing or disk full, until usage is back below CLEAR_FRACTION
    stored: int  #: messages committed by put
    delivered: int  #: messages removed by ack
    evicted: int  #: messages dropped to make room (policy drop_oldest)
    refused: int  #: puts refused because the outbox was full
    store_errors: int  #: puts that failed on the disk (full, I/O error)
    recovered_corrupt: int  #: unreadable database files moved aside at open


def checked_message(topic: str, payload: bytes, qos: int) -> tuple[bytes, int]:
    """The payload as bytes and the message's size (topic + payload bytes); ValueError/TypeError on caller
    mistakes (QoS not 0..2, empty topic, a payload that is not bytes)."""
    if qos not in (0, 1, 2):
        raise ValueError(f"qos: expected 0, 1 or 2, got {qos!r}")
    if not isinstance(payload, (bytes, bytearray, memoryview)):
        raise TypeError(f"payload: expected bytes, got {type(payload).__name__}")
    if not topic:
        raise ValueError("topic: expected a non-empty topic, got ''")
    blob = bytes(payload)
    return blob, len(topic.encode("utf-8")) + len(blob)
