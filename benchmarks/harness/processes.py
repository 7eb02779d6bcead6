"""Child processes of a harness run: started with their log files, ended by their own handles, and ports to wait on.

Every process is started through :class:`Processes` and ended by its own handle (SIGTERM, then SIGKILL after a
grace period); nothing here ends a process it did not start.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import IO, Any

from benchmarks.harness.errors import HarnessError
from benchmarks.harness.settings import START_TIMEOUT_S, STOP_GRACE_S

__all__ = ["Processes", "child_env", "end_process", "free_port", "repo_root", "wait_for", "wait_port"]

log = logging.getLogger(__name__)


def repo_root() -> Path:
    """Folder holding ``benchmarks/`` (the checkout, or site-packages when installed)."""
    return Path(__file__).resolve().parents[2]


def child_env(**extra: str) -> dict[str, str]:
    """Environment of the child processes: unbuffered output, one BLAS thread, the checkout on PYTHONPATH."""
    env = dict(os.environ, PYTHONUNBUFFERED="1", OMP_NUM_THREADS=os.environ.get("OMP_NUM_THREADS", "1"))
    env["PYTHONPATH"] = os.pathsep.join(p for p in (str(repo_root()), os.environ.get("PYTHONPATH", "")) if p)
    env.update(extra)
    return env


def end_process(proc: subprocess.Popen[Any] | None, grace_s: float = STOP_GRACE_S) -> int | None:
    """SIGTERM ``proc`` (one this harness started), wait ``grace_s``, then SIGKILL; returns its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        proc.send_signal(signal.SIGTERM)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)
    return int(proc.returncode)


class Processes:
    """Child processes of one run, each with its log file; :meth:`stop_all` ends them in reverse order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []
        self._logs: list[IO[bytes]] = []

    def start(self, name: str, cmd: Sequence[str], log_path: Path, *, stdout: Any = subprocess.DEVNULL,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """Start ``cmd`` with stderr into ``log_path`` (stdout: DEVNULL unless given, e.g. ``subprocess.PIPE``)."""
        fh = open(log_path, "wb")  # closed in stop_all
        self._logs.append(fh)
        proc = subprocess.Popen(list(cmd), stdout=stdout, stderr=fh, env=dict(env) if env else child_env())
        self.items.append((name, proc))
        log.debug("started %s (pid %d): %s", name, proc.pid, " ".join(cmd))
        return proc

    def stop_all(self) -> None:
        """End every process started here (reverse order) and close the logs; idempotent."""
        for _, proc in reversed(self.items):
            end_process(proc)
        for _, proc in self.items:
            if proc.stdout is not None:
                proc.stdout.close()
        for fh in self._logs:
            fh.close()
        self.items, self._logs = [], []

    def __enter__(self) -> Processes:
        return self

    def __exit__(self, *exc: object) -> None:
        self.stop_all()


def wait_for(predicate: Callable[[], bool], timeout_s: float, poll_s: float = 0.05) -> bool:
    """Poll ``predicate`` every ``poll_s`` until it holds or ``timeout_s`` passes; its last answer."""
    deadline = time.monotonic() + timeout_s
    while time.monotonic() < deadline:
        if predicate():
            return True
        time.sleep(poll_s)
    return bool(predicate())


def wait_port(host: str, port: int, proc: subprocess.Popen[Any], what: str, log_path: Path) -> None:
    deadline = time.monotonic() + START_TIMEOUT_S
    while time.monotonic() < deadline:
        if proc.poll() is not None:
            tail = log_path.read_text(errors="replace")[-1500:] if log_path.is_file() else ""
            raise HarnessError(f"{what} exited with code {proc.returncode} at start: {tail.strip()}")
        try:
            with socket.create_connection((host, port), timeout=0.5):
                return
        except OSError:
            time.sleep(0.05)
    raise HarnessError(f"{what} did not listen on {host}:{port} within {START_TIMEOUT_S:g} s")


def free_port(host: str = "127.0.0.1") -> int:
    """A TCP port nobody listens on right now (chosen by the OS)."""
    with socket.socket(socket.AF_INET, socket.SOCK_STREAM) as s:
        s.bind((host, 0))
        return int(s.getsockname()[1])
