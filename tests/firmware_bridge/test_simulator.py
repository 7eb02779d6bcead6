"""spectro-sim as a real process on a real pty (and TCP), read by SerialTransport; the device model in-process."""

from __future__ import annotations

import itertools
import os
import signal
import threading
import time
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.cli import _config, build_parser, main
from firmware_bridge.codec import decode_frame, encode
from firmware_bridge.frames import (
    Ack,
    Annotation,
    Command,
    CommandCode,
    Dark,
    Frame,
    Hello,
    Nack,
    NackCode,
    Reference,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
)
from firmware_bridge.physics import absorbance_from_counts
from firmware_bridge.simulator import (
    FaultConfig,
    ProvokedDriftConfig,
    PtyEndpoint,
    Simulator,
    SimulatorConfig,
    SimulatorError,
    VirtualSpectrometer,
    load_spectra,
)
from firmware_bridge.synthetic import load_npz
from firmware_bridge.transport import SerialTransport
from tests.support.simulator import PATIENCE_S, read_until, spectro_sim

#: A provoked band of 0.3 absorbance must show at its centre well above the noise (a few 1e-3).
DRIFT_VISIBLE = 0.2


def _spectra(frames: list[Frame]) -> list[Spectrum]:
    return [f for f in frames if type(f) is Spectrum]


def test_every_frame_arrives_in_order_over_a_pty(datasets_dir: Path) -> None:
    dataset = datasets_dir / "idrc2002_tablets.npz"
    count = 120
    with spectro_sim("--pty", "--dataset", str(dataset), "--split", "test", "--rate", "0", "--count", str(count)) as (
        proc,
        link,
    ):
        with SerialTransport(link) as t:
            frames = read_until(t, lambda fs: len(_spectra(fs)) >= count and isinstance(fs[-1], Annotation))
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(PATIENCE_S) == 0
    assert not os.path.lexists(link)  # the stable path is removed on a clean stop

    status, dark, reference = frames[:3]
    assert isinstance(status, Status) and isinstance(dark, Dark) and isinstance(reference, Reference)
    data = load_npz(dataset)
    assert status.pixel_count == 650
    assert status.signal is SignalKind.COUNTS and status.boot_id != 0  # raw counts, from this boot
    np.testing.assert_allclose(status.wavelengths_nm(), data["wavelengths"], atol=1e-6)
    spectrum_like = [f for f in frames if isinstance(f, Spectrum)]
    assert [f.seq for f in spectrum_like] == list(range(len(spectrum_like)))  # contiguous, in order
    body = frames[3:]
    assert len(body) == 2 * count
    expected_y = data["y"][data["split"] == "test"]
    for k in range(count):
        spectrum, annotation = body[2 * k], body[2 * k + 1]
        assert type(spectrum) is Spectrum and isinstance(annotation, Annotation)
        assert annotation.seq == spectrum.seq
        np.testing.assert_array_equal(np.asarray(annotation.values, np.float32), expected_y[k])
        assert spectrum.counts.dtype == np.uint16 and spectrum.pixel_count == 650
        assert spectrum.integration_time_us == dark.integration_time_us == reference.integration_time_us


@pytest.mark.slow
def test_reader_resumes_after_the_simulator_drops_the_port() -> None:
    every, count = 40, 120
    args = (
        "--pty",
        "--rate",
        "100",
        "--count",
        str(count),
        "--disconnect-every",
        str(every),
        "--disconnect-for",
        "0.5",
    )
    arrivals: list[tuple[float, int]] = []
    with spectro_sim(*args) as (_proc, link), SerialTransport(link, reconnect_backoff_s=(0.05, 0.5)) as t:
        # three sessions (two unplugs; none once done), each opening with DARK + REFERENCE, which take seqs too
        last_seq = count + 3 * 2 - 1
        deadline = time.monotonic() + 2 * PATIENCE_S
        while time.monotonic() < deadline and not (arrivals and arrivals[-1][1] == last_seq):
            for f in t.read_frames(0.5):
                if type(f) is Spectrum:
                    arrivals.append((time.monotonic(), f.seq))
        stats = t.stats
    seqs = [s for _, s in arrivals]
    assert stats.outages >= 2 and stats.reconnects >= 2
    assert seqs == sorted(seqs) and len(set(seqs)) == len(seqs)  # in order, no duplicates
    assert len(seqs) >= count - 2 * stats.outages  # at most the frames in flight at each unplug are lost
    gaps = [b[0] - a[0] for a, b in itertools.pairwise(arrivals) if b[1] - a[1] > 1]
    assert len(gaps) >= 2  # frames kept arriving after each outage
    print(f"resume gaps after outages (s): {[round(g, 2) for g in gaps]}")


