"""The spectrum archive end to end (issue 16): spectro-sim on a pty -> ``spectro-edge run`` with ``[archive]`` on ->
a real mosquitto; a signed ``tag_sample`` command; SIGTERM; ``spectro-edge export`` as a subprocess.  The export holds
every spectrum the daemon predicted on, with its seq and the very values it published, and the tagged rows carry the
sample id."""

from __future__ import annotations

import signal
import subprocess
import sys
from pathlib import Path

import numpy as np
import paho.mqtt.publish as publish

from benchmarks.harness.processes import child_env
from edge.archive import parse_time
from edge.commands import make_command
from tests.support.broker import MosquittoBroker
from tests.support.daemon import CHANNELS, REPO, DemoBundles, wait_for
from tests.support.processes import (
    BASE_TOPIC,
    DEVICE,
    Proc,
    Subscriber,
    signed,
    start_daemon,
    start_sim,
    write_config,
)

#: Predictions seen before the tag, and after it, before the daemon is stopped.
BEFORE_TAG = 20
AFTER_TAG = 20
TAGGED_FRAMES = 3
SAMPLE_ID = "LAB 2026-12-04/07"
#: The archive keeps the engine's float values; the message carries the same floats through JSON.
VALUE_RTOL = 1e-9


def test_archived_spectra_export_with_the_published_predictions_and_the_sample_tag(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    sim, device = start_sim(tmp_path, count=0, rate_hz=50.0)
    procs.append(sim)
    config = write_config(tmp_path, port_url=device, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    archive_path = tmp_path / "state" / "archive.sqlite"
    config.write_text(config.read_text(encoding="utf-8") + '[archive]\nenabled = true\npolicy = "all"\n',
                      encoding="utf-8")
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= BEFORE_TAG or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()

    body = make_command("tag_sample", {"sample_id": SAMPLE_ID, "frames": TAGGED_FRAMES},
                        device_id=DEVICE["device_id"], request_id="tag-1")
    publish.single(f"{BASE_TOPIC}/cmd/tag_sample", signed(body), qos=1, hostname="127.0.0.1",
                   port=mosquitto_broker.port)
    wait_for(lambda: any(r.get("request_id") == "tag-1" for r in subscriber.kind("/cmd/tag_sample/response")),
             "the tag_sample response")
    answer = next(r for r in subscriber.kind("/cmd/tag_sample/response") if r.get("request_id") == "tag-1")
    assert answer["ok"] is True, answer
    assert answer["result"]["sample_id"] == SAMPLE_ID and answer["result"]["frames"] == TAGGED_FRAMES
    n_then = subscriber.count()
    wait_for(lambda: subscriber.count() >= n_then + AFTER_TAG or not daemon.alive(), "predictions after the tag")
    wait_for(lambda: any(m["counters"].get("archive_tagged", 0) >= TAGGED_FRAMES for m in subscriber.kind("/metrics")),
             "archive counters in the metrics")
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
    sim.end()

    out = tmp_path / "line.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "export", str(archive_path), "--since", "2000-01-01T00:00:00Z",
         "--out", str(out)], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as z:
        d = {k: z[k] for k in z.files}

    seqs = [int(s) for s in d["seq"]]
    assert d["X"].shape == (len(seqs), CHANNELS) and np.isfinite(d["X"]).all()
    assert len(set(seqs)) == len(seqs)
    with subscriber.lock:
        published = dict(subscriber.predictions)
    assert set(published) <= set(seqs), "a published prediction is missing from the archive"
    names = [str(n) for n in d["target_names"]]
    for i, seq in enumerate(seqs):
        msg = published.get(seq)
        if msg is None:
            continue
        assert d["outcome"][i] == "prediction" and d["quality"][i] == msg["quality"]
        assert int(d["device_boot_id"][i]) == (-1 if msg["device_boot_id"] is None else msg["device_boot_id"])
        assert d["model_id"][i] == msg["model"]["id"] and d["model_version"][i] == msg["model"]["version"]
        got = [d["prediction"][i, names.index(v["name"])] for v in msg["values"]]
        np.testing.assert_allclose(got, [v["value"] for v in msg["values"]], rtol=VALUE_RTOL)

    tagged = [seqs[i] for i in np.flatnonzero(d["sample_id"] == SAMPLE_ID)]
    assert len(tagged) == TAGGED_FRAMES and tagged == list(range(tagged[0], tagged[0] + TAGGED_FRAMES))
    assert set(d["sample_id"]) == {"", SAMPLE_ID}
    tag_time = answer["result"]["tagged_unix_s"]
    assert all(d["received_unix_s"][i] >= tag_time for i in np.flatnonzero(d["sample_id"] == SAMPLE_ID))
    assert list(d["tags_sample_id"]) == [SAMPLE_ID] and d["tags_unix_s"][0] == tag_time

    # the lab's side: only the tagged spectra, selected on the sample id and a time window
    one = tmp_path / "sample.npz"
    since = np.datetime_as_string(np.datetime64(int(tag_time) - 1, "s")) + "Z"
    assert parse_time(since) <= tag_time
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "export", str(archive_path), "--since", since, "--sample-id", SAMPLE_ID,
         "--out", str(one)], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(one, allow_pickle=False) as z:
        assert [int(s) for s in z["seq"]] == tagged
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "export", str(archive_path), "--sample-id", "nobody", "--out",
         str(tmp_path / "none.npz")], cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 2 and "no archived spectrum matches" in proc.stderr, proc.stderr
