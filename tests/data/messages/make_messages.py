"""Writes the golden version-1 MQTT payloads (``v1_<name>.json``): what each builder of ``edge.publish.messages``
emits.

Each file holds ``encode(builder(...))`` byte for byte (compact UTF-8 JSON, no trailing newline) for the inputs
in :data:`CASES`.  ``tests/edge/test_message_goldens.py`` builds every case again and compares it with its file,
so a change to what a builder emits (a field added, renamed, reordered or retyped) fails there and has to be made
on purpose, in ``docs/mqtt.md`` too.  Golden files are written once and never overwritten: to add one, add a case
below and run ``python tests/data/messages/make_messages.py NAME``; to change one on purpose (a new schema
version), delete its file first and say why in the commit.
"""

from __future__ import annotations

import argparse
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

from edge.publish.line_messages import LineOod, LineTarget, line_prediction_message
from edge.publish.messages import (
    LinePosition,
    OodStats,
    TargetValue,
    challenger_prediction_message_of,
    command_response_message,
    control_message,
    drift_message,
    metrics_message,
    prediction_message,
    status_message,
)
from edge.publish.schema import encode

HERE = Path(__file__).resolve().parent

T = 1767225600.25
BOOT = 2882400001
MODEL = {"model_id": "tablets-api-cnn", "model_version": "2026.11.3"}
AUDIT_HEAD = "9b3e5d8f0a1c2e4b6d8f0a1c2e4b6d8f0a1c2e4b6d8f0a1c2e4b6d8f0a1c2e4b"


def prediction_interval_ood() -> dict[str, Any]:
    """A prediction with an interval and OOD statistics, flagged for a stale reference."""
    return prediction_message(
        device_id="nir-01", seq=1042, device_timestamp_us=86400123456, **MODEL,
        targets=[TargetValue("api", "%w/w", 12.41, 12.02, 12.8)], quality_flags=["stale_reference"],
        ood=OodStats(4.21, 0.0132, 11.3, 0.031), interval_coverage=0.9, latency_ms=3.8,
        device_boot_id=BOOT, quality_reasons=["white reference is 4000 s old (max 3600 s)"],
        compute_us=812.5, time_unix_s=T)


def prediction_plain() -> dict[str, Any]:
    """A bundle without interval or OOD model, two targets, a device that sent no boot id, no compute time."""
    return prediction_message(
        device_id="nir-01", seq=7, device_timestamp_us=1500000, model_id="blend-pls", model_version="4",
        targets=[TargetValue("moisture", "%", 3.25), TargetValue("fat", "%", 11.5)], latency_ms=1.25,
        time_unix_s=T)


def prediction_autoencoder_reference() -> dict[str, Any]:
    """Every flag that can stack, an autoencoder OOD score, the simulator's known reference values."""
    return prediction_message(
        device_id="sim-01", seq=3, device_timestamp_us=0, **MODEL,
        targets=[TargetValue("api", "%w/w", 14.0, 13.5, 14.5)],
        quality_flags=["instrument_fault", "out_of_distribution", "saturated"],
        ood=OodStats(30.5, 0.25, 11.3, 0.031, ae_score=0.75, ae_limit=0.5), interval_coverage=0.95, latency_ms=0.0,
        device_boot_id=1, quality_reasons=["12 pixels at full scale", "T2 30.5 > 11.3", "instrument alert: lamp"],
        compute_us=0.0, reference=[13.9, None], time_unix_s=T)


def prediction_line() -> dict[str, Any]:
    """The spectrum at index 3 of a 256-spectrum LINE frame whose first seq is 4294967294: its own seq wrapped to 1."""
    return prediction_message(
        device_id="hsi-01", seq=1, device_timestamp_us=5000000, **MODEL,
        targets=[TargetValue("api", "%w/w", 12.5, 12.1, 12.9)], ood=OodStats(2.5, 0.011, 11.3, 0.031),
        interval_coverage=0.9, latency_ms=6.5, device_boot_id=BOOT, compute_us=41.5, time_unix_s=T,
        line=LinePosition(line_seq=4294967294, index=3, spectra=256))


