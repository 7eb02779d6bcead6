"""A bundle freshly written by ``spectro-train fit`` is served by the edge as production does it: the session's
``spectro-train fit examples/demo.toml`` (``demo_bundle``, a child process), ``spectro-sim`` on a real pty,
``spectro-edge run`` and a real mosquitto. The edge suites serve the committed copy of this bundle
(tests/data/trained); this test keeps the trainer's output of today on the same path."""

from __future__ import annotations

import signal
from pathlib import Path

from tests.support.broker import MosquittoBroker
from tests.support.daemon import wait_for
from tests.support.processes import (
    Proc,
    Subscriber,
    assert_equal_offline,
    heavy_libraries_mapped,
    start_daemon,
    start_sim,
    write_config,
)

#: Spectra streamed (enough for a real run, few enough to be quick).
N_SPECTRA = 100


def test_a_freshly_trained_bundle_is_served_with_its_offline_values(
    tmp_path: Path, demo_bundle: Path, mosquitto_broker: MosquittoBroker, subscriber: Subscriber, procs: list[Proc],
) -> None:
    sim, path = start_sim(tmp_path, count=N_SPECTRA, rate_hz=100.0)
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundle, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)
    wait_for(lambda: subscriber.count() >= N_SPECTRA or not daemon.alive(), f"{N_SPECTRA} predictions")
    assert daemon.alive(), daemon.text()
    assert heavy_libraries_mapped(daemon.popen.pid) == []
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
    assert_equal_offline(subscriber, demo_bundle, N_SPECTRA)
