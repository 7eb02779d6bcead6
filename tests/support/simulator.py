"""``spectro-sim`` as a subprocess for the firmware_bridge tests, and reading frames from it until a condition holds."""

from __future__ import annotations

import select
import signal
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable, Iterator
from contextlib import contextmanager

import pytest

from firmware_bridge.frames import Frame
from firmware_bridge.transport import SerialTransport

__all__ = ["PATIENCE_S", "read_until", "spectro_sim"]

#: Generous bound for anything that should happen "soon" on a busy 2-core CI machine; not a speed claim.
PATIENCE_S = 30.0


@contextmanager
def spectro_sim(*args: str) -> Iterator[tuple[subprocess.Popen[str], str]]:
    """Start ``spectro-sim`` as a subprocess; yield it and the address on its first line; stop it afterwards."""
    with tempfile.TemporaryFile(mode="w+") as log:  # a file, not a pipe: a chatty child never blocks on it
        proc = subprocess.Popen(
            [sys.executable, "-m", "firmware_bridge.cli", *args], stdout=subprocess.PIPE, stderr=log, text=True
        )
        try:
            ready, _, _ = select.select([proc.stdout], [], [], PATIENCE_S)
            assert ready, "spectro-sim printed no address"
            assert proc.stdout is not None
            address = proc.stdout.readline().strip()
            if not address:
                log.seek(0)
                pytest.fail(f"spectro-sim exited: {log.read()}")
            yield proc, address
        finally:
            if proc.poll() is None:
                proc.send_signal(signal.SIGTERM)
                try:
                    proc.wait(PATIENCE_S)
                except subprocess.TimeoutExpired:
                    proc.kill()
                    proc.wait()
            if proc.stdout is not None:
                proc.stdout.close()


def read_until(t: SerialTransport, until: Callable[[list[Frame]], bool], patience_s: float = PATIENCE_S
               ) -> list[Frame]:
    """Frames read from ``t`` until ``until(frames)`` holds or ``patience_s`` passed."""
    frames: list[Frame] = []
    deadline = time.monotonic() + patience_s
    while not until(frames) and time.monotonic() < deadline:
        frames += t.read_frames(0.5)
    return frames
