"""Tests of edge.publish.mqtt against a real mosquitto: delivery, outages, kill -9, status, commands, TLS and
passwords."""


from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import textwrap
import threading
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import EdgeConfig, parse_config
from edge.publish.client import build_client
from edge.publish.messages import TargetValue, prediction_message, status_message
from edge.publish.mqtt import MqttPublisher
from edge.publish.outbox import Outbox
from edge.publish.schema import MessageKind, decode, encode
from edge.publish.topics import Topics
from tests.support.broker import MosquittoBroker, TestPki, make_test_pki

REPO_ROOT = Path(__file__).resolve().parents[2]
#: Deadline for something that must eventually happen (delivery, reconnection); never a speed goal.
EVENTUALLY_S = 30.0
PREFIX = "spectrolite/plant-a/line-3/nir-01"


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = EVENTUALLY_S) -> None:
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"never happened within {timeout_s} s: {what}")


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
    seen: set[int] = set()
    out = []
    for s in seqs:
        if s not in seen:
            seen.add(s)
            out.append(s)
    return out


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


def _tls_broker(mosquitto_factory: Callable[..., MosquittoBroker], pki: TestPki) -> MosquittoBroker:
    return mosquitto_factory(tls=pki, require_certificate=True, passwords={"nir-01": "s3cret", "ops": "ops-pw"})


def test_tls_with_client_certificate_and_password(tmp_path: Path,
                                                  mosquitto_factory: Callable[..., MosquittoBroker]) -> None:
    pki = make_test_pki(tmp_path / "pki")
    broker = _tls_broker(mosquitto_factory, pki)
    pw = tmp_path / "mqtt.pw"
    pw.write_text("s3cret\n")
    tls = {"enabled": True, "ca_path": str(pki.ca_cert), "cert_path": str(pki.client_cert),
           "key_path": str(pki.client_key)}
    cfg = make_config(tmp_path, broker.port, username="nir-01", password_file=str(pw), tls=tls, protocol="5")
    sub_cfg = make_config(tmp_path, broker.port, username="ops", password="ops-pw", tls=tls)
    sub = Subscriber(broker, client=build_client(sub_cfg, client_id="ops-sub"))
    with Outbox.from_config(cfg.outbox) as outbox:
        pub = MqttPublisher(cfg, outbox)
        try:
            pub.start()
            for i in range(5):
                pub.publish_message(MessageKind.PREDICTION, prediction(i))
            wait_for(lambda: set(sub.seqs()) == set(range(5)), "predictions over mutual TLS")
            assert pub.wait_until_drained(EVENTUALLY_S)
        finally:
            pub.stop()
            sub.close()


@pytest.mark.parametrize("fault", ["wrong_password", "unknown_ca", "no_client_cert"])
def test_bad_credentials_never_connect_and_keep_the_outbox(tmp_path: Path, fault: str,
                                                           mosquitto_factory: Callable[..., MosquittoBroker]) -> None:
    pki = make_test_pki(tmp_path / "pki")
    broker = _tls_broker(mosquitto_factory, pki)
    tls: dict[str, Any] = {"enabled": True, "ca_path": str(pki.ca_cert), "cert_path": str(pki.client_cert),
                           "key_path": str(pki.client_key)}
    password = "s3cret"
    if fault == "wrong_password":
        password = "guess"
    elif fault == "unknown_ca":
        tls["ca_path"] = str(pki.other_ca_cert)
    else:
        del tls["cert_path"], tls["key_path"]
    cfg = make_config(tmp_path, broker.port, username="nir-01", password=password, tls=tls)
    with Outbox.from_config(cfg.outbox) as outbox:
        pub = MqttPublisher(cfg, outbox)
        try:
            pub.start()
            pub.publish_message(MessageKind.PREDICTION, prediction(1))
            wait_for(lambda: pub.stats().connect_failures >= 1, f"{fault} refused")
            assert not pub.connected
            assert len(outbox) == 1  # kept for when the credentials are fixed
        finally:
            pub.stop(flush_timeout_s=0)


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