def line_prediction() -> dict[str, Any]:
    """A LINE frame of 4 spectra whose first seq is 4294967294 (its spectra: 4294967294, 4294967295, 0, 1), one
    rejected (non-finite counts), one out of distribution by its autoencoder score and saturated, as arrays."""
    return line_prediction_message(
        device_id="hsi-01", seq=4294967294, spectra=4, device_timestamp_us=5000000, **MODEL,
        targets=[LineTarget("api", "%w/w", [12.5, 12.75, None, 13.0], [12.1, 12.35, None, 12.6],
                                  [12.9, 13.15, None, 13.4]),
                 LineTarget("moisture", "%", [3.25, 3.5, None, 3.0], None, None)],
        quality_flags=[0, 0, None, 5], rejected=[(2, "bad_input")],
        ood=LineOod(t2=[2.5, 3.0, None, 9.5], q=[0.011, 0.0125, None, 0.02], t2_limit=11.3, q_limit=0.031,
                    ae_score=[0.25, 0.3, None, 0.75], ae_limit=0.5),
        interval_coverage=0.9, latency_ms=7.25, device_boot_id=BOOT, compute_us=166.5, time_unix_s=T)




def drift_raised() -> dict[str, Any]:
    return drift_message(
        device_id="nir-01", event="raised", detector="ood_t2", statistic=1.27, threshold=1.0, seq=1042,
        **MODEL, active_alerts=["ood_t2"], detail="ood_t2: EWMA", monitor_kind="model",
        device_boot_id=BOOT, time_unix_s=T)


def drift_cleared() -> dict[str, Any]:
    """An instrument monitor clearing, no model loaded, no frame sequence."""
    return drift_message(
        device_id="nir-01", event="cleared", detector="dark_level", statistic=0.4, threshold=0.8,
        monitor_kind="instrument", detail="dark_level back below 0.8", time_unix_s=T)


def drift_signal_raised() -> dict[str, Any]:
    """The spectrum-level CUSUM raised (monitor kind ``signal``): the spectra's mean absorbance moved."""
    return drift_message(
        device_id="nir-01", event="raised", detector="spectrum_level", statistic=12.4, threshold=12.0, seq=2210,
        **MODEL, active_alerts=["spectrum_level"], detail="spectrum_level: CUSUM of the spectrum's level (sigma) "
        "12.4 above 12 for 1 samples", monitor_kind="signal", device_boot_id=BOOT, time_unix_s=T)


def status_online() -> dict[str, Any]:
    """Online with alerts, a last error, the device's signal and boot id, an insecure setting, the audit head."""
    return status_message(
        device_id="nir-01", state="online", **MODEL, runtime="ai_edge_litert 1.2.0, 1 thread(s)",
        software_version="0.1.0", alerts=["drift:ood_q", "signal_mismatch"],
        last_error="bundle x 1 expects absorbance frames, the device SIM-0001 sends counts",
        device_signal="counts", device_boot_id=BOOT, security=["mqtt_plaintext"], audit_head=AUDIT_HEAD,
        time_unix_s=T)


def status_online_secure() -> dict[str, Any]:
    """Online, no alert, no insecure setting, before the device's first STATUS."""
    return status_message(
        device_id="nir-01", state="online", **MODEL, runtime="ai_edge_litert 1.2.0, 1 thread(s)",
        software_version="0.1.0", time_unix_s=T)


def status_online_control() -> dict[str, Any]:
    """Online with [control] standards: one out of control (its alert listed), one in control."""
    return status_message(
        device_id="nir-01", state="online", **MODEL, runtime="ai_edge_litert 1.2.0, 1 thread(s)",
        software_version="0.1.0", alerts=["control_out_of_control:check-A"], device_signal="counts",
        device_boot_id=BOOT, time_unix_s=T,
        control={"check-A": {"verdict": "out_of_control", "last_time_unix_s": T - 60.0, "bias": 7.25},
                 "check-B": {"verdict": "in_control", "last_time_unix_s": T - 30.0, "bias": -0.5}})


