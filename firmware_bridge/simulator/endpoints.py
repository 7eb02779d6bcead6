"""Device side of a link for the simulator: a pty pair behind a stable symlink, or a TCP listener.

Disconnects and a stable device path.  A pty disappears with its master: when the simulator "unplugs"
(``disconnect_every``) it closes the master, so the host's reads fail exactly as with a USB unplug, and removes the
symlink (``link_path``); after ``disconnect_for_s`` it creates a NEW pty pair and atomically points the symlink at
the new slave.
Hosts open the symlink, never ``/dev/pts/N`` (whose number may be reused), so reopening the same path finds the
device again.  On TCP the client connection and the listener are closed and the listener comes back on the same
port.
"""

from __future__ import annotations

import errno
import logging
import os
import select
import socket
import tempfile
import threading
import tty
from pathlib import Path
from typing import Protocol

__all__ = ["TICK_S", "Endpoint", "HostGone", "PtyEndpoint", "TcpEndpoint"]

_LOG = logging.getLogger(__name__)

#: Longest idle wait of the run loop (and of an endpoint waiting for room to write), seconds.
TICK_S = 0.02


class HostGone(Exception):
    """The host closed its side of the link (raised by the endpoints, caught by the runner)."""


class Endpoint(Protocol):
    """Device side of a link, as the :class:`Simulator` uses it (non-blocking except :meth:`write`)."""

    address: str

    def open(self) -> None: ...
    def host_present(self) -> bool: ...
    def fileno(self) -> int | None: ...
    def read(self) -> bytes: ...
    def write(self, data: bytes, stop: threading.Event) -> None: ...
    def drop(self) -> None: ...
    def close(self) -> None: ...


class PtyEndpoint:
    """A pty pair whose slave is published as a stable symlink ``link_path`` (see the module docstring).

    Parameters
    ----------
    link_path : str or Path, optional
        Where to publish the device path; default ``<tempdir>/spectro-sim-XXXX/tty`` (removed on close).
    """

    def __init__(self, link_path: str | Path | None = None) -> None:
        self._own_dir: Path | None = None
        if link_path is None:
            self._own_dir = Path(tempfile.mkdtemp(prefix="spectro-sim-"))
            link_path = self._own_dir / "tty"
        self.link_path = Path(link_path)
        self.address = str(self.link_path)
        self.slave_name = ""
        self._master: int | None = None
        self._poll = select.poll()

    def open(self) -> None:
        """Create a new pty pair (raw mode, so nothing is echoed) and point the symlink at its slave."""
        master, slave = os.openpty()
        try:
            tty.setraw(slave)
            self.slave_name = os.ttyname(slave)
        finally:
            os.close(slave)  # the master alone keeps the pair alive; a host opening the slave is then detectable
        os.set_blocking(master, False)
        self._master = master
        self._poll = select.poll()
        self._poll.register(master, select.POLLIN | select.POLLHUP)
        tmp = self.link_path.with_name(self.link_path.name + f".{os.getpid()}.tmp")
        try:
            tmp.unlink()
        except FileNotFoundError:
            pass
        os.symlink(self.slave_name, tmp)
        os.replace(tmp, self.link_path)
        _LOG.info("pty %s published at %s", self.slave_name, self.link_path)

    def host_present(self) -> bool:
        """Whether some process has the slave open (the master reports hang-up while nobody does)."""
        if self._master is None:
            return False
        events = self._poll.poll(0)
        return not any(ev & select.POLLHUP for _, ev in events)

    def fileno(self) -> int | None:
        """File descriptor to wait on for incoming bytes."""
        return self._master

    def read(self) -> bytes:
        """Bytes from the host, without blocking; raises HostGone when the slave was closed."""
        if self._master is None:
            raise HostGone()
        try:
            return os.read(self._master, 65536)
        except BlockingIOError:
            return b""
        except OSError as exc:
            if exc.errno == errno.EIO:
                raise HostGone() from exc
            raise

    def write(self, data: bytes, stop: threading.Event) -> None:
        """Write everything, waiting while the pty buffer is full (the host is slow), until ``stop``."""
        view = memoryview(data)
        while view and not stop.is_set():
            if self._master is None:
                raise HostGone()
            try:
                n = os.write(self._master, view)
                view = view[n:]
            except BlockingIOError:
                if not self.host_present():
                    raise HostGone() from None
                select.select([], [self._master], [], TICK_S)
            except OSError as exc:
                if exc.errno == errno.EIO:
                    raise HostGone() from exc
                raise

    def drop(self) -> None:
        """Unplug: close the master, so the host's reads fail, and remove the symlink until :meth:`open`.

        The link must not dangle: the kernel reuses pty numbers, and a host reconnecting through a stale link could
        open another program's terminal.
        """
        self._unlink()
        if self._master is not None:
            os.close(self._master)
            self._master = None

    def _unlink(self) -> None:
        try:
            if self.link_path.is_symlink() and os.readlink(self.link_path) == self.slave_name:
                self.link_path.unlink()
        except OSError as exc:
            _LOG.debug("could not remove %s: %s", self.link_path, exc)

    def close(self) -> None:
        """Close the master and remove the symlink (and the temporary folder this endpoint made)."""
        self.drop()
        if self._own_dir is not None:
            try:
                self._own_dir.rmdir()
            except OSError:
                pass


