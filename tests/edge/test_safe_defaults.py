"""Safe defaults (#18, finding 2): commands, which change acquisition or the model, are off by default and need an
HMAC when on unless the configuration opts out explicitly; on without a key is a clear error; the example
configuration ships the safe values and says how to make each key; ``spectro-edge keys hmac`` makes the key and
``spectro-edge sign-command`` signs with it.

The daemon test runs real processes: ``spectro-sim`` on a pty -> ``spectro-edge run`` -> a real mosquitto -> paho.
"""

from __future__ import annotations

import json
import os
import signal
import stat
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from benchmarks.harness.processes import child_env
from edge.commands import CommandParser, load_hmac_key, make_command
from edge.config import CommandsConfig, example_config, load_config, parse_config, security_warnings
from edge.config_example import render_config
from edge.errors import ConfigError
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import (
    DEVICE,
    REPO,
    Proc,
    Subscriber,
    publish_payload,
    start_daemon,
    start_sim,
    write_config,
)

#: Predictions that must arrive after the refused command with no sign of an exposure change.
AFTER_REFUSAL = 30


def _minimal(**commands: Any) -> dict[str, Any]:
    doc: dict[str, Any] = {"device": {"site": "plant-a", "line": "line-3", "device_id": "nir-01"},
                           "serial": {"port_url": "loop://"}, "bundle": {"path": "model.bundle"}}
    if commands:
        doc["commands"] = commands
    return doc


def _edge_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", *args], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=120)


# ------------------------------------------------------------------------------------------------ configuration
def test_by_default_commands_are_off_and_need_an_hmac_when_on(tmp_path: Path) -> None:
    cfg = parse_config(_minimal(), base_dir=tmp_path)
    assert cfg.commands.enabled is False and cfg.commands.require_auth is True
    assert CommandsConfig().require_auth is True
    assert "commands_unauthenticated" not in security_warnings(cfg)
    key = tmp_path / "hmac.key"
    key.write_text("0123456789abcdef0123456789abcdef\n")
    on = parse_config(_minimal(enabled=True, hmac_key_path=str(key)), base_dir=tmp_path)
    assert on.commands.enabled and on.commands.require_auth  # a key alone does not make commands unsigned
    assert "commands_unauthenticated" not in security_warnings(on)


def test_the_explicit_opt_out_still_works_and_is_named(tmp_path: Path) -> None:
    cfg = parse_config(_minimal(enabled=True, require_auth=False), base_dir=tmp_path)
    assert cfg.commands.enabled and not cfg.commands.require_auth
    assert "commands_unauthenticated" in security_warnings(cfg)


def test_commands_on_without_a_key_refuse_to_start_saying_how_to_fix_it(tmp_path: Path) -> None:
    with pytest.raises(ConfigError) as err:
        parse_config(_minimal(enabled=True), base_dir=tmp_path)
    message = str(err.value)
    assert message.startswith("commands.hmac_key_path: expected a key file")
    assert "spectro-edge keys hmac --out" in message and "commands.require_auth = false" in message
    # the real entry point: one line, exit code 2, no traceback, and no daemon
    config = tmp_path / "edge.toml"
    config.write_text(render_config(_minimal(enabled=True)), encoding="utf-8")  # the same document, as TOML
    proc = _edge_cli("run", "--config", str(config))
    assert proc.returncode == 2, proc.stderr
    assert proc.stderr.strip().splitlines() == [f"spectro-edge run: {message}"]


def test_a_missing_key_file_says_how_to_create_it(tmp_path: Path) -> None:
    missing = tmp_path / "hmac.key"
    with pytest.raises(ConfigError, match=r"not found; create it with `spectro-edge keys hmac --out .*hmac\.key`"):
        parse_config(_minimal(enabled=True, hmac_key_path=str(missing)), base_dir=tmp_path)


# ------------------------------------------------------------------------------------------------ example
def test_the_example_ships_the_safe_values_and_documents_what_it_leaves_open(tmp_path: Path) -> None:
    text = example_config()
    path = tmp_path / "edge.toml"
    path.write_text(text, encoding="utf-8")
    cfg = load_config(path, env={})
    assert cfg.commands.enabled is False and cfg.commands.require_auth is True
    assert cfg.mqtt.tls.enabled and cfg.mqtt.port == 8883
    left_open = security_warnings(cfg)
    assert "commands_unauthenticated" not in left_open and "mqtt_plaintext" not in left_open
    for name in left_open:  # each setting only the operator can fix is named in the example, with the fix
        assert f"#   {name}" in text, name
    assert "spectro-edge keys hmac --out /etc/spectrolite/hmac.key" in text  # the HMAC key
    assert "spectro-train keygen DIR" in text  # the bundle signing pair
    assert '# hmac_key_path = "/etc/spectrolite/hmac.key"' in text
    assert '# public_key_path = "/etc/spectrolite/bundle-signing.pub.pem"' in text

    # The operator's two steps to turn commands on: make the key, point the example at it.
    key = tmp_path / "hmac.key"
    assert _edge_cli("keys", "hmac", "--out", str(key)).returncode == 0
    on = text.replace('# hmac_key_path = "/etc/spectrolite/hmac.key"', f'hmac_key_path = "{key}"', 1)
    on = on.replace("enabled = false\n# refuse commands without", "enabled = true\n# refuse commands without", 1)
    path.write_text(on, encoding="utf-8")
    cfg_on = load_config(path, env={})
    assert cfg_on.commands.enabled and cfg_on.commands.require_auth and cfg_on.commands.hmac_key_path == key
    assert security_warnings(cfg_on) == left_open


