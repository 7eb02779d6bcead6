"""``mosquitto`` as every part of the project starts it: the harness's broker (:func:`start_broker`), the
benchmarks' (:mod:`benchmarks.bridge`, :mod:`benchmarks.soak`, :mod:`benchmarks.throughput`) and the tests'
(``tests/support/broker.py`` adds TLS, passwords and an ACL on top of :class:`Mosquitto`).

One configuration generator (:func:`mosquitto_conf`: a listener on ``127.0.0.1``, the log, queue limits,
``set_tcp_nodelay``, persistence) and one process (:class:`Mosquitto`: started with a readiness wait, stopped
gracefully or abruptly, restarted on the same port).  Waiting for the broker to listen is a readiness poll with a
generous deadline, not a timing assertion.  Standard library only: the edge-only test venv imports it.
"""

from __future__ import annotations

import os
import shutil
import signal
import socket
import subprocess
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path

from benchmarks.harness.processes import free_port

__all__ = ["Mosquitto", "READY_TIMEOUT_S", "find_mosquitto", "mosquitto_conf", "mosquitto_executable"]

#: Deadline for a started broker to accept TCP connections (a failure to start, not a speed goal).
READY_TIMEOUT_S = 15.0


def find_mosquitto() -> str | None:
    """Path of a ``mosquitto`` executable on PATH or in the usual sbin folders, or None."""
    return shutil.which("mosquitto") or shutil.which("mosquitto", path="/usr/sbin:/usr/local/sbin:/opt/homebrew/sbin")


def mosquitto_executable() -> str:
    """Path of the ``mosquitto`` binary; raises FileNotFoundError naming the fix."""
    found = find_mosquitto()
    if found is None:
        raise FileNotFoundError("expected the 'mosquitto' broker on PATH or in /usr/sbin (apt install mosquitto), "
                                "found none")
    return found


def mosquitto_conf(port: int, *, host: str = "127.0.0.1", log_dest: str = "stderr",
                   log_types: Sequence[str] = ("error", "warning"), max_queued_messages: int = 1_000_000,
                   max_inflight_messages: int | None = None, tcp_nodelay: bool | None = True,
                   persistence_dir: Path | None = None) -> list[str]:
    """Lines of a mosquitto.conf: one listener on ``host:port``, anonymous access unless the caller adds more.

    ``log_dest`` is ``stderr`` or ``file <path>``; ``tcp_nodelay`` None leaves mosquitto's default (Nagle's
    algorithm on; see docs/mqtt.md); ``persistence_dir`` keeps retained messages, sessions and queued QoS>0
    messages there across restarts (autosaved every second), None runs without persistence.  As root, the broker
    stays root (otherwise it switches to the 'mosquitto' user and cannot write its folder).
    """
    lines = [f"listener {port} {host}", f"log_dest {log_dest}", *(f"log_type {t}" for t in log_types),
             "connection_messages true", f"max_queued_messages {max_queued_messages}"]
    if max_inflight_messages is not None:
        lines.append(f"max_inflight_messages {max_inflight_messages}")
    if tcp_nodelay is not None:
        lines.append(f"set_tcp_nodelay {'true' if tcp_nodelay else 'false'}")
    if hasattr(os, "geteuid") and os.geteuid() == 0:
        lines.append("user root")
    if persistence_dir is not None:
        lines += ["persistence true", f"persistence_location {persistence_dir}/", "autosave_interval 1"]
    else:
        lines.append("persistence false")
    return lines


