"""Control samples end to end (issue 16): spectro-sim on a pty -> ``spectro-edge run`` with ``[[control.standards]]``
-> a real mosquitto; signed ``measure_control`` commands.  Each control message's ``measured`` is the published
prediction of the same seq, its verdict follows the rules, an out-of-control standard is an alert in the retained
status, and the next in-control measurement of that standard clears it."""

from __future__ import annotations

import signal
from pathlib import Path
from typing import Any

import paho.mqtt.publish as publish

from edge.commands import make_command
from edge.control_samples import OUT_OF_CONTROL, WARNING, verdict_of
from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import BASE_TOPIC, DEVICE, Proc, Subscriber, signed, start_daemon, start_sim, write_config

TARGET = "analyte_a_pct"
#: The demo bundle's training mean and about a third of its standard deviation of analyte_a_pct: the simulator's
#: stream lands on every side of these limits, so a run of measurements holds both verdicts.
NEAR_VALUE, NEAR_SIGMA = 15.26, 2.0
TIGHT_FRAMES = 60
CONTROL_STANDARDS = f"""
[[control.standards]]
name = "far"
target = "{TARGET}"
value = 1000.0
sigma = 1.0

[[control.standards]]
name = "near"
target = "{TARGET}"
value = {NEAR_VALUE}
sigma = {NEAR_SIGMA}
"""


def measure(broker: MosquittoBroker, name: str, frames: int, request_id: str) -> None:
    body = make_command("measure_control", {"name": name, "frames": frames}, device_id=DEVICE["device_id"],
                        request_id=request_id)
    publish.single(f"{BASE_TOPIC}/cmd/measure_control", signed(body), qos=1, hostname="127.0.0.1", port=broker.port)


def controls(sub: Subscriber, request_id: str) -> list[dict[str, Any]]:
    return [m for m in sub.kind("/control") if m.get("request_id") == request_id]


def value_of(prediction: dict[str, Any]) -> float:
    return float(next(v["value"] for v in prediction["values"] if v["name"] == TARGET))


def last_status(sub: Subscriber) -> dict[str, Any]:
    return sub.kind("/status")[-1]


def test_measure_control_publishes_judged_measurements_and_the_status_alert(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    sim, device = start_sim(tmp_path, count=0, rate_hz=50.0)
    procs.append(sim)
    config = write_config(tmp_path, port_url=device, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    config.write_text(config.read_text(encoding="utf-8") + CONTROL_STANDARDS, encoding="utf-8")
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 10 or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()
    assert last_status(subscriber)["control"] == {}

    # an unknown standard is answered with an error and arms nothing
    measure(mosquitto_broker, "nope", 1, "qc-0")
    wait_for(lambda: any(r.get("request_id") == "qc-0" for r in subscriber.kind("/cmd/measure_control/response")),
             "the refusal of an unknown standard")
    refusal = next(r for r in subscriber.kind("/cmd/measure_control/response") if r.get("request_id") == "qc-0")
    assert refusal["ok"] is False and "got 'nope'" in refusal["error"], refusal

    # a standard far from the stream: out of control, an alert in the retained status
    measure(mosquitto_broker, "far", 2, "qc-1")
    wait_for(lambda: len(controls(subscriber, "qc-1")) >= 2 or not daemon.alive(), "two control messages")
    answer = next(r for r in subscriber.kind("/cmd/measure_control/response") if r.get("request_id") == "qc-1")
    assert answer["ok"] is True and answer["result"]["standard"] == "far" and answer["result"]["frames"] == 2
    far = controls(subscriber, "qc-1")
    assert len(far) == 2 and far[1]["seq"] > far[0]["seq"]
    wait_for(lambda: all(m["seq"] in subscriber.predictions for m in far), "the predictions of the measured seqs")
    for m in far:
        measured = value_of(subscriber.predictions[m["seq"]])
        assert m["measured"] == measured and m["known"] == 1000.0 and m["bias"] == measured - 1000.0
        assert m["verdict"] == OUT_OF_CONTROL and m["rule"].startswith("shewhart_action"), m
        assert m["standard"] == "far" and m["target"] == TARGET and m["unit"] == "%"
    wait_for(lambda: "control_out_of_control:far" in last_status(subscriber)["alerts"], "the alert in the status")
    st = last_status(subscriber)
    assert st["control"]["far"]["verdict"] == OUT_OF_CONTROL and st["control"]["far"]["bias"] == far[1]["bias"]

    # a standard at the stream's mean with a tight sigma: both verdicts come; the alert follows the last
    # in-control or out-of-control one (a warning leaves it), so an in-control measurement clears it
    measure(mosquitto_broker, "near", TIGHT_FRAMES, "qc-2")
    wait_for(lambda: len(controls(subscriber, "qc-2")) >= TIGHT_FRAMES or not daemon.alive(),
             f"{TIGHT_FRAMES} control messages")
    near = controls(subscriber, "qc-2")
    wait_for(lambda: all(m["seq"] in subscriber.predictions for m in near), "the predictions of the measured seqs")
    zs: list[float] = []
    alert = False
    cleared_after_raised = False
    for m in near:
        measured = value_of(subscriber.predictions[m["seq"]])
        z = (measured - NEAR_VALUE) / NEAR_SIGMA
        assert m["measured"] == measured and abs(m["bias_sigmas"] - z) < 1e-9
        assert m["verdict"] == verdict_of(z, zs, warning_sigmas=2.0, action_sigmas=3.0)[0], (m, zs[-2:])
        zs.append(z)
        if m["verdict"] != WARNING:
            cleared_after_raised |= alert and m["verdict"] != OUT_OF_CONTROL
            alert = m["verdict"] == OUT_OF_CONTROL
    assert cleared_after_raised, [m["verdict"] for m in near]
    wait_for(lambda: ("control_out_of_control:near" in last_status(subscriber)["alerts"]) == alert
             and last_status(subscriber)["control"]["near"]["bias"] == near[-1]["bias"], "the status after the run")
    assert "control_out_of_control:far" in last_status(subscriber)["alerts"], "a verdict clears only its own alert"
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()


def test_a_standard_of_a_target_the_bundle_does_not_predict_refuses_the_start(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, procs: list[Proc],
) -> None:
    sim, device = start_sim(tmp_path, count=0, rate_hz=50.0)
    procs.append(sim)
    config = write_config(tmp_path, port_url=device, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    config.write_text(config.read_text(encoding="utf-8") + CONTROL_STANDARDS.replace(
        'name = "far"\ntarget = "analyte_a_pct"', 'name = "far"\ntarget = "assay_mg"'), encoding="utf-8")
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)
    wait_for(lambda: not daemon.alive(), "the daemon to refuse to start")
    assert daemon.end(signal.SIGTERM) == 2, daemon.text()
    assert ("control.standards 'far': expected target to be one of the bundle's targets (analyte_a_pct, "
            "analyte_b_pct, analyte_c_pct), got 'assay_mg'") in daemon.text()
    assert "Traceback" not in daemon.text()
