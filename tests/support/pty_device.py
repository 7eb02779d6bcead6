"""A device played by the test on a real pty (:class:`PtyDevice`, fixture ``pty_device``) and an in-process daemon
serving it (:func:`serve_daemon`)."""

from __future__ import annotations

import os
import threading
import tty
from pathlib import Path
from typing import Any, Iterator

import pytest

from edge.bundle import load_bundle
from edge.daemon import Daemon
from firmware_bridge.codec import encode as encode_frame
from firmware_bridge.transport import SerialTransport
from tests.support.daemon import RecordingLink, edge_config


def serve_daemon(tmp: Path, port_url: str, bundle: Path, **sections: Any) -> tuple[Daemon, RecordingLink]:
    """A started in-process :class:`Daemon` on ``port_url`` serving ``bundle`` (extra config ``sections``),
    recording what it publishes."""
    cfg = edge_config(tmp, port_url=port_url, bundle_path=bundle, **sections)
    link = RecordingLink()
    transport = SerialTransport(port_url, read_timeout_s=0.05, reconnect_backoff_s=(0.05, 0.5))
    daemon = Daemon(cfg, load_bundle(bundle), transport, link)
    daemon.start()
    return daemon, link


class PtyDevice:
    """The device end of a real pty pair, written by the test frame by frame (what the device announces is the
    test's choice); whatever the daemon sends to the device is read and decoded into :attr:`received`."""

    def __init__(self) -> None:
        self.master, self.slave = os.openpty()
        tty.setraw(self.slave)
        tty.setraw(self.master)
        self.path = os.ttyname(self.slave)
        self.received: list[Any] = []
        self._stop = threading.Event()
        self._reader = threading.Thread(target=self._drain, daemon=True)
        self._reader.start()

    def _drain(self) -> None:
        import select

        from firmware_bridge.codec import FrameDecoder

        decoder = FrameDecoder()
        while not self._stop.is_set():
            ready, _, _ = select.select([self.master], [], [], 0.1)
            if ready:
                try:
                    self.received.extend(decoder.feed(os.read(self.master, 4096)))
                except OSError:
                    return

    def send(self, *frames: Any) -> None:
        for frame in frames:
            os.write(self.master, encode_frame(frame))

    def close(self) -> None:
        self._stop.set()
        self._reader.join(timeout=5)
        os.close(self.master)
        os.close(self.slave)


@pytest.fixture
def pty_device() -> Iterator[PtyDevice]:
    dev = PtyDevice()
    try:
        yield dev
    finally:
        dev.close()
