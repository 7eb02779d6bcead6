"""A calibration updated from the line, end to end (issue 16): the committed trainer-built demo bundle served by a
real ``spectro-edge run`` with ``[archive]`` on, fed by ``spectro-sim`` over a pty (its ANNOTATION frames forwarded,
so each published prediction carries the sample's known value: the lab's reference), signed ``tag_sample``
commands, SIGTERM, ``spectro-edge export``; then ``spectro-train update`` with a lab CSV joining on the sample ids
and, for a few rows, on the sampling time only.

Checked: the join counts; the deployed model's figures in ``update.json`` equal those computed directly from the
predictions the daemon published and the lab's values; the device's predictions are reproduced exactly; a new bundle
with the next version is written, the edge loads it (golden self-test) and ``spectro-edge check`` passes it."""

from __future__ import annotations

import csv
import json
import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import paho.mqtt.publish as publish

from benchmarks.harness.processes import child_env
from edge.bundle import load_bundle
from edge.commands import make_command
from tests.support.broker import MosquittoBroker
from tests.support.daemon import REPO, DemoBundles, wait_for
from tests.support.processes import BASE_TOPIC, DEVICE, Proc, Subscriber, signed, start_daemon, start_sim, write_config
from trainer.pipeline.scores import regression_metrics

#: Lab samples tagged (one spectrum each: the simulator streams a new dataset row per spectrum).
TAGGED = 6
#: Spectra the lab knows only by sampling time.
TIMED = 3
#: A tagged sample the lab has no value for, and a lab row nothing was tagged with.
UNREPORTED, UNKNOWN = "LAB-unreported", "LAB-never-tagged"
#: Figures recomputed from the published predictions agree with update.json to float rounding.
FIGURE_RTOL = 1e-9
RATE_HZ = 10.0


def _tag(port: int, sample_id: str, request_id: str, subscriber: Subscriber) -> None:
    body = make_command("tag_sample", {"sample_id": sample_id, "frames": 1}, device_id=DEVICE["device_id"],
                        request_id=request_id)
    publish.single(f"{BASE_TOPIC}/cmd/tag_sample", signed(body), qos=1, hostname="127.0.0.1", port=port)
    wait_for(lambda: any(r.get("request_id") == request_id for r in subscriber.kind("/cmd/tag_sample/response")),
             f"the response to {request_id}")


def _line_export(tmp: Path, bundle: Path, broker: MosquittoBroker, subscriber: Subscriber,
                 procs: list[Proc]) -> Path:
    """Run the line: daemon + simulator, tag samples, stop, export. Returns the export."""
    sim, device = start_sim(tmp, count=0, rate_hz=RATE_HZ)
    procs.append(sim)
    config = write_config(tmp, port_url=device, bundle=bundle, mqtt_port=broker.port)
    text = config.read_text(encoding="utf-8").replace("[serial]", "forward_annotations = true\n[serial]", 1)
    config.write_text(text + '[archive]\nenabled = true\npolicy = "all"\n', encoding="utf-8")
    daemon = start_daemon(tmp, config)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= 5 or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()
    for k in range(TAGGED + 1):
        before = subscriber.count()
        _tag(broker.port, UNREPORTED if k == TAGGED else f"LAB-{k}", f"tag-{k}", subscriber)

        def three_more(before: int = before) -> bool:
            return subscriber.count() >= before + 3 or not daemon.alive()

        wait_for(three_more, "predictions after a tag")
    wait_for(lambda: any(m["counters"].get("archive_tagged", 0) >= TAGGED + 1 for m in subscriber.kind("/metrics")),
             "the tags in the archive counters")
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
    sim.end()
    out = tmp / "line.npz"
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "export", str(tmp / "state" / "archive.sqlite"),
                           "--out", str(out)], cwd=REPO, env=child_env(), capture_output=True, text=True,
                          timeout=120)
    assert proc.returncode == 0, proc.stderr
    return out


