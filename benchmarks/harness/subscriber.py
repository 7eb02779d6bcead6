"""The loop's MQTT subscriber: a paho-mqtt client keeping predictions, drift alerts, status and metrics."""

from __future__ import annotations

import json
import os
import threading
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

from benchmarks.harness.broker import Broker
from benchmarks.harness.errors import HarnessError
from benchmarks.harness.settings import DEVICE, LINE, SITE, START_TIMEOUT_S, TOPIC_PREFIX

__all__ = ["Inbox", "Subscriber"]


@dataclass
class Inbox:
    """What the subscriber received (guarded by ``lock``)."""

    lock: threading.Lock = field(default_factory=threading.Lock)
    predictions: dict[int, dict[str, Any]] = field(default_factory=dict)
    receipt_us: dict[int, int] = field(default_factory=dict)
    duplicates: int = 0
    drift: list[dict[str, Any]] = field(default_factory=list)
    status: list[dict[str, Any]] = field(default_factory=list)
    metrics: dict[str, Any] | None = None
    responses: list[dict[str, Any]] = field(default_factory=list)  #: command responses (``.../cmd/<name>/response``)

    def count(self) -> int:
        with self.lock:
            return len(self.predictions)


class Subscriber:
    """paho-mqtt 2.x client on ``<prefix>/<site>/<line>/<device>/#`` at QoS 1, keeping what arrives in :attr:`inbox`.

    ``on_prediction(body)`` and ``on_drift(body)`` are called from paho's thread for each new message.
    """

    def __init__(self, broker: Broker, *, qos: int = 1, on_prediction: Callable[[dict[str, Any]], None] | None = None,
                 on_drift: Callable[[dict[str, Any]], None] | None = None, client_id: str | None = None) -> None:
        import paho.mqtt.client as mqtt

        self.inbox = Inbox()
        self.base = f"{TOPIC_PREFIX}/{SITE}/{LINE}/{DEVICE}"
        self._on_prediction = on_prediction
        self._on_drift = on_drift
        self._subscribed = threading.Event()
        self.client = mqtt.Client(mqtt.CallbackAPIVersion.VERSION2,
                                  client_id=client_id or f"spectrolite-harness-{os.getpid()}", clean_session=True)
        self.client.max_inflight_messages_set(100)
        self.client.on_connect = lambda c, u, f, rc, p=None: c.subscribe(f"{self.base}/#", qos=qos)
        self.client.on_subscribe = lambda c, u, mid, rcs, p=None: self._subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect(broker.host, broker.port, keepalive=30)
        self.client.loop_start()
        if not self._subscribed.wait(START_TIMEOUT_S):
            self.close()
            raise HarnessError(f"the subscriber could not subscribe on {broker.description}")

    def _on_message(self, client: Any, userdata: Any, msg: Any) -> None:
        now_us = time.monotonic_ns() // 1000
        try:
            body = json.loads(msg.payload.decode("utf-8"))
        except (UnicodeDecodeError, ValueError):
            return
        kind = msg.topic.rsplit("/", 1)[-1]
        inbox = self.inbox
        if kind == "prediction":
            seq = int(body["seq"])
            with inbox.lock:
                if seq in inbox.predictions:
                    inbox.duplicates += 1
                    return
                inbox.predictions[seq] = body
                inbox.receipt_us[seq] = now_us
            if self._on_prediction is not None:
                self._on_prediction(body)
        elif kind == "drift":
            with inbox.lock:
                inbox.drift.append(body)
            if self._on_drift is not None:
                self._on_drift(body)
        elif kind == "status":
            with inbox.lock:
                inbox.status.append(body)
        elif kind == "metrics":
            with inbox.lock:
                inbox.metrics = body
        elif kind == "response":
            with inbox.lock:
                inbox.responses.append(body)

    def reset(self) -> None:
        """Forget what arrived (between runs on one broker)."""
        with self.inbox.lock:
            lock = self.inbox.lock
            self.inbox = Inbox(lock=lock)

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()
