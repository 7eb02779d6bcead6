"""The prediction CUSUM runs on a trainer-built bundle (issue 13): ``spectro-train fit`` writes the training targets'
statistics as a typed field (``Bundle.training_stats``), the daemon reads that field, and a run of high-valued
samples raises ``prediction:<target>``, shown in the retained status as ``drift:prediction:<target>``, which clears
when the samples are back to normal.

Real parts: the demo bundle trained by ``spectro-train fit examples/demo.toml`` (session fixture), the simulator's
own frames (counts, dark, white, STATUS) written in a chosen order on a real pty pair, the daemon's threads.
"""

from __future__ import annotations

import dataclasses
import time
from pathlib import Path

import numpy as np

from edge.bundle import load_bundle
from tests.support.daemon import DemoBundles, offline_stream, wait_for
from tests.support.pty_device import PtyDevice, serve_daemon

#: The target whose predictions are pushed up, and the share of the samples with its highest values that does it.
TARGET_INDEX = 0
HIGH_SHARE = 0.2
#: Normal samples before the high ones (past the monitors' warm-up) and after them (to let the alert clear).
N_BEFORE, N_AFTER = 100, 250
BOOT_ID = 0x5EED


def test_high_predictions_raise_the_prediction_drift_alert_and_it_clears(
        tmp_path: Path, demo_bundles: DemoBundles, pty_device: PtyDevice) -> None:
    bundle = load_bundle(demo_bundles.v1)
    stats = bundle.training_stats
    assert stats is not None, "a trainer-built bundle carries its training targets' statistics"
    detector = f"prediction:{stats.names[TARGET_INDEX]}"

    stream = offline_stream(500)
    values = np.array([a.values[TARGET_INDEX] for a in stream["annotations"]])
    high = values >= np.quantile(values, 1.0 - HIGH_SHARE)
    normal = [s for s, h in zip(stream["spectra"], high) if not h]
    raised_part = [s for s, h in zip(stream["spectra"], high) if h]
    order = normal[:N_BEFORE] + raised_part + normal[N_BEFORE:N_BEFORE + N_AFTER]
    spectra = [dataclasses.replace(s, seq=100 + i) for i, s in enumerate(order)]  # a device numbers them in order
    first_high, first_after = spectra[N_BEFORE].seq, spectra[N_BEFORE + len(raised_part)].seq

    daemon, link = serve_daemon(tmp_path, pty_device.path, demo_bundles.v1, queues={"frames_max": 4096})
    try:
        status = dataclasses.replace(stream["status"], boot_id=BOOT_ID)
        pty_device.send(status, stream["dark"], stream["white"])
        for i in range(0, len(spectra), 10):
            pty_device.send(*spectra[i:i + 10])
            time.sleep(0.01)
        wait_for(lambda: len(link.of_kind("prediction")) == len(spectra), "every spectrum predicted")
    finally:
        daemon.stop()

    events = [m for m in link.of_kind("drift") if m["detector"] == detector]
    assert [m["event"] for m in events] == ["raised", "cleared"], events
    raised, cleared = events
    assert first_high <= raised["seq"] < first_after, "raised by the high samples, not before"
    assert cleared["seq"] >= first_after
    assert raised["monitor_kind"] == "model" and raised["device_boot_id"] == BOOT_ID
    alert = f"drift:{detector}"
    statuses = link.of_kind("status")
    assert any(alert in s["alerts"] for s in statuses), "the retained status showed the alert while it was raised"
    assert alert not in statuses[-1]["alerts"]
    assert {m["device_boot_id"] for m in link.of_kind("prediction")} == {BOOT_ID}
    assert not daemon.failed
