"""Exception tree of the serial side: every error ``firmware_bridge`` raises derives from :class:`BridgeError`."""

from __future__ import annotations

__all__ = [
    "BridgeError",
    "FramingError",
    "ProtocolError",
    "TransportError",
    "AdapterError",
]


class BridgeError(Exception):
    """Base class of every error raised by ``firmware_bridge``."""


class FramingError(BridgeError, ValueError):
    """A frame could not be encoded or decoded (bad length, CRC, COBS, layout)."""


class ProtocolError(BridgeError, ValueError):
    """A well-framed message that breaks the protocol (unknown type, bad field, wrong version)."""


class TransportError(BridgeError, OSError):
    """The serial transport failed (port missing, closed, or unusable)."""


class AdapterError(BridgeError, ValueError):
    """A line or reply of a foreign dialect (Hamamatsu ASCII, AS7265x AT) could not be parsed."""