def test_update_joins_the_lab_values_evaluates_the_deployed_model_and_writes_a_bundle_the_edge_loads(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    export = _line_export(tmp_path, demo_bundles.v1, mosquitto_broker, subscriber, procs)
    with np.load(export, allow_pickle=False) as z:
        line = {k: z[k] for k in z.files}
    with subscriber.lock:
        published = dict(subscriber.predictions)
    targets = [t["name"] for t in load_bundle(demo_bundles.v1, self_test=False).manifest["targets"]]
    seqs = [int(s) for s in line["seq"]]
    sample_of = {str(s): seqs[i] for i, s in enumerate(line["sample_id"]) if s}
    assert set(sample_of) == {f"LAB-{k}" for k in range(TAGGED)} | {UNREPORTED}

    # the lab's file: tagged samples by id (their known values), a few untagged ones by sampling time only
    untagged = [i for i, s in enumerate(line["sample_id"])
                if not s and seqs[i] in published and published[seqs[i]].get("reference")]
    timed = untagged[2:2 + TIMED]
    lab: dict[int, list[float]] = {}  # seq -> the lab's values
    lims = tmp_path / "lims.csv"
    with open(lims, "w", newline="", encoding="utf-8") as fh:
        w = csv.writer(fh)
        w.writerow(["sample_id", "sampled_at", *targets])
        for k in range(TAGGED):
            seq = sample_of[f"LAB-{k}"]
            lab[seq] = list(published[seq]["reference"])
            w.writerow([f"LAB-{k}", "", *lab[seq]])
        w.writerow([UNKNOWN, "", *lab[sample_of["LAB-0"]]])
        for i in timed:  # sampled 20 ms after the spectrum was received (spectra are 100 ms apart)
            lab[seqs[i]] = list(published[seqs[i]]["reference"])
            at = np.datetime64(int(round((float(line["received_unix_s"][i]) + 0.02) * 1e6)), "us")
            w.writerow(["", f"{np.datetime_as_string(at)}Z", *lab[seqs[i]]])

    config = tmp_path / "demo_tiny.toml"  # the config that trained the bundle, with a two-epoch CNN
    text = (REPO / "examples" / "demo.toml").read_text(encoding="utf-8")
    assert "\nepochs = 60\n" in text
    config.write_text(text.replace("\nepochs = 60\n", "\nepochs = 2\n"), encoding="utf-8")
    out = tmp_path / "updated"
    env = dict(child_env(), OMP_NUM_THREADS="1", TF_CPP_MIN_LOG_LEVEL="3")
    proc = subprocess.run(
        [sys.executable, "-m", "trainer.cli", "update", str(demo_bundles.v1), "--archive", str(export), "--references",
         str(lims), "--config", str(config), "--model", "pls", "--window-s", "0.05", "--out", str(out)],
        cwd=REPO, env=env, capture_output=True, text=True, timeout=900)
    assert proc.returncode == 0, proc.stderr[-4000:]
    summary = json.loads((out / "update.json").read_text())

    join = summary["join"]
    assert join["spectra_joined_on_sample_id"] == TAGGED and join["spectra_joined_on_time"] == TIMED
    assert join["lims_rows"] == TAGGED + 1 + TIMED and join["lims_rows_unmatched"] == 1
    assert UNKNOWN in join["unmatched_rows"][0]
    assert join["tagged_sample_ids_without_lab_row"] == [UNREPORTED]

    # the deployed model's figures: what the daemon published against the lab's values
    dep = summary["deployed_on_line"]
    assert dep["rejected"] == {} and dep["reproduced"] == {"spectra": TAGGED + TIMED, "max_abs_difference": 0.0}
    joined = sorted(lab, key=lambda s: float(line["received_unix_s"][seqs.index(s)]))
    for j, target in enumerate(targets):
        pred = np.array([next(v["value"] for v in published[s]["values"] if v["name"] == target) for s in joined])
        ref = np.array([lab[s][j] for s in joined])
        fig = dep["figures"][target]
        want = regression_metrics(ref, pred)
        for key in ("n", "bias", "rmsep", "sep", "r2"):
            np.testing.assert_allclose(fig[key], want[key], rtol=FIGURE_RTOL, err_msg=f"{target} {key}")
        np.testing.assert_allclose(fig["slope"], np.polyfit(ref, pred, 1)[0], rtol=FIGURE_RTOL)
        assert len(fig["rolling"]) == TAGGED + TIMED

    # the new bundle: next version, loaded by the edge with its self-test, passed by spectro-edge check
    new = out / "synthetic-demo.spectrolite"
    loaded = load_bundle(new)
    assert loaded.model_version == "1.0.1" and loaded.self_test is not None
    assert summary["new_bundle"]["model_version"] == "1.0.1" and summary["new_bundle"]["deployed_model"] == "pls"
    placed = summary["line_rows"]
    assert placed["trained_on"] + placed["held_out"] == TAGGED + TIMED and placed["held_out"] >= 1
    metrics = json.loads((out / "metrics.json").read_text())
    assert metrics["splits"]["line"] == placed["held_out"]
    assert set(summary["comparison"]["line"]["held_out"]["new"]) == set(targets)
    assert "test" in summary["comparison"]["original_tests"]
    check = subprocess.run([sys.executable, "-m", "edge.cli", "check", str(new)], cwd=REPO, env=child_env(),
                           capture_output=True, text=True, timeout=120)
    assert check.returncode == 0, check.stdout + check.stderr
    report = out / "update" / "index.html"
    assert report.is_file() and all((out / "update" / f"update_drift_{t}.png").is_file() for t in targets)
    assert "update/index.html" in (out / "report" / "index.html").read_text(encoding="utf-8")
