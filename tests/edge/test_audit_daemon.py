"""Issue 18, audit trail, with real processes: ``spectro-sim`` on a pty -> ``spectro-edge run`` -> a real mosquitto ->
a paho subscriber.  A bundle reload by command, a refused command and a configuration reload (SIGHUP) are recorded
with their verdicts, the bundles' SHA-256 and the command's authentication; ``spectro-edge audit verify`` (a
subprocess) passes on the log the daemon left, the retained status's ``audit_head`` is one of its records, and
one changed byte makes the verify fail naming the record."""

from __future__ import annotations

import hashlib
import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness.processes import child_env
from tests.support.broker import MosquittoBroker
from tests.support.bundles import read_zip, rehash_manifest, write_zip
from tests.support.daemon import REPO, DemoBundles, wait_for
from tests.support.processes import (
    Proc,
    Subscriber,
    send_command,
    start_daemon,
    start_sim,
    write_config,
)


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def _audit_cli(*args: str) -> subprocess.CompletedProcess[str]:
    return subprocess.run([sys.executable, "-m", "edge.cli", "audit", *args], cwd=REPO, env=child_env(),
                          capture_output=True, text=True, timeout=60)


def _records(directory: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for f in sorted(directory.glob("audit-*.jsonl"))
            for line in f.read_text(encoding="ascii").splitlines()]


def test_the_daemon_keeps_a_verifiable_audit_trail(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    live = bundles / "model.spectrolite"
    live.write_bytes(demo_bundles.v1.read_bytes())
    members = read_zip(demo_bundles.v1)
    members.pop("manifest.sig", None)
    rehash_manifest(members, lambda m: m.update(model_version="1.0.1"))
    newer = write_zip(bundles / "model-1.0.1.spectrolite", members)

    sim, path = start_sim(tmp_path, count=0, rate_hz=20.0)
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=live, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 5 or not daemon.alive(), "predictions")
    assert daemon.alive(), daemon.text()

    send_command(mosquitto_broker.port, "reload_bundle", {"path": str(newer)}, "r-reload")
    answer = subscriber.response("reload_bundle", "r-reload")
    assert answer["ok"] is True and answer["result"]["model"]["version"] == "1.0.1", answer
    send_command(mosquitto_broker.port, "capture_dark", {"average_frames": 0}, "r-bad")
    answer = subscriber.response("capture_dark", "r-bad")
    assert answer["ok"] is False, answer
    daemon.popen.send_signal(signal.SIGHUP)
    wait_for(lambda: "configuration reload: no broker setting changed" in daemon.text(), "the SIGHUP reload")
    wait_for(lambda: any(s.get("audit_head") for s in subscriber.kind("/status")), "a status with audit_head")
    heads = [s["audit_head"] for s in subscriber.kind("/status") if s["state"] == "online" and s.get("audit_head")]
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()

    audit_dir = tmp_path / "state" / "audit"  # default: beside the outbox
    done = _audit_cli("verify", str(audit_dir))
    assert done.returncode == 0, done.stdout + done.stderr
    assert done.stdout.startswith("OK: ") and "from the first record (genesis)" in done.stdout, done.stdout

    records = _records(audit_dir)
    by_event: dict[str, list[dict[str, Any]]] = {}
    for r in records:
        by_event.setdefault(r["event"], []).append(r["details"])
    assert records[0]["event"] == "daemon_started" and records[-1]["event"] == "daemon_stopped"
    started = by_event["daemon_started"][0]
    # Commands are signed (safe defaults): the settings still open are named, commands are not among them.
    assert started["config_sha256"] == _sha256(cfg) and "commands_unauthenticated" not in started["security"]
    assert "mqtt_plaintext" in started["security"]
    assert {d["warning"] for d in by_event["security_warning"]} == set(started["security"])
    loads = by_event["bundle_load"]
    assert loads[0] == {"path": str(live), "sha256": _sha256(live), "model": {"id": loads[0]["model"]["id"],
                        "version": "1.0.0"}, "signer": "unsigned", "trigger": "start", "verdict": "accepted"}
    reload = [d for d in loads if d["trigger"] == "command reload_bundle"]
    assert len(reload) == 1 and reload[0]["verdict"] == "accepted", reload
    assert reload[0]["sha256"] == _sha256(newer) and reload[0]["model"]["version"] == "1.0.1"
    assert reload[0]["previous_model"]["version"] == "1.0.0" and reload[0]["request_id"] == "r-reload"
    accepted = [d for d in by_event["command_accepted"] if d["request_id"] == "r-reload"]
    assert accepted == [{"command": "reload_bundle", "request_id": "r-reload", "authenticated": True,
                         "signer": "hmac-sha256 (commands.hmac_key_path)",
                         "issued_at_unix_s": accepted[0]["issued_at_unix_s"]}]
    results = {d["request_id"]: d for d in by_event["command_result"]}
    assert results["r-reload"]["verdict"] == "ok"
    assert results["r-bad"]["verdict"] == "refused" and "average_frames" in results["r-bad"]["reason"]
    assert not [d for d in by_event["command_accepted"] if d["request_id"] == "r-bad"]  # refused before execution
    assert by_event["config_reload"][0]["verdict"] == "applied"
    assert by_event["config_reload"][0]["sha256"] == _sha256(cfg)
    assert by_event["daemon_stopped"][0] == {"exit_code": 0, "reason": "stopped"}
    assert heads and heads[-1] in {r["hash"] for r in records}  # the retained status anchors the log
    done = _audit_cli("verify", str(audit_dir), "--expect-head", heads[-1])
    assert done.returncode == 0, done.stdout

    # One changed byte in the reload's record: the verify fails and names it.
    f = sorted(audit_dir.glob("audit-*.jsonl"))[-1]
    lines = f.read_bytes().splitlines(keepends=True)
    i = next(n for n, line in enumerate(lines) if _sha256(newer).encode() in line)
    lines[i] = lines[i].replace(_sha256(newer).encode(), _sha256(live).encode())
    f.write_bytes(b"".join(lines))
    done = _audit_cli("verify", str(audit_dir))
    assert done.returncode == 1, done.stdout
    assert done.stdout.startswith(f"FAIL: {f.name} line {i + 1} (seq {records[i]['seq']}, bundle_load)"), done.stdout
