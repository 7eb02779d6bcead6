"""Several brokers in ``[mqtt]`` (``brokers = ["host:port", ...]``, #15): how the key is validated, and the
publisher moving to the next broker when a connection attempt fails or an established connection is lost (real
mosquitto processes; the clustered case with real processes end to end is tests/reliability/test_cluster_failover.py).
"""

from __future__ import annotations

import random
import re
import sys
import time
from pathlib import Path
from typing import Any, Callable

import paho.mqtt.client as paho
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.harness.processes import free_port
from edge.config import EdgeConfig, parse_config
from edge.errors import ConfigError
from edge.publish.client import BrokerRotation, connect_kwargs
from edge.publish.mqtt import MqttPublisher
from edge.publish.outbox import Outbox
from tests.support.broker import MosquittoBroker

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Jetson): the tomli backport
    import tomli as tomllib

#: Deadline for something that must eventually happen (a reconnection); never a speed goal.
EVENTUALLY_S = 30.0
DOC: dict[str, Any] = {"device": {"site": "plant-a", "line": "line-3", "device_id": "nir-01"},
                       "serial": {"port_url": "loop://"}, "bundle": {"path": "model.bundle"}}


def _config(tmp_path: Path, **mqtt: Any) -> EdgeConfig:
    return parse_config({**DOC, "mqtt": {"reconnect_min_delay_s": 1, "reconnect_max_delay_s": 2, **mqtt},
                         "outbox": {"path": "outbox.sqlite"}}, base_dir=tmp_path)


def test_brokers_are_tried_in_order_and_host_port_still_work(tmp_path: Path) -> None:
    cfg = _config(tmp_path, brokers=["node-a.plant:1883", "[fd00::7]:8883", "10.0.0.3:1884"])
    assert cfg.mqtt.addresses() == (("node-a.plant", 1883), ("fd00::7", 8883), ("10.0.0.3", 1884))
    assert connect_kwargs(cfg)["host"] == "node-a.plant" and connect_kwargs(cfg)["port"] == 1883
    single = _config(tmp_path, host="broker.plant", port=8883)
    assert single.mqtt.addresses() == (("broker.plant", 8883),)
    env = parse_config(DOC, base_dir=tmp_path, env={"SPECTROLITE__MQTT__BROKERS": "a:1883, b:1883"})
    assert env.mqtt.addresses() == (("a", 1883), ("b", 1883))


@pytest.mark.parametrize(("mqtt", "message"), [
    ({"brokers": ["node-a"]}, "mqtt.brokers[0]: expected host:port with a port of 1-65535 ([address]:port for IPv6), "
                              "got 'node-a'"),
    ({"brokers": ["a:1883", "b:0"]}, "mqtt.brokers[1]: expected host:port with a port of 1-65535"),
    ({"brokers": ["a:http"]}, "mqtt.brokers[0]: expected host:port"),
    ({"brokers": ["fd00::7:1883"]}, "mqtt.brokers[0]: expected host:port with a port of 1-65535 ([address]:port"),
    ({"brokers": [":1883"]}, "mqtt.brokers[0]: expected host:port"),
    ({"brokers": ["a:1883", "a:1883"]}, "mqtt.brokers: expected each address once, got ['a:1883', 'a:1883']"),
    ({"brokers": "a:1883"}, "mqtt.brokers: expected an array, got 'a:1883'"),
    ({"brokers": ["a:1883"], "host": "b"}, "mqtt.brokers: expected either mqtt.brokers or mqtt.host/mqtt.port, "
                                           "got both"),
    ({"brokers": ["a:1883"], "port": 8883}, "mqtt.brokers: expected either mqtt.brokers or mqtt.host/mqtt.port"),
])
def test_bad_brokers_name_the_entry_and_what_was_expected(tmp_path: Path, mqtt: dict[str, Any],
                                                          message: str) -> None:
    with pytest.raises(ConfigError) as info:
        parse_config({**DOC, "mqtt": mqtt}, base_dir=tmp_path)
    assert str(info.value).startswith(message), str(info.value)


def test_a_single_broker_never_moves() -> None:
    rotation = BrokerRotation([("broker.plant", 1883)])
    client = paho.Client(CallbackAPIVersion.VERSION2)
    assert rotation.advance(client) is None
    assert rotation.index == 0 and rotation.current == "broker.plant:1883"
    several = BrokerRotation([("a", 1883), ("fd00::7", 8883)])
    assert several.advance(client) == "a:1883" and several.current == "[fd00::7]:8883"
    assert several.advance(client) == "[fd00::7]:8883" and several.current == "a:1883"


def _publisher(cfg: EdgeConfig) -> MqttPublisher:
    return MqttPublisher(cfg, Outbox.from_config(cfg.outbox), rng=random.Random(0))


def _until(predicate: Callable[[], bool]) -> bool:
    deadline = time.monotonic() + EVENTUALLY_S
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(0.02)
    return False


def test_a_broker_that_cannot_be_reached_is_skipped_for_the_next(tmp_path: Path,
                                                                 mosquitto_broker: MosquittoBroker) -> None:
    dead = free_port()  # nothing listens there
    pub = _publisher(_config(tmp_path, brokers=[f"127.0.0.1:{dead}", f"127.0.0.1:{mosquitto_broker.port}"]))
    pub.start()
    try:
        assert pub.wait_connected(EVENTUALLY_S), "expected a connection to the second broker"
        stats = pub.stats()
        assert stats.broker_index == 1 and stats.broker_failovers >= 1 and stats.connect_failures >= 1, stats
    finally:
        pub.stop(0.5)
        pub.outbox.close()


def test_a_lost_connection_moves_to_the_next_broker_and_the_outbox_follows(
    tmp_path: Path, mosquitto_factory: Callable[..., MosquittoBroker],
) -> None:
    a, b = mosquitto_factory(), mosquitto_factory()
    got: list[bytes] = []
    reader = paho.Client(CallbackAPIVersion.VERSION2, client_id="reader-b")
    reader.on_message = lambda c, u, m: got.append(m.payload)
    reader.on_connect = lambda c, u, f, rc, p=None: c.subscribe("t/#", qos=1)
    reader.connect("127.0.0.1", b.port)
    reader.loop_start()
    pub = _publisher(_config(tmp_path, brokers=[f"127.0.0.1:{a.port}", f"127.0.0.1:{b.port}"]))
    pub.start()
    try:
        assert pub.wait_connected(EVENTUALLY_S) and pub.stats().broker_index == 0
        a.kill()
        assert _until(lambda: not pub.connected), "expected the publisher to notice the lost broker"
        for i in range(20):  # published while between brokers: stored in the outbox, sent once connected to b
            pub.publish(f"t/{i}", str(i).encode())
        assert _until(lambda: len(set(got)) == 20), f"expected 20 messages on the second broker, got {sorted(got)}"
        stats = pub.stats()
        assert stats.broker_index == 1 and stats.connects == 2 and stats.broker_failovers >= 1, stats
        assert set(got) == {str(i).encode() for i in range(20)}
    finally:
        pub.stop(0.5)
        pub.outbox.close()
        reader.loop_stop()
        reader.disconnect()


def test_the_documented_brokers_block_is_valid_configuration(repo_root: Path, tmp_path: Path) -> None:
    text = (repo_root / "docs" / "mqtt.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if "brokers =" in b]
    cfg = parse_config({**DOC, **tomllib.loads(block)}, base_dir=tmp_path)
    assert len(cfg.mqtt.addresses()) == 3
