"""Issue 18 with real processes: a hostile or broken instrument on a real pty -> ``spectro-edge run`` -> a real
mosquitto -> a paho subscriber.

The device is played by this test: frames of the simulator's own first session (``offline_stream``), re-stamped and
altered, encoded by ``firmware_bridge.codec`` and written to the pty's master.

* A STATUS whose wavelength polynomial overflows, or that announces fewer than 2 pixels, is refused and every
  spectrum is rejected until a valid STATUS arrives (finding 6: the daemon failed open, predicting ``ok``).
* A forged ``seq = 0xFFFFFFF0`` is a resynchronisation (``seq_jumps``), not 4.29e9 lost frames; a device id with a
  newline and ANSI escapes cannot forge log lines (finding 7).
"""

from __future__ import annotations

import dataclasses
import signal
from pathlib import Path
from typing import Any, Iterator

import pytest

from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, offline_stream, wait_for
from tests.support.processes import Proc, Subscriber, start_daemon, write_config
from tests.support.pty_device import PtyDevice

#: Spectra sent in each phase of a test.
PHASE = 20


class FakeDevice(PtyDevice):
    """The device end of a real pty pair (the daemon opens the other end), playing the frames of the simulator's
    first session, re-stamped with its own sequence numbers."""

    def __init__(self, tmp: Path) -> None:
        super().__init__()
        self.stream = offline_stream(PHASE)
        self.seq = 0

    def status(self, **changes: Any) -> Any:
        return dataclasses.replace(self.stream["status"], **changes)

    def references(self) -> None:
        for key in ("dark", "white"):
            self.send(dataclasses.replace(self.stream[key], seq=self.seq))
            self.seq += 1

    def spectra(self, n: int = PHASE) -> list[int]:
        """Send ``n`` spectra with the next sequence numbers; return those numbers."""
        seqs = []
        for i in range(n):
            self.send(dataclasses.replace(self.stream["spectra"][i % PHASE], seq=self.seq))
            seqs.append(self.seq)
            self.seq += 1
        return seqs


@pytest.fixture
def device(tmp_path: Path) -> Iterator[FakeDevice]:
    dev = FakeDevice(tmp_path)
    try:
        yield dev
    finally:
        dev.close()


def _metrics(sub: Subscriber) -> dict[str, Any]:
    found = sub.kind("/metrics")
    return found[-1]["counters"] if found else {}


def _start(tmp: Path, dev: FakeDevice, bundle: Path, broker: MosquittoBroker, procs: list[Proc]) -> Proc:
    cfg = write_config(tmp, port_url=dev.path, bundle=bundle, mqtt_port=broker.port)
    daemon = start_daemon(tmp, cfg)
    procs.append(daemon)
    return daemon


def _processed(sub: Subscriber, spectra: int) -> bool:
    return int(_metrics(sub).get("spectra_in", 0)) >= spectra


@pytest.mark.parametrize("broken", [
    {"wavelength_coeffs_nm": (900.0, 1e308, 1e308)},  # overflows to inf within the first pixels
    {"wavelength_coeffs_nm": (1700.0, -5.0, 0.05)},  # a parabola: not monotonic over 256 pixels
    {"pixel_count": 1},
], ids=["overflow", "non-monotonic", "one-pixel"])
def test_a_broken_calibration_status_is_refused_until_a_valid_one_arrives(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc], device: FakeDevice, broken: dict[str, Any],
) -> None:
    daemon = _start(tmp_path, device, demo_bundles.v1, mosquitto_broker, procs)
    wait_for(lambda: daemon.text().count("connected to the MQTT broker") >= 1 or not daemon.alive(), "the daemon")
    device.send(device.status())
    device.references()
    good = device.spectra()
    wait_for(lambda: set(good) <= set(subscriber.predictions) or not daemon.alive(), "predictions of a sane device")
    assert daemon.alive(), daemon.text()

    device.send(device.status(**broken))
    refused = device.spectra()
    wait_for(lambda: _processed(subscriber, 2 * PHASE), "the daemon to take the spectra after the broken STATUS")
    assert not set(refused) & set(subscriber.predictions), "predicted on a device with a broken calibration"
    counters = _metrics(subscriber)
    assert counters.get("device_status_refused", 0) >= 1
    assert counters.get("frames_rejected_device_status_invalid", 0) == PHASE
    wait_for(lambda: any((s.get("last_error") or "").startswith("STATUS refused") for s in subscriber.kind("/status")),
             "the refusal in the retained status")

    device.send(device.status())  # the instrument comes back sane
    again = device.spectra()
    wait_for(lambda: set(again) <= set(subscriber.predictions) or not daemon.alive(),
             "predictions after a valid STATUS")
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()


def test_forged_seq_and_control_characters_in_the_device_id(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc], device: FakeDevice,
) -> None:
    forged_id = "SIM\n2026-12-04 00:00:00,000 CRITICAL edge.daemon: forged\x1b[2J"
    daemon = _start(tmp_path, device, demo_bundles.v1, mosquitto_broker, procs)
    wait_for(lambda: "connected to the MQTT broker" in daemon.text() or not daemon.alive(), "the daemon")
    device.send(device.status(device_id=forged_id))
    device.references()
    first = device.spectra()
    device.seq = 0xFFFFFFF0  # one forged sequence number ...
    device.spectra(1)
    device.seq = first[-1] + 1  # ... then the device's real numbering again
    rest = device.spectra()
    wait_for(lambda: set(first + rest) <= set(subscriber.predictions) or not daemon.alive(), "the predictions")
    wait_for(lambda: _processed(subscriber, 2 * PHASE + 1), "the metrics after every spectrum")
    counters = _metrics(subscriber)
    assert counters.get("frames_lost_seq_gap", 0) < 10, counters
    assert counters.get("seq_jumps") == 1, counters
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
    log = daemon.log.read_text(errors="replace")
    assert "\x1b" not in log, "an ANSI escape from the device reached the log"
    assert not any(line.startswith("2026-12-04 00:00:00,000 CRITICAL") for line in log.splitlines()), log[-3000:]
    assert "forged" in log  # the id is logged, escaped, on the daemon's own line
