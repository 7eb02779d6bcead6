"""What the archive keeps (``archive.policy``) and which spectra carry a sample tag: pure, no I/O, no thread."""

from __future__ import annotations

import collections
from typing import Any

from edge.validation import require_enum, require_int

__all__ = ["POLICIES", "ArchivePolicy"]

#: The kinds of ``archive.policy``.
POLICIES = ("all", "every_nth", "flagged", "tagged")


class ArchivePolicy:
    """Which offered spectra are kept, and which carry a sample tag (pure; the caller serialises the calls).

    >>> p = ArchivePolicy("every_nth", every_n=3)
    >>> [p.keep(flagged=False) for _ in range(6)]
    [True, False, False, True, False, False]
    >>> p = ArchivePolicy("tagged", window_frames=1)
    >>> p.tag("S-1", frames=2)
    >>> [p.route(flagged=False) for _ in range(6)]  # (sample id, keep); window of 1 after (before: see route)
    [('S-1', True), ('S-1', True), (None, True), (None, False), (None, False), (None, False)]
    """

    def __init__(self, policy: str = "all", *, every_n: int = 1, window_frames: int = 0) -> None:
        require_enum(policy, "archive.policy", ValueError, POLICIES)
        require_int(every_n, "archive.every_n", ValueError, minimum=1)
        require_int(window_frames, "archive.window_frames", ValueError, minimum=0)
        self.policy = policy
        self.every_n = every_n
        self.window_frames = window_frames
        self._n = 0
        self._tags: collections.deque[list[Any]] = collections.deque()  # [sample_id, frames left]
        self._after = 0

    def tag(self, sample_id: str, frames: int) -> None:
        """The next ``frames`` spectra (after any earlier tag's) carry ``sample_id`` and are kept."""
        self._tags.append([sample_id, frames])

    @property
    def tags_pending(self) -> int:
        """Spectra still to be tagged."""
        return sum(int(t[1]) for t in self._tags)

    def keep(self, *, flagged: bool) -> bool:
        """The policy's verdict for one untagged spectrum."""
        self._n += 1
        if self.policy == "every_nth":
            return (self._n - 1) % self.every_n == 0
        if self.policy == "flagged":
            return flagged
        return self.policy == "all"

    def route(self, *, flagged: bool) -> tuple[str | None, bool]:
        """``(sample id or None, keep)`` for the next spectrum; with policy ``tagged`` a spectrum is kept in the
        ``window_frames`` after a tag's last spectrum (the ones before are the caller's ring buffer)."""
        if self._tags:
            head = self._tags[0]
            head[1] -= 1
            if head[1] <= 0:
                self._tags.popleft()
                self._after = self.window_frames
            return str(head[0]), True
        if self.policy == "tagged":
            self._n += 1
            if self._after > 0:
                self._after -= 1
                return None, True
            return None, False
        return None, self.keep(flagged=flagged)

