"""The codec's own errors: what a frame that fails a check raises, one class per check the decoder counts."""

from __future__ import annotations

from firmware_bridge.errors import FramingError, ProtocolError

__all__ = ["CrcError", "OversizeError", "UnknownTypeError", "VersionError"]


class CrcError(FramingError):
    """The CRC-32 of a frame does not match its contents."""


class OversizeError(FramingError):
    """A frame is longer than :data:`MAX_FRAME_BYTES` (or its encoding longer than :data:`MAX_ENCODED_BYTES`)."""


class VersionError(ProtocolError):
    """A frame carries a protocol version other than :data:`~firmware_bridge.frames.PROTOCOL_VERSION`."""


class UnknownTypeError(ProtocolError):
    """A frame carries a message type byte that is not a :class:`~firmware_bridge.frames.MsgType`."""
