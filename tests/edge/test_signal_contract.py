"""The signal contract between a device and a bundle (issue 13): a device announces in its STATUS frame what its
spectra carry (counts, absorbance, reflectance), a bundle declares what it takes (``input_contract.frame_signal``),
and the daemon never publishes a prediction on a frame whose signal the bundle does not take.

Real parts: the simulator on a real pty (in a thread, or ``spectro-sim`` as a process), hand-written frames on a
real pty pair where the test must choose what the device announces, real bundles run by LiteRT (the demo's
counts bundles and an absorbance bundle, trained by ``spectro-train fit`` and committed in tests/data/trained),
and for the end to end test ``spectro-edge run`` with a real mosquitto.
"""

from __future__ import annotations

import dataclasses
import threading
from pathlib import Path
from typing import Any

import pytest

from edge.daemon import Daemon
from firmware_bridge.frames import SignalKind
from tests.support.commands import commands_section, send_signed
from tests.support.daemon import (
    CHANNELS,
    SAMPLES,
    SEED,
    WAIT_S,
    DemoBundles,
    RecordingLink,
    offline_stream,
    wait_for,
)
from tests.support.pty_device import PtyDevice, serve_daemon
from tests.support.trained import DEMO_ABSORBANCE, committed

#: Spectra each test waits for (enough to see that none of them is predicted on, few enough to be quick).
N_SPECTRA = 40
#: The simulator's device id (``SimulatorConfig.device_id``), named in the mismatch message.
SIM_DEVICE = "SIM-0001"


# ------------------------------------------------------------------------------------------------- material
@pytest.fixture(scope="session")
def absorbance_bundle() -> Path:
    """A bundle that takes absorbance frames of the simulator's synthetic stream, trained by ``spectro-train fit``
    from the shipped demo config with ``[instrument] signal = "absorbance"`` (few epochs: accuracy is not tested;
    committed in tests/data/trained by its generator)."""
    return committed(DEMO_ABSORBANCE)


@dataclasses.dataclass
class _Sim:
    sim: Any
    thread: threading.Thread
    stop: threading.Event
    address: str


def _start_sim(tmp: Path, *, signal: SignalKind, rate_hz: float = 100.0) -> _Sim:
    """The simulator on a real pty, in a thread, announcing and sending ``signal``."""
    from firmware_bridge.simulator import PtyEndpoint, Simulator, SimulatorConfig

    cfg = SimulatorConfig(seed=SEED, synthetic_samples=SAMPLES, synthetic_channels=CHANNELS, count=0, rate_hz=rate_hz,
                          connect_delay_s=0.3, signal=signal)
    sim = Simulator(cfg, PtyEndpoint(tmp / "spectrometer"))
    stop = threading.Event()
    ready = threading.Event()
    t = threading.Thread(target=sim.run, args=(stop,), kwargs={"on_ready": lambda a: ready.set()}, daemon=True)
    t.start()
    assert ready.wait(WAIT_S), "simulator did not open its pty"
    return _Sim(sim, t, stop, sim.address)


def _last_status(link: RecordingLink) -> dict[str, Any]:
    return link.of_kind("status")[-1]


def _alerts(link: RecordingLink) -> list[str] | None:
    """Alerts of the last status published, None before the publisher thread has delivered the first one."""
    statuses = link.of_kind("status")
    return statuses[-1]["alerts"] if statuses else None


def _reload(daemon: Daemon, link: RecordingLink, path: Path, request_id: str) -> dict[str, Any]:
    send_signed(daemon, "reload_bundle", {"path": str(path)}, request_id)
    wait_for(lambda: any(m["request_id"] == request_id for m in link.of_kind("command_response")),
             f"the response to {request_id}")
    return next(m for m in link.of_kind("command_response") if m["request_id"] == request_id)


