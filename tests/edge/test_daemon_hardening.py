"""Issue 18 with real processes: ``spectro-sim`` on a pty -> ``spectro-edge run`` -> a real mosquitto -> a paho
subscriber, attacked the way a hostile plant network would.

* An oversized message on the daemon's command topic (finding 1): over MQTT 5 the daemon announces a Maximum Packet
  Size, the broker drops the message, the daemon keeps delivering, even under a memory limit that the message alone
  would exceed.  Over MQTT 3.1.1 the broker's ``max_packet_size`` is the bound; without it the message kills paho's
  network thread under that limit, and the daemon's watchdog then ends the process with a non-zero exit code (so
  systemd restarts it) instead of predicting into an outbox nothing drains.
* systemd's watchdog: ``READY=1`` and ``WATCHDOG=1`` reach ``$NOTIFY_SOCKET`` while the daemon is healthy.

The memory limit is ``RLIMIT_AS`` set on the running daemon (``prlimit``) a little above what it has mapped, as
systemd's ``MemoryMax`` would stop it.
"""

from __future__ import annotations

import resource
import secrets
import signal
import socket
import threading
from pathlib import Path
from typing import Iterator

import paho.mqtt.client as mqtt
import pytest
from paho.mqtt.enums import CallbackAPIVersion

from tests.support.broker import MosquittoBroker
from tests.support.daemon import DemoBundles, wait_for
from tests.support.processes import (
    BASE_TOPIC,
    Proc,
    Subscriber,
    device_subscriber,
    start_daemon,
    start_sim,
    write_config,
)

#: Size of the hostile command message: tens of MB, far above the 4 KiB command limit.
OVERSIZED_BYTES = 100 * 1024 * 1024
#: Address space the daemon may still map once the limit is set (well below OVERSIZED_BYTES), bytes.
HEADROOM_BYTES = 48 * 1024 * 1024
#: Predictions that must arrive after the oversized message for the daemon to count as still delivering.
AFTER = 50


def _start(tmp: Path, bundle: Path, broker: MosquittoBroker, procs: list[Proc], *, protocol: str,
           env: dict[str, str] | None = None) -> Proc:
    """Simulator at 50 Hz (endless) and a daemon speaking ``protocol`` to ``broker``."""
    sim, path = start_sim(tmp, count=0, rate_hz=50.0)
    procs.append(sim)
    cfg = write_config(tmp, port_url=path, bundle=bundle, mqtt_port=broker.port)
    text = cfg.read_text(encoding="utf-8")
    cfg.write_text(text.replace("[mqtt]\n", f'[mqtt]\nprotocol = "{protocol}"\n', 1), encoding="utf-8")
    daemon = start_daemon(tmp, cfg, env=env)
    procs.append(daemon)
    return daemon


def _limit_memory(pid: int) -> None:
    """Cap the daemon's address space at what it maps now plus HEADROOM_BYTES (RLIMIT_AS)."""
    status = Path(f"/proc/{pid}/status").read_text()
    vm_kb = int(next(line.split()[1] for line in status.splitlines() if line.startswith("VmSize:")))
    _soft, hard = resource.prlimit(pid, resource.RLIMIT_AS)
    resource.prlimit(pid, resource.RLIMIT_AS, (vm_kb * 1024 + HEADROOM_BYTES, hard))


def _publish_oversized(port: int, topic: str) -> None:
    """Publish OVERSIZED_BYTES at QoS 1 as an MQTT 3.1.1 client; returns when the broker acknowledged it or dropped
    the connection (a broker with ``max_packet_size`` refuses it)."""
    c = mqtt.Client(CallbackAPIVersion.VERSION2, client_id=f"attacker-{secrets.token_hex(4)}")
    gone = threading.Event()
    c.on_disconnect = lambda *a: gone.set()
    c.connect("127.0.0.1", port)
    c.loop_start()
    try:
        info = c.publish(topic, b"\x00" * OVERSIZED_BYTES, qos=1)
        wait_for(lambda: info.is_published() or gone.is_set(), "the broker to take or refuse the message")
    finally:
        c.loop_stop()
        c.disconnect()


