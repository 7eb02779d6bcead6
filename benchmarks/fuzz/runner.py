"""The table of fuzz targets and ``spectro-bench fuzz``: run each under Hypothesis, bounded in time and memory."""

from __future__ import annotations

import argparse
import json
import os
import time
import tracemalloc
from collections.abc import Callable
from pathlib import Path
from typing import Any

from benchmarks.fuzz.bundle import BUNDLE_READ_BUFFER_BYTES, bundle_check, bundle_errors, bundle_strategy
from benchmarks.fuzz.commands import command_errors, commands_check, commands_strategy
from benchmarks.fuzz.frames import (
    as7265x_check,
    as7265x_strategy,
    bridge_errors,
    c12880_check,
    c12880_strategy,
    decoder_check,
    decoder_strategy,
)
from benchmarks.fuzz.target import (
    DEFAULT_EXAMPLES,
    EXAMPLES_ENV,
    HANG_DEADLINE_MS,
    MEMORY_PEAK_LIMIT_BYTES,
    MEMORY_SAMPLE_EVERY,
    PROGRESS_EVERY_S,
    FuzzTarget,
)

TARGETS: dict[str, FuzzTarget] = {
    "decoder": FuzzTarget("decoder", decoder_strategy, decoder_check, bridge_errors),
    "c12880": FuzzTarget("c12880", c12880_strategy, c12880_check, bridge_errors),
    "as7265x": FuzzTarget("as7265x", as7265x_strategy, as7265x_check, bridge_errors),
    "commands": FuzzTarget("commands", commands_strategy, commands_check, command_errors),
    # edge.bundle.read_members reads with ``fh.read(MAX_BUNDLE_BYTES + 1)``, which allocates the whole
    # 123 MiB buffer up front whatever the file size (then shrinks it); the bound allows that one buffer.
    "bundle": FuzzTarget("bundle", bundle_strategy, bundle_check, bundle_errors,
                         memory_limit_bytes=BUNDLE_READ_BUFFER_BYTES + MEMORY_PEAK_LIMIT_BYTES),
}


def examples_from_env(default: int = DEFAULT_EXAMPLES) -> int:
    """Examples per target from ``$SPECTROLITE_FUZZ_EXAMPLES`` (default 300)."""
    raw = os.environ.get(EXAMPLES_ENV, "")
    return int(raw) if raw.strip() else default


def guarded(target: FuzzTarget, *, memory_every: int = 1) -> Callable[[Any], None]:
    """The property run per example: the check, only the package's exceptions tolerated, memory bounded.

    The check function itself lets a package exception escape only where the contract allows it (it catches
    them where they are expected); any other exception, an assertion failure, or a traced allocation peak above
    ``target.memory_limit_bytes`` fails the example. Every ``memory_every``-th example runs under
    :mod:`tracemalloc` (tracing triples the cost of an example, so the long run samples).
    """
    count = [0]

    def prop(example: Any) -> None:
        count[0] += 1
        if count[0] % memory_every:
            outcome = target.check(example)
        else:
            tracemalloc.start()
            try:
                outcome = target.check(example)
                _, peak = tracemalloc.get_traced_memory()
            finally:
                tracemalloc.stop()
            assert peak <= target.memory_limit_bytes, f"{target.name}: {peak} bytes traced at peak"
        target.outcomes[outcome] = target.outcomes.get(outcome, 0) + 1

    return prop


