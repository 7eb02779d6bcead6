"""Bounded splitting of a byte stream into newline-terminated lines, shared by the ASCII dialect adapters.

Pure and tiny on purpose: the adapters feed it whatever chunks the transport delivers and get back the complete
lines; a line that grows past ``max_line_bytes`` is dropped whole (up to its newline) and reported once, so a
stream without newlines can never grow memory.
"""

from __future__ import annotations

__all__ = ["LineSplitter"]


class LineSplitter:
    """Split chunks of bytes into complete lines (without the ``\\n``), never holding more than a bounded tail.

    >>> s = LineSplitter(max_line_bytes=8)
    >>> s.split(b"12,3\\n4")
    ([b'12,3'], False)
    >>> s.split(b"5\\n" + b"x" * 20)
    ([b'45'], True)
    >>> s.split(b"yy\\nok\\n")  # the rest of the overlong line is dropped up to its newline
    ([b'ok'], False)
    """

    def __init__(self, max_line_bytes: int) -> None:
        self.max_line_bytes = max_line_bytes
        self._buffer = bytearray()
        self._discarding = False

    def split(self, data: bytes) -> tuple[list[bytes], bool]:
        """Return the lines that ``data`` completes, and whether a line just went past ``max_line_bytes``."""
        lines: list[bytes] = []
        data = bytes(data)
        start = 0
        while True:
            end = data.find(b"\n", start)
            if end < 0:
                break
            chunk = data[start:end]
            start = end + 1
            if self._discarding:  # the tail of an overlong line: already reported, dropped
                self._discarding = False
                self._buffer.clear()
                continue
            self._buffer += chunk
            lines.append(bytes(self._buffer))
            self._buffer.clear()
        overflow = False
        if not self._discarding:
            self._buffer += data[start:]
            if len(self._buffer) > self.max_line_bytes:
                self._buffer.clear()
                self._discarding = True
                overflow = True
        return lines, overflow

    def drop_partial(self) -> None:
        """Forget the partial line received so far (an overlong line being dropped stays dropped)."""
        self._buffer.clear()

    def reset(self) -> None:
        """Start afresh, as after a reconnect: no partial line, nothing being dropped."""
        self._buffer.clear()
        self._discarding = False