@pytest.fixture
def notify_socket() -> Iterator[tuple[str, list[bytes]]]:
    """An abstract AF_UNIX datagram socket standing in for systemd's $NOTIFY_SOCKET; collects what arrives."""
    name = f"@spectrolite-test-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(0.2)
    got: list[bytes] = []
    stop = threading.Event()

    def collect() -> None:
        while not stop.is_set():
            try:
                got.append(sock.recv(4096))
            except OSError:
                continue

    t = threading.Thread(target=collect, daemon=True)
    t.start()
    try:
        yield name, got
    finally:
        stop.set()
        t.join(timeout=5)
        sock.close()


def test_mqtt5_oversized_command_is_dropped_by_the_broker_and_the_daemon_keeps_delivering(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc], notify_socket: tuple[str, list[bytes]],
) -> None:
    address, notes = notify_socket
    daemon = _start(tmp_path, demo_bundles.v1, mosquitto_broker, procs, protocol="5",
                    env={"NOTIFY_SOCKET": address, "WATCHDOG_USEC": "1000000"})
    wait_for(lambda: subscriber.count() >= 20 or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()
    # systemd's protocol: READY once started, then WATCHDOG=1 pings while healthy.
    wait_for(lambda: notes.count(b"WATCHDOG=1") >= 3, "watchdog pings on $NOTIFY_SOCKET")
    assert b"READY=1" in notes

    _limit_memory(daemon.popen.pid)
    _publish_oversized(mosquitto_broker.port, f"{BASE_TOPIC}/cmd/capture_dark")
    n_then = subscriber.count()
    wait_for(lambda: subscriber.count() >= n_then + AFTER or not daemon.alive(),
             f"{AFTER} predictions after the oversized message")
    assert daemon.alive(), daemon.text()
    pings = notes.count(b"WATCHDOG=1")
    wait_for(lambda: notes.count(b"WATCHDOG=1") > pings, "watchdog pings after the oversized message")
    assert "died" not in daemon.text() and "MemoryError" not in daemon.text(), daemon.text()
    assert daemon.end(signal.SIGTERM) == 0, daemon.text()
    assert b"STOPPING=1" in notes


def test_mqtt311_broker_max_packet_size_keeps_the_daemon_delivering(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_factory, procs: list[Proc],  # type: ignore[no-untyped-def]  # pytest fixtures and parameters, untyped
) -> None:
    """The documented 3.1.1 defence (docs/security.md): mosquitto's ``max_packet_size`` refuses the publish."""
    broker = mosquitto_factory(extra_conf="max_packet_size 65536")
    sub = device_subscriber(broker, client_id="hardening-subscriber")
    try:
        daemon = _start(tmp_path, demo_bundles.v1, broker, procs, protocol="3.1.1")
        wait_for(lambda: sub.count() >= 20 or not daemon.alive(), "first predictions")
        _limit_memory(daemon.popen.pid)
        _publish_oversized(broker.port, f"{BASE_TOPIC}/cmd/capture_dark")
        n_then = sub.count()
        wait_for(lambda: sub.count() >= n_then + AFTER or not daemon.alive(),
                 f"{AFTER} predictions after the oversized message")
        assert daemon.alive(), daemon.text()
        assert daemon.end(signal.SIGTERM) == 0, daemon.text()
    finally:
        sub.close()


def test_mqtt311_dead_network_thread_ends_the_daemon_with_a_nonzero_exit(
    tmp_path: Path, demo_bundles: DemoBundles, mosquitto_broker: MosquittoBroker, subscriber: Subscriber,
    procs: list[Proc],
) -> None:
    """No broker limit, MQTT 3.1.1: paho buffers the whole message and its thread dies of MemoryError under the
    limit; the watchdog must end the process (exit code 2) so that the service manager restarts it."""
    daemon = _start(tmp_path, demo_bundles.v1, mosquitto_broker, procs, protocol="3.1.1")
    wait_for(lambda: subscriber.count() >= 20 or not daemon.alive(), "first predictions")
    assert daemon.alive(), daemon.text()
    _limit_memory(daemon.popen.pid)
    _publish_oversized(mosquitto_broker.port, f"{BASE_TOPIC}/cmd/capture_dark")
    wait_for(lambda: not daemon.alive(), "the daemon to exit after its MQTT network thread died")
    assert daemon.popen.returncode == 2, daemon.text()
    assert "watchdog: the MQTT network thread (paho) died" in daemon.text(), daemon.text()
