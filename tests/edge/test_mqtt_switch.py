"""Tests of edge.publish.mqtt moving to another broker (MqttPublisher.switch_broker) against real mosquittos: what
the old one missed is replayed, nothing is lost while publishing, settings that cannot load change nothing."""

from __future__ import annotations

import time
from collections.abc import Callable
from pathlib import Path

import pytest

from edge.publish.messages import status_message
from edge.publish.mqtt import MqttPublisher
from edge.publish.outbox import Outbox
from edge.publish.schema import MessageKind, decode, encode
from tests.support.broker import MosquittoBroker
from tests.support.mqtt_cases import (
    EVENTUALLY_S,
    Subscriber,
    make_config,
    prediction,
    wait_for,
)


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
