"""Serial transport: frames over any pyserial URL, with read timeouts, reconnection with backoff and outage counters.

The port is opened with :func:`serial.serial_for_url`, so a device path (``/dev/ttyUSB0``), a pty path or a
symlink to one, ``socket://host:port``, ``loop://`` and ``spy://...`` all work unchanged.  Every read is bounded
by ``read_timeout_s``, so no call blocks longer than the wait it was given plus one read timeout.

When the port disappears (USB unplugged, pty master closed, socket closed by the peer) the transport closes it,
logs a warning, counts an outage, drops the partial frame in the decoder and tries to open the URL again after a
backoff with full jitter between ``reconnect_backoff_s[0]`` and ``reconnect_backoff_s[1]`` (a window that doubles
with every failed attempt, :mod:`firmware_bridge.backoff`), so a fleet of readers does not retry in lock-step.
Reconnection happens inside :meth:`SerialTransport.read_frames` / :meth:`SerialTransport.send`, in the caller's
thread; nothing runs in the background.  For a device path (not a URL) the transport also checks once per read
timeout whether the path has (re)appeared, and tries at once when it has, so a replugged device or a restarted
simulator is found within a read timeout whatever the backoff has grown to.  Counters (outages, reconnects, last
error, seconds disconnected, bytes, and the decoder's own) are in :attr:`SerialTransport.stats`.

>>> from firmware_bridge.frames import Hello
>>> with SerialTransport("loop://") as t:
...     _ = t.send(Hello(nonce=5))
...     t.read_frames(1.0)
[Hello(nonce=5)]
"""

from __future__ import annotations

import errno
import logging
import os
import random
import select
import threading
import time
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from typing import Any, Protocol, TypeVar

import serial

from firmware_bridge.backoff import Backoff
from firmware_bridge.codec import DecoderStats, FrameDecoder, encode
from firmware_bridge.errors import TransportError
from firmware_bridge.frames import Frame

__all__ = ["ByteDecoder", "SerialTransport", "TransportStats"]

_T = TypeVar("_T", bound="SerialTransport")

_LOG = logging.getLogger(__name__)

#: Largest single read, bytes (a 650-pixel uint32 spectrum encodes to ~2.7 kB).
_MAX_READ_BYTES = 65536
#: Errors that mean "the port is gone" (pyserial raises TypeError/AttributeError on a port closed under a read).
_PORT_ERRORS: tuple[type[BaseException], ...] = (
    serial.SerialException,
    OSError,
    TypeError,
    AttributeError,
    ValueError,  # select() on the fd -1 of a port closed by another thread
)


#: pyserial's class for device paths on POSIX (None elsewhere); read by :func:`_read_posix`.
_PosixSerial: Any = getattr(getattr(serial, "serialposix", None), "Serial", None)
#: pyserial's ``socket://`` class: its ``in_waiting`` is 0 or 1 (a zero-timeout ``select``), so reading
#: ``in_waiting`` bytes reads one byte per call; :func:`_read_fd` reads what the socket holds instead.
_SocketSerial: Any = None
try:
    from serial.urlhandler import protocol_socket as _protocol_socket

    _SocketSerial = _protocol_socket.Serial
except ImportError:  # pragma: no cover - pyserial always ships it
    pass
#: errno values of a read that found nothing after all (pyserial ignores the same ones).
_RETRY_ERRNOS = frozenset((errno.EAGAIN, errno.EWOULDBLOCK, errno.EINTR))


def _read_posix(port: Any, timeout_s: float) -> bytes:
    """Whatever a POSIX serial port holds, waiting up to ``timeout_s`` for the first byte: one ``select`` and one
    ``read`` per burst.

    pyserial's ``read(n)`` waits until ``n`` bytes arrived, so reading "what is there" through it costs an
    ``in_waiting`` ioctl and a one-byte read first (three system calls and two passes through the decoder per
    frame).  Only for ports of exactly pyserial's POSIX class (``socket://`` goes through :func:`_read_fd` on its
    socket, other URL handlers such as ``spy://`` or ``loop://`` through their own ``read``); errors are
    pyserial's: a port that selects readable but returns no data is gone.
    """
    return _read_fd(port.fd, timeout_s)


