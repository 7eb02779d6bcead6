"""Issue 18, findings 5 and 7 (commands), with real processes: ``spectro-sim`` on a pty -> ``spectro-edge run`` ->
a real mosquitto -> paho clients in this process.

* A flood of unauthenticated commands neither drops nor delays a signed operator command (its own lane, served
  first), and every command of the flood is accounted for: answered, or counted in the published metrics
  (``command_responses_suppressed``: refusal responses beyond the response budget).
* A retained command never runs: the broker delivers it at every subscribe (start, restart, reconnect), and with
  MQTT 5 (Retain As Published) also when it is published while the daemon is subscribed; each delivery is refused
  with a response and counted (``commands_refused_retained``).
* A command queued in the daemon's persistent session while it is down and delivered more than
  ``commands.max_age_s`` after it was issued is refused (``commands_refused_stale``), not run late.

Every configuration here states ``commands.require_auth`` explicitly.
"""

from __future__ import annotations

import json
import shutil
import time
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from edge.command_queue import MAX_PENDING_UNAUTHENTICATED, RESPONSE_BURST
from edge.commands import make_command, sign_command
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import (
    BASE_TOPIC,
    DEVICE,
    Proc,
    Subscriber,
    start_daemon,
    start_sim,
    write_config,
)

#: Unauthenticated reload commands of the flood (the issue's figure).
FLOOD = 200
#: Size of the sparse file the first command of the flood asks to reload: hashing it keeps the housekeeping thread
#: busy while the rest of the flood arrives, so the queue is full when the signed command comes (deterministically,
#: not by a race with the housekeeping thread).
SLOW_FILE_BYTES = 1 << 30
#: The HMAC key shared by the test's operator and daemon.
KEY = b"0123456789abcdef0123456789abcdef"
#: commands.max_age_s of the stale-command test, seconds.
MAX_AGE_S = 2.0


def _config(tmp: Path, port_url: str, bundle: Path, broker: MosquittoBroker, *, protocol: str = "3.1.1",
            max_age_s: float = 60.0) -> Path:
    cfg = write_config(tmp, port_url=port_url, bundle=bundle, mqtt_port=broker.port)
    (tmp / "hmac.key").write_bytes(KEY)  # the key file write_config names in [commands]
    text = cfg.read_text(encoding="utf-8").replace("[mqtt]\n", f'[mqtt]\nprotocol = "{protocol}"\n', 1)
    assert "[commands]\nenabled = true\n" in text
    text = text.replace("[commands]\nenabled = true\n",
                        f"[commands]\nenabled = true\nrequire_auth = false\nmax_age_s = {max_age_s}\n", 1)
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _operator(port: int, name: str = "operator") -> mqtt.Client:
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=name)
    c.connect("127.0.0.1", port)
    c.loop_start()
    return c


def _body(name: str, request_id: str, args: dict[str, Any] | None = None) -> dict[str, Any]:
    return make_command(name, args, device_id=DEVICE["device_id"], request_id=request_id)


def _responses(sub: Subscriber, name: str) -> dict[str, dict[str, Any]]:
    return {r["request_id"]: r for r in sub.kind(f"/cmd/{name}/response")}


def _response(sub: Subscriber, name: str, request_id: str) -> dict[str, Any]:
    wait_for(lambda: request_id in _responses(sub, name), f"the response to {request_id}")
    return _responses(sub, name)[request_id]


def _counters(sub: Subscriber, after: int = 0) -> dict[str, int]:
    """The counters of the last metrics message, among those after the first ``after`` (an earlier process's)."""
    metrics = sub.kind("/metrics")[after:]
    return dict(metrics[-1]["counters"]) if metrics else {}


def _online(sub: Subscriber, daemon: Proc, after: int = 0) -> None:
    wait_for(lambda: any(s.get("state") == "online" for s in sub.kind("/status")[after:]) or not daemon.alive(),
             "the daemon's online status")
    assert daemon.alive(), daemon.text()


