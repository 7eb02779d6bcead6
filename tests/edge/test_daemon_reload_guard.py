"""Issue 18, finding 4, with real processes: ``spectro-sim`` (with a provoked drift) on a pty ->
``spectro-edge run`` -> a real mosquitto -> a paho subscriber.  Drift alerts cannot be silenced by reloading
the bundle in service.

* A reload of the same bytes, by command or by touching the watched file, is a no-op: the response and the log say
  so, the detectors keep their state and the raised alert stays in the retained status.
* A real model change ends every model-side alert with an explicit ``cleared`` drift event that says why.
* Reloads are rate-limited (``bundle.min_reload_interval_s``): one sooner is refused with a response.
* A command whose ``schema_version`` is the float ``1.0`` is refused (finding 7: an integer is required).
"""

from __future__ import annotations

import os
import shutil
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
    signed,
    start_daemon,
    start_sim,
    write_config,
)

#: Spectrum index at which the simulator starts its provoked drift (after the detectors' warm-up).
DRIFT_AT = 60
#: The test's reload rate limit, seconds: long enough that the second real reload always falls inside it.
MIN_RELOAD_INTERVAL_S = 600


def _publish(port: int, name: str, body: dict[str, Any]) -> None:
    publish_payload(port, name, signed(body), client_id=f"operator-{body.get('request_id')}")


def _command(port: int, name: str, args: dict[str, Any], request_id: str) -> None:
    _publish(port, name, make_command(name, args, device_id=DEVICE["device_id"], request_id=request_id))


def _raised_model_alerts(sub: Subscriber) -> set[str]:
    """Model-side detectors whose last drift event is ``raised``."""
    state: dict[str, str] = {}
    for ev in sub.kind("/drift"):
        if ev.get("monitor_kind") == "model":
            state[ev["detector"]] = ev["event"]
    return {d for d, e in state.items() if e == "raised"}


def test_reloading_the_same_bundle_cannot_silence_drift_and_a_real_change_says_so(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    bundles = tmp_path / "bundles"
    bundles.mkdir()
    live = Path(shutil.copy(demo_bundles.v1, bundles / "model.spectrolite"))
    same = Path(shutil.copy(demo_bundles.v1, bundles / "model-again.spectrolite"))  # identical bytes, other name
    newer = Path(shutil.copy(demo_bundles.v2, bundles / "model-1.1.0.spectrolite"))

    sim, path = start_sim(tmp_path, count=0, rate_hz=50.0, extra=("--drift-at", str(DRIFT_AT)))
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=live, mqtt_port=mosquitto_broker.port)
    text = cfg.read_text(encoding="utf-8").replace(
        "watch = false\n", f"watch = true\nwatch_interval_s = 0.2\nmin_reload_interval_s = {MIN_RELOAD_INTERVAL_S}\n")
    cfg.write_text(text, encoding="utf-8")
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: bool(_raised_model_alerts(subscriber)) or not daemon.alive(), "a model-side drift alert",
             timeout_s=120.0)
    assert daemon.alive(), daemon.text()
    raised = _raised_model_alerts(subscriber)

    # The same bytes by command, then by touching the watched file: no-ops, said so.
    _command(mosquitto_broker.port, "reload_bundle", {"path": str(same)}, "r-same")
    answer = subscriber.response("reload_bundle", "r-same")
    assert answer["ok"] is True and answer["result"].get("unchanged") is True, answer
    st = live.stat()
    os.utime(live, ns=(st.st_atime_ns, st.st_mtime_ns + 5_000_000_000))
    wait_for(lambda: daemon.text().count("is the one in service") >= 2, "the watched file's no-op in the log")
    n_then = subscriber.count()
    wait_for(lambda: subscriber.count() >= n_then + 50, "predictions after the no-op reloads")
    assert raised <= _raised_model_alerts(subscriber), "a no-op reload ended drift alerts"
    assert not [e for e in subscriber.kind("/drift") if e["event"] == "cleared" and e["detector"] in raised]
    status = subscriber.kind("/status")[-1]
    assert {f"drift:{d}" for d in raised} <= set(status["alerts"]), status

    # A real model change: every model-side alert ends with an explicit, explained cleared event.
    raised = _raised_model_alerts(subscriber)
    _command(mosquitto_broker.port, "reload_bundle", {"path": str(newer)}, "r-new")
    answer = subscriber.response("reload_bundle", "r-new")
    assert answer["ok"] is True and answer["result"]["model"]["version"] == "1.1.0", answer
    wait_for(lambda: raised <= {e["detector"] for e in subscriber.kind("/drift")
                                if e["event"] == "cleared" and "model changed" in e["detail"]},
             "cleared events of the old model's alerts")

    # A second real reload right away: refused, with an answer.
    _command(mosquitto_broker.port, "reload_bundle", {"path": str(same)}, "r-soon")
    answer = subscriber.response("reload_bundle", "r-soon")
    assert answer["ok"] is False and "at most one reload" in answer["error"], answer

    # schema_version must be the integer 1, not 1.0.
    body = make_command("capture_dark", {"average_frames": 1}, device_id=DEVICE["device_id"], request_id="r-float")
    body["schema_version"] = 1.0
    _publish(mosquitto_broker.port, "capture_dark", body)
    answer = subscriber.response("capture_dark", "r-float")
    assert answer["ok"] is False and "schema_version" in answer["error"], answer
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