def test_tcp_hello_and_command_round_trips() -> None:
    with spectro_sim("--tcp", "0", "--no-autostart", "--seed", "3") as (proc, url):
        assert url.startswith("socket://127.0.0.1:")
        with SerialTransport(url) as t:
            hello = read_until(t, lambda fs: any(isinstance(f, Status) for f in fs))
            assert isinstance(hello[0], Status) and hello[0].nonce == 0  # unsolicited on connect

            def ask(frame: Frame, n: int) -> list[Frame]:
                t.send(frame)
                return read_until(t, lambda fs: len(fs) >= n)

            status = ask(Hello(nonce=1234), 1)
            assert isinstance(status[0], Status) and status[0].nonce == 1234 and status[0].pixel_count == 256
            reply = ask(Command(1, CommandCode.SET_INTEGRATION_TIME, 2000), 2)
            assert reply[0] == Ack(1, CommandCode.SET_INTEGRATION_TIME)
            assert isinstance(reply[1], Status) and reply[1].integration_time_us == 2000
            reply = ask(Command(2, CommandCode.SET_AVERAGING, 0), 1)
            assert isinstance(reply[0], Nack) and reply[0].reason == NackCode.VALUE_OUT_OF_RANGE
            assert "expected 1 to" in reply[0].detail
            reply = ask(Command(3, CommandCode.REQUEST_DARK), 2)
            assert reply[0] == Ack(3, CommandCode.REQUEST_DARK)
            assert isinstance(reply[1], Dark) and reply[1].integration_time_us == 2000
            reply = ask(Command(4, CommandCode.REQUEST_REFERENCE), 2)
            assert reply[0] == Ack(4, CommandCode.REQUEST_REFERENCE) and isinstance(reply[1], Reference)
            reply = ask(Command(5, CommandCode.TRIGGER, 3), 7)
            assert reply[0] == Ack(5, CommandCode.TRIGGER)
            triggered = _spectra(reply)
            assert len(triggered) == 3 and all(s.flags & SpectrumFlags.TRIGGERED for s in triggered)
            assert [a.seq for a in reply if isinstance(a, Annotation)] == [s.seq for s in triggered]
            reply = ask(Command(6, CommandCode.START_STREAM, 10_000), 7)
            assert reply[0] == Ack(6, CommandCode.START_STREAM)
            assert isinstance(reply[1], Dark) and isinstance(reply[2], Reference)
            assert len(_spectra(reply)) >= 2
            t.send(Command(7, CommandCode.STOP_STREAM))
            rest = read_until(t, lambda fs: Ack(7, CommandCode.STOP_STREAM) in fs)
            assert Ack(7, CommandCode.STOP_STREAM) in rest
            assert t.read_frames(0.3) == []  # stopped: nothing more streams
        proc.send_signal(signal.SIGINT)  # Ctrl-C stops it as cleanly as SIGTERM
        assert proc.wait(PATIENCE_S) == 0


def test_in_process_simulator_with_bit_flips() -> None:
    config = SimulatorConfig(rate_hz=0, count=300, seed=5, faults=FaultConfig(bit_flip_rate=2e-4), connect_delay_s=0.1)
    endpoint = PtyEndpoint()
    sim = Simulator(config, endpoint)
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,), kwargs={"on_ready": lambda _a: ready.set()})
    thread.start()
    try:
        assert ready.wait(PATIENCE_S)
        with SerialTransport(sim.address) as t:
            frames: list[Frame] = []
            deadline = time.monotonic() + PATIENCE_S
            while time.monotonic() < deadline:
                more = t.read_frames(0.5)
                frames += more
                if sim.device.done and not more:
                    break
            decoder = t.stats.decoder
    finally:
        stop.set()
        thread.join(PATIENCE_S)
    assert not thread.is_alive() and not os.path.lexists(sim.address)
    assert sim.counters.bits_flipped > 0
    assert decoder.frames_bad > 0  # some frames were damaged...
    spectra = _spectra(frames)
    assert 0 < len(spectra) < 300  # ...and dropped, never returned
    assert all(s.pixel_count == 256 and s.counts.dtype == np.uint16 for s in spectra)
    seqs = [s.seq for s in spectra]
    assert seqs == sorted(seqs)
    assert decoder.frames_ok + decoder.frames_bad <= sim.counters.frames_sent


