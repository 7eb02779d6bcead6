"""Tests of edge.publish.mqtt against a real mosquitto: delivery, outages, kill -9, status, commands, an outbox
that cannot store, client-id clashes, the backlog's rate limit (TLS, passwords and the ACL: test_mqtt_security.py;
moving to another broker: test_mqtt_switch.py)."""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import EdgeConfig, parse_config
from edge.publish.messages import status_message
from edge.publish.mqtt import MqttPublisher
from edge.publish.outbox import Outbox
from edge.publish.schema import MessageKind, encode
from edge.publish.topics import Topics
from tests.support.broker import MosquittoBroker
from tests.support.mqtt_cases import (
    EVENTUALLY_S,
    PREFIX,
    REPO_ROOT,
    Subscriber,
    first_arrivals,
    make_config,
    prediction,
    wait_for,
)


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_messages_are_delivered_and_leave_the_outbox(tmp_path: Path, mosquitto_broker: MosquittoBroker,
                                                     protocol: str) -> None:
    cfg = make_config(tmp_path, mosquitto_broker.port, protocol=protocol)
    sub = Subscriber(mosquitto_broker)
    outbox = Outbox.from_config(cfg.outbox)
    pub = MqttPublisher(cfg, outbox)
    try:
        pub.start()
        pub.set_status(encode(status_message(device_id="nir-01", state="online", model_id="m", model_version="1")))
        assert pub.wait_connected(EVENTUALLY_S)  # all live: one stream, strictly ordered
        ids = [pub.publish_message(MessageKind.PREDICTION, prediction(i)) for i in range(50)]
        assert all(isinstance(i, int) for i in ids)
        wait_for(lambda: len(set(sub.seqs())) == 50, "50 predictions received")
        assert pub.wait_until_drained(EVENTUALLY_S)
        assert len(outbox) == 0
        assert first_arrivals(sub.seqs()) == list(range(50))
        stats = pub.stats()
        assert stats.acked == 50 and stats.inflight == 0 and stats.connects >= 1
        # a late subscriber sees the retained online status
        late = Subscriber(mosquitto_broker, client_id="late", topic_filter=f"{PREFIX}/status")
        wait_for(lambda: late.of_kind("status") != [], "retained status")
        assert late.of_kind("status")[-1]["state"] == "online"
        late.close()
    finally:
        pub.stop()
        outbox.close()
        sub.close()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_broker_outage_loses_nothing_and_keeps_order(tmp_path: Path, mosquitto_broker: MosquittoBroker,
                                                     protocol: str) -> None:
    cfg = make_config(tmp_path, mosquitto_broker.port, protocol=protocol)
    sub = Subscriber(mosquitto_broker)
    outbox = Outbox.from_config(cfg.outbox)
    pub = MqttPublisher(cfg, outbox)
    try:
        pub.start()
        assert pub.wait_connected(EVENTUALLY_S)
        for i in range(40):  # live, the broker dies in the middle of this stream
            pub.publish_message(MessageKind.PREDICTION, prediction(i))
            if i == 25:
                mosquitto_broker.stop()
        wait_for(lambda: not pub.connected, "publisher notices the outage")
        for i in range(40, 80):  # broker down: all stored
            pub.publish_message(MessageKind.PREDICTION, prediction(i))
        assert len(outbox) >= 40
        mosquitto_broker.start()
        assert pub.wait_connected(EVENTUALLY_S)
        for i in range(80, 100):  # live again while the backlog drains
            pub.publish_message(MessageKind.PREDICTION, prediction(i))
        wait_for(lambda: set(sub.seqs()) == set(range(100)), "all 100 predictions received")
        assert pub.wait_until_drained(EVENTUALLY_S)
        arrivals = first_arrivals(sub.seqs())
        backlog = [s for s in arrivals if s < 80]
        live = [s for s in arrivals if s >= 80]
        assert backlog == sorted(backlog)  # the backlog replays in order
        assert live == sorted(live)
        stats = pub.stats()
        assert stats.disconnects >= 1 and stats.connects >= 2 and stats.sent_backlog >= 40
    finally:
        pub.stop()
        outbox.close()
        sub.close()


