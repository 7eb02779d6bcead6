"""Shadow mode end to end (issue 15): spectro-sim on a pty -> ``spectro-edge run`` -> a real mosquitto, the committed
trainer-built demo bundles (1.0.0 serving, a PLS; the 1.2.0 CNN as challenger), signed commands.

A challenger predicts every spectrum after it was loaded, on its own topic, with the values the bundle gives
offline, while the serving predictions stay those of the serving bundle; the comparison in the metrics is what this
test recomputes from the two topics (and from the reference values it sends); promotion by command and by the rule
of the rollout request puts the challenger in service, each step in the retained status; a challenger that does not
fit the device is refused and changes nothing."""

from __future__ import annotations

import math
import signal
from pathlib import Path
from typing import Any

import numpy as np

from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, offline_predictions, offline_stream, wait_for
from tests.support.processes import Proc, Subscriber, send_command, start_daemon, start_sim, write_config
from tests.support.trained import DEMO_ABSORBANCE, DEMO_CNN, committed

#: Same float32 runtime on the same inputs, batched or not: exact equality (a named zero tolerance).
VALUE_ATOL = 0.0
#: The metrics' sums and this test's are the same float operations in possibly another order.
STAT_RTOL = 1e-9
N_SPECTRA = 300
SERVING = {"id": "synthetic-demo", "version": "1.0.0"}
CHALLENGER = {"id": "synthetic-demo", "version": "1.2.0"}


def challengers(sub: Subscriber) -> dict[int, dict[str, Any]]:
    return {m["seq"]: m for m in sub.kind("/challenger_prediction")}


def statuses(sub: Subscriber) -> list[dict[str, Any]]:
    return sub.kind("/status")


def values(message: dict[str, Any]) -> np.ndarray:
    return np.array([v["value"] for v in message["values"]])


def alarm(message: dict[str, Any]) -> bool:
    return "out_of_distribution" in message["quality_flags"]


def close(got: float | None, want: float) -> bool:
    return got is not None and math.isclose(got, want, rel_tol=STAT_RTOL, abs_tol=1e-12)


def assert_comparison(metrics: dict[str, Any], serving: list[dict[str, Any]], challenger: list[dict[str, Any]],
                      references: dict[int, np.ndarray]) -> None:
    """The metrics' comparison equals what the two topics' messages (same seqs, in order) give."""
    n = len(serving)
    assert metrics["spectra"] == metrics["compared"] == n
    for side, msgs in (("serving", serving), ("challenger", challenger)):
        alarms = sum(alarm(m) for m in msgs)
        assert metrics[side] == {"predictions": n, "rejected": 0, "alarms": alarms, "alarm_rate": alarms / n,
                                 "flagged": sum(m["quality"] != "ok" for m in msgs)}, side
    for k, (name, got) in enumerate(metrics["targets"].items()):
        s = np.array([values(m)[k] for m in serving])
        c = np.array([values(m)[k] for m in challenger])
        d = c - s
        lower = np.array([m["values"][k]["lower"] for m in serving])
        upper = np.array([m["values"][k]["upper"] for m in serving])
        assert name == serving[0]["values"][k]["name"] and got["unit"] == "%" and got["compared"] == n
        assert close(got["mean_abs_diff"], float(np.abs(d).mean())), (name, got)
        assert got["max_abs_diff"] == float(np.abs(d).max())
        assert close(got["mean_diff"], float(d.mean()))
        assert close(got["within_serving_interval"], float(np.mean((lower <= c) & (c <= upper))))
        seqs = [i for i, m in enumerate(serving) if m["seq"] in references]
        assert got["references"] == len(seqs)
        if seqs:
            y = np.array([references[serving[i]["seq"]][k] for i in seqs])
            assert close(got["rmsep_serving"], float(np.sqrt(np.mean((s[seqs] - y) ** 2)))), (name, got)
            assert close(got["rmsep_challenger"], float(np.sqrt(np.mean((c[seqs] - y) ** 2)))), (name, got)
        else:
            assert got["rmsep_serving"] is None and got["rmsep_challenger"] is None


def last_comparison(sub: Subscriber) -> dict[str, Any] | None:
    with_challenger = [m for m in sub.kind("/metrics") if "challenger" in m]
    return with_challenger[-1]["challenger"] if with_challenger else None