def status_online_rollback() -> dict[str, Any]:
    """Online with [deploy]: the pushed bundle failed its probation (OOD alarms) and the one before serves again."""
    sha = "5" * 64
    return status_message(
        device_id="nir-01", state="online", **MODEL, runtime="ai_edge_litert 1.2.0, 1 thread(s)",
        software_version="0.1.0", device_signal="counts", device_boot_id=BOOT, time_unix_s=T,
        deploy={"groups": ["plant-a"],
                "transfer": {"transfer_id": "b16384-" + sha[:32], "name": "tablets-api-cnn-2026.12.1.spectrolite",
                             "size": 48_213, "sha256": sha, "chunks": 3, "received": 3, "state": "installed",
                             "error": None, "updated_unix_s": T - 40.0},
                "rollout": {"state": "rolled_back", "transfer_id": "b16384-" + sha[:32], "sha256": sha,
                            "model": {"id": "tablets-api-cnn", "version": "2026.12.1"},
                            "previous_model": {"id": "tablets-api-cnn", "version": "2026.11.3"},
                            "rule": {"window_spectra": 50, "max_ood_rate": 0.1, "max_rejected_rate": None},
                            "spectra": 6, "ood": 6, "rejected": 0, "reason": "ood_rate",
                            "detail": "6 of the first 6 spectra flagged out_of_distribution: more than "
                                      "max_ood_rate 0.1 of the window of 50 allows (5)", "updated_unix_s": T - 5.0}})


def control_out() -> dict[str, Any]:
    """A check standard measured 3.625 sigma above its known value: out of control by the action limit."""
    return control_message(
        device_id="nir-01", standard="check-A", target="api", unit="%w/w", measured=12.725, known=12.0,
        sigma=0.2, bias=0.725, bias_sigmas=3.625, verdict="out_of_control",
        rule="shewhart_action: |bias| > 3 sigma", warning_sigmas=2.0, action_sigmas=3.0, seq=1042,
        device_boot_id=BOOT, **MODEL, request_id="qc-7", time_unix_s=T)


def challenger_prediction() -> dict[str, Any]:
    """Shadow mode: a challenger's prediction of seq 1042 (flagged out of distribution), beside the serving one."""
    from edge.inference import Prediction
    from edge.publish.schema import Quality

    pred = Prediction(seq=1042, timestamp_us=86400123456, names=("api",), units=("%w/w",), values=(12.93,),
                      lower=(12.4,), upper=(13.46,), interval_coverage=0.9, ood=OodStats(14.5, 0.0291, 11.3, 0.031),
                      flags=(Quality.OUT_OF_DISTRIBUTION,), reasons=("T2 14.5 (limit 11.3), Q 0.0291 (limit 0.031)",),
                      compute_us=1530.04, model_id="tablets-api-cnn", model_version="2026.12.1")
    return challenger_prediction_message_of(pred, device_id="nir-01", latency_ms=5.25,
                                            serving_model_id="tablets-api-cnn", serving_model_version="2026.11.3",
                                            device_boot_id=BOOT, time_unix_s=T)


def status_online_challenger() -> dict[str, Any]:
    """Online with a challenger in shadow mode and the promotion rule its load_challenger stated."""
    return status_message(
        device_id="nir-01", state="online", **MODEL, runtime="ai_edge_litert 1.2.0, 1 thread(s)",
        software_version="0.1.0", device_signal="counts", device_boot_id=BOOT, time_unix_s=T,
        challenger={"state": "shadowing", "model": {"id": "tablets-api-cnn", "version": "2026.12.1"},
                    "path": "/srv/bundles/tablets-api-2026.12.1.spectrolite", "request_id": "rollout-9",
                    "since_unix_s": T - 3600.0, "rule": {"min_spectra": 5000, "max_alarm_rate": 0.02},
                    "detail": "promoted by itself once its rule is met"})


