"""SerialTransport reads what a port holds in blocks, not one byte per call (issue #18, finding 7).

pyserial's ``socket://`` handler reports ``in_waiting`` as 0 or 1, so ``read(in_waiting)`` read a TCP stream one
byte per call: a 5.5 MB garbage burst held valid spectra back by about a minute.  These tests send several MB of
garbage then valid frames over a real TCP socket (and ``loop://``) and count the decoder's ``feed`` calls; a
transport reading one byte per call trips the bound long before the burst is through.
"""

from __future__ import annotations

import random
import socket
import threading
from collections.abc import Sequence
from typing import Any

import numpy as np
import pytest

from firmware_bridge.codec import FrameDecoder, encode
from firmware_bridge.frames import Frame, Hello, Spectrum
from firmware_bridge.transport import SerialTransport

#: Garbage sent before the valid frames, bytes.
GARBAGE_BYTES = 4 * 1024 * 1024
#: Valid frames sent after the garbage.
VALID_FRAMES = 20
#: Most bytes-to-decoder hand-overs allowed per garbage byte: a block reader needs ~GARBAGE_BYTES / 65536 calls
#: (more when TCP delivers smaller segments); one byte per call needs GARBAGE_BYTES.  1/256 leaves a wide margin
#: either way and keeps the failing case short.
MAX_FEEDS_PER_BYTE = 1 / 256
#: Upper bound on read_frames calls, so a transport that never delivers ends the test instead of hanging it.
MAX_READ_CALLS = 100_000


class TooManyReads(AssertionError):
    """The transport handed the decoder far more chunks than a block reader would."""


class CountingDecoder:
    """A real FrameDecoder that counts how many chunks it is fed and fails once there are too many."""

    def __init__(self, max_feeds: int) -> None:
        self._inner = FrameDecoder()
        self.max_feeds = max_feeds
        self.feeds = 0
        self.bytes_fed = 0

    def feed(self, data: bytes) -> Sequence[Frame]:
        self.feeds += 1
        self.bytes_fed += len(data)
        if self.feeds > self.max_feeds:
            raise TooManyReads(f"expected at most {self.max_feeds} reads for the burst, got more after "
                               f"{self.bytes_fed} bytes ({self.bytes_fed / self.feeds:.1f} bytes per read)")
        return self._inner.feed(data)

    def reset(self) -> None:
        self._inner.reset()

    @property
    def stats(self) -> Any:
        return self._inner.stats


def _garbage(n: int, seed: int = 18) -> bytes:
    return random.Random(seed).randbytes(n)


def _valid_frames() -> list[Frame]:
    frames: list[Frame] = [Hello(nonce=i) for i in range(VALID_FRAMES // 2)]
    frames += [Spectrum(seq=i, timestamp_us=i * 1000, integration_time_us=5000,
                        counts=np.arange(650, dtype=np.uint16)) for i in range(VALID_FRAMES - len(frames))]
    return frames


def _read_valid(t: SerialTransport, expected: list[Frame]) -> list[bytes]:
    """Read until every expected frame arrived; returns the frames re-encoded (spectra compare by identity)."""
    wanted = {encode(f) for f in expected}
    got: list[bytes] = []
    for _ in range(MAX_READ_CALLS):
        got.extend(b for b in map(encode, t.read_frames(0.5)) if b in wanted)
        if len(got) >= len(expected):
            break
    return got


def test_socket_url_reads_a_garbage_burst_in_blocks() -> None:
    server = socket.socket()
    server.bind(("127.0.0.1", 0))
    server.listen(1)
    port = server.getsockname()[1]
    expected = _valid_frames()
    burst = _garbage(GARBAGE_BYTES) + b"\x00" + b"".join(encode(f) for f in expected)
    decoder = CountingDecoder(max_feeds=int(GARBAGE_BYTES * MAX_FEEDS_PER_BYTE))
    sender: threading.Thread | None = None
    t = SerialTransport(f"socket://127.0.0.1:{port}", decoder=decoder)
    try:
        conn, _ = server.accept()
        sender = threading.Thread(target=conn.sendall, args=(burst,), daemon=True)
        sender.start()
        try:
            got = _read_valid(t, expected)
        finally:
            t.close()  # unblocks a sender stuck on a full socket buffer when the test fails
            conn.close()
        assert got == [encode(f) for f in expected]
        assert decoder.bytes_fed == len(burst)
        assert decoder.feeds <= decoder.max_feeds
        assert t.stats.bytes_read == len(burst)
        assert t.stats.decoder.bytes_skipped > 0  # the garbage went through the decoder, not around it
    finally:
        t.close()
        server.close()
        if sender is not None:
            sender.join(timeout=10)


@pytest.mark.parametrize("burst_bytes", [1, 1000, 4000])  # loop:// queues at most 4096 bytes
def test_loop_url_reads_what_is_buffered_in_blocks(burst_bytes: int) -> None:
    expected = [Hello(nonce=1), Hello(nonce=2)]
    burst = _garbage(burst_bytes) + b"\x00" + b"".join(encode(f) for f in expected)
    # loop:// hands over at most what is queued: one read for the first byte, one for the rest, per burst
    decoder = CountingDecoder(max_feeds=4)
    with SerialTransport("loop://", decoder=decoder) as t:
        t.write(burst)
        got = _read_valid(t, expected)
    assert got == [encode(f) for f in expected]
    assert decoder.bytes_fed == len(burst)
