"""What the MQTT publisher tests share (tests/edge/test_mqtt*.py): a configuration for the publisher alone, a
prediction payload, a persistent-session subscriber that records every message, and a bounded wait."""

from __future__ import annotations

import threading
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import EdgeConfig, parse_config
from edge.publish.messages import TargetValue, prediction_message
from edge.publish.schema import decode
from tests.support import daemon
from tests.support.broker import MosquittoBroker

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Deadline for something that must eventually happen (delivery, reconnection); never a speed goal.
EVENTUALLY_S = 30.0
PREFIX = "spectrolite/plant-a/line-3/nir-01"


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = EVENTUALLY_S) -> None:
    """Poll ``predicate`` until it holds; fail naming ``what`` after ``timeout_s`` (:func:`daemon.wait_for
    <tests.support.daemon.wait_for>` with the MQTT tests' deadline)."""
    daemon.wait_for(predicate, what, timeout_s)


def make_config(tmp_path: Path, port: int, **mqtt: Any) -> EdgeConfig:
    """A config for the publisher alone; commands on (the publisher subscribes to them), signed with a test key."""
    key = tmp_path / "hmac.key"
    tmp_path.mkdir(parents=True, exist_ok=True)
    key.write_bytes(b"mqtt-test-hmac-key-0123456789")
    doc: dict[str, Any] = {
        "device": {"site": "plant-a", "line": "line-3", "device_id": "nir-01"},
        "serial": {"port_url": "loop://"},
        "bundle": {"path": "model.bundle"},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_delay_s": 1, "reconnect_max_delay_s": 1,
                 "keepalive_s": 5, **mqtt},
        "outbox": {"path": "outbox.sqlite", "drain_rate_msgs_per_s": 0, "flush_timeout_s": 10},
        "commands": {"enabled": True, "hmac_key_path": str(key)},
    }
    return parse_config(doc, base_dir=tmp_path)


def prediction(seq: int) -> dict[str, Any]:
    """A prediction message of device nir-01 with sequence number ``seq``."""
    return prediction_message(device_id="nir-01", seq=seq, device_timestamp_us=seq * 1000, model_id="m",
                              model_version="1", targets=[TargetValue("api", "%", float(seq))])


class Subscriber:
    """A persistent-session QoS 1 subscriber recording every message under the device's topics."""

    def __init__(self, broker: MosquittoBroker, client: paho.Client | None = None, client_id: str = "test-sub",
                 topic_filter: str = f"{PREFIX}/#") -> None:
        self.messages: list[paho.MQTTMessage] = []
        self._lock = threading.Lock()
        self.subscribed = threading.Event()
        self.client = client or paho.Client(CallbackAPIVersion.VERSION2, client_id=client_id, clean_session=False)
        self.client.reconnect_delay_set(1, 1)
        self.client.on_connect = lambda c, u, f, rc, p: c.subscribe(topic_filter, qos=1)
        self.client.on_subscribe = lambda c, u, mid, rcs, p: self.subscribed.set()
        self.client.on_message = self._on_message
        self.client.connect_async(broker.host, broker.port, keepalive=5)
        self.client.loop_start()
        assert self.subscribed.wait(EVENTUALLY_S), "subscriber never subscribed"

    def _on_message(self, client: paho.Client, userdata: Any, msg: paho.MQTTMessage) -> None:
        with self._lock:
            self.messages.append(msg)

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            msgs = list(self.messages)
        return [decode(bytes(m.payload)) for m in msgs if m.topic.endswith("/" + kind)]

    def seqs(self) -> list[int]:
        return [m["seq"] for m in self.of_kind("prediction")]

    def close(self) -> None:
        self.client.disconnect()
        self.client.loop_stop()


def first_arrivals(seqs: list[int]) -> list[int]:
    """``seqs`` without repeats, in the order each first arrived."""
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out