def _documented_acl(repo_root: Path) -> str:
    blocks: list[str] = []
    current: list[str] | None = None
    for line in (repo_root / "docs" / "mqtt.md").read_text().splitlines():
        if line.strip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    blocks = [b for b in blocks if b.startswith("# /etc/mosquitto/acl")]
    assert len(blocks) == 1, "expected one ACL example in docs/mqtt.md"
    return blocks[0]


def test_documented_acl_confines_a_device_to_its_own_topics(tmp_path: Path, repo_root: Path,
                                                             mosquitto_factory: Callable[..., MosquittoBroker]) -> None:
    broker = mosquitto_factory(passwords={"nir-01": "pw1", "nir-02": "pw2", "ops": "pw-ops"},
                               acl=_documented_acl(repo_root))
    ops = paho.Client(CallbackAPIVersion.VERSION2, client_id="ops-sub", clean_session=False)
    ops.username_pw_set("ops", "pw-ops")
    sub = Subscriber(broker, client=ops, topic_filter="spectrolite/#")
    rogue = paho.Client(CallbackAPIVersion.VERSION2, client_id="rogue")
    rogue.username_pw_set("nir-01", "pw1")
    rogue.connect(broker.host, broker.port)
    rogue.loop_start()
    other = "spectrolite/plant-a/line-3/nir-02"
    try:
        # forbidden first, then an allowed marker on the same connection: if the forbidden messages had been
        # accepted they would arrive before the marker
        rogue.publish(f"{other}/prediction", b"impersonation", qos=1).wait_for_publish()
        rogue.publish(f"{PREFIX}/cmd/reload_bundle", b"self-command", qos=1).wait_for_publish()
        rogue.publish(f"{other}/cmd/reload_bundle", b"command to another device", qos=1).wait_for_publish()
        rogue.publish(f"{PREFIX}/metrics", b"marker", qos=1).wait_for_publish()
        wait_for(lambda: any(m.payload == b"marker" for m in sub.messages), "allowed marker")
        assert [m.payload for m in sub.messages] == [b"marker"]
        # the daemon's own publisher works under the same ACL
        cfg = make_config(tmp_path, broker.port, username="nir-01", password="pw1")
        with Outbox.from_config(cfg.outbox) as outbox:
            pub = MqttPublisher(cfg, outbox)
            try:
                pub.start()
                pub.publish_message(MessageKind.PREDICTION, prediction(5))
                wait_for(lambda: 5 in sub.seqs(), "own prediction")
            finally:
                pub.stop()
    finally:
        rogue.disconnect()
        rogue.loop_stop()
        sub.close()


def test_moving_to_a_broker_on_another_port_replays_what_the_old_one_missed(
        tmp_path: Path, mosquitto_factory: Callable[..., MosquittoBroker]) -> None:
    old_broker = mosquitto_factory()
    new_broker = mosquitto_factory()
    old_sub, new_sub = Subscriber(old_broker), Subscriber(new_broker)
    cfg_old = make_config(tmp_path, old_broker.port)
    try:
        with Outbox.from_config(cfg_old.outbox) as outbox:
            pub = MqttPublisher(cfg_old, outbox)
            pub.start()
            assert pub.wait_connected(EVENTUALLY_S)
            for i in range(10):
                pub.publish_message(MessageKind.PREDICTION, prediction(i))
            wait_for(lambda: set(old_sub.seqs()) == set(range(10)), "first 10 on the old broker")
            old_broker.stop()
            wait_for(lambda: not pub.connected, "outage noticed")
            for i in range(10, 20):
                pub.publish_message(MessageKind.PREDICTION, prediction(i))
            pub.stop(flush_timeout_s=0)
            assert len(outbox) == 10
            # configuration reload: same outbox, new broker address
            pub = MqttPublisher(make_config(tmp_path, new_broker.port), outbox)
            try:
                pub.start()
                wait_for(lambda: set(new_sub.seqs()) == set(range(10, 20)), "the stored 10 on the new broker")
                assert pub.wait_until_drained(EVENTUALLY_S)
            finally:
                pub.stop()
    finally:
        old_sub.close()
        new_sub.close()