# ---------------------------------------------------------------------------------------------------- tests
def test_absorbance_device_and_counts_bundle_publish_no_prediction(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    sim = _start_sim(tmp_path, signal=SignalKind.ABSORBANCE)
    daemon, link = serve_daemon(tmp_path, sim.address, demo_bundles.v1)
    try:
        wait_for(lambda: daemon.counters.get("frames_rejected_signal_mismatch") >= N_SPECTRA,
                 f"{N_SPECTRA} spectra rejected for their signal")
        wait_for(lambda: any(m["counters"].get("frames_rejected_signal_mismatch", 0) > 0
                             for m in link.of_kind("metrics")), "the counter in a metrics message")
    finally:
        daemon.stop()
        sim.stop.set()
        sim.thread.join(timeout=10)
    assert link.of_kind("prediction") == []
    assert daemon.counters.get("predictions") == 0
    assert daemon.counters.get("spectra_in") == daemon.counters.get("frames_rejected_signal_mismatch")
    status = _last_status(link)
    assert "signal_mismatch" in status["alerts"]
    assert status["device_signal"] == "absorbance"
    assert f"expects counts frames, the device {SIM_DEVICE} sends absorbance" in status["last_error"]
    assert status["device_boot_id"] == sim.sim.device.boot_id
    assert daemon.counters.get("signal_mismatch_raised") == 1 and not daemon.failed


def test_device_re_announcing_its_signal_clears_the_alert_and_boot_ids_tag_predictions(
        tmp_path: Path, demo_bundles: DemoBundles, pty_device: PtyDevice) -> None:
    stream = offline_stream(2 * N_SPECTRA)
    spectra = stream["spectra"]
    daemon, link = serve_daemon(tmp_path, pty_device.path, demo_bundles.v1)
    try:
        # A protocol v1 device: its STATUS says nothing of its signal (counts) and carries no boot id.
        v1 = dataclasses.replace(stream["status"], signal=SignalKind.COUNTS, boot_id=0)
        pty_device.send(v1, stream["dark"], stream["white"], spectra[0])
        wait_for(lambda: len(link.of_kind("prediction")) == 1, "a prediction of the v1 device")
        assert link.of_kind("prediction")[0]["device_boot_id"] is None
        status = _last_status(link)
        assert "signal_mismatch" not in status["alerts"] and status["device_boot_id"] is None

        # The device announces absorbance: nothing it sends is predicted on, whatever its pixels look like.
        absorbance = dataclasses.replace(stream["status"], signal=SignalKind.ABSORBANCE, boot_id=0x1111)
        pty_device.send(absorbance, *spectra[1:N_SPECTRA])
        wait_for(lambda: daemon.counters.get("frames_rejected_signal_mismatch") == N_SPECTRA - 1,
                 "the announced absorbance spectra rejected")
        assert len(link.of_kind("prediction")) == 1
        wait_for(lambda: "signal_mismatch" in (_alerts(link) or []), "the status with the alert")
        status = _last_status(link)
        assert "signal_mismatch" in status["alerts"] and status["device_signal"] == "absorbance"
        assert status["device_boot_id"] == 0x1111
        assert "expects counts frames" in status["last_error"]

        # It reboots and announces counts again: the alert clears and predictions resume, tagged with the new boot.
        counts = dataclasses.replace(stream["status"], signal=SignalKind.COUNTS, boot_id=0x2222)
        pty_device.send(counts, *spectra[N_SPECTRA:])
        wait_for(lambda: len(link.of_kind("prediction")) == 1 + N_SPECTRA, "predictions after the re-announcement")
    finally:
        daemon.stop()
    preds = link.of_kind("prediction")
    assert [m["seq"] for m in preds[1:]] == [s.seq for s in spectra[N_SPECTRA:]]
    assert {m["device_boot_id"] for m in preds[1:]} == {0x2222}
    status = _last_status(link)
    assert "signal_mismatch" not in status["alerts"] and status["device_signal"] == "counts"
    assert status["last_error"] is None and status["device_boot_id"] == 0x2222
    assert daemon.counters.get("signal_mismatch_raised") == daemon.counters.get("signal_mismatch_cleared") == 1
    assert not daemon.failed


def test_before_any_status_a_device_is_taken_to_send_counts(
        tmp_path: Path, absorbance_bundle: Path, pty_device: PtyDevice) -> None:
    stream = offline_stream(N_SPECTRA)
    daemon, link = serve_daemon(tmp_path, pty_device.path, absorbance_bundle)
    try:
        pty_device.send(*stream["spectra"])  # no STATUS: protocol v1 counts, not what this bundle takes
        wait_for(lambda: daemon.counters.get("frames_rejected_signal_mismatch") == N_SPECTRA,
                 "every spectrum rejected for its signal")
        wait_for(lambda: "signal_mismatch" in (_alerts(link) or []), "the status with the alert")
        status = _last_status(link)
        assert "signal_mismatch" in status["alerts"] and status["device_signal"] is None
        assert "expects absorbance frames" in status["last_error"] and "no STATUS yet" in status["last_error"]
        # The device then announces absorbance: the mismatch is resolved.
        announced = dataclasses.replace(stream["status"], signal=SignalKind.ABSORBANCE, boot_id=7)
        pty_device.send(announced)
        wait_for(lambda: _alerts(link) is not None and "signal_mismatch" not in _alerts(link), "the alert to clear")
    finally:
        daemon.stop()
    assert link.of_kind("prediction") == []
    status = _last_status(link)
    assert status["device_signal"] == "absorbance" and status["device_boot_id"] == 7 and status["last_error"] is None
    assert not daemon.failed


def test_reload_that_would_mismatch_is_refused_and_the_old_bundle_keeps_serving(
        tmp_path: Path, demo_bundles: DemoBundles, absorbance_bundle: Path) -> None:
    sim = _start_sim(tmp_path, signal=SignalKind.COUNTS)
    daemon, link = serve_daemon(tmp_path, sim.address, demo_bundles.v1,
                                 commands=commands_section(tmp_path, absorbance_bundle.parent, demo_bundles.v2.parent))
    try:
        wait_for(lambda: len(link.of_kind("prediction")) >= 20, "first predictions")
        answer = _reload(daemon, link, absorbance_bundle, "r-absorbance")
        n_then = len(link.of_kind("prediction"))
        wait_for(lambda: len(link.of_kind("prediction")) >= n_then + 20, "predictions after the refusal")
    finally:
        daemon.stop()
        sim.stop.set()
        sim.thread.join(timeout=10)
    assert answer["ok"] is False
    assert f"expects absorbance frames, the device {SIM_DEVICE} sends counts" in answer["error"]
    assert "still serving synthetic-demo 1.0.0" in answer["error"]
    assert daemon.counters.get("bundle_reload_signal_mismatch") == 1
    assert daemon.counters.get("bundle_reloads") == 0
    preds = link.of_kind("prediction")
    assert {m["model"]["version"] for m in preds} == {"1.0.0"}
    seqs = [m["seq"] for m in preds]
    assert seqs == list(range(seqs[0], seqs[0] + len(seqs))), "a frame was lost around the refused reload"
    assert "signal_mismatch" not in _last_status(link)["alerts"]  # the device never saw a mismatched bundle
    assert daemon.model_version == "1.0.0" and not daemon.failed


def test_matching_bundle_ends_a_mismatch_and_a_mismatched_one_is_refused(
        tmp_path: Path, demo_bundles: DemoBundles, absorbance_bundle: Path) -> None:
    sim = _start_sim(tmp_path, signal=SignalKind.ABSORBANCE)
    daemon, link = serve_daemon(tmp_path, sim.address, demo_bundles.v1,
                                 commands=commands_section(tmp_path, absorbance_bundle.parent, demo_bundles.v2.parent))
    try:
        wait_for(lambda: "signal_mismatch" in (_alerts(link) or []), "the mismatch alert")
        refused = _reload(daemon, link, demo_bundles.v2, "r-counts")  # counts again: still a mismatch, refused
        rejected_before = daemon.counters.get("frames_rejected_signal_mismatch")
        accepted = _reload(daemon, link, absorbance_bundle, "r-absorbance")
        wait_for(lambda: len(link.of_kind("prediction")) >= 20, "predictions of the absorbance bundle")
    finally:
        daemon.stop()
        sim.stop.set()
        sim.thread.join(timeout=10)
    assert refused["ok"] is False and "expects counts frames" in refused["error"]
    assert accepted["ok"] is True and accepted["result"]["model"]["version"] == "2.0.0-absorbance"
    assert rejected_before > 0
    assert {m["model"]["version"] for m in link.of_kind("prediction")} == {"2.0.0-absorbance"}
    assert {m["device_boot_id"] for m in link.of_kind("prediction")} == {sim.sim.device.boot_id}
    status = _last_status(link)
    assert "signal_mismatch" not in status["alerts"] and status["model"]["version"] == "2.0.0-absorbance"
    assert daemon.counters.get("signal_mismatch_cleared") == 1 and not daemon.failed


@pytest.mark.slow
def test_spectro_sim_absorbance_end_to_end_publishes_no_prediction(
        tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: Any, subscriber: Any, procs: list[Any]) -> None:
    """``spectro-sim --signal absorbance`` -> ``spectro-edge run`` with a counts bundle -> mosquitto: the
    retained status carries the alert, the metrics count the rejected spectra, and no prediction arrives."""
    from tests.support.processes import start_daemon, start_sim, write_config

    sim, path = start_sim(tmp_path, count=0, rate_hz=50.0, extra=("--signal", "absorbance"))
    procs.append(sim)
    cfg = write_config(tmp_path, port_url=path, bundle=demo_bundles.v1, mqtt_port=mosquitto_broker.port)
    daemon = start_daemon(tmp_path, cfg)
    procs.append(daemon)

    def rejected() -> int:
        metrics = subscriber.kind("/metrics")
        return max((m["counters"].get("frames_rejected_signal_mismatch", 0) for m in metrics), default=0)

    wait_for(lambda: rejected() >= N_SPECTRA, f"{N_SPECTRA} spectra counted as signal_mismatch")
    wait_for(lambda: any("signal_mismatch" in m["alerts"] for m in subscriber.kind("/status")), "the alert")
    from benchmarks.harness.subscriber import read_retained

    retained = read_retained(mosquitto_broker, "spectrolite/plant-a/line-1/sim-01/status")
    assert retained is not None and "signal_mismatch" in retained["alerts"], retained  # what a newcomer sees
    assert daemon.end() == 0, daemon.text()
    assert subscriber.received == 0
    status = [m for m in subscriber.kind("/status") if m["state"] == "online"][-1]
    assert "signal_mismatch" in status["alerts"] and status["device_signal"] == "absorbance"
    assert "expects counts frames" in status["last_error"]
    assert "expects counts frames, the device SIM-0001 sends absorbance" in daemon.text()  # logged as an error


# The end-to-end test uses the broker, subscriber and process fixtures of the daemon's end-to-end tests.

