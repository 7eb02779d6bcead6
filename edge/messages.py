"""Re-exports of :mod:`edge.publish.topics`, :mod:`edge.publish.schema` and :mod:`edge.publish.messages`, for
importers written before the publish side moved into :mod:`edge.publish` (the daemon).  New code imports from
those modules."""

from __future__ import annotations

from edge.publish.messages import (
    ALERTS,
    PRIORITY_OF_KIND,
    OodStats,
    Priority,
    TargetValue,
    command_response_message,
    drift_message,
    metrics_message,
    prediction_message,
    status_message,
)
from edge.publish.schema import (
    DEVICE_SIGNALS,
    SCHEMA_VERSION,
    SCHEMAS,
    MessageError,
    MessageKind,
    Quality,
    decode,
    encode,
    validate,
)
from edge.publish.topics import COMMAND_NAME_RE, Topics, topic

__all__ = [
    "SCHEMA_VERSION",
    "MessageError",
    "MessageKind",
    "Quality",
    "Priority",
    "PRIORITY_OF_KIND",
    "COMMAND_NAME_RE",
    "Topics",
    "topic",
    "TargetValue",
    "OodStats",
    "prediction_message",
    "drift_message",
    "status_message",
    "metrics_message",
    "command_response_message",
    "SCHEMAS",
    "DEVICE_SIGNALS",
    "ALERTS",
    "validate",
    "encode",
    "decode",
]
