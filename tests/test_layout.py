"""The tree keeps the shape #14 gave it: one concern per module, so no Python file grows past the limit.

A file over the limit holds more than one job; split it by concern (a room that says what it holds), never by
shortening comments.
"""

from __future__ import annotations

from pathlib import Path

#: At most this many lines per Python file (issue #14: "No Python file over ~600 lines").
MAX_LINES = 600
PACKAGES = ("edge", "firmware_bridge", "trainer", "benchmarks", "tests")


def test_no_python_file_is_over_the_line_limit(repo_root: Path) -> None:
    sizes = {p: len(p.read_text(encoding="utf-8").splitlines())
             for package in PACKAGES for p in sorted((repo_root / package).rglob("*.py"))}
    assert len(sizes) > 100, f"expected the project's Python files under {PACKAGES}, found {len(sizes)}"
    too_long = {str(p.relative_to(repo_root)): n for p, n in sizes.items() if n > MAX_LINES}
    assert not too_long, f"expected at most {MAX_LINES} lines per file, got {too_long}: split them by concern"
