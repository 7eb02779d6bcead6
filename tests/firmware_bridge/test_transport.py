"""SerialTransport over real pty pairs, TCP sockets and loop://: frames, timeouts, outages and reconnection."""

from __future__ import annotations

import os
import socket
import threading
import time
import tty
from pathlib import Path

import numpy as np
import pytest

from firmware_bridge.codec import encode
from firmware_bridge.errors import TransportError
from firmware_bridge.frames import Hello, Spectrum, Status
from firmware_bridge.transport import SerialTransport

#: Generous bound for anything that should happen "soon" (CI runs on 2 busy cores); not a speed claim.
PATIENCE_S = 20.0


def _spectrum(seq: int) -> Spectrum:
    return Spectrum(seq=seq, timestamp_us=seq * 1000, integration_time_us=5000, counts=np.arange(650, dtype=np.uint16))


class FakeDevice:
    """The device side of a real pty pair, published at a stable symlink, that can be unplugged and replugged."""

    def __init__(self, link: Path) -> None:
        self.link = link
        self.master: int | None = None
        self.plug()

    def plug(self) -> None:
        master, slave = os.openpty()
        tty.setraw(slave)
        name = os.ttyname(slave)
        os.close(slave)
        tmp = self.link.with_suffix(".tmp")
        os.symlink(name, tmp)
        os.replace(tmp, self.link)
        self.master = master

    def write(self, data: bytes) -> None:
        assert self.master is not None
        os.write(self.master, data)

    def read(self, n: int = 4096) -> bytes:
        assert self.master is not None
        return os.read(self.master, n)

    def unplug(self) -> None:
        if self.link.is_symlink():
            self.link.unlink()  # never leave a link to a pty number the kernel may hand to someone else
        if self.master is not None:
            os.close(self.master)
            self.master = None


@pytest.fixture()
def device(tmp_path: Path):
    dev = FakeDevice(tmp_path / "ttySIM")
    yield dev
    dev.unplug()


def _read_until(t: SerialTransport, n: int) -> list:
    frames: list = []
    deadline = time.monotonic() + PATIENCE_S
    while len(frames) < n and time.monotonic() < deadline:
        frames += t.read_frames(0.5)
    return frames


def test_loop_url_round_trip() -> None:
    with SerialTransport("loop://") as t:
        assert t.send(_spectrum(1)) > 650 * 2
        assert t.send(Hello(nonce=3)) > 0
        assert _read_until(t, 2) == [_spectrum(1), Hello(nonce=3)]
        assert t.stats.frames_read == 2 and t.stats.frames_written == 2
        assert t.stats.decoder.frames_ok == 2


def test_pty_frames_arrive_in_order(device: FakeDevice) -> None:
    with SerialTransport(str(device.link)) as t:
        assert t.connected
        wire = b"".join(encode(_spectrum(i)) for i in range(50))

        def feed() -> None:  # odd chunks, as a UART delivers them; blocks while the pty buffer (4 kB) is full
            for i in range(0, len(wire), 333):
                device.write(wire[i : i + 333])

        feeder = threading.Thread(target=feed, daemon=True)
        feeder.start()
        frames = _read_until(t, 50)
        feeder.join(PATIENCE_S)
        assert [f.seq for f in frames] == list(range(50))
        t.send(Hello(nonce=77))
        assert device.read() == encode(Hello(nonce=77))


def test_reads_time_out_and_never_hang(device: FakeDevice) -> None:
    with SerialTransport(str(device.link), read_timeout_s=0.05) as t:
        assert t.read_frames(0.2) == []  # nothing sent: returns (empty) instead of blocking
        assert t.read_bytes(0.0) == b""


def test_a_zero_wait_takes_what_is_there_without_waiting_a_read_timeout(device: FakeDevice) -> None:
    """``read_frames(0.0)`` is a poll (what the daemon's reader does after a coalescing pause): it returns the
    frames the port holds, and nothing, at once, when it holds none, instead of waiting ``read_timeout_s``."""
    slow = 30.0  # a read timeout no poll may wait out
    with SerialTransport(str(device.link), read_timeout_s=slow) as t:
        started = time.monotonic()
        assert t.read_frames(0.0) == [] and t.read_bytes(0.0) == b""
        assert time.monotonic() - started < slow / 2
        device.write(encode(_spectrum(1)) + encode(_spectrum(2)))
        assert [f.seq for f in _read_until(t, 2)] == [1, 2]
        assert t.read_frames(0.0) == []
        assert time.monotonic() - started < slow / 2


