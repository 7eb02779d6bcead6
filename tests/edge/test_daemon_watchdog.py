"""The daemon's watchdog (:meth:`edge.daemon.Daemon.health`) and the sd_notify client (:mod:`edge.sdnotify`), in
process: a real daemon on ``loop://`` with a recording link, a real AF_UNIX datagram socket for $NOTIFY_SOCKET.

The end-to-end cases (a dead paho thread ends ``spectro-edge run`` with exit code 2, pings reach
$NOTIFY_SOCKET) are in tests/edge/test_daemon_hardening.py.
"""

from __future__ import annotations

import secrets
import socket
import threading
from pathlib import Path
from typing import Any

import pytest

import edge.daemon as daemon_mod
import edge.daemon.app
from edge.bundle import load_bundle
from edge.daemon import Daemon
from edge.sdnotify import SdNotifier
from firmware_bridge.transport import SerialTransport
from tests.support.daemon import RecordingLink, edge_config, wait_for


class BreakableLink(RecordingLink):
    """A recording link whose MQTT side can be declared dead."""

    broken: str | None = None

    def failure(self) -> str | None:
        return self.broken


def _daemon(tmp: Path, bundle: Path) -> tuple[Daemon, BreakableLink]:
    cfg = edge_config(tmp, port_url="loop://", bundle_path=bundle)
    link = BreakableLink()
    daemon = Daemon(cfg, load_bundle(bundle), SerialTransport("loop://", read_timeout_s=0.05), link)
    return daemon, link


def test_health_names_a_dead_link_and_a_stuck_inference_loop(
    tmp_path: Path, example_bundle: Path, monkeypatch: pytest.MonkeyPatch,
) -> None:
    daemon, link = _daemon(tmp_path, example_bundle)
    release = threading.Event()
    entered = threading.Event()

    def stuck(item: Any) -> None:
        entered.set()
        release.wait(60)

    daemon.start()
    try:
        assert daemon.health() is None
        link.broken = "the MQTT network thread (paho) died"
        assert daemon.health() == "the MQTT network thread (paho) died"
        link.broken = None

        monkeypatch.setattr(edge.daemon.app, "INFERENCE_STALL_S", 0.5)
        monkeypatch.setattr(daemon.inference, "handle", stuck)
        daemon.frames.put(daemon_mod._Received(object(), 0), droppable=False)
        wait_for(entered.is_set, "the inference thread to take the frame")
        wait_for(lambda: daemon.health() is not None, "the watchdog to see the stuck loop")
        assert "inference loop has not come round" in str(daemon.health())
        release.set()
        wait_for(lambda: daemon.health() is None, "the loop to come round again")
    finally:
        release.set()
        daemon.stop()
    assert daemon.health() is None  # a stopping daemon is not unhealthy


def test_sd_notify_reaches_a_datagram_socket_and_pings_at_half_the_timeout() -> None:
    name = f"@spectrolite-unit-{secrets.token_hex(6)}"
    sock = socket.socket(socket.AF_UNIX, socket.SOCK_DGRAM)
    sock.bind("\0" + name[1:])
    sock.settimeout(5)
    now = [100.0]
    try:
        n = SdNotifier(name, watchdog_usec=4_000_000, clock=lambda: now[0])
        assert n.watchdog_interval_s == 2.0
        assert n.notify("READY=1") and sock.recv(64) == b"READY=1"
        assert n.ping_watchdog() and sock.recv(64) == b"WATCHDOG=1"
        now[0] += 1.0
        assert not n.ping_watchdog()  # within half the timeout
        now[0] += 1.0
        assert n.ping_watchdog() and sock.recv(64) == b"WATCHDOG=1"
        n.close()
    finally:
        sock.close()
    other_pid = SdNotifier.from_environ({"NOTIFY_SOCKET": name, "WATCHDOG_USEC": "1000000", "WATCHDOG_PID": "1"})
    assert other_pid.enabled and other_pid.watchdog_interval_s is None  # the watchdog is another process's
