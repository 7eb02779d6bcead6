"""The harness's one error."""

from __future__ import annotations

__all__ = ["HarnessError"]


class HarnessError(RuntimeError):
    """A part of the loop could not be set up or did not do its job (the message says which and why)."""
