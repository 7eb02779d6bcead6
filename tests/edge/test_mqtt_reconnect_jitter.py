"""A site's devices that lose their broker together do not come back together (#15: reconnect with full jitter).

Eight publishers, each as a daemon builds it, share a real mosquitto; the broker restarts; each publisher's
reconnection time is recorded.  paho's own backoff depends on the attempt number only, so without jitter all eight
reconnect within a few milliseconds of one another; with full jitter their first retries spread over
``[reconnect_min_delay_s, 2 reconnect_min_delay_s]``.
"""

from __future__ import annotations

import random
import time
from pathlib import Path

import pytest

from edge.config import parse_config
from edge.publish.mqtt import MqttPublisher
from edge.publish.outbox import Outbox
from tests.support.broker import MosquittoBroker

pytestmark = pytest.mark.slow

DEVICES = 8
#: Deadline for something that must eventually happen (a reconnection); never a speed goal.
EVENTUALLY_S = 30.0


def _publisher(tmp_path: Path, port: int, i: int) -> tuple[MqttPublisher, Outbox]:
    cfg = parse_config({
        "device": {"site": "plant-a", "line": "line-3", "device_id": f"nir-{i:02d}"},
        "serial": {"port_url": "loop://"},
        "bundle": {"path": "model.bundle"},
        "mqtt": {"host": "127.0.0.1", "port": port, "reconnect_min_delay_s": 1, "reconnect_max_delay_s": 8,
                 "keepalive_s": 5},
        "outbox": {"path": f"outbox-{i}.sqlite"},
    }, base_dir=tmp_path)
    outbox = Outbox.from_config(cfg.outbox)
    return MqttPublisher(cfg, outbox, rng=random.Random(i)), outbox


def test_a_broker_restart_does_not_bring_the_fleet_back_in_lock_step(tmp_path: Path,
                                                                      mosquitto_broker: MosquittoBroker) -> None:
    fleet = [_publisher(tmp_path, mosquitto_broker.port, i) for i in range(DEVICES)]
    try:
        for pub, _ in fleet:
            pub.start()
        assert all(pub.wait_connected(EVENTUALLY_S) for pub, _ in fleet)
        mosquitto_broker.stop()
        mosquitto_broker.start()
        back: dict[int, float] = {}
        deadline = time.monotonic() + EVENTUALLY_S
        while len(back) < DEVICES and time.monotonic() < deadline:
            for i, (pub, _) in enumerate(fleet):
                if i not in back and pub.stats().connects >= 2:
                    back[i] = time.monotonic()
            time.sleep(0.005)
        assert len(back) == DEVICES, f"expected all {DEVICES} publishers back, got {sorted(back)}"
        spread_s = max(back.values()) - min(back.values())
        # Seeds 0-7 draw first delays from 1.13 s to 1.96 s; the broker is back before the earliest.
        assert spread_s > 0.4, f"expected reconnections spread over the jitter window, got {spread_s:.3f} s"
    finally:
        for pub, outbox in fleet:
            pub.stop()
            outbox.close()