CRASHING_PUBLISHER = textwrap.dedent("""
    import sys, time
    from pathlib import Path
    from edge.config import parse_config
    from edge.publish.messages import TargetValue, prediction_message
    from edge.publish.mqtt import MqttPublisher
    from edge.publish.outbox import Outbox
    from edge.publish.schema import MessageKind
    tmp, port, first, count = Path(sys.argv[1]), int(sys.argv[2]), int(sys.argv[3]), int(sys.argv[4])
    cfg = parse_config({
        "device": {"site": "plant-a", "line": "line-3", "device_id": "nir-01"},
        "serial": {"port_url": "loop://"}, "bundle": {"path": "model.bundle"},
        "mqtt": {"host": "127.0.0.1", "port": port, "keepalive_s": 5, "reconnect_min_delay_s": 1,
                 "reconnect_max_delay_s": 1},
        "outbox": {"path": "outbox.sqlite"}}, base_dir=tmp)
    pub = MqttPublisher(cfg, Outbox.from_config(cfg.outbox))
    pub.start()
    if sys.argv[5] == "connected":
        assert pub.wait_connected(30)
    for i in range(first, first + count):
        pub.publish_message(MessageKind.PREDICTION, prediction_message(
            device_id="nir-01", seq=i, device_timestamp_us=i, model_id="m", model_version="1",
            targets=[TargetValue("api", "%", float(i))]))
    print("published", flush=True)
    time.sleep(600)
""")


def run_and_kill(tmp_path: Path, port: int, first: int, count: int, mode: str) -> None:
    """Run a publisher in a child process, let it publish, then SIGKILL it."""
    env = dict(os.environ, PYTHONPATH=str(REPO_ROOT))
    proc = subprocess.Popen([sys.executable, "-c", CRASHING_PUBLISHER, str(tmp_path), str(port), str(first),
                             str(count), mode], stdout=subprocess.PIPE, env=env, text=True)
    try:
        assert proc.stdout is not None
        assert proc.stdout.readline().strip() == "published"
    finally:
        proc.send_signal(signal.SIGKILL)
        proc.wait()
        if proc.stdout is not None:
            proc.stdout.close()


