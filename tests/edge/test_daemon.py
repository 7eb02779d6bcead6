"""The daemon's threads in process: a real simulator on a real pty, real bundles run by LiteRT, a recording link
instead of MQTT (the broker path is covered by test_daemon_e2e.py)."""

from __future__ import annotations

import shutil
from pathlib import Path
from typing import Any

import numpy as np
import pytest

from edge.bundle import load_bundle
from edge.daemon import Daemon, drift_config_from
from edge.inference import InferenceEngine, Rejection, RejectReason
from firmware_bridge.codec import encode
from firmware_bridge.frames import Reference, Spectrum
from firmware_bridge.transport import SerialTransport
from tests.support.commands import commands_section, send_signed
from tests.support.daemon import (
    DemoBundles,
    RecordingLink,
    edge_config,
    offline_predictions,
    offline_stream,
    start_sim_thread,
    wait_for,
)

#: Spectra streamed by the simulator in these tests.
N_SPECTRA = 120
#: In distribution, at most the OOD limits' false-alarm rate (alpha = 1 % per statistic) is flagged; allow slack.
MIN_OK_FRACTION = 0.9
#: Exact equality is expected (same float32 runtime on the same inputs); kept as a named zero tolerance.
VALUE_ATOL = 0.0


def _run_daemon(tmp: Path, bundle_path: Path, *, count: int, rate_hz: float = 200.0, drift_at: int | None = None,
                forward: bool = True, faults: Any = None, sim_targets: tuple[str, ...] | None = None,
                **sections: Any) -> tuple[Daemon, RecordingLink, Any]:
    sim = start_sim_thread(tmp, count=count, rate_hz=rate_hz, drift_at=drift_at, faults=faults, targets=sim_targets)
    cfg = edge_config(tmp, port_url=sim.address, bundle_path=bundle_path, **sections)
    link = RecordingLink()
    transport = SerialTransport(sim.address, read_timeout_s=0.05, reconnect_backoff_s=(0.05, 0.5))
    daemon = Daemon(cfg, load_bundle(bundle_path), transport, link, forward_annotations=forward)
    daemon.start()
    return daemon, link, sim


def _stop(daemon: Daemon, sim: Any) -> None:
    daemon.stop()
    sim.stop.set()
    sim.thread.join(timeout=10)


