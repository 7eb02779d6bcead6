"""What a fuzz target is (:class:`FuzzTarget`), the bounds every target runs under, and the byte mutation helper."""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass, field
from typing import Any

#: Environment variable giving the number of examples per target (CI keeps it small).
EXAMPLES_ENV = "SPECTROLITE_FUZZ_EXAMPLES"
DEFAULT_EXAMPLES = 300
#: Hypothesis deadline per example: far above any normal parse (milliseconds), it only catches hangs.
HANG_DEADLINE_MS = 5_000
#: Largest traced allocation peak allowed while parsing one example (bytes): inputs are at most ~100 kB, so a
#: parser that needs more than this is amplifying its input (decompression bomb, unbounded buffer).
MEMORY_PEAK_LIMIT_BYTES = 64 * 1024 * 1024
#: The long run traces memory on every this many-th example (CI traces every example).
MEMORY_SAMPLE_EVERY = 10
#: Seconds between two partial JSON writes of a long run.
PROGRESS_EVERY_S = 30.0
#: Largest byte string the byte-level strategies produce.
MAX_INPUT_BYTES = 8192


@dataclass
class FuzzTarget:
    """One parser under fuzz.

    Attributes
    ----------
    name : str
        Short name (``decoder``, ``c12880``, ``as7265x``, ``commands``, ``bundle``).
    strategy : callable
        ``strategy() -> hypothesis.strategies.SearchStrategy`` of one example.
    check : callable
        ``check(example) -> str`` parses the example, asserts the contract and returns an outcome label
        (``"ok"`` or the name of the package exception raised) for the statistics.
    allowed : callable
        ``allowed() -> tuple[type[BaseException], ...]``: the package's own exceptions the parser may raise.
    memory_limit_bytes : int
        Largest traced allocation peak of one example, bytes.
    """

    name: str
    strategy: Callable[[], Any]
    check: Callable[[Any], str]
    allowed: Callable[[], tuple[type[BaseException], ...]]
    memory_limit_bytes: int = MEMORY_PEAK_LIMIT_BYTES
    outcomes: dict[str, int] = field(default_factory=dict)


def mutate(data: bytes, flips: list[tuple[int, int]], cut: int | None) -> bytes:
    """Apply XOR byte flips ``(index, mask)`` (indices modulo the length) and an optional truncation."""
    buf = bytearray(data)
    if buf:
        for index, mask in flips:
            buf[index % len(buf)] ^= mask or 1
    if cut is not None and buf:
        del buf[cut % len(buf):]
    return bytes(buf)