def test_sigkilled_publisher_loses_nothing(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    sub = Subscriber(mosquitto_broker)
    try:
        mosquitto_broker.stop()
        run_and_kill(tmp_path, mosquitto_broker.port, 0, 60, "offline")  # killed with 60 in the outbox
        mosquitto_broker.start()
        run_and_kill(tmp_path, mosquitto_broker.port, 60, 30, "connected")  # replays, adds 30, killed again
        cfg = make_config(tmp_path, mosquitto_broker.port)
        outbox = Outbox.from_config(cfg.outbox)
        pub = MqttPublisher(cfg, outbox)
        try:
            pub.start()
            wait_for(lambda: set(sub.seqs()) == set(range(90)), "all 90 predictions after two kills")
            assert pub.wait_until_drained(EVENTUALLY_S)
        finally:
            pub.stop()
            outbox.close()
    finally:
        sub.close()


def test_last_will_says_offline_after_sigkill(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    sub = Subscriber(mosquitto_broker)
    try:
        run_and_kill(tmp_path, mosquitto_broker.port, 0, 1, "connected")
        # the kernel closes the killed process's socket without DISCONNECT: the broker publishes the will (a
        # vanished network would take 1.5 keepalives instead)
        wait_for(lambda: any(s["state"] == "offline" for s in sub.of_kind("status")), "offline last will")
        will = sub.of_kind("status")[-1]
        assert will["state"] == "offline" and will["last_error"] == "connection lost"
    finally:
        sub.close()


def test_clean_stop_publishes_offline_retained(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    cfg = make_config(tmp_path, mosquitto_broker.port)
    with Outbox.from_config(cfg.outbox) as outbox:
        pub = MqttPublisher(cfg, outbox)
        pub.start()
        pub.set_status(encode(status_message(device_id="nir-01", state="online")))
        assert pub.wait_connected(EVENTUALLY_S)
        pub.publish_message(MessageKind.PREDICTION, prediction(1))
        pub.stop()
        assert len(outbox) == 0  # flushed before going offline
    late = Subscriber(mosquitto_broker, client_id="late", topic_filter=f"{PREFIX}/status")
    try:
        wait_for(lambda: late.of_kind("status") != [], "retained status")
        status = late.of_kind("status")
        assert status[-1]["state"] == "offline" and status[-1]["last_error"] is None
        assert late.messages[-1].retain
    finally:
        late.close()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_commands_reach_the_handler_and_retained_ones_are_flagged(tmp_path: Path, mosquitto_broker: MosquittoBroker,
                                                                  protocol: str) -> None:
    """Retained command messages reach the handler with ``retained=True`` (it refuses them); with MQTT 5 (Retain As
    Published) also one published retained while the daemon is subscribed, which MQTT 3.1.1 delivers unflagged."""
    cfg = make_config(tmp_path, mosquitto_broker.port, protocol=protocol)
    received: list[tuple[str, bytes, bool]] = []
    topics = Topics.from_config(cfg)
    sender = paho.Client(CallbackAPIVersion.VERSION2, client_id="operator")
    sender.connect(mosquitto_broker.host, mosquitto_broker.port)
    sender.loop_start()

    def handler(name: str, payload: bytes, *, retained: bool = False) -> None:
        received.append((name, payload, retained))

    with Outbox.from_config(cfg.outbox) as outbox:
        pub = MqttPublisher(cfg, outbox, on_command=handler)
        try:
            sender.publish(topics.command("capture_dark"), b'{"retained": true}', qos=1, retain=True).wait_for_publish()
            pub.start()
            assert pub.wait_connected(EVENTUALLY_S)
            wait_for(lambda: len(received) == 1, "the retained command handed over")
            sender.publish(topics.command("capture_dark"), b'{"x": 1}', qos=1).wait_for_publish()
            sender.publish(topics.command_response("capture_dark"), b"{}", qos=1).wait_for_publish()
            sender.publish(topics.command("reload_bundle"), b'{"y": 2}', qos=1).wait_for_publish()
            sender.publish(topics.command("set_integration_time"), b'{"z": 3}', qos=1, retain=True).wait_for_publish()
            wait_for(lambda: len(received) == 4, "three more commands handed over")
            assert received == [("capture_dark", b'{"retained": true}', True), ("capture_dark", b'{"x": 1}', False),
                                ("reload_bundle", b'{"y": 2}', False),
                                ("set_integration_time", b'{"z": 3}', protocol == "5")]
            assert pub.stats().commands_received == 4
        finally:
            pub.stop()
            for name in ("capture_dark", "set_integration_time"):  # clear
                sender.publish(topics.command(name), b"", qos=1, retain=True).wait_for_publish()
            sender.disconnect()
            sender.loop_stop()


def test_live_data_flows_when_the_outbox_cannot_store(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    cfg = make_config(tmp_path, mosquitto_broker.port)
    sub = Subscriber(mosquitto_broker)
    outbox = Outbox(cfg.outbox.path, full_policy="refuse_new")
    pub = MqttPublisher(cfg, outbox)
    try:
        pub.start()
        assert pub.wait_connected(EVENTUALLY_S)
        pages = outbox._conn.execute("PRAGMA page_count").fetchone()[0]
        outbox._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        big = prediction(7)
        big["quality_reasons"] = ["x" * 1000] * 20  # 20 kB of schema-valid text: needs new pages
        assert pub.publish_message(MessageKind.PREDICTION, big) is None
        wait_for(lambda: 7 in sub.seqs(), "live prediction despite the full outbox")
        stats = pub.stats()
        assert stats.sent_without_outbox == 1 and stats.outbox_errors == 1
        assert outbox.full
    finally:
        pub.stop()
        outbox.close()
        sub.close()


def test_messages_lost_on_a_full_outbox_while_disconnected_are_counted_and_logged_once(
        tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    import logging
    import socket

    with socket.socket() as s:  # a port nobody listens on: the publisher stays disconnected
        s.bind(("127.0.0.1", 0))
        port = s.getsockname()[1]
    cfg = make_config(tmp_path, port)
    outbox = Outbox(cfg.outbox.path, full_policy="refuse_new")
    pub = MqttPublisher(cfg, outbox)
    try:
        pages = outbox._conn.execute("PRAGMA page_count").fetchone()[0]
        outbox._conn.execute(f"PRAGMA max_page_count = {pages}")  # the disk is full
        big = prediction(7)
        big["quality_reasons"] = ["x" * 1000] * 20  # needs new pages
        with caplog.at_level(logging.ERROR, logger="edge.publish.mqtt"):
            for _ in range(200):
                assert pub.publish_message(MessageKind.PREDICTION, big) is None
        assert pub.stats().lost_outbox_unavailable == 200  # every loss counted
        lines = [r for r in caplog.records if r.name == "edge.publish.mqtt" and "lost" in r.getMessage()]
        assert len(lines) == 1, [r.getMessage() for r in lines]  # not one line per lost message
    finally:
        pub.stop()
        outbox.close()


@pytest.mark.parametrize("protocol", ["5", "3.1.1"])
def test_two_daemons_with_one_device_id_are_told_why_they_knock_each_other_off(
        tmp_path: Path, mosquitto_broker: MosquittoBroker, caplog: pytest.LogCaptureFixture, protocol: str) -> None:
    import logging

    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    first = MqttPublisher(make_config(tmp_path / "a", mosquitto_broker.port, protocol=protocol),
                          Outbox.from_config(make_config(tmp_path / "a", mosquitto_broker.port).outbox))
    second = MqttPublisher(make_config(tmp_path / "b", mosquitto_broker.port, protocol=protocol),
                           Outbox.from_config(make_config(tmp_path / "b", mosquitto_broker.port).outbox))
    try:
        with caplog.at_level(logging.ERROR, logger="edge.publish.mqtt"):
            first.start()
            assert first.wait_connected(EVENTUALLY_S)
            second.start()  # same device_id, so the same client id: the broker takes the session over
            wait_for(lambda: any("second daemon" in r.getMessage() for r in caplog.records),
                     "an ERROR naming the client-id clash")
    finally:
        first.stop()
        second.stop()
    # mosquitto closes the older connection without an MQTT 5 "session taken over" reason, under either protocol,
    # so the hint here comes from the repeated short sessions; the counter moves only where a broker gives the reason.
    lost = first.stats().disconnects + second.stats().disconnects
    assert lost >= 3


def test_payloads_on_the_wire_are_the_encoded_json(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    cfg = make_config(tmp_path, mosquitto_broker.port)
    sub = Subscriber(mosquitto_broker)
    with Outbox.from_config(cfg.outbox) as outbox:
        pub = MqttPublisher(cfg, outbox)
        try:
            pub.start()
            msg = prediction(3)
            pub.publish_message(MessageKind.PREDICTION, msg)
            wait_for(lambda: sub.seqs() == [3], "one prediction")
            raw = sub.messages[-1].payload
            assert raw == encode(msg) and json.loads(raw) == msg
            assert sub.messages[-1].qos == 1 and not sub.messages[-1].retain
        finally:
            pub.stop()
            sub.close()


def test_rate_limited_backlog_drains_alongside_live_data(tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    """A backlog replayed at 5 messages/s does not hold back live data published meanwhile."""
    backlog_n, live_n = 20, 5
    cfg = make_config(tmp_path, mosquitto_broker.port)
    with Outbox.from_config(cfg.outbox) as outbox:
        for i in range(backlog_n):  # left by an outage or a previous run
            outbox.put(Topics.from_config(cfg).prediction, encode(prediction(i)))
    slow = parse_config({**_doc_of(cfg), "outbox": {"path": str(cfg.outbox.path), "drain_rate_msgs_per_s": 5}},
                        base_dir=tmp_path)
    sub = Subscriber(mosquitto_broker)
    with Outbox.from_config(slow.outbox) as outbox:
        pub = MqttPublisher(slow, outbox)
        try:
            pub.start()
            assert pub.wait_connected(EVENTUALLY_S)
            for i in range(backlog_n, backlog_n + live_n):
                pub.publish_message(MessageKind.PREDICTION, prediction(i))
            wait_for(lambda: set(sub.seqs()) == set(range(backlog_n + live_n)), "backlog and live data")
            arrivals = first_arrivals(sub.seqs())
            backlog = [s for s in arrivals if s < backlog_n]
            assert backlog == list(range(backlog_n))
            assert arrivals.index(backlog_n) < arrivals.index(backlog_n - 1)  # live overtook the backlog's tail
            assert pub.stats().sent_backlog == backlog_n
        finally:
            pub.stop()
            sub.close()


def _doc_of(cfg: EdgeConfig) -> dict[str, Any]:
    return {"device": {"site": cfg.device.site, "line": cfg.device.line, "device_id": cfg.device.device_id},
            "serial": {"port_url": cfg.serial.port_url}, "bundle": {"path": str(cfg.bundle.path)},
            "mqtt": {"host": cfg.mqtt.host, "port": cfg.mqtt.port, "keepalive_s": cfg.mqtt.keepalive_s,
                     "reconnect_min_delay_s": 1, "reconnect_max_delay_s": 1}}
