"""Home Assistant MQTT discovery (:mod:`edge.homeassistant`): the retained configurations a real daemon publishes, and
their templates rendered with Jinja2 (what Home Assistant renders them with) against the daemon's real payloads.

Real parts: ``spectro-sim`` on a real pty -> ``spectro-edge run`` -> a real mosquitto; a paho client subscribing to
``homeassistant/#`` after the daemon connected (so it receives what the broker retained).
"""

from __future__ import annotations

import json
import re
import sys
import threading
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.config import parse_config
from edge.errors import ConfigError
from edge.homeassistant import DeviceInfo, Discovery, discovery_configs, discovery_from_config, target_template
from edge.publish.topics import Topics
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.golden_messages import golden_payload
from tests.support.processes import BASE_TOPIC, Proc, Subscriber, start_daemon, start_sim, write_config

if sys.version_info >= (3, 11):
    import tomllib
else:  # Python 3.10 (Jetson): the tomli backport
    import tomli as tomllib

TOPICS = Topics("spectrolite", "plant-a", "line-3", "nir-01")
CONFIG_TOPIC = re.compile(r"^homeassistant/(sensor|binary_sensor)/[a-zA-Z0-9_-]+/[a-zA-Z0-9_-]+/config$")
INFO = DeviceInfo("tablets-api-cnn", "2026.11.3", (("api", "%w/w"), ('say "hi" }}', "")), "0.1.0")


def _render(template: str, payload: bytes) -> str:
    """Render ``template`` as Home Assistant does for an MQTT entity: ``value`` the payload text, ``value_json`` the
    parsed JSON, in a sandboxed Jinja2 environment."""
    jinja2 = pytest.importorskip("jinja2", reason="the dev extra brings jinja2: pip install -e '.[dev]'")
    from jinja2.sandbox import ImmutableSandboxedEnvironment

    env = ImmutableSandboxedEnvironment(undefined=jinja2.StrictUndefined)
    text = payload.decode("utf-8")
    return str(env.from_string(template).render(value=text, value_json=json.loads(text))).strip()


def test_off_by_default_and_the_prefix_is_checked(tmp_path: Path) -> None:
    doc = {"device": {"site": "s", "line": "l", "device_id": "d"}, "serial": {"port_url": "loop://"},
           "bundle": {"path": "m"}}
    cfg = parse_config(doc, base_dir=tmp_path)
    assert not cfg.homeassistant.enabled and cfg.homeassistant.discovery_prefix == "homeassistant"
    assert discovery_from_config(cfg, lambda: INFO) is None
    with pytest.raises(ConfigError, match=r"homeassistant.discovery_prefix: expected 1-8 topic levels"):
        parse_config({**doc, "homeassistant": {"discovery_prefix": "home/#"}}, base_dir=tmp_path)


def test_one_sensor_per_target_and_the_quality_entities() -> None:
    configs = discovery_configs("homeassistant", TOPICS, INFO)
    assert all(CONFIG_TOPIC.match(t) for t in configs), sorted(configs)
    assert len({c["unique_id"] for c in configs.values()}) == len(configs) == len(INFO.targets) + 3
    api = configs["homeassistant/sensor/nir-01/plant-a_line-3_api/config"]
    assert api["state_topic"] == TOPICS.prediction and api["unit_of_measurement"] == "%w/w"
    assert api["state_class"] == "measurement" and api["name"] == "api"
    assert api["availability_topic"] == TOPICS.status
    assert (api["payload_available"], api["payload_not_available"]) == ("online", "offline")
    assert api["device"]["identifiers"] == ["spectrolite_plant-a_line-3_nir-01"]
    assert api["device"]["model"] == "tablets-api-cnn 2026.11.3" and api["device"]["sw_version"] == "0.1.0"
    unitless = next(c for c in configs.values() if c.get("name") == 'say "hi" }}')
    assert "unit_of_measurement" not in unitless


def test_templates_yield_the_values_of_real_payloads() -> None:
    prediction = golden_payload("prediction")
    status = golden_payload("status_online")
    assert isinstance(prediction, bytes) and isinstance(status, bytes)
    configs = discovery_configs("homeassistant", TOPICS, INFO)
    api = configs["homeassistant/sensor/nir-01/plant-a_line-3_api/config"]
    assert _render(api["value_template"], prediction) == "12.41"
    assert _render(api["availability_template"], status) == "online"
    offline = json.dumps({**json.loads(status), "state": "offline"}).encode()
    assert _render(api["availability_template"], offline) == "offline"
    by_obj = {t.rsplit("/", 2)[-2]: c for t, c in configs.items()}
    assert _render(by_obj["plant-a_line-3_quality"]["value_template"], prediction) == "stale_reference"
    assert _render(by_obj["plant-a_line-3_out_of_distribution"]["value_template"], prediction) == "OFF"
    ood = json.dumps({**json.loads(prediction), "quality_flags": ["out_of_distribution"]}).encode()
    assert _render(by_obj["plant-a_line-3_out_of_distribution"]["value_template"], ood) == "ON"
    alerts = by_obj["plant-a_line-3_alerts"]
    assert _render(alerts["value_template"], status) == "ON"  # the golden status has two alerts
    assert json.loads(_render(alerts["json_attributes_template"], status)) == {
        "alerts": ["drift:ood_q", "signal_mismatch"]}
    # a name with quotes and braces is a string literal of the template, not template syntax
    tricky = json.dumps({"values": [{"name": 'say "hi" }}', "value": 7.5}]}).encode()
    assert _render(target_template('say "hi" }}'), tricky) == "7.5"