def test_provoked_drift_and_lamp_ageing_show_in_absorbance() -> None:
    config = SimulatorConfig(
        seed=1, synthetic_samples=50,
        drift=ProvokedDriftConfig(drift_at_frame=10, drift_kind="band", drift_ramp_frames=5),
    )
    device = VirtualSpectrometer.from_config(config)
    x, _wl, y = load_spectra(config)
    dark, reference = device.dark(), device.reference()
    centre = int(np.argmax(device._foreign_band))
    changes = []
    for k in range(20):
        spectrum, annotation = device.spectrum()
        assert annotation.seq == spectrum.seq and annotation.values == tuple(y[k % len(y)])
        a = absorbance_from_counts(spectrum.counts, dark.counts, reference.counts)
        changes.append(a[centre] - x[k % len(x)][centre])
    assert max(abs(c) for c in changes[:10]) < DRIFT_VISIBLE / 4
    assert min(changes[15:]) > DRIFT_VISIBLE

    config = SimulatorConfig(seed=1, synthetic_samples=50, drift=ProvokedDriftConfig(lamp_ageing_per_kframe=0.5))
    aged = VirtualSpectrometer.from_config(config)
    dark, reference = aged.dark(), aged.reference()  # taken with a new lamp, then never refreshed
    for _ in range(2001):
        spectrum, _annotation = aged.spectrum()  # the last one is index 2000: a quarter of the light left
    a = absorbance_from_counts(spectrum.counts, dark.counts, reference.counts)
    offset = float(np.median(a - x[2000 % len(x)]))
    assert offset == pytest.approx(-np.log10(0.25), abs=0.02)  # a stale reference reads as a baseline offset


