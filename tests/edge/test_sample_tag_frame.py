"""The device's own sample tag (issue 16, "a serial dialect field where the protocol allows"): a SAMPLE_TAG frame on
the link tags the spectra that follow it as lab sample ``sample_id``'s, as the ``tag_sample`` command does, but exactly
those: the link keeps their order.  Real parts: a real pty pair written frame by frame and the daemon's threads, or
``spectro-sim --sample-tag`` -> ``spectro-edge run`` -> a real mosquitto; the committed trainer-built demo bundle with
``[archive]`` on; ``spectro-edge export`` as a subprocess.  The codec's side (round trip, refusals, the C encoder) is
in tests/firmware_bridge."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness.processes import child_env
from firmware_bridge.frames import SampleTag
from tests.support.broker import MosquittoBroker
from tests.support.daemon import REPO, DemoBundles, offline_stream, wait_for
from tests.support.inprocess import feed, inprocess_daemon
from tests.support.processes import Proc, Subscriber, start_daemon, start_sim, write_config
from tests.support.pty_device import PtyDevice, serve_daemon

SAMPLE_ID = "LAB 2026/12-04#7"
BEFORE, TAGGED, AFTER = 10, 3, 7
BOOT_ID = 0x5A3


def test_the_spectra_after_a_sample_tag_frame_are_archived_as_that_sample_s(
        tmp_path: Path, demo_bundles: DemoBundles, pty_device: PtyDevice) -> None:
    stream = offline_stream(BEFORE + TAGGED + AFTER)
    spectra = stream["spectra"]
    daemon, link = serve_daemon(tmp_path, pty_device.path, demo_bundles.v1,
                                archive={"enabled": True, "policy": "all"})
    try:
        pty_device.send(dataclasses.replace(stream["status"], boot_id=BOOT_ID), stream["dark"], stream["white"])
        pty_device.send(*spectra[:BEFORE], SampleTag(SAMPLE_ID, TAGGED), *spectra[BEFORE:])
        wait_for(lambda: len(link.of_kind("prediction")) == len(spectra), "every spectrum predicted")
        assert daemon.counters.get("device_sample_tags") == 1
    finally:
        daemon.stop()
    assert not daemon.failed

    d = _export(tmp_path / "archive.sqlite", tmp_path / "line.npz")
    seqs, sample_ids, tags = [int(s) for s in d["seq"]], list(d["sample_id"]), list(d["tags_sample_id"])
    assert seqs == [s.seq for s in spectra]
    tagged = [seq for seq, sid in zip(seqs, sample_ids) if sid == SAMPLE_ID]
    assert tagged == [s.seq for s in spectra[BEFORE:BEFORE + TAGGED]], "exactly the spectra after the frame"
    assert set(sample_ids) == {"", SAMPLE_ID} and tags == [SAMPLE_ID]


def test_without_the_archive_a_sample_tag_is_counted_and_nothing_else_changes(
        tmp_path: Path, demo_bundles: DemoBundles) -> None:
    stream = offline_stream(6)
    daemon, link = inprocess_daemon(tmp_path / "d", demo_bundles.v1)
    feed(daemon, [stream["status"], stream["dark"], stream["white"], *stream["spectra"][:3], SampleTag("LAB-1", 2),
                  *stream["spectra"][3:]])
    assert daemon.counters.get("device_sample_tags_ignored") == 1 and daemon.counters.get("device_sample_tags") == 0
    assert daemon.counters.get("predictions") == 6 and daemon.counters.get("frames_errors") == 0
    assert daemon.counters.get("frames_ignored") == 0


def _export(archive: Path, out: Path) -> dict[str, np.ndarray]:
    proc = subprocess.run([sys.executable, "-m", "edge.cli", "export", str(archive), "--out", str(out)], cwd=REPO,
                          env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as z:
        return {k: z[k] for k in z.files}


def test_spectro_sim_s_sample_tag_reaches_the_archive_of_spectro_edge_run(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    at, frames = 30, 4
    sim, device = start_sim(tmp_path, count=0, rate_hz=100.0, extra=("--sample-tag", f"{at}:{frames}:{SAMPLE_ID}"))
    procs.append(sim)
    config = write_config(tmp_path, port_url=device, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    config.write_text(config.read_text(encoding="utf-8") + '[archive]\nenabled = true\npolicy = "all"\n',
                      encoding="utf-8")
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= at + frames + 10 or not daemon.alive(), "predictions past the tag")
    wait_for(lambda: any(m["counters"].get("device_sample_tags") == 1 for m in subscriber.kind("/metrics")),
             "the tag counted in the metrics")
    assert daemon.end() == 0, daemon.text()
    d = _export(tmp_path / "state" / "archive.sqlite", tmp_path / "line.npz")
    seqs = [int(s) for s in d["seq"]]
    tagged = [seq for seq, sid in zip(seqs, d["sample_id"]) if sid == SAMPLE_ID]
    assert tagged == seqs[at:at + frames], "the stream's spectra at and after the tag's index, in order"
    assert list(d["tags_sample_id"]) == [SAMPLE_ID]