def _start(tmp: Path, cfg: Path, procs: list[Proc], n: int = 0) -> Proc:
    daemon = start_daemon(tmp, cfg, n)
    procs.append(daemon)
    return daemon


def test_a_flood_of_unsigned_commands_neither_drops_nor_delays_a_signed_one_and_each_is_accounted_for(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    live = Path(shutil.copy(demo_bundles.v1, bundles / "model.spectrolite"))
    with open(bundles / "slow.bin", "wb") as f:  # sparse: costs no disk, but hashing reads every byte
        f.truncate(SLOW_FILE_BYTES)
    sim, port_url = start_sim(tmp_path, count=0, rate_hz=5.0)
    procs.append(sim)
    daemon = _start(tmp_path, _config(tmp_path, port_url, live, mosquitto_broker), procs)
    _online(subscriber, daemon)

    op = _operator(mosquitto_broker.port)
    try:
        topic = f"{BASE_TOPIC}/cmd/reload_bundle"
        op.publish(topic, json.dumps(_body("reload_bundle", "u-0", {"path": "slow.bin"})).encode(), qos=1)
        wait_for(lambda: "command reload_bundle (request u-0)" in daemon.text(), "the slow reload to start")
        sent = [op.publish(topic, json.dumps(_body("reload_bundle", f"u-{i}")).encode(), qos=1)
                for i in range(1, FLOOD)]
        sent.append(op.publish(topic, sign_command(_body("reload_bundle", "signed"), KEY), qos=1))
        for info in sent:
            info.wait_for_publish(timeout=30)

        answer = _response(subscriber, "reload_bundle", "signed")
        assert answer["ok"] is True and answer["result"]["unchanged"] is True, answer

        def accounted() -> int:
            answered = sum(1 for rid in _responses(subscriber, "reload_bundle") if rid.startswith("u-"))
            return answered + _counters(subscriber).get("command_responses_suppressed", 0)

        def settled() -> bool:
            c = _counters(subscriber)
            return c.get("commands_reload_bundle", 0) + c.get("commands_dropped", 0) >= FLOOD + 1

        wait_for(lambda: accounted() >= FLOOD and settled(), f"all {FLOOD} unsigned commands answered or counted")
        responses = _responses(subscriber, "reload_bundle")
        counters = _counters(subscriber)
        assert accounted() == FLOOD, (accounted(), counters)
        refused = [r for rid, r in responses.items() if rid.startswith("u-") and not r["ok"]]
        assert len(refused) >= RESPONSE_BURST, len(refused)
        assert all("too many commands pending" in r["error"] or "slow.bin refused" in r["error"] for r in refused), \
            [r["error"] for r in refused]
        # Every command of the flood ran (the signed one too) or was dropped, and at most a lane's worth waited.
        assert counters["commands_reload_bundle"] + counters["commands_dropped"] == FLOOD + 1, counters
        assert counters["commands_dropped"] >= FLOOD - 1 - MAX_PENDING_UNAUTHENTICATED, counters

        # Not delayed: the signed command ran before every unsigned one that was queued ahead of it.
        order = [r["request_id"] for r in subscriber.kind("/cmd/reload_bundle/response") if r["ok"]]
        assert order[0] == "signed", order[:5]
    finally:
        op.loop_stop()
        op.disconnect()
    assert daemon.alive(), daemon.text()


@pytest.mark.parametrize("protocol", ["3.1.1", "5"])
def test_a_retained_command_is_refused_at_every_delivery_and_never_runs(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc], protocol: str,
) -> None:
    sim, port_url = start_sim(tmp_path, count=0, rate_hz=5.0)
    procs.append(sim)
    cfg = _config(tmp_path, port_url, demo_bundles.v1, mosquitto_broker, protocol=protocol)
    op = _operator(mosquitto_broker.port)
    topic = f"{BASE_TOPIC}/cmd/reload_bundle"
    try:
        op.publish(topic, json.dumps(_body("reload_bundle", "kept-0")).encode(), qos=1,
                   retain=True).wait_for_publish(timeout=10)
        for n in range(2):  # start, then restart: the broker delivers the retained command each time
            before = len(subscriber.kind("/cmd/reload_bundle/response"))
            m0 = len(subscriber.kind("/metrics"))
            daemon = _start(tmp_path, cfg, procs, n)
            wait_for(lambda: len(subscriber.kind("/cmd/reload_bundle/response")) > before or not daemon.alive(),
                     "the refusal of the retained command")
            answer = subscriber.kind("/cmd/reload_bundle/response")[before]
            # MQTT 5 replaced the retained command below (kept-1); 3.1.1 cannot tell a live retained publish from a
            # command (docs/security.md), so this test leaves kept-0 retained there.
            assert answer["request_id"] == (f"kept-{n}" if protocol == "5" else "kept-0"), answer
            assert answer["ok"] is False, answer
            assert "retained" in answer["error"], answer
            wait_for(lambda: _counters(subscriber, m0).get("commands_refused_retained") == 1, "the counted refusal")
            if protocol == "5":  # published retained while the daemon is subscribed: refused too
                op.publish(topic, json.dumps(_body("reload_bundle", f"kept-{n + 1}")).encode(), qos=1,
                           retain=True).wait_for_publish(timeout=10)
                answer = _response(subscriber, "reload_bundle", f"kept-{n + 1}")
                assert answer["ok"] is False and "retained" in answer["error"], answer
                wait_for(lambda: _counters(subscriber, m0).get("commands_refused_retained") == 2,
                         "the counted refusal")
            assert "commands_reload_bundle" not in _counters(subscriber, m0), _counters(subscriber, m0)
            assert daemon.end() == 0, daemon.text()
    finally:
        op.publish(topic, b"", qos=1, retain=True).wait_for_publish(timeout=10)  # clear it
        op.loop_stop()
        op.disconnect()


