"""Child processes of a harness run: started with their log files, ended by their own handles, and ports to wait on.

Every process is started by :func:`spawn` (one :class:`Proc`: the process and its log; the end-to-end tests keep
them in their ``procs`` fixture) or through :class:`Processes` (the processes of one run, ended together), and
ended by its own handle (SIGTERM, then SIGKILL after a grace period); nothing here ends a process it did not start.
"""

from __future__ import annotations

import logging
import os
import signal
import socket
import subprocess
import time
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from benchmarks.harness.errors import HarnessError
from benchmarks.harness.settings import START_TIMEOUT_S, STOP_GRACE_S

__all__ = ["Proc", "Processes", "child_env", "end_process", "free_port", "repo_root", "spawn", "wait_for",
           "wait_port"]

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


def end_process(proc: subprocess.Popen[Any] | None, grace_s: float = STOP_GRACE_S,
                sig: int = signal.SIGTERM) -> int | None:
    """Send ``sig`` to ``proc`` (one this harness started; SIGCONT first, so that a stopped process can handle
    it), wait ``grace_s``, then SIGKILL; returns its exit code."""
    if proc is None:
        return None
    if proc.poll() is None:
        if sig != signal.SIGKILL:
            proc.send_signal(signal.SIGCONT)
        proc.send_signal(sig)
        try:
            proc.wait(timeout=grace_s)
        except subprocess.TimeoutExpired:
            proc.kill()
            proc.wait(timeout=grace_s)
    return int(proc.returncode)


@dataclass
class Proc:
    """A started child process and the file its stderr goes to."""

    popen: subprocess.Popen[bytes]
    log: Path

    @property
    def pid(self) -> int:
        return self.popen.pid

    def alive(self) -> bool:
        return self.popen.poll() is None

    def text(self, tail_chars: int = 6000) -> str:
        """The end of its log (for failure messages)."""
        try:
            return self.log.read_text(errors="replace")[-tail_chars:]
        except OSError:
            return ""

    def end(self, sig: int = signal.SIGTERM, timeout_s: float = 2 * STOP_GRACE_S) -> int:
        """:func:`end_process` with ``sig``: its exit code."""
        code = end_process(self.popen, timeout_s, sig)
        assert code is not None
        return code


def spawn(cmd: Sequence[str], log_path: Path, *, stdout: Any = subprocess.DEVNULL, env: Mapping[str, str] | None = None,
          cwd: Path | None = None) -> Proc:
    """Start ``cmd`` with stderr into ``log_path`` (stdout: DEVNULL unless given, e.g. ``subprocess.PIPE``) in the
    environment ``env`` (default :func:`child_env`)."""
    with open(log_path, "wb") as fh:  # the child has its own copy of the descriptor
        popen = subprocess.Popen(list(cmd), stdout=stdout, stderr=fh, env=dict(env) if env else child_env(), cwd=cwd)
    log.debug("started pid %d: %s", popen.pid, " ".join(cmd))
    return Proc(popen, log_path)


class Processes:
    """Child processes of one run, each with its log file; :meth:`stop_all` ends them in reverse order."""

    def __init__(self) -> None:
        self.items: list[tuple[str, subprocess.Popen[bytes]]] = []

    def start(self, name: str, cmd: Sequence[str], log_path: Path, *, stdout: Any = subprocess.DEVNULL,
              env: Mapping[str, str] | None = None) -> subprocess.Popen[bytes]:
        """:func:`spawn` ``cmd`` as ``name``; its process."""
        proc = spawn(cmd, log_path, stdout=stdout, env=env).popen
        self.items.append((name, proc))
        return proc

    def stop_all(self) -> None:
        """End every process started here (reverse order); idempotent."""
        for _, proc in reversed(self.items):
            end_process(proc)
        for _, proc in self.items:
            if proc.stdout is not None:
                proc.stdout.close()
        self.items = []

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
