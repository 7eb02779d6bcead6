"""The retained ``.../status`` tells what holds now (issue 13): it lists the alerts active now, is re-published when
they change, and a reconnect publishes the current state with a fresh time, not a copy of an older status.

Real parts: a real mosquitto (stopped and started again on the same port, retained messages persisted), the
publisher of :mod:`edge.publish.mqtt`, and for the daemon ``spectro-sim`` with a provoked drift on a real pty ->
``spectro-edge run`` -> the broker -> fresh subscribers that read the retained status as a newcomer would.
"""

from __future__ import annotations

import json
import time
from pathlib import Path
from typing import Any

from benchmarks.harness.subscriber import RETAINED_WAIT_S, Endpoint, read_retained
from edge.config import parse_config
from edge.publish.messages import status_message
from edge.publish.mqtt import MqttPublisher
from edge.publish.outbox import Outbox
from edge.publish.schema import decode, encode
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import BASE_TOPIC, start_daemon, start_sim, write_config


def _newer_retained(broker: Endpoint, topic: str, after_unix_s: float) -> dict[str, Any] | None:
    msg = read_retained(broker, topic)
    return msg if msg is not None and msg["time_unix_s"] > after_unix_s else None


def test_reconnect_publishes_the_status_of_now(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    """The publisher asks its status source at every connect: the state changed during the outage is what the
    retained status says afterwards, with a fresh time."""
    cfg = parse_config({"device": {"site": "s", "line": "l", "device_id": "nir-01"}, "serial": {"port_url": "loop://"},
                        "bundle": {"path": "m"},
                        "mqtt": {"host": "127.0.0.1", "port": mosquitto_broker.port, "reconnect_min_delay_s": 1,
                                 "reconnect_max_delay_s": 1},
                        "outbox": {"path": str(tmp_path / "outbox.sqlite")}}, base_dir=tmp_path)
    alerts: list[str] = []
    topic = "spectrolite/s/l/nir-01/status"

    def source() -> dict[str, Any]:
        return status_message(device_id="nir-01", state="online", alerts=list(alerts))

    outbox = Outbox(cfg.outbox.path)
    pub = MqttPublisher(cfg, outbox, status_source=source)
    try:
        pub.set_status(encode(source()))
        pub.start()
        assert pub.wait_connected(RETAINED_WAIT_S)
        first = read_retained(mosquitto_broker, topic)
        assert first is not None and first["alerts"] == []

        mosquitto_broker.stop()
        wait_for(lambda: not pub.connected, "the publisher to notice the outage")
        alerts.append("drift:ood_q")  # changed while nothing could be published
        mosquitto_broker.start()
        assert pub.wait_connected(30.0)
        wait_for(lambda: _newer_retained(mosquitto_broker, topic, first["time_unix_s"]) is not None,
                 "a retained status newer than the one before the outage")
        after = read_retained(mosquitto_broker, topic)
    finally:
        pub.stop()
        outbox.close()
    assert after is not None
    decode(json.dumps(after).encode())
    assert after["alerts"] == ["drift:ood_q"] and after["time_unix_s"] > first["time_unix_s"]


def test_retained_status_shows_active_drift_alerts_and_keeps_them_across_a_broker_restart(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Any,
    procs: list[Any],
) -> None:
    sim, path = start_sim(tmp_path, count=0, rate_hz=50.0, extra=("--drift-at", "100"))
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    topic = f"{BASE_TOPIC}/status"

    def raised() -> list[str]:
        return [m["detector"] for m in subscriber.kind("/drift") if m["event"] == "raised"]

    wait_for(lambda: any(d.startswith("ood_") for d in raised()), "an OOD drift alert")
    detector = next(d for d in raised() if d.startswith("ood_"))
    wait_for(lambda: f"drift:{detector}" in (read_retained(mosquitto_broker, topic) or {}).get("alerts", ()),
             f"drift:{detector} in the retained status")
    before = read_retained(mosquitto_broker, topic)
    assert before is not None and before["state"] == "online"

    mosquitto_broker.stop()
    time.sleep(2.0)  # an outage: the daemon notices, keeps predicting into its outbox
    mosquitto_broker.start()
    wait_for(lambda: _newer_retained(mosquitto_broker, topic, before["time_unix_s"]) is not None,
             "the status re-published at the reconnect", timeout_s=60.0)
    after = read_retained(mosquitto_broker, topic)
    assert daemon.alive(), daemon.text()
    assert after is not None and after["state"] == "online"
    assert after["time_unix_s"] > before["time_unix_s"]
    assert f"drift:{detector}" in after["alerts"], after  # still drifting: the current alerts, not start-up ones
    drift_after = {a for a in after["alerts"] if a.startswith("drift:")}
    raised_now = {f"drift:{m['detector']}" for m in subscriber.kind("/drift") if m["event"] == "raised"}
    cleared_now = {f"drift:{m['detector']}" for m in subscriber.kind("/drift") if m["event"] == "cleared"}
    assert drift_after <= raised_now, (drift_after, raised_now, cleared_now)
    assert daemon.end() == 0, daemon.text()