def test_a_command_queued_while_the_daemon_is_down_is_refused_when_older_than_max_age(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    sim, port_url = start_sim(tmp_path, count=0, rate_hz=5.0)
    procs.append(sim)
    cfg = _config(tmp_path, port_url, demo_bundles.v1, mosquitto_broker, max_age_s=MAX_AGE_S)
    daemon = _start(tmp_path, cfg, procs)
    _online(subscriber, daemon)
    assert daemon.end() == 0, daemon.text()  # a clean stop: the persistent session stays on the broker

    op = _operator(mosquitto_broker.port)
    try:
        body = _body("reload_bundle", "queued")
        op.publish(f"{BASE_TOPIC}/cmd/reload_bundle", json.dumps(body).encode(), qos=1).wait_for_publish(timeout=10)
        time.sleep(max(0.0, body["issued_at_unix_s"] + MAX_AGE_S + 0.5 - time.time()))  # let it age past the limit
        statuses = len(subscriber.kind("/status"))
        daemon = _start(tmp_path, cfg, procs, 1)
        answer = _response(subscriber, "reload_bundle", "queued")
        assert answer["ok"] is False and "commands.max_age_s" in answer["error"], answer
        _online(subscriber, daemon, statuses)

        # A fresh command runs.
        op.publish(f"{BASE_TOPIC}/cmd/reload_bundle", json.dumps(_body("reload_bundle", "fresh")).encode(),
                   qos=1).wait_for_publish(timeout=10)
        assert _response(subscriber, "reload_bundle", "fresh")["ok"] is True
        wait_for(lambda: _counters(subscriber).get("commands_reload_bundle") == 1, "the fresh command counted")
        counters = _counters(subscriber)
        assert counters.get("commands_refused_stale") == 1 and counters.get("commands_refused") == 1, counters
    finally:
        op.loop_stop()
        op.disconnect()