def test_unplug_counts_an_outage_and_replug_resumes(device: FakeDevice) -> None:
    with SerialTransport(str(device.link), reconnect_backoff_s=(0.05, 0.4), seed=1) as t:
        device.write(encode(_spectrum(0)))
        assert [f.seq for f in _read_until(t, 1)] == [0]
        device.write(encode(_spectrum(1))[:20])  # a frame cut by the unplug
        device.unplug()
        assert t.read_frames(0.3) == []
        stats = t.stats
        assert stats.outages == 1 and not stats.connected
        assert "disconnected" in stats.last_error or "Errno" in stats.last_error
        with pytest.raises(TransportError, match="disconnected"):
            t.send(Hello())
        assert t.read_frames(0.5) == []  # the device path is gone: attempts fail with backoff
        assert t.stats.open_failures >= 1
        device.plug()
        device_ready = threading.Event()

        def feed() -> None:  # the replugged device streams once the host has the port open again
            deadline = time.monotonic() + PATIENCE_S
            while not t.connected and time.monotonic() < deadline:
                time.sleep(0.01)
            time.sleep(0.1)  # pyserial flushes its input right after opening
            for seq in range(2, 12):
                device.write(encode(_spectrum(seq)))
            device_ready.set()

        feeder = threading.Thread(target=feed)
        feeder.start()
        frames = _read_until(t, 10)
        feeder.join(PATIENCE_S)
        assert [f.seq for f in frames] == list(range(2, 12))
        stats = t.stats
        assert stats.reconnects == 1 and stats.outages == 1 and stats.connected
        assert stats.seconds_disconnected > 0
        # the cut frame is either lost with the pty's buffer or dropped as truncated at reconnect, never returned
        assert stats.decoder.frames_ok == 11 and stats.decoder.frames_bad == stats.decoder.truncated <= 1


def test_port_missing_at_start_is_an_outage_not_an_error(tmp_path: Path) -> None:
    link = tmp_path / "later"
    t = SerialTransport(str(link), reconnect_backoff_s=(0.05, 0.2))
    try:
        assert not t.connected and t.stats.outages == 1
        assert t.read_frames(0.3) == []
        dev = FakeDevice(link)
        try:
            deadline = time.monotonic() + PATIENCE_S
            while not t.connected and time.monotonic() < deadline:
                t.read_frames(0.1)
            assert t.connected and t.stats.reconnects == 1
        finally:
            dev.unplug()
    finally:
        t.close()


def test_unknown_url_scheme_is_a_caller_error() -> None:
    with pytest.raises(TransportError, match="expected a serial port URL"):
        SerialTransport("nonsense://nowhere")
    with pytest.raises(TransportError, match="backoff"):
        SerialTransport("loop://", reconnect_backoff_s=(2.0, 1.0))


def test_close_from_another_thread_unblocks_a_reader(device: FakeDevice) -> None:
    t = SerialTransport(str(device.link))
    got: list = []
    reader = threading.Thread(target=lambda: got.extend(t))  # iterates until closed
    reader.start()
    device.write(encode(_spectrum(5)))
    deadline = time.monotonic() + PATIENCE_S
    while not got and time.monotonic() < deadline:
        time.sleep(0.01)
    t.close()
    t.close()  # idempotent
    reader.join(PATIENCE_S)
    assert not reader.is_alive()
    assert [f.seq for f in got] == [5]
    assert t.read_frames(0.1) == []
    with pytest.raises(TransportError, match="closed"):
        t.send(Hello())


def test_tcp_socket_url_and_peer_close() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    try:
        t = SerialTransport(f"socket://127.0.0.1:{port}", reconnect_backoff_s=(0.05, 0.2))
        conn, _ = server.accept()
        conn.sendall(encode(Status(0, "dev", "fw", 650, (600.0, 2.0), 5000)))
        frames = _read_until(t, 1)
        assert isinstance(frames[0], Status) and frames[0].wavelengths_nm()[-1] == 1898.0
        t.send(Hello(nonce=9))
        assert conn.recv(100) == encode(Hello(nonce=9))
        conn.close()  # the peer goes away
        deadline = time.monotonic() + PATIENCE_S
        while t.stats.outages == 0 and time.monotonic() < deadline:
            t.read_frames(0.1)
        assert t.stats.outages == 1
        server.settimeout(0.05)
        conn2 = None
        deadline = time.monotonic() + PATIENCE_S
        while conn2 is None and time.monotonic() < deadline:  # the transport reconnects inside its reads
            t.read_frames(0.05)
            try:
                conn2, _ = server.accept()
            except TimeoutError:
                pass
        assert conn2 is not None
        conn2.sendall(encode(Hello(nonce=10)))
        assert _read_until(t, 1) == [Hello(nonce=10)]
        assert t.stats.reconnects == 1
        conn2.close()
        t.close()
    finally:
        server.close()



def test_docstring_examples() -> None:
    import doctest

    import firmware_bridge.transport

    assert doctest.testmod(firmware_bridge.transport).failed == 0


def test_a_dialect_adapter_rides_the_same_transport(device: FakeDevice) -> None:
    from firmware_bridge.adapters import C12880Adapter

    recording = (Path(__file__).resolve().parents[1] / "data" / "dialects" / "c12880_session.bin").read_bytes()
    with SerialTransport(str(device.link), decoder=C12880Adapter()) as t:
        feeder = threading.Thread(target=device.write, args=(recording,), daemon=True)
        feeder.start()
        frames = _read_until(t, 5)
        feeder.join(PATIENCE_S)
        assert [f.seq for f in frames] == list(range(5))
        assert all(isinstance(f, Spectrum) and f.pixel_count == 288 for f in frames)
        assert t.stats.decoder.lines_bad == 2
