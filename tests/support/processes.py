"""Real processes for end-to-end tests, started by the harness (:mod:`benchmarks.harness`) as the benchmarks and the
demo start them: ``spectro-sim`` and ``spectro-edge run`` (the systemd unit's command line) as
:class:`~benchmarks.harness.Proc`, their config by :func:`~benchmarks.harness.write_edge_config` with the tests'
identity, commands and HMAC key, and the harness's subscriber recording what the broker delivers (fixtures
``procs`` and ``subscriber``)."""

from __future__ import annotations

import os
import signal
import subprocess
from dataclasses import dataclass
from pathlib import Path
from typing import Any, Iterator, Mapping

import numpy as np
import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from benchmarks.harness.commands import daemon_command, read_first_line, simulator_command, write_edge_config
from benchmarks.harness.errors import HarnessError
from benchmarks.harness.processes import Proc, child_env, spawn
from benchmarks.harness.subscriber import Endpoint, Subscriber
from tests.support.broker import MosquittoBroker
from tests.support.daemon import CHANNELS, REPO, SAMPLES, SEED, offline_predictions, offline_stream

DEVICE = {"site": "plant-a", "line": "line-1", "device_id": "sim-01"}
BASE_TOPIC = "spectrolite/plant-a/line-1/sim-01"
#: The HMAC key of the daemons :func:`write_config` configures: tests sign their commands with it (:func:`signed`),
#: as an operator does; commands are off by default and need an HMAC when on.
HMAC_KEY = b"spectrolite-test-hmac-key-0123456789"


def signed(body: Mapping[str, Any]) -> bytes:
    """The MQTT payload of a command body signed with :data:`HMAC_KEY` (``edge.commands.sign_command``)."""
    from edge.commands import sign_command

    return sign_command(body, HMAC_KEY)


