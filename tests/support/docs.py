"""Reading the docs from tests: the fenced code blocks of a markdown file, so a test can run what the docs show."""

from __future__ import annotations

from pathlib import Path

__all__ = ["fenced_blocks"]


def fenced_blocks(path: Path) -> list[str]:
    """The text of every ``` fenced block of the markdown file ``path``, in order, each ending in a newline."""
    blocks: list[str] = []
    current: list[str] | None = None
    for line in path.read_text(encoding="utf-8").splitlines():
        if line.strip().startswith("```"):
            if current is None:
                current = []
            else:
                blocks.append("\n".join(current) + "\n")
                current = None
        elif current is not None:
            current.append(line)
    return blocks