def test_validating_the_example_is_a_readable_verdict(tmp_path: Path) -> None:
    path = tmp_path / "edge.toml"
    path.write_text(example_config(), encoding="utf-8")
    proc = _edge_cli("config", "--validate", str(path))
    lines = proc.stdout.splitlines()
    assert proc.returncode == 1, proc.stdout + proc.stderr
    assert lines[0].startswith("OK    config") and "insecure settings (a WARNING each at start): " \
        "mqtt_anonymous, bundles_unsigned" in lines[0], lines[0]
    assert lines[1].startswith("OK    mqtt    client built: TLS")  # the system trust store, as printed
    assert lines[2].startswith("FAIL  bundle  /var/lib/spectrolite/model.bundle: no such file")
    assert lines[3].startswith("FAIL  serial  /dev/ttyUSB0")
    assert lines[-1] == "verdict: FAIL (bundle, serial)"
    assert "Traceback" not in proc.stderr


# ------------------------------------------------------------------------------------------------ keys
def test_keys_hmac_writes_a_private_usable_key_and_never_overwrites(tmp_path: Path) -> None:
    key = tmp_path / "hmac.key"
    proc = _edge_cli("keys", "hmac", "--out", str(key))
    assert proc.returncode == 0, proc.stderr
    assert str(key) in proc.stdout and "commands.hmac_key_path" in proc.stdout
    assert stat.S_IMODE(key.stat().st_mode) == 0o600
    secret = load_hmac_key(key)
    assert len(secret) == 64 and int(secret, 16) >= 0  # 32 random bytes as hexadecimal text

    # usable: the CLI's signed payload passes the device's parser with that key
    signed = _edge_cli("sign-command", "capture_dark", "--device-id", "nir-01", "--key", str(key),
                       "--args", '{"average_frames": 4}', "--request-id", "ops-1")
    assert signed.returncode == 0, signed.stderr
    parser = CommandParser(CommandsConfig(hmac_key_path=key, allowed_dirs=(tmp_path,)), device_id="nir-01")
    cmd = parser.parse("capture_dark", signed.stdout.strip().encode())
    assert cmd.authenticated and cmd.request_id == "ops-1" and cmd.args.average_frames == 4  # type: ignore[union-attr]  # not None here

    # never overwritten: neither the file nor what a link points at
    again = _edge_cli("keys", "hmac", "--out", str(key))
    assert again.returncode == 2 and "already exists; refusing to overwrite" in again.stderr, again.stderr
    assert load_hmac_key(key) == secret
    target = tmp_path / "precious"
    target.write_text("keep me\n")
    link = tmp_path / "link.key"
    os.symlink(target, link)
    assert _edge_cli("keys", "hmac", "--out", str(link)).returncode == 2
    assert target.read_text() == "keep me\n"
    other = tmp_path / "other.key"
    assert _edge_cli("keys", "hmac", "--out", str(other)).returncode == 0
    assert load_hmac_key(other) != secret  # random, not derived from anything


# ------------------------------------------------------------------------------------------------ daemon
def _publish(port: int, name: str, payload: bytes) -> None:
    publish_payload(port, name, payload, client_id=f"operator-{os.getpid()}-{name}")


def _stale(sub: Subscriber) -> list[int]:
    with sub.lock:
        return [s for s, p in sub.predictions.items() if "stale_reference" in p["quality_flags"]]


def test_the_daemon_refuses_an_unsigned_set_integration_time_and_obeys_a_signed_one(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    """Commands on with a key and nothing else said: the default asks for an HMAC (the old default obeyed)."""
    sim, device = start_sim(tmp_path, count=0, rate_hz=50.0)
    procs.append(sim)
    config = write_config(tmp_path, port_url=device, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    assert "require_auth" not in config.read_text(encoding="utf-8")  # the default decides
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 10 or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()
    assert _stale(subscriber) == []

    unsigned = make_command("set_integration_time", {"integration_time_us": 60_000_000},
                            device_id=DEVICE["device_id"], request_id="unsigned-1")
    _publish(mosquitto_broker.port, "set_integration_time", json.dumps(unsigned).encode())
    refusal = subscriber.response("set_integration_time", "unsigned-1")
    assert refusal["ok"] is False and "HMAC" in refusal["error"] and "require_auth" in refusal["error"], refusal
    n_then = subscriber.count()
    wait_for(lambda: subscriber.count() >= n_then + AFTER_REFUSAL or not daemon.alive(),
             f"{AFTER_REFUSAL} predictions after the refusal")
    assert _stale(subscriber) == [], "the refused command changed the exposure"
    wait_for(lambda: any(m["counters"].get("commands_refused", 0) >= 1 for m in subscriber.kind("/metrics")),
             "commands_refused counted in metrics")
    status = subscriber.kind("/status")[-1]
    assert "commands_unauthenticated" not in status["security"], status

    # the operator's way: spectro-edge sign-command with the device's key, then publish what it prints
    signed = _edge_cli("sign-command", "set_integration_time", "--device-id", DEVICE["device_id"],
                       "--key", str(tmp_path / "hmac.key"), "--args", '{"integration_time_us": 2000}',
                       "--request-id", "signed-1")
    assert signed.returncode == 0, signed.stderr
    _publish(mosquitto_broker.port, "set_integration_time", signed.stdout.strip().encode())
    answer = subscriber.response("set_integration_time", "signed-1")
    assert answer["ok"] is True and answer["result"]["integration_time_us"] == 2000, answer
    wait_for(lambda: bool(_stale(subscriber)), "predictions flagged stale_reference after the exposure change")
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
