"""Command line of the device side: ``spectro-edge check | run | config | demo``.

Data goes to stdout, diagnostics to logging on stderr; expected failures end as one clear line and a non-zero
exit code.  Every subcommand imports its module lazily, so ``spectro-edge --help`` stays instant on a Pi.
"""

from __future__ import annotations

import argparse
import logging
import sys
from typing import Sequence

from edge.errors import EdgeError

log = logging.getLogger("spectro-edge")


def _build_parser() -> argparse.ArgumentParser:
    parser = argparse.ArgumentParser(
        prog="spectro-edge",
        description="spectrolite edge daemon: serial spectra in, int8 predictions with intervals and drift alerts "
        "out over MQTT.",
    )
    parser.add_argument("-v", "--verbose", action="count", default=0, help="more logging (-v info, -vv debug)")
    sub = parser.add_subparsers(dest="command", required=True, metavar="COMMAND")

    check = sub.add_parser("check", help="verify a model bundle (hashes, signature, golden vectors) and print it")
    check.add_argument("bundle", help="path of a .spectrolite bundle")
    check.add_argument("--public-key", help="Ed25519 public key (PEM); the bundle must carry a valid signature")

    run = sub.add_parser("run", help="run the daemon")
    run.add_argument("--config", required=True, help="edge TOML config (see `spectro-edge config --example`)")

    config = sub.add_parser("config", help="print or validate a daemon configuration")
    group = config.add_mutually_exclusive_group(required=True)
    group.add_argument("--example", action="store_true", help="print a commented example configuration")
    group.add_argument("--validate", metavar="PATH", help="load PATH with environment overrides and print it")

    sub.add_parser(
        "demo",
        help="run simulator -> daemon -> broker -> subscriber end to end, then summarise (options: demo --help)",
        add_help=False,
    )
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spectro-edge``; returns the process exit code."""
    parser = _build_parser()
    args, extra = parser.parse_known_args(argv)
    if extra and args.command != "demo":
        parser.error(f"unrecognized arguments: {' '.join(extra)}")
    level = logging.WARNING - 10 * min(args.verbose, 2) if args.command != "run" else logging.INFO
    logging.basicConfig(level=level, stream=sys.stderr, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    try:
        if args.command == "check":
            from edge.bundle import check_command

            return check_command(args.bundle, args.public_key)
        if args.command == "run":
            from edge.config import load_config
            from edge.daemon import run_daemon

            return run_daemon(load_config(args.config))
        if args.command == "config":
            from edge import config as edge_config

            if args.example:
                sys.stdout.write(edge_config.example_config())
            else:
                print(edge_config.load_config(args.validate))
            return 0
        if args.command == "demo":
            from edge.demo import main as demo_main

            return demo_main(extra)
    except (EdgeError, OSError) as exc:
        print(f"spectro-edge {args.command}: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return 1  # pragma: no cover - argparse guarantees a command


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
