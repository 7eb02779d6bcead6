"""``python -m benchmarks.harness --embedded-broker PORT``: the embedded broker that :func:`start_broker` starts."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Sequence

from benchmarks import harness
from benchmarks.harness.broker import run_embedded_broker

__all__ = ["main"]


def main(argv: Sequence[str] | None = None) -> int:
    """``python -m benchmarks.harness --embedded-broker PORT``."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.harness", description=harness.__doc__.splitlines()[0])
    p.add_argument("--embedded-broker", type=int, metavar="PORT", required=True,
                   help="serve MQTT with amqtt on 127.0.0.1:PORT until SIGTERM")
    args = p.parse_args(argv)
    logging.basicConfig(level=logging.WARNING, stream=sys.stderr)
    return run_embedded_broker(args.embedded_broker)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