class Mosquitto:
    """One mosquitto process on ``127.0.0.1:<port>`` with a generated configuration in ``workdir``; a context
    manager.

    Parameters
    ----------
    workdir : Path, optional
        Folder for the config, the log and the persistence database (default: a temporary folder removed on
        :meth:`stop`).  With a ``workdir`` given, :meth:`stop` keeps it, so a :meth:`start` after it finds the
        persistence database again.
    port : int, optional
        Listener port (default: a free one, kept across restarts).
    tcp_nodelay : bool or None
        Write ``set_tcp_nodelay true`` (default): mosquitto then sends each message to subscribers at once.
        With mosquitto's default (Nagle's algorithm on, None here), a small message can wait for the subscriber's
        delayed TCP acknowledgement, up to 40 ms on Linux: at 100 messages/s that put a 25-40 ms stall into about
        one message in a hundred (measured: p99 28 ms against 4 ms).  docs/mqtt.md recommends the setting.
    persistence : bool
        Keep retained messages, sessions and queued QoS>0 messages in ``workdir`` across restarts.
    max_queued_messages : int
        Messages queued per client session.
    log_types : sequence of str
        What mosquitto logs to ``mosquitto.log``.
    extra_conf : str
        Lines appended to the configuration.
    config : callable(broker) -> str, optional
        Writes the whole configuration instead (for a shipped file localised to this broker's ``port`` and
        ``workdir``, :func:`benchmarks.bridge.localise`); the options above are then ignored.
    """

    def __init__(self, workdir: Path | None = None, *, port: int | None = None, tcp_nodelay: bool | None = True,
                 persistence: bool = False, max_queued_messages: int = 1_000_000,
                 log_types: Sequence[str] = ("error", "warning"), extra_conf: str = "",
                 config: Callable[[Mosquitto], str] | None = None) -> None:
        self._own = workdir is None
        self.workdir = Path(tempfile.mkdtemp(prefix="spectro-bench-mqtt-")) if workdir is None else Path(workdir)
        self.workdir.mkdir(parents=True, exist_ok=True)
        self.host = "127.0.0.1"
        self.port = port if port is not None else free_port()
        self.tcp_nodelay = tcp_nodelay
        self.persistence = persistence
        self.max_queued_messages = max_queued_messages
        self.log_types = tuple(log_types)
        self.extra_conf = extra_conf
        self._config = config
        self.log_path = self.workdir / "mosquitto.log"
        self.conf_path = self.workdir / "mosquitto.conf"
        self._proc: subprocess.Popen[bytes] | None = None
        #: How many times the process was started.
        self.starts = 0

    # ----------------------------------------------------------------------------------------------- config
    def conf_lines(self) -> list[str]:
        """The generated configuration (:func:`mosquitto_conf` and :meth:`access_lines`, then ``extra_conf``)."""
        lines = mosquitto_conf(self.port, host=self.host, log_dest=f"file {self.log_path}", log_types=self.log_types,
                               max_queued_messages=self.max_queued_messages, max_inflight_messages=100,
                               tcp_nodelay=self.tcp_nodelay,
                               persistence_dir=self.workdir if self.persistence else None)
        lines += self.access_lines()
        if self.extra_conf:
            lines.append(self.extra_conf)
        return lines

    def access_lines(self) -> list[str]:
        """Who may connect: anyone (a subclass adds TLS, passwords, an ACL)."""
        return ["allow_anonymous true"]

    # -------------------------------------------------------------------------------------------- lifecycle
    @property
    def pid(self) -> int | None:
        """Process id of the running broker."""
        return None if self._proc is None else self._proc.pid

    @property
    def running(self) -> bool:
        return self._proc is not None and self._proc.poll() is None

    def start(self) -> Mosquitto:
        """Write the config, start mosquitto and wait until it accepts connections (nothing when it runs)."""
        if self.running:
            return self
        text = self._config(self) if self._config is not None else "\n".join(self.conf_lines()) + "\n"
        self.conf_path.write_text(text, encoding="utf-8")
        self._proc = subprocess.Popen([mosquitto_executable(), "-c", str(self.conf_path)],
                                      stdout=subprocess.DEVNULL, stderr=subprocess.PIPE)
        self.starts += 1
        deadline = time.monotonic() + READY_TIMEOUT_S
        while time.monotonic() < deadline:
            if self._proc.poll() is not None:
                err = self._proc.stderr.read().decode(errors="replace") if self._proc.stderr else ""
                self._proc = None
                raise RuntimeError(f"mosquitto exited at start: {err.strip()}\n{self.log()}")
            try:
                with socket.create_connection((self.host, self.port), timeout=0.5):
                    return self
            except OSError:
                time.sleep(0.05)
        message = f"mosquitto did not listen on {self.host}:{self.port} within {READY_TIMEOUT_S} s\n{self.log()}"
        self.kill()
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)
        raise RuntimeError(message)

    def stop(self) -> None:
        """Stop gracefully (SIGTERM: mosquitto saves its persistence database), wait for the exit, and remove the
        temporary folder (idempotent)."""
        self._end(signal.SIGTERM)
        if self._own:
            shutil.rmtree(self.workdir, ignore_errors=True)

    def kill(self) -> None:
        """Stop abruptly (SIGKILL): state since the last autosave is lost, as in a crash."""
        self._end(signal.SIGKILL)

    def _end(self, sig: signal.Signals) -> None:
        proc, self._proc = self._proc, None
        if proc is None:
            return
        if proc.poll() is None:
            proc.send_signal(sig)
            try:
                proc.wait(timeout=10)
            except subprocess.TimeoutExpired:
                proc.kill()
                proc.wait(timeout=10)
        if proc.stderr is not None:
            proc.stderr.close()

    def restart(self, *, port: int | None = None) -> Mosquitto:
        """Stop gracefully and start again (on ``port`` when given, else the same port)."""
        self.stop()
        if port is not None:
            self.port = port
        return self.start()

    def close(self) -> None:
        """Stop the process if it runs (idempotent)."""
        self.stop()

    def __enter__(self) -> Mosquitto:
        return self.start()

    def __exit__(self, *exc: object) -> None:
        self.stop()

    def log(self) -> str:
        """The broker's log so far (for failure messages)."""
        try:
            return self.log_path.read_text(errors="replace")
        except OSError:
            return ""
