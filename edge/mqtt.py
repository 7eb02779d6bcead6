"""Re-exports of :mod:`edge.publish.mqtt` and :mod:`edge.publish.client`, for importers written before the publish
side moved into :mod:`edge.publish` (the daemon).  New code imports from there."""

from __future__ import annotations

from edge.publish.client import PACKET_OVERHEAD_BYTES, build_client, max_incoming_packet_bytes
from edge.publish.mqtt import RESYNC_TIMEOUT_S, CommandHandler, MqttPublisher, PublisherStats

__all__ = ["MqttPublisher", "PublisherStats", "CommandHandler", "RESYNC_TIMEOUT_S", "build_client",
           "max_incoming_packet_bytes", "PACKET_OVERHEAD_BYTES"]
