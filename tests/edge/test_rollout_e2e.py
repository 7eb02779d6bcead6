"""Staged rollout with probation, end to end with real processes: mosquitto, ``spectro-sim`` over a pty,
``spectro-edge run`` and ``spectro-fleet rollout``, with the committed trainer-built bundles signed here.

A bundle that raises the OOD alarm rate on the device's stream (the simulator's provoked band drift from the first
spectrum: the line runs a product the model was not trained for) fails its probation and the device returns by
itself to the bundle that served before, through the anti-rollback guard, which lets exactly that return through;
the rollout stops after that canary and never reaches the second device.  A bundle that behaves passes its
probation; one whose signal contract the device does not meet is refused at install, with that reason."""

from __future__ import annotations

import json
import signal
import subprocess
import sys
from pathlib import Path
from typing import Any

from benchmarks.harness.processes import child_env
from tests.support.broker import MosquittoBroker
from tests.support.daemon import REPO, DemoBundles, wait_for
from tests.support.processes import DEVICE, Proc, Subscriber, start_daemon, start_sim, write_config
from tests.support.signing import SigningKey, make_signing_key, signed_copy
from tests.support.trained import DEMO_ABSORBANCE

GROUP = "plant-a/line-1"
CHUNK = 4096
#: The provoked drift (a band) from the first spectrum, full size at once: every spectrum is off the training data.
OOD_STREAM = ("--drift-at", "0", "--drift-ramp", "1")
#: Short enough for a test, long enough that the return to the old bundle waits for it once.
MIN_RELOAD_INTERVAL_S = 3


def _fleet(port: int, tmp: Path, *args: str, timeout_s: float = 240.0) -> subprocess.CompletedProcess[str]:
    cmd = [sys.executable, "-m", "edge.fleet.cli", "--port", str(port), "--hmac-key", str(tmp / "hmac.key"), *args]
    return subprocess.run(cmd, cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=timeout_s)


def _device(root: Path, device_id: str, port: int, live: Path, key: SigningKey, sim_extra: tuple[str, ...],
            procs: list[Proc]) -> tuple[Path, Path, Proc]:
    """A simulator and a daemon serving ``live`` (verified with ``key``, which also signs what is sent)."""
    root.mkdir(parents=True, exist_ok=True)
    sim, path = start_sim(root, count=0, rate_hz=20.0, extra=sim_extra)
    procs.append(sim)
    cfg = write_config(root, port_url=path, bundle=live, mqtt_port=port)
    text = cfg.read_text(encoding="utf-8").replace(f'device_id = "{DEVICE["device_id"]}"', f'device_id = "{device_id}"')
    text = text.replace("watch = false\n", f'watch = false\npublic_key_path = "{key.public_pem}"\n'
                        f"min_reload_interval_s = {MIN_RELOAD_INTERVAL_S}\n")
    text += f'[deploy]\nenabled = true\ngroups = ["{GROUP}"]\nmax_chunk_bytes = {CHUNK}\n'
    cfg.write_text(text, encoding="utf-8")
    daemon = start_daemon(root, cfg)
    procs.append(daemon)
    return cfg, root / "state", daemon


def _statuses(port: int) -> dict[str, dict[str, Any]]:
    from edge.fleet.client import FleetClient

    client = FleetClient("127.0.0.1", port, client_id="rollout-test-reader")
    try:
        client.settle(quiet_s=0.5, limit_s=5.0)
        return {k: d.status for k, d in client.devices().items()}
    finally:
        client.close()


def _model(status: dict[str, Any]) -> str:
    return str((status.get("model") or {}).get("version"))


def _marks(state: Path, device_id: str) -> dict[str, Any]:
    return dict(json.loads((state / f"{device_id}.bundle-versions.json").read_text(encoding="utf-8"))["marks"])


def _audit(state: Path) -> list[dict[str, Any]]:
    return [json.loads(line) for p in sorted((state / "audit").glob("*")) for line in p.read_text().splitlines()
            if line.strip()]


