"""``log_level`` in the configuration sets what ``spectro-edge run`` (the systemd unit's command line) logs: the
production entry point read the file and kept logging at INFO whatever it said (failed before the fix)."""

from __future__ import annotations

import re
import signal
import socket
import subprocess
import time
from pathlib import Path

import pytest

from benchmarks.harness.commands import daemon_command
from edge.config_example import render_config
from tests.support.daemon import REPO
from tests.support.processes import process_env

#: A line of the daemon's own logging at INFO (the LiteRT runtime's "INFO: Created ... delegate" line is not).
_INFO_LINE = re.compile(r"^\S+ \S+ INFO ", re.M)
#: Logged at WARNING while no broker answers: the daemon is up and past its start.
_RUNNING = "cannot connect to the MQTT broker"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def _run_until_running(tmp: Path, bundle: Path, log_level: str) -> str:
    config = tmp / f"edge-{log_level}.toml"
    config.write_text(render_config({
        "log_level": log_level,
        "device": {"site": "plant-a", "line": "line-1", "device_id": "sim-01"},
        "serial": {"port_url": "loop://"},
        "bundle": {"path": bundle, "watch": False, "persist": False},
        "mqtt": {"host": "127.0.0.1", "port": _closed_port(), "tls": {"enabled": False}},
        "outbox": {"path": tmp / f"outbox-{log_level}.sqlite"}}), encoding="utf-8")
    log = tmp / f"daemon-{log_level}.log"
    with open(log, "wb") as err:
        proc = subprocess.Popen(daemon_command(config), cwd=REPO,
                                env=process_env(), stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 60.0
            while _RUNNING not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"spectro-edge run did not come up (exit {proc.poll()}):\n{log.read_text()}")
                time.sleep(0.1)
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return log.read_text(errors="replace")


def test_spectro_edge_run_logs_at_the_configured_level(tmp_path: Path, example_bundle: Path) -> None:
    quiet = _run_until_running(tmp_path, example_bundle, "WARNING")
    assert " WARNING edge." in quiet and not _INFO_LINE.search(quiet), quiet
    chatty = _run_until_running(tmp_path, example_bundle, "INFO")  # the same run at INFO does log INFO lines
    assert _INFO_LINE.search(chatty), chatty