def _read_fd(fd: int, timeout_s: float) -> bytes:
    """Up to :data:`_MAX_READ_BYTES` of what the file descriptor ``fd`` (a tty or a connected socket) holds,
    waiting up to ``timeout_s`` for the first byte; end of file means the peer is gone (``SerialException``)."""
    ready, _, _ = select.select([fd], [], [], timeout_s)
    if not ready:
        return b""
    try:
        data = os.read(fd, _MAX_READ_BYTES)
    except OSError as exc:
        if exc.errno in _RETRY_ERRNOS:
            return b""
        raise serial.SerialException(f"read failed: {exc}") from exc
    if not data:
        raise serial.SerialException(
            "device reports readiness to read but returned no data (device disconnected, socket closed by the peer "
            "or multiple access on port?)"
        )
    return data


class ByteDecoder(Protocol):
    """What turns received bytes into frames: :class:`~firmware_bridge.codec.FrameDecoder` or a dialect adapter."""

    def feed(self, data: bytes) -> Sequence[Frame]: ...

    @property
    def stats(self) -> Any: ...


@dataclass(frozen=True)
class TransportStats:
    """Counters of a :class:`SerialTransport`, as a snapshot.

    Parameters
    ----------
    connected : bool
        Whether a port is open now.
    outages : int
        Times the port was lost (or could not be opened at start).
    reconnects : int
        Times the port was opened again after an outage.
    open_failures : int
        Failed attempts to open the port.
    last_error : str
        Latest error seen ("" when none).
    seconds_disconnected : float
        Total time without an open port, seconds, including the current outage.
    bytes_read, bytes_written : int
        Bytes moved over the port.
    frames_read, frames_written : int
        Frames decoded from the port / encoded onto it.
    decoder : DecoderStats
        The frame decoder's counters (CRC errors, bytes skipped, ...); the adapter's own stats object when the
        transport was built with a foreign-dialect ``decoder``.
    """

    connected: bool
    outages: int
    reconnects: int
    open_failures: int
    last_error: str
    seconds_disconnected: float
    bytes_read: int
    bytes_written: int
    frames_read: int
    frames_written: int
    decoder: DecoderStats | Any


