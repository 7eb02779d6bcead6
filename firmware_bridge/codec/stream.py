"""The incremental decoder: bytes as they arrive, in chunks of any size, in; whole frames out, bad ones counted."""

from __future__ import annotations

import struct
from dataclasses import dataclass

from firmware_bridge.codec.cobs import _cobs_decode_nonzero
from firmware_bridge.codec.decoding import decode_body, max_encoded_bytes
from firmware_bridge.codec.errors import CrcError, OversizeError, UnknownTypeError, VersionError
from firmware_bridge.codec.layouts import BytesLike
from firmware_bridge.errors import FramingError, ProtocolError
from firmware_bridge.frames import Frame

__all__ = ["DecoderStats", "FrameDecoder"]


@dataclass(frozen=True)
class DecoderStats:
    """Counters of a :class:`FrameDecoder`, as a snapshot.

    Every byte fed is accounted for exactly once:
    ``bytes_fed == bytes_ok + bytes_skipped + empty_frames + bytes_pending``, and every delimited non-empty frame
    lands in exactly one of ``frames_ok`` or the error counters (their sum is :attr:`frames_bad`).

    Parameters
    ----------
    frames_ok : int
        Frames decoded and returned.
    crc_errors : int
        Frames whose CRC-32 did not match.
    oversize : int
        Frames longer than :data:`MAX_ENCODED_BYTES` on the wire (a LINE: :data:`MAX_LINE_ENCODED_BYTES`), dropped
        while they streamed in.
    unknown_type : int
        Frames with a valid CRC and an unknown message type.
    malformed : int
        Frames with a bad COBS encoding, a length shorter than an envelope, a ``payload_len`` that disagrees with
        the frame, or a payload that breaks its layout (size, enum code, UTF-8, range).
    bad_version : int
        Frames with a valid CRC and a protocol version other than ours.
    truncated : int
        Partial frames discarded by :meth:`FrameDecoder.reset`.
    empty_frames : int
        Delimiters with nothing before them (idle fill, or a sender's leading delimiter); not errors.
    bytes_fed : int
        Bytes passed to :meth:`FrameDecoder.feed`.
    bytes_ok : int
        Bytes of returned frames, their delimiters included.
    bytes_skipped : int
        Bytes of rejected frames, their delimiters included.
    bytes_pending : int
        Bytes buffered of a frame whose delimiter has not arrived yet.
    """

    frames_ok: int = 0
    crc_errors: int = 0
    oversize: int = 0
    unknown_type: int = 0
    malformed: int = 0
    bad_version: int = 0
    truncated: int = 0
    empty_frames: int = 0
    bytes_fed: int = 0
    bytes_ok: int = 0
    bytes_skipped: int = 0
    bytes_pending: int = 0

    @property
    def frames_bad(self) -> int:
        """Frames rejected for any reason."""
        return (
            self.crc_errors + self.oversize + self.unknown_type + self.malformed + self.bad_version + self.truncated
        )