def test_cli_help_and_bad_dataset(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exc:
        main(["--help"])
    assert exc.value.code == 0
    assert "--disconnect-every" in capsys.readouterr().out
    assert main(["--pty", "--dataset", str(tmp_path / "missing.npz")]) == 2
    err = capsys.readouterr().err
    assert "expected a spectral dataset" in err and "Traceback" not in err


def test_firmware_events_change_pixels_and_calibration() -> None:
    faults = FaultConfig(pixel_change_at=5, pixel_change_to=200, recalibrate_at=8, recalibrate_shift_nm=4.0)
    device = VirtualSpectrometer.from_config(SimulatorConfig(seed=2, synthetic_samples=20, faults=faults))
    first = device.status().wavelengths_nm()
    frames: list[Frame] = []
    for _ in range(10):
        frames += device.stream_next()
    statuses = [f for f in frames if isinstance(f, Status)]
    assert [s.pixel_count for s in statuses] == [200, 200]
    np.testing.assert_allclose(statuses[1].wavelengths_nm(), first[:200] + 4.0, atol=1e-6)
    assert [s.pixel_count for s in _spectra(frames)] == [256] * 5 + [200] * 5
    refs = [f for f in frames if isinstance(f, (Dark, Reference))]
    assert [r.pixel_count for r in refs] == [200, 200]  # fresh references for the new pixel count


def test_garbage_truncation_and_stalls_cost_only_the_frames_they_hit() -> None:
    count = 60
    faults = FaultConfig(garbage_every=10, truncate_every=7, stall_every=25, stall_for_s=0.2)
    config = SimulatorConfig(rate_hz=0, count=count, seed=9, faults=faults, connect_delay_s=0.1)
    sim = Simulator(config, PtyEndpoint())
    stop = threading.Event()
    ready = threading.Event()
    thread = threading.Thread(target=sim.run, args=(stop,), kwargs={"on_ready": lambda _a: ready.set()})
    thread.start()
    try:
        assert ready.wait(PATIENCE_S)
        with SerialTransport(sim.address) as t:
            frames: list[Frame] = []
            deadline = time.monotonic() + PATIENCE_S
            while time.monotonic() < deadline:
                more = t.read_frames(0.5)
                frames += more
                if sim.device.done and not more:
                    break
            decoder = t.stats.decoder
    finally:
        stop.set()
        thread.join(PATIENCE_S)
    c = sim.counters
    assert (c.frames_truncated, c.garbage_bursts, c.stalls) == (8, 6, 2)
    spectra = _spectra(frames)
    assert all(s.pixel_count == 256 for s in spectra)
    seqs = [s.seq for s in spectra]
    assert seqs == sorted(seqs) and seqs[-1] == count + 1  # the stream went on to the end (seq 0, 1: DARK, REF)
    lost = count - len(spectra)
    assert c.frames_truncated <= lost <= c.frames_truncated + c.garbage_bursts  # noise may take the next frame
    assert decoder.frames_bad >= c.frames_truncated


def test_docstring_examples() -> None:
    import doctest
    import importlib
    import pkgutil

    import firmware_bridge.simulator

    package = firmware_bridge.simulator
    modules = [package] + [
        importlib.import_module(info.name) for info in pkgutil.iter_modules(package.__path__, package.__name__ + ".")
    ]
    results = [doctest.testmod(module) for module in modules]
    assert sum(r.failed for r in results) == 0
    assert sum(r.attempted for r in results) > 0


# ---------------------------------------------------------------------------------------------------------------
# Signal kind and boot id
# ---------------------------------------------------------------------------------------------------------------

#: float32 holds a dataset's absorbance to about 6e-8 relative; the processed frames must be that exact.
F32_RTOL = 1e-7


class _Clock:
    """A device clock the test moves by hand, microseconds."""

    def __init__(self) -> None:
        self.now_us = 5_000_000

    def __call__(self) -> int:
        return self.now_us


def test_status_announces_counts_and_a_random_boot_id_not_taken_from_the_seed() -> None:
    config = SimulatorConfig(seed=7, synthetic_samples=10, synthetic_channels=32)
    ids = set()
    for _ in range(3):
        device = VirtualSpectrometer.from_config(config)
        status = device.status()
        assert status.signal is SignalKind.COUNTS
        assert 0 < status.boot_id <= 0xFFFF_FFFF and status.boot_id == device.boot_id
        assert device.handle(Hello(nonce=9))[0].boot_id == status.boot_id  # the same for the whole boot
        ids.add(status.boot_id)
    assert len(ids) == 3  # same seed, three boots, three ids (a collision has odds of about 1e-9)
    assert VirtualSpectrometer.from_config(SimulatorConfig(synthetic_samples=5, boot_id=0x1234)).boot_id == 0x1234
    with pytest.raises(SimulatorError, match="expected a boot_id in 1..4294967295, got 0"):
        SimulatorConfig(boot_id=0)
    with pytest.raises(SimulatorError, match="expected a signal kind of 0 \\(COUNTS\\)"):
        SimulatorConfig(signal=7)  # type: ignore[arg-type]  # deliberately the wrong type


def test_two_spectro_sim_processes_boot_with_different_ids() -> None:
    ids = []
    for _ in range(2):
        with spectro_sim("--tcp", "0", "--no-autostart", "--seed", "3") as (_proc, url), SerialTransport(url) as t:
            frames = read_until(t, lambda fs: any(isinstance(f, Status) for f in fs))
            status = next(f for f in frames if isinstance(f, Status))
            assert status.signal is SignalKind.COUNTS and status.boot_id != 0
            ids.append(status.boot_id)
    assert ids[0] != ids[1]


def test_default_frames_are_unchanged_by_the_signal_option() -> None:
    base = SimulatorConfig(seed=4, synthetic_samples=8, synthetic_channels=24, boot_id=77)
    explicit = SimulatorConfig(seed=4, synthetic_samples=8, synthetic_channels=24, boot_id=77, signal=SignalKind.COUNTS)
    clock_a, clock_b = _Clock(), _Clock()
    a = list(VirtualSpectrometer(*load_spectra(base), base, clock_us=clock_a).iter_frames(6))
    b = list(VirtualSpectrometer(*load_spectra(explicit), explicit, clock_us=clock_b).iter_frames(6))
    assert a == b
    assert [type(f).__name__ for f in a[:5]] == ["Status", "Dark", "Reference", "Spectrum", "Annotation"]
    assert all(f.counts.dtype == np.uint16 for f in a if type(f) is Spectrum)


def test_a_processed_signal_streams_intensities_that_are_no_absorbance_and_counts_refuse_them() -> None:
    """Raman intensities (thousands of counts) trained as the device's own signal stream as they are; a counts device
    cannot measure them as absorbance (no light would pass), and says so instead of an exposure out of range."""
    rng = np.random.default_rng(5)
    raman = 1_000.0 + 30_000.0 * rng.random((4, 50))
    axis = np.linspace(400.0, 1800.0, 50)
    y = np.arange(4.0)[:, None]
    device = VirtualSpectrometer(raman, axis, y, SimulatorConfig(signal=SignalKind.ABSORBANCE, seed=1))
    assert 1 <= device.integration_time_us <= 60_000_000
    spectra = [f for f in device.iter_frames(8) if isinstance(f, Spectrum)]
    assert len(spectra) == 8
    for k, spectrum in enumerate(spectra):  # the dataset's rows in order, twice
        np.testing.assert_array_equal(spectrum.counts, raman[k % 4].astype(np.float32))
    with pytest.raises(SimulatorError, match=r"expected absorbance spectra that some light passes .*1st percentile "
                                             r"is 1\d{3}.*--signal absorbance"):
        VirtualSpectrometer(raman, axis, y, SimulatorConfig(signal=SignalKind.COUNTS, seed=1))


def test_a_device_wider_than_one_spectrum_frame_is_refused_at_once() -> None:
    """3,000 float32 pixels do not fit a SPECTRUM frame (2,807 do): refused when the device is made, not by a
    traceback at the first frame; counts go out as uint16, up to 5,614 pixels."""
    y = np.zeros((2, 1))
    for kind, most in ((SignalKind.ABSORBANCE, 2807), (SignalKind.REFLECTANCE, 2807), (SignalKind.COUNTS, 5614)):
        axis = np.linspace(900.0, 1700.0, most + 1)
        spectra = np.full((2, most + 1), 0.01)  # light enough that a counts device reads its white as uint16
        with pytest.raises(SimulatorError, match=rf"expected at most {most} pixels for a device sending "
                                                 rf"{kind.name.lower()} .*got {most + 1}"):
            VirtualSpectrometer(spectra, axis, y, SimulatorConfig(signal=kind, seed=1))
        device = VirtualSpectrometer(spectra[:, :most], axis[:most], y, SimulatorConfig(signal=kind, seed=1))
        frames = list(device.iter_frames(3))  # STATUS, DARK and REFERENCE first for a counts device
        assert [f.pixel_count for f in frames if isinstance(f, Spectrum)][-1] == most
        assert all(decode_frame(encode(f)) == f for f in frames)  # every frame goes on the wire
    # A counts device wider than a float32 frame whose white would saturate at the sample exposure sends a scaled
    # float32 REFERENCE, which cannot carry 3,000 pixels: refused too; with light enough its white is uint16.
    axis = np.linspace(900.0, 1700.0, 3000)
    with pytest.raises(SimulatorError, match=r"expected at most 2807 pixels for a counts device whose white "
                                             r"REFERENCE goes out scaled as float32 .*got 3000"):
        VirtualSpectrometer(np.full((2, 3000), 1.0), axis, y, SimulatorConfig(signal=SignalKind.COUNTS, seed=1))
    device = VirtualSpectrometer(np.full((2, 3000), 0.01), axis, y, SimulatorConfig(signal=SignalKind.COUNTS, seed=1))
    assert all(decode_frame(encode(f)) == f for f in device.iter_frames(3))


def test_spectro_sim_streams_float32_absorbance_equal_to_the_dataset_rows(datasets_dir: Path) -> None:
    dataset = datasets_dir / "idrc2002_tablets.npz"
    count = 25
    args = ("--pty", "--dataset", str(dataset), "--split", "test", "--rate", "0", "--count", str(count))
    with spectro_sim(*args, "--signal", "absorbance") as (_proc, link), SerialTransport(link) as t:
        frames = read_until(t, lambda fs: len(_spectra(fs)) >= count and isinstance(fs[-1], Annotation))
        t.send(Command(1, CommandCode.REQUEST_DARK))
        reply = read_until(t, lambda fs: any(isinstance(f, Nack) for f in fs))
    status = frames[0]
    assert isinstance(status, Status) and status.signal is SignalKind.ABSORBANCE and status.boot_id != 0
    assert not any(isinstance(f, (Dark, Reference)) for f in frames)  # a processed signal needs no references
    data = load_npz(dataset)
    rows = data["X"][data["split"] == "test"]
    ys = data["y"][data["split"] == "test"]
    spectra = _spectra(frames)
    assert len(spectra) == count and [s.seq for s in spectra] == list(range(count))
    for k, spectrum in enumerate(spectra):
        assert spectrum.pixel_format.name == "FLOAT32" and spectrum.pixel_count == rows.shape[1]
        np.testing.assert_allclose(spectrum.counts, rows[k], rtol=F32_RTOL, atol=0)
        np.testing.assert_array_equal(spectrum.counts, rows[k].astype(np.float32))
    annotations = [f for f in frames if isinstance(f, Annotation)]
    np.testing.assert_array_equal(np.asarray([a.values for a in annotations], np.float32), ys[:count])
    nack = next(f for f in reply if isinstance(f, Nack))
    assert nack.command_id == 1 and nack.reason == NackCode.NOT_SUPPORTED and "absorbance" in nack.detail


def test_reflectance_signal_and_commands_of_a_processing_device() -> None:
    config = SimulatorConfig(
        seed=3, synthetic_samples=6, synthetic_channels=20, signal=SignalKind.REFLECTANCE, autostart=False
    )
    device = VirtualSpectrometer.from_config(config)
    x, _wl, _y = load_spectra(config)
    assert device.status().signal is SignalKind.REFLECTANCE
    assert isinstance(device.session_start()[0], Status)
    assert len(device.session_start()) == 1  # STATUS only: nothing to compute the signal from on the host
    reply = device.handle(Command(1, CommandCode.START_STREAM, 0))
    assert reply == [Ack(1, CommandCode.START_STREAM)]
    reply = device.handle(Command(2, CommandCode.REQUEST_REFERENCE))
    assert isinstance(reply[0], Nack) and reply[0].reason == NackCode.NOT_SUPPORTED
    reply = device.handle(Command(3, CommandCode.TRIGGER, 2))
    triggered = _spectra(reply)
    assert [s.flags for s in triggered] == [SpectrumFlags.TRIGGERED] * 2
    for k, spectrum in enumerate(triggered):
        np.testing.assert_allclose(spectrum.counts, 10.0 ** -x[k], rtol=F32_RTOL)


def test_reboot_restarts_seq_and_uptime_and_draws_a_new_boot_id() -> None:
    config = SimulatorConfig(
        seed=6, synthetic_samples=12, synthetic_channels=16, faults=FaultConfig(reboot_every=4), boot_id=0xB007
    )
    clock = _Clock()
    device = VirtualSpectrometer(*load_spectra(config), config, clock_us=clock)
    x, _wl, y = load_spectra(config)
    frames: list[Frame] = []
    frames += device.session_start()
    device.handle(Command(1, CommandCode.SET_AVERAGING, 8))  # a setting the reboot forgets
    for _ in range(10):
        clock.now_us += 3_000_000
        frames += device.stream_next()
    statuses = [f for f in frames if isinstance(f, Status)]
    assert [s.boot_id for s in statuses][0] == 0xB007
    assert len(statuses) == 3 == device.reboots + 1  # boot, then reboots after spectra 4 and 8
    assert len({s.boot_id for s in statuses}) == 3 and all(s.boot_id for s in statuses)
    assert all(s.nonce == 0 and s.signal is SignalKind.COUNTS for s in statuses)  # unsolicited
    assert [s.uptime_s for s in statuses] == [5, 0, 0]  # the injected clock starts at 5 s; each reboot restarts it
    assert [s.averages for s in statuses] == [1, 1, 1]
    # seq restarts at 0 at each boot (DARK 0, REFERENCE 1, then the spectra); (boot_id, seq) stays unique
    keys, boot = [], statuses[0].boot_id
    for f in frames:
        if isinstance(f, Status):
            boot = f.boot_id
        elif isinstance(f, Spectrum):
            keys.append((boot, f.seq))
    assert [seq for _b, seq in keys] == [0, 1, 2, 3, 4, 5] + [0, 1, 2, 3, 4, 5] + [0, 1, 2, 3]
    assert len(set(keys)) == len(keys)
    spectra = _spectra(frames)
    assert [s.averages for s in spectra] == [8] * 4 + [1] * 6  # boot-time settings after the reboot
    assert spectra[4].timestamp_us < spectra[3].timestamp_us  # the device clock restarted
    # the dataset goes on across reboots: annotations follow the rows in order
    assert [a.values for a in frames if isinstance(a, Annotation)] == [tuple(y[k]) for k in range(10)]


def test_cli_maps_signal_and_reboot_options() -> None:
    config = _config(build_parser().parse_args(["--pty", "--signal", "absorbance", "--reboot-every", "50"]))
    assert config.signal is SignalKind.ABSORBANCE and config.faults.reboot_every == 50
    default = _config(build_parser().parse_args(["--pty"]))
    assert default.signal is SignalKind.COUNTS and default.faults.reboot_every == 0 and default.boot_id is None
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--pty", "--signal", "transmittance"])


def test_spectro_sim_reboots_on_a_live_link() -> None:
    args = ("--tcp", "0", "--rate", "0", "--count", "12", "--reboot-every", "5", "--synthetic-samples", "20")
    with spectro_sim(*args) as (_proc, url), SerialTransport(url) as t:
        frames = read_until(t, lambda fs: len(_spectra(fs)) >= 12 and isinstance(fs[-1], Annotation))
    statuses = [f for f in frames if isinstance(f, Status)]
    assert len(statuses) == 3 and len({s.boot_id for s in statuses}) == 3 and all(s.boot_id for s in statuses)
    seqs = [f.seq for f in frames if isinstance(f, Spectrum)]  # DARK, REFERENCE and spectra of each boot
    assert seqs == list(range(7)) + list(range(7)) + list(range(4))


def test_a_device_without_autostart_waits_for_start_stream_after_a_reboot() -> None:
    config = SimulatorConfig(
        seed=2, synthetic_samples=6, synthetic_channels=12, autostart=False, faults=FaultConfig(reboot_every=2)
    )
    device = VirtualSpectrometer.from_config(config)
    first_boot = device.boot_id
    assert device.handle(Command(1, CommandCode.START_STREAM, 0))[0] == Ack(1, CommandCode.START_STREAM)
    frames = device.stream_next() + device.stream_next()
    assert [f.seq for f in _spectra(frames)] == [2, 3]  # after DARK 0 and REFERENCE 1
    rebooted = device.stream_next()
    assert len(rebooted) == 1 and isinstance(rebooted[0], Status) and rebooted[0].boot_id not in (0, first_boot)
    assert not device.streaming and device.streamed == 2  # nothing streamed until the host asks again
    again = device.handle(Command(2, CommandCode.START_STREAM, 0))
    assert [type(f) for f in again] == [Ack, Dark, Reference] and [f.seq for f in again[1:]] == [0, 1]
    assert [f.seq for f in _spectra(device.stream_next())] == [2]


def test_spectro_sim_averages_its_references_more_than_its_spectra() -> None:
    """DARK and REFERENCE frames average ``--reference-averages`` scans (64 by default), spectra ``--averages``
    (1 by default): a session's dark and white are shared by all its spectra, so their noise is a bias on every
    one of them; each scan keeps the detector's noise, so the averaged dark is quieter by sqrt(scans)."""
    darks: dict[str, list[Dark]] = {}
    for name, extra in (("default", ()), ("one", ("--reference-averages", "1"))):
        with spectro_sim("--tcp", "0", "--seed", "5", "--rate", "50", *extra) as (_proc, url), \
                SerialTransport(url) as t:
            frames = read_until(t, lambda fs: len(_spectra(fs)) >= 2)
            refs = [f for f in frames if isinstance(f, Reference)]
            spectra = _spectra(frames)
            assert refs and spectra
            assert {s.averages for s in spectra} == {1}
            darks[name] = []
            for _ in range(12):  # more darks of the same session, on request
                t.send(Command(len(darks[name]) + 1, CommandCode.REQUEST_DARK, 0))
                got = read_until(t, lambda fs: any(isinstance(f, Dark) for f in fs))
                darks[name] += [f for f in got if isinstance(f, Dark)]
            assert refs[0].averages == (64 if name == "default" else 1)
    assert {d.averages for d in darks["default"]} == {64} and {d.averages for d in darks["one"]} == {1}

    def spread(ds: list[Dark]) -> float:
        return float(np.std(np.stack([np.asarray(d.counts, dtype=np.float64) for d in ds]), axis=0).mean())

    assert spread(darks["default"]) < spread(darks["one"]) / 4  # 1/8 expected; rounding to counts adds a little
    with pytest.raises(SimulatorError, match="expected 1 to 1000 reference averages, got 0"):
        SimulatorConfig(reference_averages=0)


def test_targets_pick_and_order_the_reference_values_each_annotation_carries(datasets_dir: Path) -> None:
    dataset = datasets_dir / "tecator.npz"
    data = load_npz(dataset)
    names = [str(n) for n in data["target_names"]]
    want = ("protein_pct", "moisture_pct")  # a bundle's order, not the dataset's
    assert [names.index(n) for n in want] != sorted(names.index(n) for n in want)
    count = 6
    args = ("--pty", "--dataset", str(dataset), "--rate", "0", "--count", str(count), "--signal", "absorbance")
    with spectro_sim(*args, "--targets", ",".join(want)) as (_proc, link), SerialTransport(link) as t:
        frames = read_until(t, lambda fs: len(_spectra(fs)) >= count and isinstance(fs[-1], Annotation))
    values = np.asarray([a.values for a in frames if isinstance(a, Annotation)][:count], np.float32)
    np.testing.assert_array_equal(values, data["y"][:count][:, [names.index(n) for n in want]])
    every = VirtualSpectrometer.from_config(SimulatorConfig(dataset_path=str(dataset)))  # default: every target
    np.testing.assert_array_equal(every.reference_values, data["y"])


def test_targets_the_dataset_lacks_are_refused_with_its_targets(
    datasets_dir: Path, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    dataset = str(datasets_dir / "tecator.npz")
    assert main(["--pty", "--dataset", dataset, "--targets", "fat_pct,ash_pct"]) == 2
    err = capsys.readouterr().err
    assert "moisture_pct, fat_pct, protein_pct" in err and "got ash_pct" in err and "Traceback" not in err
    with pytest.raises(SimulatorError, match="a sequence of target names, got the string 'fat_pct'"):
        SimulatorConfig(dataset_path=dataset, targets="fat_pct")  # type: ignore[arg-type]
    with pytest.raises(SimulatorError, match="distinct target names"):
        SimulatorConfig(dataset_path=dataset, targets=("fat_pct", "fat_pct"))
    with pytest.raises(SystemExit):
        build_parser().parse_args(["--pty", "--targets", "fat_pct,,protein_pct"])
    assert _config(build_parser().parse_args(["--pty", "--targets", "fat_pct, protein_pct"])).targets == (
        "fat_pct", "protein_pct")
    unnamed = tmp_path / "unnamed.npz"
    np.savez(unnamed, X=np.ones((3, 20)), y=np.ones((3, 2)), wavelengths=np.linspace(900.0, 1700.0, 20))
    with pytest.raises(SimulatorError, match=r"dataset \(target_0, target_1\), got a"):  # load_npz's names
        VirtualSpectrometer.from_config(SimulatorConfig(dataset_path=str(unnamed), targets=("a",)))