def test_due_sends_everything_at_connect_and_only_changes_after() -> None:
    info = [INFO]
    d = Discovery("homeassistant", TOPICS, lambda: info[0])
    first = dict(d.due(full=True))
    assert len(first) == len(INFO.targets) + 3 and all(first.values())
    assert d.due(full=False) == []
    assert dict(d.due(full=True)) == first  # a reconnect: everything again
    info[0] = DeviceInfo("tablets-api-cnn", "2026.12.1", (("api", "%w/w"),), "0.1.0")  # a reload: one target less
    changed = dict(d.due(full=False))
    gone = [t for t, p in changed.items() if p == b""]
    assert len(gone) == 1 and "say" in gone[0]
    assert all(json.loads(p)["device"]["model"] == "tablets-api-cnn 2026.12.1" for p in changed.values() if p)
    assert Discovery("homeassistant", TOPICS, lambda: None).due(full=True) == []


def _retained(port: int, topic_filter: str, predicate: Any) -> dict[str, tuple[bytes, bool]]:
    """topic -> (payload, retain flag) of what a new subscriber to ``topic_filter`` receives, once ``predicate``
    holds for it."""
    got: dict[str, tuple[bytes, bool]] = {}
    lock = threading.Lock()

    def on_message(client: Any, userdata: Any, msg: mqtt.MQTTMessage) -> None:
        with lock:
            got[msg.topic] = (bytes(msg.payload), bool(msg.retain))

    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="", clean_session=True)
    c.on_message = on_message
    c.on_connect = lambda cl, ud, fl, rc, pr=None: cl.subscribe(topic_filter, qos=1)
    c.connect("127.0.0.1", port, keepalive=10)
    c.loop_start()
    try:
        wait_for(lambda: predicate(dict(got)), f"retained messages on {topic_filter}")
    finally:
        c.loop_stop()
        c.disconnect()
    with lock:
        return dict(got)


@pytest.mark.slow
def test_a_real_daemon_announces_its_predictions_to_home_assistant(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    sim, path = start_sim(tmp_path, count=0, rate_hz=20.0)
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    cfg.write_text(cfg.read_text(encoding="utf-8") + "[homeassistant]\nenabled = true\n", encoding="utf-8")
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 5 or not daemon.alive(), "predictions")
    assert daemon.alive(), daemon.text()
    prediction = subscriber.predictions[max(subscriber.predictions)]
    targets = [v["name"] for v in prediction["values"]]
    n_entities = len(targets) + 3

    configs = _retained(mosquitto_broker.port, "homeassistant/#", lambda got: len(got) >= n_entities)
    assert len(configs) == n_entities, sorted(configs)
    assert all(retain for _, retain in configs.values()), "expected every discovery configuration retained"
    assert all(CONFIG_TOPIC.match(t) and "/sim-01/" in t for t in configs), sorted(configs)
    parsed = {t: json.loads(p) for t, (p, _) in configs.items()}
    sensors = {c["name"]: c for c in parsed.values() if c.get("state_class") == "measurement"}
    assert sorted(sensors) == sorted(targets)
    raw = json.dumps(prediction).encode()
    for value in prediction["values"]:
        cfg_ = sensors[value["name"]]
        assert cfg_["state_topic"] == f"{BASE_TOPIC}/prediction"
        assert float(_render(cfg_["value_template"], raw)) == pytest.approx(value["value"], rel=1e-12)
        if value["unit"]:
            assert cfg_["unit_of_measurement"] == value["unit"]
    quality = next(c for c in parsed.values() if c["name"] == "quality")
    assert _render(quality["value_template"], raw) == prediction["quality"] and prediction["quality"] in \
        quality["options"]

    status_topic = f"{BASE_TOPIC}/status"
    assert {c["availability_topic"] for c in parsed.values()} == {status_topic}
    template = next(iter(parsed.values()))["availability_template"]
    online = _retained(mosquitto_broker.port, status_topic, lambda got: bool(got))[status_topic][0]
    assert _render(template, online) == "online"
    assert daemon.end() == 0
    offline = _retained(mosquitto_broker.port, status_topic,
                        lambda got: status_topic in got and json.loads(got[status_topic][0])["state"] == "offline")
    assert _render(template, offline[status_topic][0]) == "offline"


def test_the_documented_settings_are_valid_configuration(repo_root: Path, tmp_path: Path) -> None:
    text = (repo_root / "docs" / "mqtt.md").read_text(encoding="utf-8")
    (block,) = [b for b in re.findall(r"```toml\n(.*?)```", text, flags=re.S) if "[homeassistant]" in b]
    doc = {"device": {"site": "s", "line": "l", "device_id": "d"}, "serial": {"port_url": "loop://"},
           "bundle": {"path": "m"}, **tomllib.loads(block)}
    assert parse_config(doc, base_dir=tmp_path).homeassistant.enabled
