"""Test material of the daemon tests: real bundles trained by ``spectro-train fit examples/demo.toml`` (committed
in tests/data/trained by its generator, so that the edge tests need no TensorFlow), a recording MQTT link, a
simulator on a real pty in a thread, and the offline replay of the simulator's frames.

Its fixtures (``demo_bundles``, ``example_bundle``) reach every test through ``pytest_plugins`` in
tests/conftest.py; import only the helpers.
"""

from __future__ import annotations

import shutil
import threading
import time
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Callable, Iterator, Mapping, Sequence

import numpy as np
import pytest

from tests.support.trained import DEMO_V1, DEMO_V2, TRAINED, committed

REPO = Path(__file__).resolve().parents[2]
DEMO_CONFIG = REPO / "examples" / "demo.toml"

#: Synthetic data shared by the simulator and the demo config (spectro-sim --seed/--synthetic-*, examples/demo.toml
#: [data] synthetic).
SEED = 0
SAMPLES = 500
CHANNELS = 256
#: Deadline of waits for a real process or thread to reach a state (a failure to get there, not a speed goal).
WAIT_S = 60.0


@dataclass(frozen=True)
class DemoBundles:
    """The trainer-built demo bundles, committed in tests/data/trained (no TensorFlow in the edge tests).

    ``v1`` is ``spectro-train fit examples/demo.toml`` (model_version 1.0.0); ``v2`` the same config with
    model_version 1.1.0 (a good bundle to reload). tests/data/trained/make_trained.py writes both.
    """

    v1: Path
    v2: Path


@pytest.fixture
def demo_bundles(tmp_path_factory: pytest.TempPathFactory) -> DemoBundles:
    """The trainer-built bundles for the simulator's synthetic stream (committed; tests/support/trained.py), as
    copies of the test's own with every committed bundle beside them (a command's relative ``path`` finds them
    there): a daemon writes a bundle it put in service from another file over ``bundle.path`` (``bundle.persist``),
    and must never write over the committed files nor over another test's bundle."""
    directory = tmp_path_factory.mktemp("trained")
    for source in (committed(DEMO_V1), committed(DEMO_V2), *sorted(TRAINED.glob("*.spectrolite"))):
        shutil.copyfile(source, directory / source.name)
    return DemoBundles(directory / DEMO_V1.name, directory / DEMO_V2.name)


@pytest.fixture
def example_bundle(demo_bundles: DemoBundles) -> Path:
    """The 1.0.0 bundle."""
    return demo_bundles.v1


# ---------------------------------------------------------------------------------------------------- offline
def offline_stream(n_spectra: int, *, drift_at: int | None = None) -> dict[str, Any]:
    """Frames the simulator sends in its first session (no host commands): status, dark, white, spectra, y.

    ``VirtualSpectrometer`` is deterministic for a given config and call sequence, and the daemon sends nothing
    to the device when the device announces itself, so this is exactly what the pty carried.
    """
    from firmware_bridge.frames import Dark, Reference, Status
    from firmware_bridge.simulator import ProvokedDriftConfig, SimulatorConfig, VirtualSpectrometer

    cfg = SimulatorConfig(seed=SEED, synthetic_samples=SAMPLES, synthetic_channels=CHANNELS,
                          drift=ProvokedDriftConfig(drift_at_frame=drift_at))
    dev = VirtualSpectrometer.from_config(cfg)
    start = dev.session_start()
    status = next(f for f in start if isinstance(f, Status))
    dark = next(f for f in start if isinstance(f, Dark))
    white = next(f for f in start if isinstance(f, Reference))
    spectra, annotations = [], []
    for _ in range(n_spectra):
        s, a = dev.stream_next()
        spectra.append(s)
        annotations.append(a)
    return {"status": status, "dark": dark, "white": white, "spectra": spectra, "annotations": annotations}


def offline_line_stream(per_line: int, count: int) -> dict[str, Any]:
    """What ``spectro-sim --line-spectra per_line --count count`` sends in its first session (deterministic): status,
    dark, white, the LINE frames and their spectra (``lines``, ``spectra``)."""
    from firmware_bridge.frames import Dark, Line, Reference, Status
    from firmware_bridge.simulator import SimulatorConfig, VirtualSpectrometer

    cfg = SimulatorConfig(seed=SEED, synthetic_samples=SAMPLES, synthetic_channels=CHANNELS, count=count,
                          line_spectra=per_line)
    frames = list(VirtualSpectrometer.from_config(cfg).iter_frames())
    lines = [f for f in frames if isinstance(f, Line)]
    return {"status": next(f for f in frames if isinstance(f, Status)),
            "dark": next(f for f in frames if isinstance(f, Dark)),
            "white": next(f for f in frames if isinstance(f, Reference)),
            "lines": lines, "spectra": [s for line in lines for s in line.spectra()]}


def offline_predictions(bundle_path: Path, stream: Mapping[str, Any]) -> dict[int, np.ndarray]:
    """seq -> the bundle's prediction (``Bundle.predict_spectra``) for every spectrum of ``stream``."""
    from edge.bundle import load_bundle

    bundle = load_bundle(bundle_path)
    wl = stream["status"].wavelengths_nm()
    counts = np.stack([np.asarray(s.counts, dtype=np.float64) for s in stream["spectra"]])
    pred = np.asarray(bundle.predict_spectra(counts, dark=np.asarray(stream["dark"].counts, dtype=np.float64),
                                             reference=np.asarray(stream["white"].counts, dtype=np.float64),
                                             wavelengths=wl), dtype=np.float64)
    return {s.seq: pred[i] for i, s in enumerate(stream["spectra"])}