def publish_payload(port: int, name: str, payload: bytes, *, client_id: str) -> None:
    """Publish ``payload`` as it is (signed or not) to the device's ``cmd/<name>`` topic on the broker at ``port``,
    from a client of its own with ``client_id``, waiting until the broker has it (QoS 1)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=client_id)
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        c.publish(f"{BASE_TOPIC}/cmd/{name}", payload, qos=1).wait_for_publish(timeout=10)
    finally:
        c.loop_stop()
        c.disconnect()


def send_command(port: int, name: str, args: dict[str, Any], request_id: str) -> None:
    """Publish the command ``name`` with ``args``, signed (:func:`signed`), to the device's ``cmd/<name>`` topic
    on the broker at ``port``, as an operator does."""
    import paho.mqtt.publish as publish

    from edge.commands import make_command

    body = make_command(name, args, device_id=DEVICE["device_id"], request_id=request_id)
    publish.single(f"{BASE_TOPIC}/cmd/{name}", signed(body), qos=1, hostname="127.0.0.1", port=port)


def start_sim(tmp: Path, *, count: int, rate_hz: float, extra: tuple[str, ...] = ()) -> tuple[Proc, str]:
    """``spectro-sim --pty`` on synthetic spectra, kept open after ``count``; the process and its device path."""
    cmd = simulator_command(tmp / "spectrometer", count=count, rate_hz=rate_hz, seed=SEED,
                            synthetic=(SAMPLES, CHANNELS), exit_when_done=False, extra=extra)
    sim = spawn(cmd, tmp / "sim.log", stdout=subprocess.PIPE, cwd=REPO)
    try:
        return sim, read_first_line(sim.popen, "spectro-sim")
    except HarnessError as exc:
        sim.end()
        raise AssertionError(f"{exc}; its log:\n{sim.text()}") from None


def write_config(tmp: Path, *, port_url: str, bundle: Path, mqtt_port: int, drain_rate: float = 200.0,
                 name: str = "edge.toml", outbox: Mapping[str, Any] | None = None,
                 flush_timeout_s: float = 10.0, brokers: tuple[int, ...] = ()) -> Path:
    """The harness's daemon config (:func:`~benchmarks.harness.write_edge_config`) on ``port_url`` and a local
    broker, as the tests' device (:data:`DEVICE`) with the daemon's MQTT session defaults (client id
    ``spectrolite-<device_id>``, a persistent session); ``outbox`` adds keys to the ``[outbox]`` table;
    ``brokers`` (ports on 127.0.0.1) lists several brokers in ``mqtt.brokers`` instead of ``mqtt_port``.

    Commands are on, each to be signed with :data:`HMAC_KEY` (written to ``tmp/hmac.key``); the bundle is neither
    watched nor persisted.
    """
    (tmp / "state").mkdir(exist_ok=True)
    key = tmp / "hmac.key"
    key.write_bytes(HMAC_KEY)
    mqtt_keys: dict[str, Any] = {"client_id": "", "clean_session": False}
    if brokers:
        mqtt_keys["brokers"] = [f"127.0.0.1:{p}" for p in brokers]
    return write_edge_config(
        tmp / name, port_url=port_url, bundle=bundle, mqtt_port=mqtt_port, forward_annotations=None,
        bundle_options={"persist": False}, device=DEVICE, mqtt=mqtt_keys,
        outbox={"path": tmp / "state" / "outbox.sqlite", "drain_rate_msgs_per_s": drain_rate,
                "flush_timeout_s": flush_timeout_s, **(outbox or {})},
        commands={"enabled": True, "hmac_key_path": key})


def start_daemon(tmp: Path, config: Path, n: int = 0, *, env: Mapping[str, str] | None = None) -> Proc:
    """The daemon as production starts it: :func:`~benchmarks.harness.daemon_command` (``spectro-edge run
    --config``, the systemd unit's command line), its stderr in ``tmp/daemon-<n>.log``; ``env`` adds variables."""
    return spawn(daemon_command(config), tmp / f"daemon-{n}.log", cwd=REPO, env=child_env(**(env or {})))


# ------------------------------------------------------------------------------------------------ subscriber
@dataclass(frozen=True)
class LocalBroker:
    """A broker listening on 127.0.0.1:``port`` that the test did not start as a :class:`MosquittoBroker` (a
    RabbitMQ node)."""

    port: int
    host: str = "127.0.0.1"


def device_subscriber(broker: Endpoint, client_id: str = "e2e-subscriber") -> Subscriber:
    """The harness's :class:`~benchmarks.harness.subscriber.Subscriber` (the one of the demo and the benchmarks) on
    the tests' device (:data:`BASE_TOPIC`), with a persistent session: what is published while it is away (a broker
    restart) arrives when it is back.  Returns once subscribed (the broker's SUBACK)."""
    return Subscriber(broker, base=BASE_TOPIC, client_id=client_id, clean_session=False)


@pytest.fixture
def subscriber(mosquitto_broker: MosquittoBroker) -> Iterator[Subscriber]:
    """:func:`device_subscriber` on the test's broker, subscribed; closed at teardown."""
    sub = device_subscriber(mosquitto_broker)
    try:
        yield sub
    finally:
        sub.close()


@pytest.fixture
def procs() -> Iterator[list[Proc]]:
    """Every process a test starts; all ended at teardown (SIGTERM, then SIGKILL)."""
    started: list[Proc] = []
    try:
        yield started
    finally:
        for p in reversed(started):
            p.end(signal.SIGTERM, timeout_s=15)


# ------------------------------------------------------------------------------------------------ checks
#: Exact equality of the published values with the offline run (same runtime, same float32 inputs).
VALUE_ATOL = 0.0
#: Heavy modules that must never be mapped into the daemon process.
HEAVY_MARKERS = ("/tensorflow/", "/keras/", "/sklearn/", "/scipy/")


def heavy_libraries_mapped(pid: int) -> list[str]:
    """The TensorFlow/Keras/scikit-learn/SciPy files mapped into process ``pid`` (none for the daemon)."""
    maps = Path(f"/proc/{pid}/maps").read_text()
    return sorted({line.split()[-1] for line in maps.splitlines() if any(m in line for m in HEAVY_MARKERS)})


def assert_equal_offline(sub: Subscriber, bundle: Path, n: int) -> None:
    """``sub`` received exactly the ``n`` predictions of :func:`~tests.support.daemon.offline_stream`, each with
    the values of running ``bundle`` offline on the same frames."""
    stream = offline_stream(n)
    expected = offline_predictions(bundle, stream)
    missing = sorted(set(expected) - set(sub.predictions))
    extra = sorted(set(sub.predictions) - set(expected))
    assert not missing and not extra, f"missing {missing[:10]}, extra {extra[:10]}"
    for seq, body in sub.predictions.items():
        values = np.array([v["value"] for v in body["values"]])
        np.testing.assert_allclose(values, expected[seq], rtol=0, atol=VALUE_ATOL)


def holds_open(pid: int, link: str | Path) -> bool:
    """True when process ``pid`` has the pty behind the simulator's ``link`` open (Linux ``/proc``)."""
    target = os.path.realpath(link)
    try:
        fds = os.listdir(f"/proc/{pid}/fd")
    except OSError:
        return False
    for fd in fds:
        try:
            if os.readlink(f"/proc/{pid}/fd/{fd}") == target:
                return True
        except OSError:
            continue
    return False
