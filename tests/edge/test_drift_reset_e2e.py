"""``reset_drift`` end to end (issue 16): spectro-sim on a pty changes the line's level (a baseline step, what a
product change or a recalibrated lamp does to the spectra) after the self-starting detectors froze their baseline ->
``spectro-edge run`` on a trainer-built bundle -> a real mosquitto.  The ``spectrum_level`` alert is raised and stays
raised: the frozen baseline judges the new level against the old.  An unsigned ``reset_drift`` is refused (counted,
nothing changes); a signed one ends the alert with a ``cleared`` drift event naming the reason, the retained status
and the metrics say the detectors learn again, and once they have learned the new level no alert comes back.  T2
and Q, which the step may raise too, learn nothing from the line: their alerts are not the reset's to end."""

from __future__ import annotations

import json
import signal
from pathlib import Path
from typing import Any

from edge.commands import make_command
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import (
    DEVICE,
    Proc,
    Subscriber,
    publish_payload,
    send_command,
    start_daemon,
    start_sim,
    write_config,
)

BASELINE_FRAMES = 40
#: The simulator's spectrum index of the step, well after the baselines are frozen, and its size (absorbance).
STEP_AT, STEP_SIZE = 150, 0.2
DRIFT = f"""
[drift]
cusum_baseline_frames = {BASELINE_FRAMES}
spectrum_level_baseline_frames = {BASELINE_FRAMES}
min_frames = 10
"""
LEVEL = "spectrum_level"


def _status(sub: Subscriber) -> dict[str, Any]:
    return [s for s in sub.kind("/status") if s["state"] == "online"][-1]


def _responses(sub: Subscriber, request_id: str) -> list[dict[str, Any]]:
    return [r for r in sub.kind("/cmd/reset_drift/response") if r.get("request_id") == request_id]


def _level_events(sub: Subscriber) -> list[dict[str, Any]]:
    return [m for m in sub.kind("/drift") if m["detector"] == LEVEL]


def _metrics(sub: Subscriber, part: str, after: int = 0) -> dict[str, Any]:
    """The ``gauges`` or ``counters`` of the last metrics message among those after the first ``after`` ({} before
    one)."""
    metrics = sub.kind("/metrics")[after:]
    return dict(metrics[-1][part]) if metrics else {}


def _gauges(sub: Subscriber, after: int = 0) -> dict[str, float]:
    return _metrics(sub, "gauges", after)