def test_switch_broker_live_while_publishing_loses_nothing(
        tmp_path: Path, mosquitto_factory: Callable[..., MosquittoBroker]) -> None:
    """The configuration reload path: one running publisher moves to a broker on another port while messages keep
    coming; whatever the old broker had not acknowledged goes out again to the new one."""
    old_broker, new_broker = mosquitto_factory(), mosquitto_factory()
    old_sub, new_sub = Subscriber(old_broker), Subscriber(new_broker)
    cfg_old = make_config(tmp_path, old_broker.port)
    n = 600
    try:
        with Outbox.from_config(cfg_old.outbox) as outbox:
            pub = MqttPublisher(cfg_old, outbox)
            pub.start()
            try:
                assert pub.wait_connected(EVENTUALLY_S)
                pub.set_status(encode(status_message(device_id="nir-01", state="online")))
                for i in range(n):
                    pub.publish_message(MessageKind.PREDICTION, prediction(i))
                    if i == n // 3:
                        pub.switch_broker(make_config(tmp_path, new_broker.port))
                    if i == 2 * n // 3:
                        old_broker.stop()
                    time.sleep(0.002)
                wait_for(lambda: set(old_sub.seqs()) | set(new_sub.seqs()) == set(range(n)),
                         "every message on one of the brokers")
                assert pub.wait_until_drained(EVENTUALLY_S)
                assert len(outbox) == 0
                stats = pub.stats()
                assert stats.broker_switches == 1 and stats.connected
                assert max(new_sub.seqs()) == n - 1 and min(new_sub.seqs()) <= n // 3 + 1
                status = [m for m in new_sub.messages if m.topic.endswith("/status")]
                assert status and decode(bytes(status[-1].payload))["state"] == "online"  # re-sent at connect
            finally:
                pub.stop()
    finally:
        old_sub.close()
        new_sub.close()


def test_switch_broker_with_settings_that_cannot_load_changes_nothing(
        tmp_path: Path, mosquitto_broker: MosquittoBroker) -> None:
    sub = Subscriber(mosquitto_broker)
    cfg = make_config(tmp_path, mosquitto_broker.port)
    ca = tmp_path / "ca.pem"
    ca.write_text("not a certificate\n", encoding="utf-8")
    bad = make_config(tmp_path, 8883, tls={"enabled": True, "ca_path": str(ca)})
    try:
        with Outbox.from_config(cfg.outbox) as outbox:
            pub = MqttPublisher(cfg, outbox)
            pub.start()
            try:
                assert pub.wait_connected(EVENTUALLY_S)
                with pytest.raises(OSError):  # ssl.SSLError: the CA file is not PEM
                    pub.switch_broker(bad)
                pub.publish_message(MessageKind.PREDICTION, prediction(1))
                wait_for(lambda: sub.seqs() == [1], "delivery over the old connection")
                assert pub.stats().broker_switches == 0 and pub.connected
            finally:
                pub.stop()
    finally:
        sub.close()


def test_mqtt5_refusal_is_counted_and_not_retried_forever(tmp_path: Path, repo_root: Path,
                                                          mosquitto_factory: Callable[..., MosquittoBroker]) -> None:
    broker = mosquitto_factory(passwords={"nir-01": "pw1"}, acl=_documented_acl(repo_root))
    cfg = make_config(tmp_path, broker.port, username="nir-01", password="pw1", protocol="5")
    with Outbox.from_config(cfg.outbox) as outbox:
        pub = MqttPublisher(cfg, outbox)
        try:
            pub.start()
            assert pub.wait_connected(EVENTUALLY_S)
            pub.publish("spectrolite/plant-a/line-3/nir-02/prediction", b"{}")  # another device's topic
            assert pub.wait_until_drained(EVENTUALLY_S)
            stats = pub.stats()
            assert (stats.rejected, stats.acked) == (1, 0)
        finally:
            pub.stop()
