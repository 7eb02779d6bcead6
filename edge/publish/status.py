"""The retained ``.../status`` of the MQTT publisher and the retained messages sent with it (Home Assistant
discovery): what is sent at every connect and on every change (see :mod:`edge.publish.mqtt`, "Status")."""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable, Mapping
from typing import Any

from edge.publish.messages import status_message
from edge.publish.schema import encode

__all__ = ["StatusChannel", "offline_status"]

log = logging.getLogger("edge.publish.mqtt")

#: Sends one retained message on a topic at QoS 1 (the publisher's send, outside the outbox).
Send = Callable[[str, bytes], object]


def offline_status(device_id: str, last_error: str | None) -> bytes:
    """The encoded retained ``offline`` status (the last will, and what a clean stop publishes)."""
    return encode(status_message(device_id=device_id, state="offline", last_error=last_error))


class StatusChannel:
    """The status payload of now, sent retained on ``topic`` through ``send``.

    ``lock`` orders :meth:`set` against the status sent at connect (by the drain thread, never in a paho callback:
    paho holds its callback lock there, which its publish() may take too): the last one sent is the newest.
    ``online`` and ``due`` are plain flags the paho callbacks set without the lock.
    """

    def __init__(self, topic: str, send: Send, source: Callable[[], Mapping[str, Any] | None] | None,
                 retained_source: Callable[..., list[tuple[str, bytes]]] | None) -> None:
        self.topic = topic
        self._send = send
        self._source = source
        self._retained_source = retained_source  # e.g. edge.homeassistant.Discovery.due
        self._payload: bytes | None = None
        self.lock = threading.Lock()
        self.online = False  #: the status of this connection was sent: set() publishes at once
        self.due = False  #: a new connection waits for its status (sent by the drain thread)

    def set(self, payload: bytes) -> None:
        """The new status: published now when this connection's status is out (with the retained messages that
        changed); otherwise the fallback of the next connect."""
        with self.lock:
            self._payload = bytes(payload)
            if self.online:
                self._send_retained(full=False)
                self._send(self.topic, bytes(payload))

    def send_at_connect(self, connected: Callable[[], bool]) -> None:
        """Publish the current status (fresh from ``source`` when there is one) and every retained message, on a
        new connection (drain thread); ``connected()`` says afterwards whether the connection still holds."""
        with self.lock:
            self.due = False
            if self._source is not None:
                try:
                    fresh = self._source()
                    if fresh is not None:
                        self._payload = encode(fresh)
                except Exception:  # a failing source must not cost the connection its status
                    log.exception("cannot build the current status; re-sending the last one")
            self._send_retained(full=True)
            if self._payload is not None:
                self._send(self.topic, self._payload)
            self.online = connected()

    def going_offline(self) -> None:
        """The publisher stops: from now on the retained status says offline."""
        with self.lock:
            self.online = False

    def connection_lost(self) -> None:
        """In paho's on_disconnect (no lock: paho holds its callback lock, which publish() may take)."""
        self.online = False
        self.due = False

    def _send_retained(self, *, full: bool) -> None:
        """Publish the ``retained_source``'s messages that are due (under ``lock``)."""
        if self._retained_source is None:
            return
        try:
            for topic, payload in self._retained_source(full=full):
                self._send(topic, payload)
        except Exception:  # a failing source must not cost the connection its status
            log.exception("cannot build the retained messages of the retained_source")
