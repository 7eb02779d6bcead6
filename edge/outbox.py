"""Re-exports of :mod:`edge.publish.outbox`, for importers written before the publish side moved into
:mod:`edge.publish` (the daemon).  New code imports from there."""

from __future__ import annotations

from edge.publish.log_limit import LOG_INTERVAL_S, LogLimiter
from edge.publish.outbox import CLEAR_FRACTION, FULL_POLICIES, Outbox, OutboxFullError, OutboxMessage, OutboxStats

__all__ = ["Outbox", "OutboxMessage", "OutboxStats", "OutboxFullError", "FULL_POLICIES", "CLEAR_FRACTION", "LogLimiter",
           "LOG_INTERVAL_S"]
