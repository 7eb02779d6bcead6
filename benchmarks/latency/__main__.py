"""``python -m benchmarks.latency``: ``spectro-bench latency``."""

from __future__ import annotations

import sys

if __name__ == "__main__":  # pragma: no cover
    from benchmarks.cli import main

    sys.exit(main(["latency", *sys.argv[1:]]))
