"""What a caller hands to :class:`edge.publish.mqtt.MqttPublisher`: the checks of a topic, QoS and payload
(caller mistakes raise ``ValueError``), a batch of payloads encoded for one outbox transaction, and the accounting
of messages the outbox refused (:class:`OutboxRefusals`: sent live without durability, or lost)."""

from __future__ import annotations

import logging
import time
from collections.abc import Callable, Mapping, Sequence
from typing import Any

from edge.errors import OutboxError
from edge.publish.log_limit import LOG_INTERVAL_S, LogLimiter
from edge.publish.messages import PRIORITY_OF_KIND, Priority
from edge.publish.schema import MessageError, MessageKind, encode
from edge.publish.topics import Topics

__all__ = ["MAX_PAYLOAD_BYTES", "OutboxRefusals", "check_publish", "encode_batch"]

log = logging.getLogger("edge.publish.mqtt")

#: Largest payload MQTT can carry.
MAX_PAYLOAD_BYTES = 268_435_455


def check_publish(topic: str, payload: object, qos: int) -> None:
    """Raise ``ValueError`` for a topic with wildcards or empty, QoS not 0..2, a payload too large or not bytes."""
    if qos not in (0, 1, 2):
        raise ValueError(f"qos: expected 0, 1 or 2, got {qos!r}")
    if not topic or "+" in topic or "#" in topic or "\x00" in topic:
        raise ValueError(f"topic: expected a topic name without wildcards, got {topic!r}")
    if not isinstance(payload, (bytes, bytearray)) or len(payload) > MAX_PAYLOAD_BYTES:
        raise ValueError(f"payload: expected at most {MAX_PAYLOAD_BYTES} bytes")


def encode_batch(messages: Sequence[tuple[MessageKind, Mapping[str, Any], str | None]], topics: Topics,
                 ) -> tuple[list[int | None | MessageError], list[tuple[int, str, bytes, Priority]]]:
    """Encode several payloads (not ``STATUS``): ``(results, batch)``, where ``results`` holds, per message, the
    :class:`edge.errors.MessageError` that kept it from being encoded (None for the others, to be filled by the
    caller) and ``batch`` the ``(index, topic, payload, priority)`` of those encoded."""
    results: list[int | None | MessageError] = [None] * len(messages)
    batch: list[tuple[int, str, bytes, Priority]] = []
    topic_of: dict[tuple[MessageKind, str | None], str] = {}  # a batch is mostly predictions: one topic
    for i, (kind, message, command) in enumerate(messages):
        if kind is MessageKind.STATUS:
            raise ValueError("publish_messages: expected no STATUS message (those go to set_status)")
        try:
            payload = encode(message)
        except MessageError as exc:
            results[i] = exc
            continue
        if len(payload) > MAX_PAYLOAD_BYTES:
            raise ValueError(f"payload: expected at most {MAX_PAYLOAD_BYTES} bytes")
        name = topic_of.get((kind, command))
        if name is None:
            name = topic_of[(kind, command)] = topics.for_kind(kind, command)
        batch.append((i, name, payload, PRIORITY_OF_KIND[kind]))
    return results, batch


class OutboxRefusals:
    """Counts and logs (one line a minute per kind, with counts) the messages the outbox refused to store.

    ``count(name)`` is the publisher's counter (:meth:`edge.publish.inflight.InFlight.count`).
    """

    def __init__(self, count: Callable[[str], None]) -> None:
        self._count = count
        self._logs = LogLimiter(LOG_INTERVAL_S, time.monotonic)

    def refused(self, exc: OutboxError, *, connected: bool) -> None:
        """One refused message: the caller sends it live without durability when ``connected``, else it is lost."""
        self._count("outbox_errors")
        if connected:
            due = self._logs.event("sent_without_outbox")
            if due is not None:
                log.warning("outbox refused %d message(s) in the last %.0f s (last: %s); sent live without "
                            "durability", due[0], LOG_INTERVAL_S, exc)
            self._count("sent_without_outbox")
        else:
            due = self._logs.event("lost")
            if due is not None:
                log.error("outbox refused %d message(s) in the last %.0f s (last: %s) while disconnected: "
                          "lost (counter mqtt_lost_outbox_unavailable)", due[0], LOG_INTERVAL_S, exc)
            self._count("lost_outbox_unavailable")