def test_a_canary_raising_ood_alarms_rolls_back_by_itself_and_the_rollout_stops_before_the_next_device(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, procs: list[Proc],
) -> None:
    port = mosquitto_broker.port
    lab = make_signing_key(tmp_path, "lab")
    old = signed_copy(demo_bundles.v1, tmp_path / "model-1.0.0.spectrolite", lab)
    new = signed_copy(demo_bundles.v2, tmp_path / "model-1.1.0.spectrolite", lab)
    lives = {}
    for name in ("sim-00", "sim-01"):
        lives[name] = tmp_path / name / "bundles" / "model.spectrolite"
        lives[name].parent.mkdir(parents=True)
        lives[name].write_bytes(old.read_bytes())
    # sim-00 (the canary: first by device id) sees a product the models were not trained on; sim-01 the usual one.
    cfg0, state0, d0 = _device(tmp_path / "sim-00", "sim-00", port, lives["sim-00"], lab, OOD_STREAM, procs)
    _, state1, d1 = _device(tmp_path / "sim-01", "sim-01", port, lives["sim-01"], lab, (), procs)
    (tmp_path / "hmac.key").write_bytes((tmp_path / "sim-00" / "hmac.key").read_bytes())
    wait_for(lambda: {"sim-00", "sim-01"} <= set(_statuses(port)) or not (d0.alive() and d1.alive()),
             "both devices' retained status")
    assert d0.alive() and d1.alive(), d0.text() + d1.text()
    assert _marks(state0, "sim-00")["synthetic-demo"]["model_version"] == "1.0.0"  # the signed old one is the mark

    run = _fleet(port, tmp_path, "rollout", str(new), "--group", GROUP, "--canary", "1", "--window-spectra", "20",
                 "--max-ood-rate", "0.2", "--chunk-size", str(CHUNK), "--timeout", "120", "--json")
    assert run.returncode == 4, run.stdout + run.stderr  # stopped after the canaries
    out = json.loads(run.stdout)
    by_id = {d["device_id"]: d for d in out["devices"]}
    assert by_id["sim-00"]["wave"] == "canary" and by_id["sim-00"]["state"] == "rolled_back", out
    assert by_id["sim-00"]["reason"] == "ood_rate" and by_id["sim-00"]["ood"] > 4, out
    assert by_id["sim-01"]["state"] == "not pushed", out
    assert out["summary"]["restored"] == ["sim-00"] and out["summary"]["not pushed"] == ["sim-01"], out
    assert "1 of 1 canary(ies) did not pass" in out["stopped"], out

    # The canary serves the old bundle again, on disk too, and the anti-rollback mark is the old one again.
    status = _statuses(port)
    assert _model(status["sim-00"]) == "1.0.0", status["sim-00"]
    rollout = status["sim-00"]["deploy"]["rollout"]
    assert rollout["state"] == "rolled_back" and rollout["model"]["version"] == "1.1.0", rollout
    assert rollout["previous_model"]["version"] == "1.0.0" and rollout["rule"]["window_spectra"] == 20, rollout
    assert lives["sim-00"].read_bytes() == old.read_bytes()
    assert _marks(state0, "sim-00")["synthetic-demo"]["model_version"] == "1.0.0"
    events = [(r["event"], r["details"].get("verdict")) for r in _audit(state0)]
    assert ("deploy_probation", "started") in events and ("deploy_probation", "failed") in events, events
    assert ("deploy_rollback", "returned") in events, events
    loads = [r["details"] for r in _audit(state0) if r["event"] == "bundle_load"]
    assert [d["verdict"] for d in loads if "probation" in str(d.get("trigger"))] == ["accepted"], loads

    # The second device never saw the bundle.
    assert _model(status["sim-01"]) == "1.0.0" and status["sim-01"]["deploy"]["transfer"] is None, status["sim-01"]
    assert "rollout" not in status["sim-01"]["deploy"]
    assert lives["sim-01"].read_bytes() == old.read_bytes() and d1.alive()

    # The guard let exactly that return through: after a restart the old bundle starts (its mark allows it), and
    # pushing the old bundle again is a no-op, not a downgrade.
    assert d0.end(signal.SIGTERM) == 0, d0.text()
    d0 = start_daemon(tmp_path / "sim-00", cfg0, n=1)
    procs.append(d0)
    wait_for(lambda: "now serving" in d0.text() or "model synthetic-demo 1.0.0" in d0.text() or not d0.alive(),
             "the canary restarted")
    assert d0.alive(), d0.text()
    assert "model synthetic-demo 1.0.0" in d0.text(), d0.text()