class FrameDecoder:
    """Incremental decoder: feed it bytes as they arrive, in chunks of any size, and get whole frames back.

    A frame ends at each ``0x00`` delimiter; the start of the stream counts as a delimiter.  A frame that fails
    any check is counted in :attr:`stats` and skipped, and decoding resumes after the next delimiter, so one bad
    frame never costs more than itself (and, when its delimiter is hit, its successor).  The buffer never holds
    more than :data:`MAX_ENCODED_BYTES` (:data:`MAX_LINE_ENCODED_BYTES` for a frame whose first bytes say LINE): a
    longer frame is dropped while it streams in and counted as oversize when its delimiter arrives.  :meth:`feed`
    does not raise on any data.

    >>> from firmware_bridge.codec import encode
    >>> from firmware_bridge.frames import Hello
    >>> decoder = FrameDecoder()
    >>> wire = encode(Hello(nonce=1)) + b"garbage\\x00" + encode(Hello(nonce=2))
    >>> decoder.feed(wire[:5]) + decoder.feed(wire[5:])
    [Hello(nonce=1), Hello(nonce=2)]
    >>> decoder.stats.frames_ok, decoder.stats.frames_bad
    (2, 1)
    """

    def __init__(self) -> None:
        self._pending = bytearray()
        self._discarding = False  # inside an oversize frame: drop bytes up to the next delimiter
        self._frames_ok = 0
        self._crc_errors = 0
        self._oversize = 0
        self._unknown_type = 0
        self._malformed = 0
        self._bad_version = 0
        self._truncated = 0
        self._empty_frames = 0
        self._bytes_fed = 0
        self._bytes_ok = 0
        self._bytes_skipped = 0

    @property
    def stats(self) -> DecoderStats:
        """Snapshot of the counters (a new frozen object on every access)."""
        return DecoderStats(
            frames_ok=self._frames_ok,
            crc_errors=self._crc_errors,
            oversize=self._oversize,
            unknown_type=self._unknown_type,
            malformed=self._malformed,
            bad_version=self._bad_version,
            truncated=self._truncated,
            empty_frames=self._empty_frames,
            bytes_fed=self._bytes_fed,
            bytes_ok=self._bytes_ok,
            bytes_skipped=self._bytes_skipped,
            bytes_pending=len(self._pending),
        )

    def reset(self) -> None:
        """Drop a partially received frame (after a reconnect, say), counting it as truncated."""
        if self._pending or self._discarding:
            self._bytes_skipped += len(self._pending)
            self._truncated += 1
        self._pending = bytearray()
        self._discarding = False

    def feed(self, data: BytesLike) -> list[Frame]:
        """Consume ``data`` and return the frames it completes, in order.

        Parameters
        ----------
        data : bytes-like
            The next bytes of the stream, any length (empty included).

        Returns
        -------
        list of Frame
            Frames whose delimiter is in ``data``; bad frames are counted in :attr:`stats`, never returned.
        """
        if isinstance(data, memoryview):
            data = data.tobytes()
        self._bytes_fed += len(data)
        frames: list[Frame] = []
        find = data.find
        start = 0
        end = find(0)
        while end >= 0:
            if self._pending or self._discarding:
                self._pending += data[start:end]
                segment = bytes(self._pending)
                self._pending = bytearray()
                if self._discarding or len(segment) > max_encoded_bytes(segment):
                    self._discarding = False
                    self._oversize += 1
                    self._bytes_skipped += len(segment) + 1
                else:
                    self._segment(segment, frames)
            elif end == start:
                self._empty_frames += 1
            else:
                self._segment(data[start:end], frames)
            start = end + 1
            end = find(0, start)
        rest = len(data) - start
        if rest:
            if self._discarding:
                self._bytes_skipped += rest
            elif len(self._pending) + rest > self._limit(data, start):
                self._bytes_skipped += len(self._pending) + rest
                self._pending = bytearray()
                self._discarding = True
            else:
                self._pending += data[start:]
        return frames

    def _limit(self, data: bytes | bytearray, start: int) -> int:
        """The size limit of the frame being buffered: its first bytes are ``_pending``, or ``data[start:]``."""
        head = self._pending[:3] if len(self._pending) >= 3 else bytes(self._pending) + data[start : start + 3]
        return max_encoded_bytes(head)

    def _segment(self, segment: bytes | bytearray, frames: list[Frame]) -> None:
        """Decode one non-empty frame (without its delimiter), counting the outcome."""
        size = len(segment) + 1  # with its delimiter
        try:
            limit = max_encoded_bytes(segment)
            if size > limit + 1:
                raise OversizeError(f"expected at most {limit} bytes, got {size - 1}")
            frame = decode_body(_cobs_decode_nonzero(segment))
        except CrcError:
            self._crc_errors += 1
        except OversizeError:
            self._oversize += 1
        except UnknownTypeError:
            self._unknown_type += 1
        except VersionError:
            self._bad_version += 1
        except (FramingError, ProtocolError, ValueError, struct.error):  # ValueError: frames.py invariants
            self._malformed += 1
        else:
            self._frames_ok += 1
            self._bytes_ok += size
            frames.append(frame)
            return
        self._bytes_skipped += size