# ---------------------------------------------------------------------------------------------------- fakes
@dataclass
class RecordingLink:
    """A :class:`edge.daemon.Link` that keeps every message in memory (for in-process daemon tests)."""

    messages: list[tuple[Any, dict[str, Any], str | None]] = field(default_factory=list)
    started: bool = False
    stopped: bool = False
    switched: list[Any] = field(default_factory=list)
    _lock: threading.Lock = field(default_factory=threading.Lock)

    def start(self) -> None:
        self.started = True

    def publish(self, kind: Any, message: dict[str, Any], *, command: str | None = None) -> None:
        from edge.publish.schema import encode

        encode(message)  # every payload must pass its schema
        with self._lock:
            self.messages.append((kind, message, command))

    def publish_many(self, messages: Sequence[tuple[Any, dict[str, Any], str | None]]) -> list[Any]:
        from edge.errors import EdgeError
        from edge.publish.schema import encode

        errors: list[Any] = []
        for kind, message, command in messages:
            try:
                encode(message)
            except EdgeError as exc:
                errors.append(exc)
                continue
            errors.append(None)
            with self._lock:
                self.messages.append((kind, message, command))
        return errors

    def stop(self, flush_timeout_s: float) -> None:
        self.stopped = True

    def switch_broker(self, config: Any) -> None:
        self.switched.append(config)

    def stats(self) -> Mapping[str, Any]:
        return {"mqtt_connected": True, "outbox_pending_messages": 0}

    def of_kind(self, kind: str) -> list[dict[str, Any]]:
        with self._lock:
            return [m for k, m, _ in self.messages if k.value == kind]


def wait_for(predicate: Callable[[], bool], what: str, timeout_s: float = WAIT_S) -> None:
    """Poll ``predicate`` until true; fail naming ``what`` after ``timeout_s`` (a liveness deadline)."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return
        time.sleep(0.02)
    raise AssertionError(f"timed out after {timeout_s} s waiting for {what}")


@dataclass
class SimThread:
    """A :class:`firmware_bridge.simulator.Simulator` on a real pty pair, in a thread."""

    sim: Any
    thread: threading.Thread
    stop: threading.Event
    address: str


def start_sim_thread(tmp: Path, *, count: int, rate_hz: float = 0.0, drift_at: int | None = None,
                     faults: Any = None, targets: tuple[str, ...] | None = None) -> SimThread:
    from firmware_bridge.simulator import FaultConfig, ProvokedDriftConfig, PtyEndpoint, Simulator, SimulatorConfig

    cfg = SimulatorConfig(seed=SEED, synthetic_samples=SAMPLES, synthetic_channels=CHANNELS, count=count,
                          rate_hz=rate_hz, connect_delay_s=0.3, drift=ProvokedDriftConfig(drift_at_frame=drift_at),
                          faults=faults if faults is not None else FaultConfig(), targets=targets)
    sim = Simulator(cfg, PtyEndpoint(tmp / "spectrometer"))
    stop = threading.Event()
    ready = threading.Event()
    t = threading.Thread(target=sim.run, args=(stop,), kwargs={"on_ready": lambda a: ready.set()}, daemon=True)
    t.start()
    assert ready.wait(WAIT_S), "simulator did not open its pty"
    return SimThread(sim, t, stop, sim.address)


def edge_config(tmp: Path, *, port_url: str, bundle_path: Path, mqtt_port: int = 1883,
                **sections: Mapping[str, Any]) -> Any:
    """A validated :class:`edge.config.EdgeConfig` for tests (sections override the defaults)."""
    from edge.config import parse_config

    data: dict[str, Any] = {
        "device": {"site": "test-site", "line": "line-1", "device_id": "sim-01"},
        "serial": {"port_url": port_url, "read_timeout_s": 0.05, "reconnect_min_delay_s": 0.05,
                   "reconnect_max_delay_s": 0.5},
        "bundle": {"path": str(bundle_path), "watch": False, "watch_interval_s": 0.2},
        "mqtt": {"host": "127.0.0.1", "port": mqtt_port, "reconnect_min_delay_s": 1, "reconnect_max_delay_s": 2},
        "outbox": {"path": str(tmp / "outbox.sqlite"), "flush_timeout_s": 5.0},
        "metrics": {"period_s": 0.5},
    }
    for key, value in sections.items():
        data[key] = {**data.get(key, {}), **value}
    return parse_config(data, base_dir=tmp)


def iter_seqs(messages: list[dict[str, Any]]) -> Iterator[int]:
    for m in messages:
        yield int(m["seq"])


@pytest.fixture(scope="session", autouse=True)
def committed_bundles_untouched() -> Iterator[None]:
    """Fails the session if any test wrote over a committed trainer-built file (a daemon pointed at one: a bundle it
    puts in service from another file is written over ``bundle.path``); tests serve copies (:func:`demo_bundles`)."""
    import hashlib

    def digests() -> dict[str, str]:
        return {p.name: hashlib.sha256(p.read_bytes()).hexdigest() for p in sorted(TRAINED.iterdir()) if p.is_file()}

    before = digests()
    yield
    after = digests()
    changed = sorted(n for n in before.keys() | after.keys() if before.get(n) != after.get(n))
    assert not changed, f"tests changed committed files in tests/data/trained: {changed} (restore them with git)"
