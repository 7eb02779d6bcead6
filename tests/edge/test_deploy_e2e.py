"""Bundles sent over MQTT, end to end with real processes: mosquitto, ``spectro-sim``, ``spectro-edge run`` and
``spectro-fleet``.  A daemon that accepts unsigned bundles locally still refuses an unsigned or wrongly signed bundle
sent over the wire and keeps serving; an oversize transfer is refused at ``deploy_begin``; a corrupted chunk is
refused; an interrupted transfer resumes after a restart of both sides; the signed bundle is installed through the
reload guards (anti-rollback included) and served, also after the next restart."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

import paho.mqtt.client as mqtt
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.harness.processes import child_env
from edge.commands import make_command
from tests.support.broker import MosquittoBroker
from tests.support.daemon import REPO, DemoBundles, wait_for
from tests.support.processes import (
    DEVICE,
    Proc,
    Subscriber,
    publish_payload,
    signed,
    start_daemon,
    start_sim,
    write_config,
)
from tests.support.signing import make_signing_key, signed_copy

GROUP = "plant-a/line-1"
MAX_BUNDLE_BYTES = 100_000  # above the demo bundles this test pushes (64 KB), below the oversize file it makes
CHUNK = 4096


def _fleet(port: int, tmp: Path, *args: str, timeout_s: float = 120.0) -> subprocess.CompletedProcess[str]:
    """``spectro-fleet`` as an operator runs it (a real process), signing with the devices' HMAC key."""
    cmd = [sys.executable, "-m", "edge.fleet.cli", "--port", str(port), "--hmac-key", str(tmp / "hmac.key"), *args]
    return subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout_s)


def _config(tmp: Path, port_url: str, bundle: Path, port: int, trusted: Path) -> Path:
    cfg = write_config(tmp, port_url=port_url, bundle=bundle, mqtt_port=port)
    text = cfg.read_text(encoding="utf-8").replace("watch = false\n", "watch = false\nmin_reload_interval_s = 0\n")
    text += (f'[deploy]\nenabled = true\ngroups = ["{GROUP}"]\ntrusted_keys = ["{trusted}"]\n'
             f"max_bundle_bytes = {MAX_BUNDLE_BYTES}\nmax_chunk_bytes = {CHUNK}\n")
    cfg.write_text(text, encoding="utf-8")
    return cfg


def _serving(sub: Subscriber, version: str, after: int) -> bool:
    """Whether predictions newer than seq ``after`` come from model version ``version``."""
    with sub.lock:
        newer = [p for s, p in sub.predictions.items() if s > after]
    return len(newer) >= 5 and all(p["model"]["version"] == version for p in newer[-5:])


def _status(sub: Subscriber) -> dict[str, Any]:
    return [s for s in sub.kind("/status") if s["state"] == "online"][-1]


def _publish_chunk(port: int, body: dict[str, Any]) -> None:
    publish_payload(port, "deploy_chunk", signed(body), client_id="corrupter")