def test_every_spectrum_predicted_once_and_equal_to_offline(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    daemon, link, sim = _run_daemon(tmp_path, demo_bundles.v1, count=N_SPECTRA)
    try:
        wait_for(lambda: len(link.of_kind("prediction")) >= N_SPECTRA, f"{N_SPECTRA} predictions")
        wait_for(lambda: len(link.of_kind("metrics")) >= 1, "a metrics message")
    finally:
        _stop(daemon, sim)
    preds = link.of_kind("prediction")
    stream = offline_stream(N_SPECTRA)
    expected = offline_predictions(demo_bundles.v1, stream)
    seqs = [m["seq"] for m in preds]
    assert len(seqs) == len(set(seqs)) == N_SPECTRA
    assert set(seqs) == set(expected)
    annotations = {a.seq: a.values for a in stream["annotations"]}
    timestamps = {s.seq: s.timestamp_us for s in stream["spectra"]}
    for m in preds:
        values = np.array([v["value"] for v in m["values"]])
        np.testing.assert_allclose(values, expected[m["seq"]], rtol=0, atol=VALUE_ATOL)
        assert m["reference"] == list(annotations[m["seq"]])
        assert [v["unit"] for v in m["values"]] == ["%", "%", "%"]
        assert all(v["lower"] < v["value"] < v["upper"] for v in m["values"])
        assert m["model"] == {"id": "synthetic-demo", "version": "1.0.0"}
        assert m["ood"]["t2_limit"] > 0 and m["ood"]["q_limit"] > 0
        ood = m["ood"]["t2"] > m["ood"]["t2_limit"] or m["ood"]["q"] > m["ood"]["q_limit"]
        assert m["quality"] == ("out_of_distribution" if ood else "ok")
        assert m["latency_ms"] >= 0
        assert isinstance(m["device_timestamp_us"], int) and m["device_timestamp_us"] >= 0
        assert m["device_timestamp_us"] == timestamps[m["seq"]] or m["device_timestamp_us"] > 0
    assert sum(m["quality"] == "ok" for m in preds) >= MIN_OK_FRACTION * N_SPECTRA
    status = link.of_kind("status")[0]
    assert status["state"] == "online" and "ai_edge_litert" in status["runtime"]
    metrics = link.of_kind("metrics")[-1]
    assert metrics["counters"]["predictions"] >= 1
    assert metrics["counters"].get("frames_lost_seq_gap", 0) == 0
    assert metrics["latency_ms"]["p99"] >= metrics["latency_ms"]["p50"] > 0
    assert daemon.frames.dropped == 0 and metrics["counters"]["frames_dropped_queue_full"] == 0
    assert not daemon.failed


def test_annotations_with_another_number_of_values_than_the_bundles_targets_are_not_forwarded(
        tmp_path: Path, demo_bundles: DemoBundles, caplog: pytest.LogCaptureFixture) -> None:
    """A simulator sending one reference value per spectrum to a three-target bundle: nothing pairs them, so the
    predictions go out without ``reference``, each such frame is counted and one warning names the fix."""
    n = 40
    caplog.set_level("WARNING", logger="edge.daemon.annotations")
    daemon, link, sim = _run_daemon(tmp_path, demo_bundles.v1, count=n, sim_targets=("analyte_b_pct",))
    try:
        wait_for(lambda: len(link.of_kind("prediction")) >= n, f"{n} predictions")
    finally:
        _stop(daemon, sim)
    preds = link.of_kind("prediction")
    assert len({m["seq"] for m in preds}) == n
    assert all("reference" not in m for m in preds)
    assert daemon.counters.get("annotation_mismatch") == n
    assert daemon.counters.get("annotation_frames") == n
    warnings = [r.getMessage() for r in caplog.records if "annotation_mismatch" in r.getMessage()]
    assert len(warnings) == 1, warnings
    assert "carries 1 reference value(s), expected 3" in warnings[0]
    assert "spectro-sim --targets analyte_a_pct,analyte_b_pct,analyte_c_pct" in warnings[0]


def test_provoked_drift_raises_an_alert_and_flags_predictions(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    n, at = 300, 150
    daemon, link, sim = _run_daemon(tmp_path, demo_bundles.v1, count=n, drift_at=at, forward=False)
    try:
        wait_for(lambda: len(link.of_kind("prediction")) >= n, f"{n} predictions")
    finally:
        _stop(daemon, sim)
    drift = link.of_kind("drift")
    raised = [d for d in drift if d["event"] == "raised" and d["detector"].startswith("ood_")]
    assert raised, f"expected an OOD drift alert, got {drift}"
    first_drift_seq = min(d["seq"] for d in raised)
    preds = sorted(link.of_kind("prediction"), key=lambda m: m["seq"])
    seq_at = preds[at]["seq"]
    assert first_drift_seq >= seq_at  # never before the drift started
    assert sum(m["quality"] == "ok" for m in preds[: at - 1]) >= MIN_OK_FRACTION * (at - 1)
    assert sum(m["quality"] == "out_of_distribution" for m in preds[at + 30:]) >= (n - at - 30) * 0.9
    assert raised[0]["model"] == {"id": "synthetic-demo", "version": "1.0.0"}


def test_reload_tampered_keeps_old_model_and_good_one_takes_over(tmp_path: Path, demo_bundles: DemoBundles) -> None:
    live = tmp_path / "live.spectrolite"
    shutil.copy(demo_bundles.v1, live)
    daemon, link, sim = _run_daemon(tmp_path, live, count=0, rate_hz=100.0, forward=False,
                                    bundle={"watch": True, "watch_interval_s": 0.1},
                                    commands=commands_section(tmp_path))
    try:
        wait_for(lambda: len(link.of_kind("prediction")) >= 20, "first predictions")
        data = bytearray(demo_bundles.v2.read_bytes())
        data[len(data) // 2] ^= 0xFF  # one byte changed somewhere in the members
        tampered = tmp_path / "tampered.spectrolite"
        tampered.write_bytes(bytes(data))
        send_signed(daemon, "reload_bundle", {"path": str(tampered)}, "r-bad")
        wait_for(lambda: any(m["request_id"] == "r-bad" for m in link.of_kind("command_response")), "refusal")
        refusal = next(m for m in link.of_kind("command_response") if m["request_id"] == "r-bad")
        assert refusal["ok"] is False and "refused" in refusal["error"] and "1.0.0" in refusal["error"]
        assert any(s["last_error"] and "refused" in s["last_error"] for s in link.of_kind("status"))
        n_before = len(link.of_kind("prediction"))
        wait_for(lambda: len(link.of_kind("prediction")) >= n_before + 10, "predictions after the refusal")
        assert {m["model"]["version"] for m in link.of_kind("prediction")} == {"1.0.0"}

        shutil.copy(demo_bundles.v2, tmp_path / "incoming.tmp")
        (tmp_path / "incoming.tmp").replace(live)  # atomic replacement: the watcher reloads it
        wait_for(lambda: any(m["model"]["version"] == "1.1.0" for m in link.of_kind("prediction")), "new model")
        n_now = len(link.of_kind("prediction"))
        wait_for(lambda: len(link.of_kind("prediction")) >= n_now + 10, "predictions with the new model")
    finally:
        _stop(daemon, sim)
    preds = sorted(link.of_kind("prediction"), key=lambda m: m["seq"])
    seqs = [m["seq"] for m in preds]
    assert len(seqs) == len(set(seqs))
    assert seqs == list(range(seqs[0], seqs[-1] + 1))  # no frame lost across both reloads
    versions = [m["model"]["version"] for m in preds]
    switch = versions.index("1.1.0")
    assert set(versions[:switch]) == {"1.0.0"} and set(versions[switch:]) == {"1.1.0"}
    assert daemon.counters.get("bundle_reload_failures") == 1
    assert daemon.counters.get("bundle_reloads") == 1


def test_frames_breaking_the_input_contract_are_counted_never_predicted(tmp_path: Path, example_bundle: Path) -> None:
    """Over ``loop://`` the test writes the frames itself: a wrong pixel count and NaN counts are rejected."""
    cfg = edge_config(tmp_path, port_url="loop://", bundle_path=example_bundle)
    link = RecordingLink()
    transport = SerialTransport("loop://", read_timeout_s=0.05)
    daemon = Daemon(cfg, load_bundle(example_bundle), transport, link)
    stream = offline_stream(3)
    daemon.start()
    try:
        # The device announces itself first (its wavelength axis: the bundle resamples it onto the model's grid).
        for frame in (stream["status"], stream["dark"], stream["white"], stream["spectra"][0]):
            transport.write(encode(frame))
        wait_for(lambda: len(link.of_kind("prediction")) == 1, "the good spectrum's prediction")
        short = Spectrum(seq=100, timestamp_us=1, integration_time_us=stream["spectra"][1].integration_time_us,
                         counts=np.asarray(stream["spectra"][1].counts)[:-6])
        nan = Spectrum(seq=101, timestamp_us=2, integration_time_us=stream["spectra"][1].integration_time_us,
                       counts=np.full(256, np.nan, dtype=np.float32))
        for frame in (short, nan, stream["spectra"][2]):
            transport.write(encode(frame))
        wait_for(lambda: len(link.of_kind("prediction")) == 2, "the next good spectrum's prediction")
    finally:
        daemon.stop()
    assert [m["seq"] for m in link.of_kind("prediction")] == [stream["spectra"][0].seq, stream["spectra"][2].seq]
    assert daemon.counters.get("frames_rejected_input_contract") == 1
    assert daemon.counters.get("frames_rejected_bad_input") == 1


def test_engine_rejects_missing_references_and_flags_stale_ones(example_bundle: Path) -> None:
    from edge.references import ReferencePolicy, ReferenceSet, ReferenceSpectrum

    stream = offline_stream(2)
    engine = InferenceEngine(load_bundle(example_bundle), reference_policy=ReferencePolicy(max_age_s=10.0))
    spectrum = stream["spectra"][0]
    wl = stream["status"].wavelengths_nm()  # the device's axis (trainer bundles resample it onto the model's grid)
    out = engine.process(spectrum, ReferenceSet(), wavelengths_nm=wl, now_s=0.0)
    assert isinstance(out, Rejection) and out.reason is RejectReason.MISSING_REFERENCE
    refs = ReferenceSet()
    for f in (stream["dark"], stream["white"]):
        refs = refs.with_spectrum(ReferenceSpectrum.from_frame(f, captured_at_s=0.0))
    fresh = engine.process(spectrum, refs, wavelengths_nm=wl, now_s=1.0)
    stale = engine.process(spectrum, refs, wavelengths_nm=wl, now_s=100.0)
    assert not isinstance(fresh, Rejection) and not isinstance(stale, Rejection)
    assert fresh.flags == () and [f.value for f in stale.flags] == ["stale_reference"]
    assert fresh.values == stale.values
    shifted = stream["status"].wavelengths_nm() + 50.0  # a device calibrated for another range
    out = engine.process(spectrum, refs, wavelengths_nm=shifted, now_s=1.0)
    assert isinstance(out, Rejection) and out.reason is RejectReason.INPUT_CONTRACT and "wavelength" in out.detail
    assert not isinstance(engine.process(spectrum, refs, wavelengths_nm=shifted - 50.0, now_s=1.0), Rejection)
    saturated = engine.process(spectrum.replace(saturated_count=3), refs, wavelengths_nm=wl, now_s=1.0)
    assert not isinstance(saturated, Rejection) and saturated.flags[0].value == "saturated"
    bad_white = Reference(seq=9, timestamp_us=0, integration_time_us=stream["white"].integration_time_us,
                          counts=np.asarray(stream["dark"].counts))
    dark_above = refs.with_spectrum(ReferenceSpectrum.from_frame(bad_white, captured_at_s=0.0))
    out = engine.process(spectrum, dark_above, wavelengths_nm=wl, now_s=1.0)
    assert isinstance(out, Rejection) and out.reason is RejectReason.BAD_INPUT and "dark" in out.detail


def test_drift_config_from_edge_config(tmp_path: Path, example_bundle: Path) -> None:
    cfg = edge_config(tmp_path, port_url="loop://", bundle_path=example_bundle,
                      drift={"ewma_alpha": 0.2, "raise_ratio": 2.0, "clear_ratio": 1.5, "min_frames": 7})
    d = drift_config_from(cfg.drift)
    assert (d.ood.alpha, d.ood.raise_above, d.ood.clear_below, d.ood.warmup_samples) == (0.2, 2.0, 1.5, 7)
    assert d.prediction.h_sigma == cfg.drift.cusum_h_sigma


@pytest.fixture(autouse=True)
def _single_thread(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setenv("OMP_NUM_THREADS", "1")


def test_commands_capture_references_set_integration_time_and_refuse_malformed(
    tmp_path: Path, example_bundle: Path
) -> None:
    from edge.commands import make_command, sign_command

    key = b"in-process-hmac-key-0123456789"
    (tmp_path / "hmac.key").write_bytes(key)
    daemon, link, sim = _run_daemon(tmp_path, example_bundle, count=0, rate_hz=100.0, forward=False,
                                    commands={"enabled": True, "hmac_key_path": str(tmp_path / "hmac.key")})

    def responses(name: str) -> list[dict[str, Any]]:
        return [m for m in link.of_kind("command_response") if m["command"] == name]

    def send(name: str, args: dict[str, Any], rid: str) -> None:
        body = make_command(name, args, device_id="sim-01", request_id=rid)
        daemon.on_command(name, sign_command(body, key))

    try:
        wait_for(lambda: len(link.of_kind("prediction")) >= 10, "first predictions")
        dark_before = daemon.refs.dark
        daemon.on_command("capture_dark", sign_command('{"schema_version": 1, "command": "capture_dark", "args": '
                                                       '{"x": 1}}', key))
        wait_for(lambda: len(responses("capture_dark")) == 1, "the refusal of a malformed command")
        assert responses("capture_dark")[0]["ok"] is False and daemon.refs.dark is dark_before

        send("capture_dark", {"average_frames": 4}, "c1")
        wait_for(lambda: len(responses("capture_dark")) == 2, "the capture_dark response")
        ok = responses("capture_dark")[1]
        assert ok["ok"] is True and ok["request_id"] == "c1" and ok["result"]["averaged_frames"] == 4
        assert daemon.refs.dark is not None and daemon.refs.dark.source.value == "command"
        send("capture_reference", {"average_frames": 2}, "c2")
        wait_for(lambda: len(responses("capture_reference")) == 1, "the capture_reference response")
        assert responses("capture_reference")[0]["ok"] is True
        assert (tmp_path / "sim-01.dark.npz").is_file()  # kept for the next start

        it = daemon.refs.reference.integration_time_us * 2
        send("set_integration_time", {"integration_time_us": it}, "c3")
        wait_for(lambda: len(responses("set_integration_time")) == 1, "the set_integration_time response")
        assert responses("set_integration_time")[0]["ok"] is True
        wait_for(lambda: any("stale_reference" in m["quality_flags"] for m in link.of_kind("prediction")),
                 "predictions flagged stale_reference after the exposure change")

        send("tag_sample", {"sample_id": "LAB-1"}, "c4")  # [archive] is off: nothing to tag, and it says so
        wait_for(lambda: len(responses("tag_sample")) == 1, "the tag_sample response")
        refused = responses("tag_sample")[0]
        assert refused["ok"] is False and "[archive] enabled = true" in refused["error"], refused
    finally:
        _stop(daemon, sim)
    assert daemon.counters.get("commands_refused") == 1


def test_unplugged_device_is_reopened_and_every_lost_frame_counted(tmp_path: Path, example_bundle: Path) -> None:
    """The simulator closes its pty every 50 spectra (a USB unplug) and comes back under the same path."""
    from firmware_bridge.simulator import FaultConfig

    n = 200
    daemon, link, sim = _run_daemon(tmp_path, example_bundle, count=n, rate_hz=100.0, forward=False,
                                    faults=FaultConfig(disconnect_every=50, disconnect_for_s=0.5))
    try:
        wait_for(lambda: sim.sim.device.done, "the simulator to finish")
        wait_for(lambda: len(link.of_kind("prediction")) + daemon.counters.get("frames_lost_seq_gap") >= n,
                 "every spectrum predicted or counted as lost")
    finally:
        _stop(daemon, sim)
    preds = link.of_kind("prediction")
    seqs = [m["seq"] for m in preds]
    assert len(seqs) == len(set(seqs))
    assert len(preds) + daemon.counters.get("frames_lost_seq_gap") == n
    assert daemon.transport.stats.reconnects >= 3 and sim.sim.counters.sessions >= 4
    assert not daemon.failed


def _write_toml(path: Path, bundle: Path, *, port: int, frames_max: int = 256, tls_ca: Path | None = None) -> Path:
    from edge.config_example import render_config

    mqtt: dict[str, Any] = {"host": "127.0.0.1", "port": port}
    if tls_ca is not None:
        mqtt["tls"] = {"enabled": True, "ca_path": tls_ca}
    path.write_text(render_config({
        "device": {"site": "s", "line": "l", "device_id": "d"}, "serial": {"port_url": "loop://"},
        "bundle": {"path": bundle, "watch": False}, "queues": {"frames_max": frames_max},
        "outbox": {"path": path.parent / "outbox.sqlite"}, "mqtt": mqtt}), encoding="utf-8")
    return path


def test_config_reload_switches_broker_settings_and_names_the_rest(
        tmp_path: Path, example_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    from edge.config import load_config

    path = _write_toml(tmp_path / "edge.toml", example_bundle, port=1883)
    link = RecordingLink()
    daemon = Daemon(load_config(path), load_bundle(example_bundle), None, link)

    _write_toml(path, example_bundle, port=1884, frames_max=64)
    assert daemon.reload_config()
    assert [c.mqtt.port for c in link.switched] == [1884]
    assert daemon.config.mqtt.port == 1884
    assert daemon.config.queues.frames_max == 256  # needs a restart: named, not applied
    assert "queues.frames_max changed; restart the daemon to apply it" in caplog.text
    assert daemon.counters.get("config_reloads") == 1

    path.write_text("[mqtt\nport = ", encoding="utf-8")  # a half-written file
    assert not daemon.reload_config()
    _write_toml(path, example_bundle, port=0)  # out of range
    assert not daemon.reload_config()
    assert "mqtt.port" in (daemon.last_error or "")
    assert daemon.counters.get("config_reload_failures") == 2
    assert daemon.config.mqtt.port == 1884 and len(link.switched) == 1  # the running settings stay
    status = daemon.messages.get(0.0)
    assert status is not None and "configuration reload refused" in status.message["last_error"]


def test_config_reload_rebuilds_the_client_when_a_credential_file_is_rotated_in_place(
        tmp_path: Path, example_bundle: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A password (or certificate) replaced at the same path: the config's text is unchanged, the client is not."""
    from edge.config import load_config
    from edge.config_example import render_config

    caplog.set_level("INFO", logger="edge.daemon")
    secret = tmp_path / "mqtt.password"
    secret.write_text("old-password\n", encoding="utf-8")
    path = tmp_path / "edge.toml"
    path.write_text(render_config({
        "device": {"site": "s", "line": "l", "device_id": "d"}, "serial": {"port_url": "loop://"},
        "bundle": {"path": example_bundle, "watch": False}, "outbox": {"path": tmp_path / "outbox.sqlite"},
        "mqtt": {"host": "127.0.0.1", "port": 1883, "username": "u", "password_file": secret}}), encoding="utf-8")
    link = RecordingLink()
    daemon = Daemon(load_config(path), load_bundle(example_bundle), None, link)

    assert daemon.reload_config() and link.switched == []  # nothing changed: the client stays
    secret.write_text("new-password\n", encoding="utf-8")
    assert daemon.reload_config()
    assert len(link.switched) == 1 and link.switched[0].mqtt.password_file == secret
    assert "mqtt.password_file changed on disk" in caplog.text
    assert daemon.reload_config() and len(link.switched) == 1  # applied once, not at every reload


def test_config_reload_refuses_tls_settings_that_cannot_load(tmp_path: Path, example_bundle: Path) -> None:
    from edge.config import load_config
    from edge.daemon import MqttLink

    path = _write_toml(tmp_path / "edge.toml", example_bundle, port=1)  # nothing listens: never connects
    config = load_config(path)
    link = MqttLink(config, lambda name, payload: None)
    daemon = Daemon(config, load_bundle(example_bundle), None, link)
    link.start()
    try:
        ca = tmp_path / "ca.pem"
        ca.write_text("not a certificate\n", encoding="utf-8")
        _write_toml(path, example_bundle, port=8883, tls_ca=ca)
        assert not daemon.reload_config()
        assert daemon.config.mqtt.port == 1 and not daemon.config.mqtt.tls.enabled
        assert link.publisher.stats().broker_switches == 0
    finally:
        link.stop(0.0)
