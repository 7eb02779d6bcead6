"""firmware_bridge: the serial protocol between spectrometer firmware and the edge, its transports, adapters for
existing dialects, and a spectrometer simulator.  Light by design: numpy and pyserial only."""

from __future__ import annotations

from firmware_bridge.errors import AdapterError, BridgeError, FramingError, ProtocolError, TransportError
from firmware_bridge.frames import (
    PROTOCOL_VERSION,
    Ack,
    Annotation,
    AxisUnit,
    Command,
    CommandCode,
    Dark,
    Frame,
    Hello,
    Line,
    MsgType,
    Nack,
    NackCode,
    PixelFormat,
    Reference,
    SampleTag,
    SignalKind,
    Spectrum,
    SpectrumFlags,
    Status,
    draw_boot_id,
)

__all__ = [
    "PROTOCOL_VERSION",
    "Ack",
    "AxisUnit",
    "AdapterError",
    "Annotation",
    "BridgeError",
    "Command",
    "CommandCode",
    "Dark",
    "Frame",
    "FramingError",
    "Hello",
    "Line",
    "MsgType",
    "Nack",
    "NackCode",
    "PixelFormat",
    "ProtocolError",
    "Reference",
    "SampleTag",
    "SignalKind",
    "Spectrum",
    "SpectrumFlags",
    "Status",
    "TransportError",
    "draw_boot_id",
]

try:  # the codec is added by its own module; keep the package importable while it is being written
    from firmware_bridge.codec import DecoderStats, FrameDecoder, decode_frame, encode

    __all__ += ["DecoderStats", "FrameDecoder", "decode_frame", "encode"]
except ImportError:  # pragma: no cover
    pass