def test_a_bundle_pushed_over_mqtt_is_checked_signed_resumed_and_served(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    port = mosquitto_broker.port
    live = tmp_path / "bundles" / "model.spectrolite"
    live.parent.mkdir()
    live.write_bytes(demo_bundles.v1.read_bytes())  # unsigned: the local policy accepts it (no bundle key)
    trusted, stranger = make_signing_key(tmp_path, "lab"), make_signing_key(tmp_path, "stranger")
    good = signed_copy(demo_bundles.v2, tmp_path / "model-1.1.0.spectrolite", trusted)
    forged = signed_copy(demo_bundles.v2, tmp_path / "model-1.1.0-forged.spectrolite", stranger)
    older = signed_copy(demo_bundles.v1, tmp_path / "model-1.0.0-signed.spectrolite", trusted)
    huge = tmp_path / "huge.spectrolite"
    huge.write_bytes(os.urandom(MAX_BUNDLE_BYTES + 1))

    sim, path = start_sim(tmp_path, count=0, rate_hz=20.0)
    procs.append(sim)
    cfg = _config(tmp_path, path, live, port, trusted.public_pem)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 5 or not daemon.alive(), "the first predictions")
    assert daemon.alive(), daemon.text()

    # The fleet sees the device, its group and no transfer yet.
    listed = _fleet(port, tmp_path, "list", "--json")
    assert listed.returncode == 0, listed.stderr
    (entry,) = json.loads(listed.stdout)
    assert entry["device_id"] == DEVICE["device_id"]
    assert entry["status"]["deploy"] == {"groups": [GROUP], "transfer": None}

    # Oversize: refused at deploy_begin, nothing sent.
    run = _fleet(port, tmp_path, "push", str(huge), "--to", DEVICE["device_id"], "--chunk-size", str(CHUNK))
    assert run.returncode == 1, run.stdout + run.stderr
    assert f"deploy_begin.args.size: expected at most {MAX_BUNDLE_BYTES} bytes (deploy.max_bundle_bytes), got " \
           f"{MAX_BUNDLE_BYTES + 1}" in run.stdout, run.stdout

    # Unsigned (acceptable to the local policy) and signed by an untrusted key: every chunk arrives, the commit is
    # refused, and the old bundle keeps serving.
    for bundle, why in ((demo_bundles.v2, "got an unsigned bundle"), (forged, "none of them verifies")):
        run = _fleet(port, tmp_path, "push", str(bundle), "--to", DEVICE["device_id"], "--chunk-size", str(CHUNK))
        assert run.returncode == 1, run.stdout + run.stderr
        assert "refused" in run.stdout and why in run.stdout, run.stdout
        wait_for(lambda: (_status(subscriber).get("deploy") or {}).get("transfer", {}).get("state") == "refused",
                 "the refused transfer in the status")
        assert why in _status(subscriber)["deploy"]["transfer"]["error"]
    seq = subscriber.max_seq()
    wait_for(lambda: _serving(subscriber, "1.0.0", seq), "predictions of the old bundle after the refusals")

    # Interrupted after 3 chunks (exit 3): the device keeps them.
    run = _fleet(port, tmp_path, "push", str(good), "--to", DEVICE["device_id"], "--chunk-size", str(CHUNK),
                 "--max-chunks", "3")
    assert run.returncode == 3, run.stdout + run.stderr
    assert "incomplete" in run.stdout, run.stdout
    transfer = "b%d-%s" % (CHUNK, hashlib.sha256(good.read_bytes()).hexdigest()[:32])

    # A corrupted chunk (its data does not hash to its sha256) is refused and not written.
    data = good.read_bytes()[5 * CHUNK:6 * CHUNK]
    args = {"transfer_id": transfer, "index": 5, "sha256": hashlib.sha256(data).hexdigest(),
            "data_b64": base64.b64encode(data[:-1] + b"\x00").decode()}
    body = make_command("deploy_chunk", args, device_id=DEVICE["device_id"], request_id="corrupt-5")
    _publish_chunk(port, body)
    wait_for(lambda: any(r["request_id"] == "corrupt-5" for r in subscriber.kind("/cmd/deploy_chunk/response")),
             "the answer to the corrupted chunk")
    answer = next(r for r in subscriber.kind("/cmd/deploy_chunk/response") if r["request_id"] == "corrupt-5")
    assert answer["ok"] is False and "SHA-256 mismatch" in answer["error"], answer

    # The daemon restarts (the sender already did): the push resumes with the 3 chunks it has, to the group.
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
    daemon = start_daemon(tmp_path, cfg, n=1)
    procs.append(daemon)
    wait_for(lambda: "transfer " + transfer in daemon.text() or not daemon.alive(), "the staged transfer restored")
    run = _fleet(port, tmp_path, "push", str(good), "--group", GROUP, "--chunk-size", str(CHUNK), "--json")
    assert run.returncode == 0, run.stdout + run.stderr
    outcome = json.loads(run.stdout)
    (device,) = outcome["devices"]
    assert device["state"] == "installed" and device["already_there"] == 3, outcome
    assert outcome["chunks_sent"] == outcome["chunks"] - 3, outcome
    assert "serving synthetic-demo 1.1.0 (was synthetic-demo 1.0.0)" in device["detail"], device
    seq = subscriber.max_seq()
    wait_for(lambda: _serving(subscriber, "1.1.0", seq), "predictions of the pushed bundle")
    wait_for(lambda: _status(subscriber)["deploy"]["transfer"]["state"] == "installed", "installed in the status")
    assert live.read_bytes() == good.read_bytes()  # persisted: a restart serves it
    assert (live.parent / "model.spectrolite.previous").read_bytes() == demo_bundles.v1.read_bytes()

    status = _fleet(port, tmp_path, "status", DEVICE["device_id"])
    assert status.returncode == 0, status.stderr
    assert json.loads(status.stdout)["deploy"]["transfer"]["state"] == "installed"
    watched = _fleet(port, tmp_path, "watch", "--duration", "1.5")
    assert watched.returncode == 0 and "synthetic-demo 1.1.0 deploy " + transfer + " installed" in watched.stdout, \
        watched.stdout + watched.stderr

    # Only deploy commands are taken on a group topic: anything else is refused, answered on the device's topic.
    body = make_command("reload_bundle", {}, device_id=f"group:{GROUP}", request_id="group-reload")
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id="group-operator")
    c.connect("127.0.0.1", port)
    c.loop_start()
    c.publish(f"spectrolite/group/{GROUP}/cmd/reload_bundle", signed(body), qos=1).wait_for_publish(timeout=10)
    c.loop_stop()
    c.disconnect()
    wait_for(lambda: any(r["request_id"] == "group-reload" for r in subscriber.kind("/cmd/reload_bundle/response")),
             "the answer to a reload on the group topic")
    answer = next(r for r in subscriber.kind("/cmd/reload_bundle/response") if r["request_id"] == "group-reload")
    assert answer["ok"] is False and "on the group topic" in answer["error"], answer

    # The reload guards apply: an older signed bundle of the same model is refused (anti-rollback).
    run = _fleet(port, tmp_path, "push", str(older), "--to", DEVICE["device_id"], "--chunk-size", str(CHUNK))
    assert run.returncode == 1 and "rollback refused" in run.stdout, run.stdout + run.stderr
    seq = subscriber.max_seq()
    wait_for(lambda: _serving(subscriber, "1.1.0", seq), "the pushed bundle still serving")
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()

    # After a restart the installed bundle is the one served.
    daemon = start_daemon(tmp_path, cfg, n=2)
    procs.append(daemon)
    seq = subscriber.max_seq()
    wait_for(lambda: _serving(subscriber, "1.1.0", seq) or not daemon.alive(), "the pushed bundle after a restart")
    assert daemon.alive(), daemon.text()
