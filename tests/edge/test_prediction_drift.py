"""The prediction-drift CUSUM on a trainer-built bundle, through the real seams: the training targets' statistics
written by ``spectro-train fit`` (``targets[i].training``) are what the daemon monitors, so a run of high-content
samples on the line raises ``prediction:<target>`` and normal samples afterwards clear it.

spectro-sim (real process, pty) streams a dataset file ordered normal -> high -> normal; the daemon
(``python -m edge.daemon``) publishes to a real mosquitto; a subscriber collects the drift messages.
"""

from __future__ import annotations

from pathlib import Path

import numpy as np
import pytest

from edge.bundle import load_bundle
from tests.edge.daemon_harness import (  # noqa: F401 (fixtures)
    CHANNELS,
    SAMPLES,
    SEED,
    DemoBundles,
    demo_bundles,
    wait_for,
)
from tests.edge.mqtt_broker import MosquittoBroker, mosquitto_broker  # noqa: F401 (fixture)
from tests.edge.test_daemon_e2e import Proc, Subscriber, _env, procs, start_daemon, subscriber, write_config  # noqa: F401

#: Rows of each phase of the stream.
N_BEFORE, N_HIGH, N_AFTER = 40, 60, 160
#: Standardised content of the "high" rows of the first target (training standard deviations above the mean).
HIGH_Z = 1.2
#: Normal rows: first target within this many standard deviations of the training mean.
NORMAL_Z = 0.5
TARGET = "analyte_a_pct"


def _ordered_dataset(path: Path, mean: float, std: float) -> None:
    """The simulator's own synthetic spectra, reordered: normal rows, then high ones, then normal ones again."""
    from firmware_bridge.synthetic import make_synthetic_dataset

    data = make_synthetic_dataset(SAMPLES, seed=SEED, n_channels=CHANNELS)
    y = np.asarray(data["y"], dtype=np.float64)
    z = (y[:, 0] - mean) / std
    normal = np.flatnonzero(np.abs(z) < NORMAL_Z)
    high = np.flatnonzero(z > HIGH_Z)
    assert normal.size >= 20 and high.size >= 10, (normal.size, high.size)
    order = np.concatenate([np.resize(normal, N_BEFORE), np.resize(high, N_HIGH), np.resize(normal[::-1], N_AFTER)])
    np.savez(path, X=np.asarray(data["X"])[order], wavelengths=np.asarray(data["wavelengths"]), y=y[order],
             target_names=np.asarray(data["target_names"]))


@pytest.mark.slow
def test_prediction_drift_raises_and_clears_on_a_trainer_built_bundle(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,  # noqa: F811
    procs: list[Proc],  # noqa: F811
) -> None:
    import subprocess
    import sys

    bundle = load_bundle(demo_bundles.v1)
    stats = bundle.training_stats
    assert stats is not None, "spectro-train fit must write the training targets' statistics"
    j = stats.names.index(TARGET)
    dataset = tmp_path / "ordered.npz"
    _ordered_dataset(dataset, stats.mean[j], stats.std[j])

    n = N_BEFORE + N_HIGH + N_AFTER
    log = tmp_path / "sim.log"
    sim = subprocess.Popen(
        [sys.executable, "-m", "firmware_bridge.cli", "--pty", "--link", str(tmp_path / "spectrometer"),
         "--dataset", str(dataset), "--rate", "100", "--count", str(n), "--seed", "1", "-v"],
        env=_env(), stdout=subprocess.PIPE, stderr=open(log, "wb"),
    )
    procs.append(Proc(sim, log))
    assert sim.stdout is not None
    port_url = sim.stdout.readline().decode().strip()
    assert port_url, log.read_text(errors="replace")
    config = write_config(tmp_path, port_url=port_url, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    with open(config, "a", encoding="utf-8") as fh:
        fh.write("[drift]\nmin_frames = 20\n")
    daemon = start_daemon(tmp_path, config)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= n or not daemon.alive(), f"{n} predictions")
    assert daemon.alive(), daemon.text()

    detector = f"prediction:{TARGET}"

    def events() -> list[tuple[str, int]]:
        return [(d["event"], int(d["seq"])) for d in subscriber.kind("/drift") if d["detector"] == detector]

    wait_for(lambda: [e for e, _ in events()][:2] == ["raised", "cleared"], f"{detector} raised then cleared")
    seqs = sorted(subscriber.predictions)
    first_high, first_after = seqs[N_BEFORE], seqs[N_BEFORE + N_HIGH]
    (raised, raised_seq), (cleared, cleared_seq) = events()[:2]
    assert first_high <= raised_seq < first_after, (raised_seq, first_high, first_after)
    assert cleared_seq >= first_after, (cleared_seq, first_after)
