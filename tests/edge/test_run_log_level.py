"""``spectro-edge run`` as the systemd unit starts it: the tests' command line is the unit's ``ExecStart`` (the
installed console script), and ``log_level`` in the configuration sets what it logs (the production entry point
read the file and kept logging at INFO whatever it said: failed before the fix)."""

from __future__ import annotations

import configparser
import re
import shlex
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path

import pytest

from benchmarks.harness.commands import daemon_command
from benchmarks.harness.processes import child_env
from edge.config_example import render_config
from tests.support.daemon import REPO

#: A line of the daemon's own logging at INFO (the LiteRT runtime's "INFO: Created ... delegate" line is not).
_INFO_LINE = re.compile(r"^\S+ \S+ INFO ", re.M)
#: Logged at WARNING while no broker answers: the daemon is up and past its start.
_RUNNING = "cannot connect to the MQTT broker"


def _closed_port() -> int:
    with socket.socket() as s:
        s.bind(("127.0.0.1", 0))
        return int(s.getsockname()[1])  # nothing listens once the socket is closed


def _run_until_running(tmp: Path, bundle: Path, log_level: str) -> tuple[str, list[str], int]:
    """Start :func:`daemon_command` on a config at ``log_level``, wait until it is up, SIGTERM it: its log, the
    command line it ran with (``/proc/<pid>/cmdline``) and its exit code."""
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
                                env=child_env(), stdout=subprocess.DEVNULL, stderr=err)
        try:
            deadline = time.monotonic() + 60.0
            while _RUNNING not in log.read_text(errors="replace"):
                if proc.poll() is not None or time.monotonic() > deadline:
                    pytest.fail(f"spectro-edge run did not come up (exit {proc.poll()}):\n{log.read_text()}")
                time.sleep(0.1)
            argv = Path(f"/proc/{proc.pid}/cmdline").read_bytes().rstrip(b"\0").decode().split("\0")
        finally:
            proc.send_signal(signal.SIGTERM)
            proc.wait(timeout=30)
    return log.read_text(errors="replace"), argv, proc.returncode


def test_the_daemon_starts_as_the_systemd_unit_starts_it_the_installed_spectro_edge_script(
    tmp_path: Path, example_bundle: Path,
) -> None:
    """The tests, the benchmarks and the demo run the unit's ``ExecStart`` (``<venv>/bin/spectro-edge run --config
    FILE``), and that installed script itself comes up and stops cleanly on SIGTERM (``KillSignal``)."""
    script = Path(sys.executable).parent / "spectro-edge"
    if not script.is_file():
        pytest.skip(f"expected the spectro-edge console script beside {sys.executable} (pip install -e '.[edge]')")
    unit = configparser.ConfigParser(strict=False, interpolation=None)
    unit.read_string((REPO / "deploy" / "spectrolite-edge.service").read_text(encoding="utf-8"))
    program, *args, _ = shlex.split(unit["Service"]["ExecStart"])
    config = tmp_path / "edge-INFO.toml"
    assert daemon_command(config) == [str(script), *args, str(config)]
    assert Path(program).name == script.name

    log, argv, code = _run_until_running(tmp_path, example_bundle, "INFO")
    assert str(script) in argv[:2] and argv[-3:] == ["run", "--config", str(config)], argv  # [python,] script, ...
    assert code == 0, log


def test_spectro_edge_run_logs_at_the_configured_level(tmp_path: Path, example_bundle: Path) -> None:
    quiet, _, _ = _run_until_running(tmp_path, example_bundle, "WARNING")
    assert " WARNING edge." in quiet and not _INFO_LINE.search(quiet), quiet
    chatty, _, _ = _run_until_running(tmp_path, example_bundle, "INFO")  # the same run at INFO does log INFO lines
    assert _INFO_LINE.search(chatty), chatty