class TcpEndpoint:
    """A TCP listener serving one client at a time; the host connects with ``socket://host:port``.

    Parameters
    ----------
    port : int
        Port to listen on (0 picks a free one; it is kept across drops).
    host : str
        Address to bind, default loopback.
    """

    def __init__(self, port: int = 0, host: str = "127.0.0.1") -> None:
        self.host = host
        self.port = int(port)
        self.address = ""
        self._listener: socket.socket | None = None
        self._client: socket.socket | None = None

    def open(self) -> None:
        """Start listening (on the same port after a drop)."""
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        listener.bind((self.host, self.port))
        listener.listen(1)
        listener.setblocking(False)
        self.port = listener.getsockname()[1]
        self.address = f"socket://{self.host}:{self.port}"
        self._listener = listener

    def host_present(self) -> bool:
        """Whether a client is connected (accepting one if it is waiting)."""
        if self._client is None and self._listener is not None:
            try:
                client, peer = self._listener.accept()
            except (BlockingIOError, InterruptedError):
                return False
            client.setblocking(False)
            client.setsockopt(socket.IPPROTO_TCP, socket.TCP_NODELAY, 1)
            self._client = client
            _LOG.info("TCP client %s connected", peer)
        return self._client is not None

    def fileno(self) -> int | None:
        """File descriptor to wait on (the client, or the listener while there is none)."""
        if self._client is not None:
            return self._client.fileno()
        return self._listener.fileno() if self._listener is not None else None

    def _lose_client(self) -> None:
        if self._client is not None:
            try:
                self._client.close()
            finally:
                self._client = None

    def read(self) -> bytes:
        """Bytes from the client, without blocking; raises HostGone when it left."""
        if self._client is None:
            raise HostGone()
        try:
            data = self._client.recv(65536)
        except (BlockingIOError, InterruptedError):
            return b""
        except OSError as exc:
            self._lose_client()
            raise HostGone() from exc
        if not data:
            self._lose_client()
            raise HostGone()
        return data

    def write(self, data: bytes, stop: threading.Event) -> None:
        """Send everything, waiting while the socket buffer is full, until ``stop``."""
        view = memoryview(data)
        while view and not stop.is_set():
            if self._client is None:
                raise HostGone()
            try:
                n = self._client.send(view)
                view = view[n:]
            except (BlockingIOError, InterruptedError):
                select.select([], [self._client], [], TICK_S)
            except OSError as exc:
                self._lose_client()
                raise HostGone() from exc

    def drop(self) -> None:
        """Unplug: close the client and stop listening until :meth:`open`."""
        self._lose_client()
        if self._listener is not None:
            self._listener.close()
            self._listener = None

    def close(self) -> None:
        """Close everything."""
        self.drop()