def test_a_good_bundle_passes_its_probation_a_contract_mismatch_is_refused_and_the_operator_rolls_back(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    port = mosquitto_broker.port
    lab = make_signing_key(tmp_path, "lab")
    old = signed_copy(demo_bundles.v1, tmp_path / "model-1.0.0.spectrolite", lab)
    new = signed_copy(demo_bundles.v2, tmp_path / "model-1.1.0.spectrolite", lab)
    absorbance = signed_copy(DEMO_ABSORBANCE, tmp_path / "model-absorbance.spectrolite", lab)
    live = tmp_path / "dev" / "bundles" / "model.spectrolite"
    live.parent.mkdir(parents=True)
    live.write_bytes(old.read_bytes())
    _, state, daemon = _device(tmp_path / "dev", DEVICE["device_id"], port, live, lab, (), procs)
    (tmp_path / "hmac.key").write_bytes((tmp_path / "dev" / "hmac.key").read_bytes())
    wait_for(lambda: subscriber.count() >= 5 or not daemon.alive(), "the first predictions")
    assert daemon.alive(), daemon.text()

    run = _fleet(port, tmp_path, "rollout", str(new), "--to", DEVICE["device_id"], "--window-spectra", "30",
                 "--max-ood-rate", "0.2", "--max-rejected-rate", "0.1", "--chunk-size", str(CHUNK), "--timeout",
                 "120")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"canary {DEVICE['device_id']}: passed" in run.stdout and "updated 1" in run.stdout, run.stdout
    rollout = _statuses(port)[DEVICE["device_id"]]["deploy"]["rollout"]
    assert rollout["state"] == "passed" and rollout["spectra"] >= 30, rollout
    assert rollout["ood"] <= 6 and rollout["rejected"] <= 3, rollout
    assert live.read_bytes() == new.read_bytes()
    assert _marks(state, DEVICE["device_id"])["synthetic-demo"]["model_version"] == "1.1.0"

    # A bundle for absorbance frames: the device sends counts; refused at install, the new one serves on.
    run = _fleet(port, tmp_path, "rollout", str(absorbance), "--to", DEVICE["device_id"], "--window-spectra", "30",
                 "--max-ood-rate", "0.2", "--chunk-size", str(CHUNK), "--timeout", "120", "--json")
    assert run.returncode == 4, run.stdout + run.stderr
    (device,) = json.loads(run.stdout)["devices"]
    assert device["state"] == "refused" and device["category"] == "refused", device
    rollout = _statuses(port)[DEVICE["device_id"]]["deploy"]["rollout"]
    assert rollout["state"] == "refused" and rollout["reason"] == "signal_contract", rollout
    assert "absorbance" in rollout["detail"], rollout
    seq = subscriber.max_seq()
    wait_for(lambda: _versions_after(subscriber, seq)[-5:] == ["1.1.0"] * 5, "the passed bundle still serving")

    # The operator takes the passed bundle back (a signed deploy_rollback): the device returns to the one before it,
    # through the same single return the guard allows, and its mark is 1.0.0 again.
    run = _fleet(port, tmp_path, "rollback", "--to", DEVICE["device_id"], "--timeout", "60")
    assert run.returncode == 0, run.stdout + run.stderr
    assert f"{DEVICE['device_id']}: rolled_back" in run.stdout, run.stdout
    seq = subscriber.max_seq()
    wait_for(lambda: _versions_after(subscriber, seq)[-5:] == ["1.0.0"] * 5, "the bundle before serving again")
    rollout = _statuses(port)[DEVICE["device_id"]]["deploy"]["rollout"]
    assert rollout["state"] == "rolled_back" and rollout["reason"] == "command", rollout
    assert live.read_bytes() == old.read_bytes()
    assert _marks(state, DEVICE["device_id"])["synthetic-demo"]["model_version"] == "1.0.0"
    # Nothing more to take back: a second rollback is refused by the device, with the reason.
    run = _fleet(port, tmp_path, "rollback", "--to", DEVICE["device_id"], "--timeout", "10")
    assert run.returncode == 1 and "refused" in run.stdout and "is rolled_back, not in service" in run.stdout, \
        run.stdout
    assert daemon.alive(), daemon.text()


def _versions_after(sub: Subscriber, seq: int) -> list[str]:
    with sub.lock:
        return [p["model"]["version"] for s, p in sorted(sub.predictions.items()) if s > seq]