def run_target(target: FuzzTarget, examples: int, *, seed: int | None = None,
               memory_every: int = 1) -> dict[str, Any]:
    """Run one target for ``examples`` Hypothesis examples; return counts and time (raises on a failure)."""
    from hypothesis import HealthCheck, given, settings
    from hypothesis import seed as hseed

    strategy = target.strategy()  # built (and warmed up) before the clock and the deadline start
    target.outcomes = {}
    prop = guarded(target, memory_every=memory_every)
    test = settings(max_examples=examples, deadline=HANG_DEADLINE_MS, database=None, derandomize=seed is None,
                    suppress_health_check=list(HealthCheck), print_blob=True)(given(strategy)(prop))
    if seed is not None:
        test = hseed(seed)(test)
    t0 = time.perf_counter()
    test()
    elapsed = time.perf_counter() - t0
    n = sum(target.outcomes.values())
    return {"examples": n, "seconds": elapsed, "examples_per_s": n / elapsed if elapsed else 0.0,
            "memory_traced_every": memory_every, "outcomes": dict(sorted(target.outcomes.items()))}


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of ``spectro-bench fuzz``."""
    parser.add_argument("--examples", type=int, default=None,
                        help=f"examples per target (default ${EXAMPLES_ENV} or {DEFAULT_EXAMPLES})")
    parser.add_argument("--targets", nargs="+", choices=sorted(TARGETS), default=list(TARGETS),
                        help="targets to run (default all)")
    parser.add_argument("--seed", type=int, default=None, help="Hypothesis seed (default derandomized)")
    parser.add_argument("--memory-every", type=int, default=MEMORY_SAMPLE_EVERY,
                        help=f"trace memory on every N-th example (default {MEMORY_SAMPLE_EVERY})")
    parser.add_argument("--json", type=Path, default=None, help="write the figures as JSON here")


def run(args: argparse.Namespace) -> int:
    """Run the chosen targets; print a table and write JSON ``{targets: {name: {examples, seconds, ...}}}``."""
    import threading

    examples = args.examples if args.examples is not None else examples_from_env()
    results: dict[str, Any] = {}
    failed: list[str] = []
    t_start = time.perf_counter()
    current: list[str] = []
    done = threading.Event()

    def write(partial: bool) -> None:
        if args.json is None:
            return
        snapshot = dict(results)
        if partial and current:  # the target running now, so a run cut short still leaves its figures
            outcomes = dict(TARGETS[current[0]].outcomes)
            snapshot[current[0]] = {"examples": sum(outcomes.values()), "running": True,
                                    "seconds": time.perf_counter() - t_start, "outcomes": outcomes}
        args.json.parent.mkdir(parents=True, exist_ok=True)
        tmp = args.json.with_suffix(".tmp")
        tmp.write_text(json.dumps({"benchmark": "fuzz", "examples_requested": examples,
                                   "hang_deadline_ms": HANG_DEADLINE_MS,
                                   "memory_peak_limit_bytes": MEMORY_PEAK_LIMIT_BYTES,
                                   "targets": snapshot, "failed": failed}, indent=2) + "\n")
        tmp.replace(args.json)

    def progress() -> None:
        while not done.wait(PROGRESS_EVERY_S):
            write(partial=True)

    reporter = threading.Thread(target=progress, name="fuzz-progress", daemon=True)
    reporter.start()
    print(f"{'target':<10} {'examples':>9} {'seconds':>9} {'ex/s':>8}  outcomes")
    for name in args.targets:
        current[:] = [name]
        t_start = time.perf_counter()
        try:
            r = run_target(TARGETS[name], examples, seed=args.seed, memory_every=args.memory_every)
        except Exception as exc:  # a failing target is reported, the others still run
            failed.append(name)
            r = {"examples": sum(TARGETS[name].outcomes.values()), "failure": f"{type(exc).__name__}: {exc}"[:4000]}
            print(f"{name:<10} FAILED {r['failure'][:300]}")
        else:
            top = ", ".join(f"{k}={v}" for k, v in sorted(r["outcomes"].items(), key=lambda kv: -kv[1])[:4])
            print(f"{name:<10} {r['examples']:>9} {r['seconds']:>9.1f} {r['examples_per_s']:>8.1f}  {top}")
        results[name] = r
        current.clear()
        write(partial=False)
    done.set()
    return 1 if failed else 0
