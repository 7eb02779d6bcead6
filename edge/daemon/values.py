"""The small values the daemon's stages hand each other: a received frame, an outgoing message, a capture order,
a verified engine to swap in."""

from __future__ import annotations

import dataclasses
from dataclasses import dataclass
from typing import Any

from edge.inference import InferenceEngine
from edge.publish.schema import MessageKind
from edge.references import ReferenceKind

#: One message for :meth:`edge.daemon.link.Link.publish_many`: kind, payload dict, command name (command responses)
#: or None.
OutgoingTuple = tuple[MessageKind, dict[str, Any], "str | None"]


@dataclass(frozen=True)
class _Received:
    """A frame with its arrival time (``time.monotonic_ns``), as handed from the reader to inference."""

    frame: Any
    received_ns: int


@dataclass(frozen=True)
class _Outgoing:
    """A message for the publisher: its kind, payload dict and (for command responses) the command name."""

    kind: MessageKind
    message: dict[str, Any]
    command: str | None = None


@dataclass
class _Capture:
    """A capture command in progress (inference thread only)."""

    kind: ReferenceKind
    needed: int
    request_id: str | None
    command: str
    deadline_s: float
    collected: list[Any] = dataclasses.field(default_factory=list)


@dataclass(frozen=True)
class _Swap:
    """A verified engine to swap in, with what asked for it."""

    engine: InferenceEngine
    request_id: str | None
    command: str | None
    reason: str
