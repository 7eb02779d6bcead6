"""A throw-away ``mosquitto`` broker for benchmarks: started on a free local port, stopped and cleaned up after.

The test suite has a richer helper (``tests/support/broker.py``: TLS, passwords, restarts) built on pytest; the
benchmarks must run from an installed package without the tests, so this is the few lines they need.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

__all__ = ["Mosquitto", "find_free_port", "mosquitto_executable"]

#: Deadline for the broker to accept TCP connections (a failure to start, not a figure).
READY_TIMEOUT_S = 15.0


def mosquitto_executable() -> str:
    """Path of the ``mosquitto`` binary (PATH, then the sbin folders); raises FileNotFoundError naming the fix."""
    found = shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin")
    if found is None:
        raise FileNotFoundError("expected the 'mosquitto' broker on PATH (apt install mosquitto), found none")
    return found


def find_free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (chosen by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])


class Mosquitto:
    """One mosquitto process on ``127.0.0.1:<free port>``, without persistence unless ``config`` sets it; a context
    manager.

    Parameters
    ----------
    workdir : Path, optional
        Folder for the config and the log (default: a temporary folder removed on :meth:`stop`).
    tcp_nodelay : bool
        Write ``set_tcp_nodelay true`` (default): mosquitto then sends each message to subscribers at once.
        With mosquitto's default (Nagle's algorithm on), a small message can wait for the subscriber's delayed
        TCP acknowledgement, up to 40 ms on Linux: at 100 messages/s that put a 25-40 ms stall into about one
        message in a hundred (measured: p99 28 ms against 4 ms).  docs/mqtt.md recommends the setting.
    config : callable(broker) -> str, optional
        Writes the whole configuration instead (for a shipped file localised to this broker's ``port`` and
        ``workdir``, :func:`benchmarks.bridge.localise`); ``tcp_nodelay`` is then ignored.  With a ``workdir``
        given, :meth:`stop` keeps it, so a :meth:`start` after it finds the persistence database again.
    """

    def __init__(self, workdir: Path | None = None, *, tcp_nodelay: bool = True,
                 config: Callable[[Mosquitto], str] | None = None) -> None:
        self.tcp_nodelay = tcp_nodelay
        self._config = config
        self._own = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="spectro-bench-mqtt-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = find_free_port()
        self.log_path = self.workdir / "mosquitto.log"
        self._proc: subprocess.Popen[bytes] | None = None

    @property
    def pid(self) -> int | None:
        """Process id of the running broker."""
        return None if self._proc is None else self._proc.pid

    def start(self) -> Mosquitto:
        """Write the config, start mosquitto and wait until it accepts connections."""
        conf = self.workdir / "mosquitto.conf"
        lines = [f"listener {self.port} {self.host}", "allow_anonymous true", "persistence false",
                 f"log_dest file {self.log_path}", "log_type error", "log_type warning",
                 "max_queued_messages 1000000", "max_inflight_messages 100",
                 f"set_tcp_nodelay {'true' if self.tcp_nodelay else 'false'}"]
        if hasattr(os, "geteuid") and os.geteuid() == 0:
            lines.append("user root")  # otherwise mosquitto switches to 'mosquitto' and cannot write its log
        conf.write_text(self._config(self) if self._config is not None else "\n".join(lines) + "\n",
                        encoding="utf-8")
        self._proc = subprocess.Popen([mosquitto_executable(), "-c", str(conf)], stdout=subprocess.DEVNULL,
                                      stderr=subprocess.PIPE)
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start: {err.strip()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        self.stop()
        raise RuntimeError(f"mosquitto did not listen on {self.host}:{self.port} within {READY_TIMEOUT_S} s")

    def stop(self) -> None:
        """SIGTERM, wait, and remove the temporary folder (idempotent)."""
        proc, self._proc = self._proc, None
        if proc is not None:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(timeout=10)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait(timeout=10)
            if proc.stderr is not None:
                proc.stderr.close()
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()