def test_a_signed_reset_drift_ends_the_alert_and_the_detectors_learn_the_new_level(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    sim, device = start_sim(tmp_path, count=0, rate_hz=100.0, extra=(
        "--drift-at", str(STEP_AT), "--drift-kind", "baseline", "--drift-size", str(STEP_SIZE), "--drift-ramp", "1"))
    procs.append(sim)
    config = write_config(tmp_path, port_url=device, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    config.write_text(config.read_text(encoding="utf-8") + DRIFT, encoding="utf-8")
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)

    wait_for(lambda: any(m["event"] == "raised" for m in _level_events(subscriber)) or not daemon.alive(),
             "the spectrum_level alert after the step", timeout_s=60)
    assert daemon.alive(), daemon.text()
    raised = next(m for m in _level_events(subscriber) if m["event"] == "raised")
    assert raised["monitor_kind"] == "signal"
    wait_for(lambda: f"drift:{LEVEL}" in _status(subscriber)["alerts"], "the alert in the retained status")
    learned = _status(subscriber)["drift_baselines"]
    assert learned == {"learning": [], "reset": None}, learned
    wait_for(lambda: _gauges(subscriber).get(f"drift_{LEVEL}_baseline_learning") == 0.0, "learned, in the metrics")
    old_mean = _gauges(subscriber)[f"drift_{LEVEL}_baseline_mean"]
    predictions = sorted(n[len("drift_"):-len("_baseline_learning")] for n in _gauges(subscriber)
                         if n.startswith("drift_prediction:") and n.endswith("_baseline_learning"))
    assert predictions, "the demo bundle's targets each have a self-starting CUSUM"

    # unsigned: refused under commands.require_auth, answered and counted; the alert stays
    body = make_command("reset_drift", {"reason": "forged"}, device_id=DEVICE["device_id"], request_id="unsigned")
    publish_payload(mosquitto_broker.port, "reset_drift", json.dumps(body).encode(), client_id="e2e-forger")
    wait_for(lambda: _responses(subscriber, "unsigned"), "the refusal of the unsigned reset")
    (refusal,) = _responses(subscriber, "unsigned")
    assert refusal["ok"] is False and "HMAC-SHA256 envelope" in refusal["error"], refusal
    wait_for(lambda: _metrics(subscriber, "counters").get("commands_refused") == 1, "the refusal counted")
    assert "commands_reset_drift" not in _metrics(subscriber, "counters")
    assert [m["event"] for m in _level_events(subscriber)] == ["raised"]

    # signed, naming a detector that learns nothing: an error, nothing reset
    send_command(mosquitto_broker.port, "reset_drift", {"detectors": ["ood_t2"]}, "wrong")
    wait_for(lambda: _responses(subscriber, "wrong"), "the answer to a reset of ood_t2")
    (wrong,) = _responses(subscriber, "wrong")
    assert wrong["ok"] is False and "got 'ood_t2'" in wrong["error"], wrong

    # signed: the alert ends, explicitly, and every self-starting detector learns again
    send_command(mosquitto_broker.port, "reset_drift", {"reason": "product change to B-20"}, "product-b")
    wait_for(lambda: _responses(subscriber, "product-b"), "the answer to the signed reset")
    (answer,) = _responses(subscriber, "product-b")
    reset_at = len(subscriber.kind("/metrics"))  # metrics from here on were built after the reset
    assert answer["ok"] is True, answer
    assert answer["result"]["detectors"] == [*predictions, LEVEL]
    assert answer["result"]["reason"] == "product change to B-20"
    ended = answer["result"]["cleared"]  # the step may move a prediction too: each alert raised ends here
    assert LEVEL in ended and set(ended) <= {*predictions, LEVEL}, ended
    wait_for(lambda: len(_level_events(subscriber)) == 2, "the cleared event")
    for name in ended:
        cleared = [m for m in subscriber.kind("/drift") if m["detector"] == name][-1]
        assert cleared["event"] == "cleared" and "product change to B-20" in cleared["detail"], cleared
    learned_alerts = {*predictions, LEVEL}
    assert not learned_alerts & set(cleared["active_alerts"]), cleared  # T2 and Q learn nothing: not reset
    def relearning_statuses() -> list[dict[str, Any]]:
        statuses = [s for s in subscriber.kind("/status") if s["state"] == "online"]
        return [s for s in statuses if s["drift_baselines"]["reset"] is not None]

    wait_for(lambda: relearning_statuses(), "the retained status after the reset")
    relearning = relearning_statuses()
    assert relearning[0]["drift_baselines"]["learning"] == [*predictions, LEVEL], relearning[:1]
    assert relearning[0]["drift_baselines"]["reset"]["reason"] == "product change to B-20"
    assert relearning[0]["drift_baselines"]["reset"]["request_id"] == "product-b"
    assert not {f"drift:{n}" for n in learned_alerts} & set(relearning[0]["alerts"]), relearning[0]["alerts"]

    # the detectors learn the new level: the status and the metrics say so, and the alert does not come back
    wait_for(lambda: _status(subscriber)["drift_baselines"]["learning"] == [], "learned again, in the status",
             timeout_s=30)
    wait_for(lambda: _gauges(subscriber, reset_at + 1).get(f"drift_{LEVEL}_baseline_learning") == 0.0
             and _gauges(subscriber, reset_at + 1).get(f"drift_{LEVEL}_baseline_learned") == BASELINE_FRAMES,
             "learned again, in the metrics")
    new_mean = _gauges(subscriber, reset_at + 1)[f"drift_{LEVEL}_baseline_mean"]
    assert abs(new_mean - old_mean - STEP_SIZE) < STEP_SIZE / 4, \
        f"the new baseline is the new level: {old_mean} then {new_mean}"
    seen = subscriber.count()
    wait_for(lambda: subscriber.count() >= seen + 2 * BASELINE_FRAMES, "more spectra at the new level")
    assert [m["event"] for m in _level_events(subscriber)] == ["raised", "cleared"]
    counters = _metrics(subscriber, "counters")
    assert counters.get("commands_reset_drift") == 2 and counters.get("drift_baseline_resets") == 1, counters
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
