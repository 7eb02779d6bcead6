"""Command line of the benchmarks: ``spectro-bench <name> [options] --json PATH``.

Each benchmark lives in ``benchmarks/<name>.py`` with ``add_arguments(parser)`` and ``run(args) -> int``; this
module imports every one to build its subcommand, then runs the chosen one.  A benchmark module imports the trainer
(TensorFlow) inside ``run`` only, so ``spectro-bench codec`` never loads it.
"""

from __future__ import annotations

import argparse
import importlib
import logging
import sys
from typing import Sequence

#: name -> one-line description of each benchmark module.
BENCHMARKS: dict[str, str] = {
    "demo": "train the demo model, run the whole loop on one machine, summarise (what `make demo` runs)",
    "codec": "serial frame encode/decode throughput (MB/s, frames/s)",
    "preprocess": "preprocessing chain latency, single spectrum and batch of 1,000",
    "latency": "per-stage edge latency of a bundle against float/Keras/PLS references",
    "throughput": "sustained frames/s through simulator -> pty -> daemon -> mosquitto -> subscriber",
    "loop": "a trained bundle through simulator -> spectro-edge run -> broker -> subscriber, scored against offline",
    "accuracy": "RMSEP/accuracy of PLS, CNN float and CNN int8 on the shipped protocols",
    "compare": "two result JSON files side by side with ratios",
    "soak": "long run through the whole daemon: memory, fd and thread growth, losses",
    "fleet": "N devices through a site broker bridged to a central one: a central outage, a site restart, losses",
    "fuzz": "Hypothesis fuzzing of the untrusted-input parsers (decoder, adapters, commands, bundle reader)",
    "attack": "the high and medium findings of #18 replayed against a running daemon: held or not, losses",
    "drift": "scripted drifts from the simulator through the loop: each detector's delay and false-alarm rate",
}


def main(argv: Sequence[str] | None = None) -> int:
    """Entry point of ``spectro-bench``; returns the process exit code."""
    parser = argparse.ArgumentParser(prog="spectro-bench", description="spectrolite benchmarks (figures, not tests)")
    sub = parser.add_subparsers(dest="bench", required=True, metavar="BENCHMARK")
    available: dict[str, object] = {}
    for name, help_text in BENCHMARKS.items():
        try:
            module = importlib.import_module(f"benchmarks.{name}")
        except ModuleNotFoundError as exc:
            if exc.name != f"benchmarks.{name}":
                raise
            sub.add_parser(name, help=f"{help_text} [not built yet]")
            continue
        available[name] = module
        module.add_arguments(sub.add_parser(name, help=help_text))  # type: ignore[attr-defined]  # a benchmark module, typed as object: add_arguments is its protocol
    args = parser.parse_args(argv)
    logging.basicConfig(level=logging.INFO, stream=sys.stderr, format="%(levelname)s %(name)s: %(message)s")
    module = available.get(args.bench)
    if module is None:
        print(f"spectro-bench {args.bench}: not built yet", file=sys.stderr)
        return 2
    return int(module.run(args))  # type: ignore[attr-defined]  # a benchmark module, typed as object: run is its protocol


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