def metrics_challenger() -> dict[str, Any]:
    """Metrics while a challenger runs: its comparison with the serving bundle, two references so far."""
    return metrics_message(
        device_id="nir-01", period_s=30.0, counters={"predictions": 1200, "challenger_predictions": 1198},
        gauges={}, latency_ms={"p50": 3.1}, time_unix_s=T, challenger={
            "model": {"id": "tablets-api-cnn", "version": "2026.12.1"},
            "serving_model": {"id": "tablets-api-cnn", "version": "2026.11.3"}, "request_id": "rollout-9",
            "since_unix_s": T - 3600.0, "spectra": 1200, "compared": 1198,
            "serving": {"predictions": 1200, "rejected": 0, "alarms": 12, "alarm_rate": 0.01, "flagged": 12},
            "challenger": {"predictions": 1198, "rejected": 2, "alarms": 6, "alarm_rate": 0.005008347245409015,
                           "flagged": 6},
            "targets": {"api": {"unit": "%w/w", "compared": 1198, "mean_abs_diff": 0.21, "max_abs_diff": 0.93,
                                "mean_diff": -0.04, "within_serving_interval": 0.97, "references": 2,
                                "rmsep_serving": 0.31, "rmsep_challenger": 0.22}},
            "compute_ms": {"p50": 1.5, "p99": 2.75, "total": 1830.5},
            "rule": {"min_spectra": 5000, "max_alarm_rate": 0.02},
            "rule_verdict": "waiting: 1198 of 5000 spectra compared"})


def status_online_drift_reset() -> dict[str, Any]:
    """Online right after a reset_drift for a product change: the self-starting detectors learn again."""
    return status_message(
        device_id="nir-01", state="online", **MODEL, runtime="ai_edge_litert 1.2.0, 1 thread(s)",
        software_version="0.1.0", device_signal="counts", device_boot_id=BOOT, time_unix_s=T,
        drift_baselines={"learning": ["prediction:api", "spectrum_level"],
                         "reset": {"time_unix_s": T - 0.5, "detectors": ["prediction:api", "spectrum_level"],
                                   "reason": "product change to B-20", "request_id": "ops-21"}})


def status_offline() -> dict[str, Any]:
    """The last will the publisher registers at connect."""
    return status_message(device_id="nir-01", state="offline", last_error="connection lost", time_unix_s=T)


def metrics() -> dict[str, Any]:
    return metrics_message(
        device_id="nir-01", period_s=30.0, counters={"frames_in": 3, "frames_rejected_signal_mismatch": 2},
        gauges={"outbox_full": 0}, latency_ms={"p50": 3.1}, drift_active=["ood_q"], time_unix_s=T)


def command_response_ok() -> dict[str, Any]:
    return command_response_message(
        device_id="nir-01", command="capture_dark", request_id="ops-16", ok=True,
        result={"frames": 16, "integration_time_us": 5000}, time_unix_s=T)


def command_response_error() -> dict[str, Any]:
    return command_response_message(device_id="nir-01", command="reload_bundle", request_id="ops-17", ok=False,
                                    error="refused", time_unix_s=T)


#: Golden name (the file is ``v1_<name>.json``) -> the builder call it holds.
CASES: dict[str, Callable[[], dict[str, Any]]] = {
    "prediction": prediction_interval_ood,
    "prediction_plain": prediction_plain,
    "prediction_autoencoder_reference": prediction_autoencoder_reference,
    "prediction_line": prediction_line,
    "line_prediction": line_prediction,
    "drift_raised": drift_raised,
    "drift_cleared": drift_cleared,
    "drift_signal_raised": drift_signal_raised,
    "status_online": status_online,
    "status_online_secure": status_online_secure,
    "status_online_control": status_online_control,
    "status_online_rollback": status_online_rollback,
    "control_out_of_control": control_out,
    "challenger_prediction": challenger_prediction,
    "status_online_challenger": status_online_challenger,
    "metrics_challenger": metrics_challenger,
    "status_online_drift_reset": status_online_drift_reset,
    "status_offline": status_offline,
    "metrics": metrics,
    "command_response_ok": command_response_ok,
    "command_response_error": command_response_error,
}


def path_of(name: str) -> Path:
    return HERE / f"v1_{name}.json"


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=(__doc__ or "").splitlines()[0])
    parser.add_argument("names", nargs="+", help=f"golden names: {', '.join(CASES)}")
    args = parser.parse_args(argv)
    for name in args.names:
        if name not in CASES:
            print(f"{name}: expected one of {', '.join(CASES)}", file=sys.stderr)
            return 2
        path = path_of(name)
        if path.exists():
            print(f"{path.name} exists; golden files are never overwritten", file=sys.stderr)
            return 1
        path.write_bytes(encode(CASES[name]()))
        print(f"wrote {path.name}")
    return 0


if __name__ == "__main__":
    sys.exit(main())
