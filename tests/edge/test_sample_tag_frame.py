"""The device's own sample tag (issue 16, "a serial dialect field where the protocol allows"): a SAMPLE_TAG frame on
the link tags the spectra that follow it as lab sample ``sample_id``'s, as the ``tag_sample`` command does, but exactly
those: the link keeps their order.  Real parts: a real pty pair written frame by frame, the daemon's threads on the
committed trainer-built demo bundle with ``[archive]`` on, ``spectro-edge export`` as a subprocess; the codec's side
(round trip, refusals, the C encoder) is in tests/firmware_bridge."""

from __future__ import annotations

import dataclasses
import subprocess
import sys
from pathlib import Path

import numpy as np

from benchmarks.harness.processes import child_env
from firmware_bridge.frames import SampleTag
from tests.support.daemon import REPO, DemoBundles, offline_stream, wait_for
from tests.support.inprocess import feed, inprocess_daemon
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

    out = tmp_path / "line.npz"
    proc = subprocess.run(
        [sys.executable, "-m", "edge.cli", "export", str(tmp_path / "archive.sqlite"), "--out", str(out)],
        cwd=REPO, env=child_env(), capture_output=True, text=True, timeout=120)
    assert proc.returncode == 0, proc.stderr
    with np.load(out, allow_pickle=False) as z:
        seqs, sample_ids, tags = [int(s) for s in z["seq"]], list(z["sample_id"]), list(z["tags_sample_id"])
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