def test_a_challenger_shadows_every_spectrum_is_compared_in_the_metrics_and_promoted_by_command(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    committed(DEMO_CNN)
    sim, device = start_sim(tmp_path, count=N_SPECTRA, rate_hz=40.0)
    procs.append(sim)
    config = write_config(tmp_path, port_url=device, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 5 or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()

    # nothing to compare with yet, and a challenger the device does not fit: refused, nothing changes
    send_command(mosquitto_broker.port, "reference_value", {"seq": 3, "values": {"analyte_a_pct": 1.0}}, "ref-0")
    early = subscriber.response("reference_value", "ref-0")
    assert early["ok"] is False and "send load_challenger first" in early["error"], early
    send_command(mosquitto_broker.port, "load_challenger", {"path": DEMO_ABSORBANCE.name}, "load-0")
    refused = subscriber.response("load_challenger", "load-0")
    assert refused["ok"] is False, refused
    assert "nothing changed" in refused["error"] and "expects absorbance frames" in refused["error"], refused
    assert all("challenger" not in s for s in statuses(subscriber))

    send_command(mosquitto_broker.port, "load_challenger", {"path": DEMO_CNN.name}, "load-1")
    loaded = subscriber.response("load_challenger", "load-1")
    assert loaded["ok"] is True, loaded
    assert loaded["result"]["model"] == CHALLENGER and loaded["result"]["serving_model"] == SERVING
    assert loaded["result"]["targets"] == ["analyte_a_pct", "analyte_b_pct", "analyte_c_pct"]
    assert not challengers(subscriber) or min(challengers(subscriber)) > 0
    wait_for(lambda: subscriber.count() >= N_SPECTRA or not daemon.alive(), f"{N_SPECTRA} predictions")
    last = max(subscriber.predictions)
    wait_for(lambda: last in challengers(subscriber) or not daemon.alive(), "the challenger's last prediction")
    assert daemon.alive(), daemon.text()

    # every spectrum from the load on has a challenger prediction, with the challenger's offline values; the serving
    # predictions are exactly the serving bundle's
    stream = offline_stream(N_SPECTRA)
    serving_expected = offline_predictions(demo_bundles.v1, stream)
    challenger_expected = offline_predictions(DEMO_CNN, stream)
    assert sorted(subscriber.predictions) == sorted(serving_expected) and subscriber.duplicates == 0
    for seq, body in subscriber.predictions.items():
        assert body["model"] == SERVING and "serving_model" not in body
        np.testing.assert_allclose(values(body), serving_expected[seq], rtol=0, atol=VALUE_ATOL)
    shadow = challengers(subscriber)
    first = min(shadow)
    assert sorted(shadow) == list(range(first, last + 1)), "a challenger prediction for every spectrum since the load"
    for seq, body in shadow.items():
        assert body["model"] == CHALLENGER and body["serving_model"] == SERVING
        np.testing.assert_allclose(values(body), challenger_expected[seq], rtol=0, atol=VALUE_ATOL)
        assert body["ood"] is not None and all(v["lower"] < v["value"] < v["upper"] for v in body["values"])
        assert body["device_boot_id"] == subscriber.predictions[seq]["device_boot_id"]
    assert not np.allclose(values(shadow[last]), values(subscriber.predictions[last]))  # two models, two answers

    seqs = sorted(shadow)
    serving_msgs = [subscriber.predictions[s] for s in seqs]
    challenger_msgs = [shadow[s] for s in seqs]
    wait_for(lambda: (last_comparison(subscriber) or {}).get("compared") == len(seqs), "the metrics' comparison")
    comparison = last_comparison(subscriber)
    assert comparison is not None
    assert comparison["model"] == CHALLENGER and comparison["serving_model"] == SERVING
    assert comparison["request_id"] == "load-1" and comparison["rule"] is None
    assert comparison["compute_ms"]["total"] > 0 and comparison["compute_ms"]["p99"] >= comparison["compute_ms"]["p50"]
    assert_comparison(comparison, serving_msgs, challenger_msgs, {})

    # lab reference values by seq: each answered with what it joined; RMSEP of both in the metrics
    truth = {a.seq: np.array(a.values) for a in stream["annotations"]}
    sent: dict[int, np.ndarray] = {}
    for i, seq in enumerate(seqs[:: max(1, len(seqs) // 5)][:5]):
        args = {"seq": seq, "values": dict(zip(comparison["targets"], truth[seq].tolist()))}
        send_command(mosquitto_broker.port, "reference_value", args, f"ref-{i + 1}")
        answer = subscriber.response("reference_value", f"ref-{i + 1}")
        assert answer["ok"] is True, answer
        applied = answer["result"]["applied"]["analyte_a_pct"]
        assert applied == {"reference": truth[seq][0], "serving": values(subscriber.predictions[seq])[0],
                           "challenger": values(shadow[seq])[0]}
        sent[seq] = truth[seq]
    send_command(mosquitto_broker.port, "reference_value", {"seq": last + 10_000, "values": {"analyte_a_pct": 1.0}},
                 "ref-x")
    ref = subscriber.response("reference_value", "ref-x")
    assert ref["ok"] is False and f"got {last + 10_000}" in ref["error"], ref
    wait_for(lambda: (last_comparison(subscriber) or {}).get("targets", {}).get("analyte_a_pct", {}).get(
        "references") == len(sent), "the references in the metrics")
    comparison = last_comparison(subscriber)
    assert comparison is not None
    assert_comparison(comparison, serving_msgs, challenger_msgs, sent)
    rmsep = comparison["targets"]["analyte_a_pct"]
    assert rmsep["rmsep_challenger"] > rmsep["rmsep_serving"] > 0  # the CNN is the worse model on this stream

    # promotion by command: through the verified reload, every step in the retained status
    send_command(mosquitto_broker.port, "promote_challenger", {}, "promote-1")
    promoted = subscriber.response("promote_challenger", "promote-1")
    assert promoted["ok"] is True, promoted
    assert promoted["result"]["model"] == CHALLENGER and promoted["result"]["previous_model"] == SERVING
    wait_for(lambda: statuses(subscriber)[-1].get("challenger", {}).get("state") == "promoted", "the promoted step")
    steps = [s["challenger"]["state"] for s in statuses(subscriber) if "challenger" in s]
    assert steps[0] == "shadowing" and "promoting" in steps and steps[-1] == "promoted", steps
    final = statuses(subscriber)[-1]
    assert final["model"] == CHALLENGER and final["challenger"]["model"] == CHALLENGER
    assert final["challenger"]["request_id"] == "load-1" and final["challenger"]["path"].endswith(DEMO_CNN.name)
    wait_for(lambda: "challenger" not in subscriber.kind("/metrics")[-1], "metrics without a challenger")
    send_command(mosquitto_broker.port, "drop_challenger", {}, "drop-1")
    assert "send load_challenger first" in subscriber.response("drop_challenger", "drop-1")["error"]
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()


def test_a_rule_met_on_reference_values_promotes_the_challenger_by_itself(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    """The simulator's annotations (``forward_annotations``) are the reference values: the comparison carries both
    models' RMSEP over every compared spectrum, and a rule on it promotes the challenger without a command."""
    min_spectra = 150  # 3 s of the stream: metrics (every second) show the comparison before the rule is met
    sim, device = start_sim(tmp_path, count=0, rate_hz=50.0)
    procs.append(sim)
    config = write_config(tmp_path, port_url=device, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    text = config.read_text(encoding="utf-8")
    config.write_text(text.replace("[device]\n", "[device]\nforward_annotations = true\n"), encoding="utf-8")
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 5 or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()
    rule = {"min_spectra": min_spectra, "max_rmsep_ratio": 10.0, "min_references": min_spectra,
            "max_alarm_rate": 0.5}
    send_command(mosquitto_broker.port, "load_challenger", {"path": DEMO_CNN.name, "promote": rule}, "rollout-1")
    loaded = subscriber.response("load_challenger", "rollout-1")
    assert loaded["ok"] is True and loaded["result"]["rule"] == rule, loaded

    # while it shadows: RMSEP of both over every compared spectrum, from the annotations the predictions carry
    wait_for(lambda: 10 <= ((last_comparison(subscriber) or {}).get("compared") or 0) < min_spectra
             or not daemon.alive(), "a comparison before the rule is met")
    comparison = last_comparison(subscriber)
    assert comparison is not None and comparison["rule"] == rule
    assert comparison["rule_verdict"] == f"waiting: {comparison['compared']} of {min_spectra} spectra compared"
    wait_for(lambda: len(challengers(subscriber)) >= comparison["compared"], "the compared challenger predictions")
    first = min(challengers(subscriber))  # one per spectrum from the load on: the compared ones are the first ones
    seqs = list(range(first, first + comparison["compared"]))
    wait_for(lambda: all(s in subscriber.predictions and s in challengers(subscriber) for s in seqs),
             "both predictions of the compared seqs")
    serving_msgs = [subscriber.predictions[s] for s in seqs]
    # a spectrum's annotation may come a turn after the challenger judged it: the references are a prefix of them
    joined = comparison["targets"]["analyte_a_pct"]["references"]
    assert len(seqs) - 1 <= joined <= len(seqs)
    references = {m["seq"]: np.array(m["reference"]) for m in serving_msgs[:joined]}
    assert_comparison(comparison, serving_msgs, [challengers(subscriber)[s] for s in seqs], references)

    # the rule is met: promote_challenger queued by the daemon itself, through the reload; each step in the status
    wait_for(lambda: (statuses(subscriber)[-1].get("challenger") or {}).get("state") == "promoted"
             or not daemon.alive(), "the promotion by the rule")
    promoted = subscriber.response("promote_challenger", "rollout-1")
    assert promoted["ok"] is True and promoted["result"]["model"] == CHALLENGER, promoted
    steps = [s["challenger"] for s in statuses(subscriber) if "challenger" in s]
    assert [s["state"] for s in steps][0] == "shadowing" and steps[-1]["state"] == "promoted"
    promoting = next(s for s in steps if s["state"] == "promoting")
    assert promoting["detail"].startswith(f"by rule (met: {min_spectra}") and "RMSEP" in promoting["detail"], promoting
    assert steps[-1]["rule"] == rule and statuses(subscriber)[-1]["model"] == CHALLENGER

    # the challenger serves now: its predictions on .../prediction, none on its own topic any more
    wait_for(lambda: sum(m["model"] == CHALLENGER for m in list(subscriber.predictions.values())) >= 20,
             "predictions of the promoted bundle")
    shadowed = len(challengers(subscriber))
    now = max(subscriber.predictions)
    wait_for(lambda: max(subscriber.predictions) >= now + 20, "more predictions")
    assert len(challengers(subscriber)) == shadowed
    assert all(subscriber.predictions[s]["model"] == SERVING for s in challengers(subscriber))
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