class SerialTransport:
    """Protocol frames over a pyserial URL, surviving disconnections.

    Parameters
    ----------
    url : str
        Anything :func:`serial.serial_for_url` opens: a device or pty path, ``socket://host:port``, ``loop://``.
    baudrate : int
        Line speed, baud (ignored by sockets and ptys).
    read_timeout_s : float
        Longest single blocking read, seconds; bounds how late :meth:`read_frames` and :meth:`close` return.
    write_timeout_s : float
        Longest blocking write, seconds.
    reconnect_backoff_s : (float, float)
        Shortest and longest delay between reconnection attempts, seconds; each delay is drawn with full jitter
        (:mod:`firmware_bridge.backoff`).
    open_now : bool
        Try to open the port in the constructor (a failure is an outage, not an exception).
    seed : int, optional
        Seed of the jitter (tests).
    decoder : ByteDecoder, optional
        What turns bytes into frames; default a new :class:`~firmware_bridge.codec.FrameDecoder`.  Pass a
        :class:`~firmware_bridge.adapters.C12880Adapter` (say) to read a foreign dialect with the same reconnection
        logic; its partial line is dropped at reconnect when it has a ``reset()`` method.

    Raises
    ------
    TransportError
        ``url`` is not a URL pyserial knows (a caller mistake, not an outage), or an argument is out of range.
    """

    def __init__(
        self,
        url: str,
        *,
        baudrate: int = 115200,
        read_timeout_s: float = 0.1,
        write_timeout_s: float = 2.0,
        reconnect_backoff_s: tuple[float, float] = (0.1, 2.0),
        open_now: bool = True,
        seed: int | None = None,
        decoder: ByteDecoder | None = None,
    ) -> None:
        lo, hi = (float(reconnect_backoff_s[0]), float(reconnect_backoff_s[1]))
        if not 0.0 < lo <= hi:
            raise TransportError(f"expected 0 < first backoff <= largest backoff, got {reconnect_backoff_s}")
        if not read_timeout_s > 0.0:
            raise TransportError(f"expected a positive read timeout in seconds, got {read_timeout_s}")
        self.url = url
        self.baudrate = int(baudrate)
        self.read_timeout_s = float(read_timeout_s)
        self.write_timeout_s = float(write_timeout_s)
        self.reconnect_backoff_s = (lo, hi)
        self._backoff = Backoff((lo, hi), random.Random(seed))
        self._decoder: Any = FrameDecoder() if decoder is None else decoder
        self._port: Any = None
        self._lock = threading.RLock()  # guards _port and the counters
        self._read_lock = threading.Lock()
        self._write_lock = threading.Lock()
        self._closed = threading.Event()
        self._ever_connected = False
        self._next_attempt = time.monotonic()
        self._down_since: float | None = time.monotonic()
        self._down_total_s = 0.0
        self._outages = 0
        self._reconnects = 0
        self._open_failures = 0
        self._last_error = ""
        self._bytes_read = 0
        self._bytes_written = 0
        self._frames_read = 0
        self._frames_written = 0
        self._clock: Callable[[], float] = time.monotonic
        self._is_path = "://" not in url  # a device or pty path: watch for it to come back
        self._path_was_present = False
        if open_now and not self._try_open():
            self._outages += 1
            _LOG.warning("serial port %s unavailable at start (%s); will retry", url, self._last_error)

    # ------------------------------------------------------------------ public API
    @property
    def connected(self) -> bool:
        """Whether a port is open now."""
        return self._port is not None

    @property
    def closed(self) -> bool:
        """Whether :meth:`close` was called."""
        return self._closed.is_set()

    @property
    def stats(self) -> TransportStats:
        """Snapshot of the counters."""
        with self._lock:
            down = self._down_total_s
            if self._down_since is not None:
                down += self._clock() - self._down_since
            return TransportStats(
                connected=self._port is not None,
                outages=self._outages,
                reconnects=self._reconnects,
                open_failures=self._open_failures,
                last_error=self._last_error,
                seconds_disconnected=down,
                bytes_read=self._bytes_read,
                bytes_written=self._bytes_written,
                frames_read=self._frames_read,
                frames_written=self._frames_written,
                decoder=self._decoder.stats,
            )

    def read_bytes(self, max_wait_s: float) -> bytes:
        """Return the bytes that arrive within about ``max_wait_s`` seconds (possibly none), reconnecting as needed.

        Returns as soon as some bytes arrived; never later than ``max_wait_s`` plus one read timeout.
        """
        deadline = self._clock() + max(0.0, float(max_wait_s))
        with self._read_lock:
            while not self._closed.is_set():
                data = self._read_once(deadline)
                if data or self._clock() >= deadline:
                    return data
        return b""

    def read_frames(self, max_wait_s: float) -> list[Frame]:
        """Return the frames decoded within about ``max_wait_s`` seconds (possibly none), reconnecting as needed.

        Returns as soon as at least one frame is complete (with every frame the bytes read so far complete); never
        later than ``max_wait_s`` plus one read timeout (a device path, pty or socket: never later than
        ``max_wait_s``, so ``read_frames(0.0)`` takes what the port holds now without waiting for more).  Bad
        frames are counted in ``stats.decoder``, not raised.
        """
        deadline = self._clock() + max(0.0, float(max_wait_s))
        frames: list[Frame] = []
        with self._read_lock:
            while not self._closed.is_set():
                data = self._read_once(deadline)
                if data:
                    frames.extend(self._decoder.feed(data))
                if frames or self._clock() >= deadline:
                    break
        with self._lock:
            self._frames_read += len(frames)
        return frames

    def send(self, frame: Frame) -> int:
        """Encode ``frame`` and write it; returns the number of bytes written.

        Raises
        ------
        TransportError
            The transport is closed, or the port is down (and could not be reopened now), or the write failed;
            a failed write also starts an outage.
        """
        n = self.write(encode(frame))
        with self._lock:
            self._frames_written += 1
        return n

    def write(self, data: bytes) -> int:
        """Write raw bytes (a foreign dialect's command, say); same errors as :meth:`send`."""
        if self._closed.is_set():
            raise TransportError(f"cannot write to {self.url}: the transport is closed")
        with self._write_lock:
            port = self._port
            # Reopen only when no reader is busy (the reader owns reconnection and the decoder).
            if port is None and self._clock() >= self._next_attempt and self._read_lock.acquire(blocking=False):
                try:
                    if self._try_open():
                        port = self._port
                finally:
                    self._read_lock.release()
            if port is None:
                raise TransportError(f"cannot write to {self.url}: port disconnected ({self._last_error})")
            try:
                n = port.write(data)  # bounded by write_timeout_s; no flush(): tcdrain has no timeout
            except serial.SerialTimeoutException as exc:
                raise TransportError(f"write to {self.url} timed out after {self.write_timeout_s} s") from exc
            except _PORT_ERRORS as exc:
                self._mark_down(port, exc)
                raise TransportError(f"write to {self.url} failed: {exc}") from exc
        with self._lock:
            self._bytes_written += int(n or 0)
        return int(n or 0)

    def close(self) -> None:
        """Close the port and stop reconnecting; safe from any thread, idempotent.

        A :meth:`read_frames` blocked in another thread returns within one read timeout.
        """
        self._closed.set()
        with self._lock:
            port, self._port = self._port, None
            if port is not None and self._down_since is None:
                self._down_since = self._clock()
        if port is not None:
            _quiet_close(port)

    def __enter__(self: _T) -> _T:  # typing.Self needs Python 3.11
        return self

    def __exit__(self, *exc_info: object) -> None:
        self.close()

    def __iter__(self) -> Iterator[Frame]:
        """Yield frames until :meth:`close` is called (from another thread or the loop body)."""
        while not self._closed.is_set():
            yield from self.read_frames(1.0)

    def __repr__(self) -> str:
        state = "closed" if self.closed else ("connected" if self.connected else "disconnected")
        return f"SerialTransport({self.url!r}, {state})"

    # ------------------------------------------------------------------ internals
    def _read_once(self, deadline: float) -> bytes:
        """One bounded read; handles a missing port by waiting for the next reconnection attempt."""
        port = self._port
        if port is None:
            if self._attempt_due() and self._try_open():
                port = self._port
            else:
                until = min(self._next_attempt, deadline)
                if self._is_path:  # look for the device path coming back once per read timeout
                    until = min(until, self._clock() + self.read_timeout_s)
                wait = until - self._clock()
                if wait > 0:
                    self._closed.wait(wait)
                return b""
        # A wait that ends before the read timeout bounds the read (``read_frames(0.0)`` takes only what is there).
        wait_s = min(self.read_timeout_s, max(0.0, deadline - self._clock()))
        try:
            if type(port) is _PosixSerial:
                data = _read_posix(port, wait_s)
            elif type(port) is _SocketSerial and os.name == "posix":
                data = _read_fd(port.fileno(), wait_s)
            else:
                data = _read_buffered(port, wait=wait_s > 0.0)
        except _PORT_ERRORS as exc:
            if not self._closed.is_set():
                self._mark_down(port, exc)
            return b""
        if data:
            with self._lock:
                self._bytes_read += len(data)
        return bytes(data)

    def _attempt_due(self) -> bool:
        """Whether to try opening now: the backoff has elapsed, or the device path has just (re)appeared."""
        if self._clock() >= self._next_attempt:
            return True
        if not self._is_path:
            return False
        present = os.path.exists(self.url)
        appeared = present and not self._path_was_present
        self._path_was_present = present
        return appeared

    def _try_open(self) -> bool:
        """Open the URL once; on failure schedule the next attempt.  Returns whether the port is open."""
        if self._closed.is_set():
            return False
        try:
            port = serial.serial_for_url(
                self.url, baudrate=self.baudrate, timeout=self.read_timeout_s, write_timeout=self.write_timeout_s
            )
        except ValueError as exc:
            if not self._ever_connected and self._open_failures == 0:
                raise TransportError(f"expected a serial port URL pyserial can open, got {self.url!r}: {exc}") from exc
            self._failed_open(exc)
            return False
        except (serial.SerialException, OSError) as exc:
            self._failed_open(exc)
            return False
        with self._lock:
            if self._closed.is_set():
                _quiet_close(port)
                return False
            self._port = port
            now = self._clock()
            if self._down_since is not None:
                self._down_total_s += now - self._down_since
                outage_s = now - self._down_since
                self._down_since = None
            else:
                outage_s = 0.0
            if self._ever_connected or self._outages:
                self._reconnects += 1
                _LOG.info("serial port %s reconnected after %.2f s", self.url, outage_s)
            self._ever_connected = True
            self._backoff.reset()
        reset = getattr(self._decoder, "reset", None)
        if reset is not None:
            reset()  # callers hold the read lock: the decoder is the reader's
        return True

    def _failed_open(self, exc: BaseException) -> None:
        self._path_was_present = self._is_path and os.path.exists(self.url)
        with self._lock:
            self._open_failures += 1
            self._last_error = _describe(exc)
            delay = self._backoff.next_delay_s()
            self._next_attempt = self._clock() + delay
        _LOG.debug("cannot open %s (%s); next attempt in %.2f s", self.url, self._last_error, delay)

    def _mark_down(self, port: Any, exc: BaseException) -> None:
        """The port failed: close it, count the outage once, and schedule a reconnection."""
        with self._lock:
            if self._port is not port:  # another thread already handled this port
                return
            self._port = None
            self._outages += 1
            self._last_error = _describe(exc)
            self._down_since = self._clock()
            self._backoff.reset()
            self._next_attempt = self._clock() + self._backoff.next_delay_s()
        self._path_was_present = self._is_path and os.path.exists(self.url)
        _LOG.warning("serial port %s lost (%s); reconnecting", self.url, self._last_error)
        _quiet_close(port)


def _read_buffered(port: Any, *, wait: bool = True) -> bytes:
    """What any other pyserial port holds, in blocks: ``read(in_waiting)`` (at least one byte, waiting up to the
    port's read timeout for it; without ``wait``, nothing when nothing is there), then whatever arrived meanwhile, up
    to :data:`_MAX_READ_BYTES`."""
    if not wait and int(port.in_waiting) == 0:
        return b""
    data = port.read(min(max(1, int(port.in_waiting)), _MAX_READ_BYTES))
    if data and len(data) < _MAX_READ_BYTES:
        more = int(port.in_waiting)
        if more > 0:
            data = bytes(data) + port.read(min(more, _MAX_READ_BYTES - len(data)))
    return bytes(data)


def _describe(exc: BaseException) -> str:
    return f"{type(exc).__name__}: {exc}"


def _quiet_close(port: Any) -> None:
    try:
        if hasattr(port, "cancel_read"):
            port.cancel_read()
    except Exception as exc:  # best effort on a port that is already broken
        _LOG.debug("cancel_read on a broken port: %s", exc)
    try:
        port.close()
    except Exception as exc:  # closing a dead port may raise anything pyserial wraps
        _LOG.debug("closing a broken port: %s", exc)
