"""``python -m benchmarks.daemonprof --out DIR -- run --config F``: the daemon under cProfile, one profile per thread.

The daemon's work happens in its threads (reader, inference, publisher, MQTT), which ``python -m cProfile`` does
not see, so this wraps :meth:`threading.Thread.run` with one :class:`cProfile.Profile` per thread and, when the
daemon exits (SIGTERM included), writes ``<thread>.prof`` (for ``pstats``/snakeviz) and ``<thread>.txt`` (the top
functions by own time) into ``DIR``. Profiling slows Python code down, so its figures say where the time goes, not
how much there is; ``spectro-bench throughput --profile-daemon DIR`` runs one extra, uncounted step this way.

Each profile also counts the thread's calls (Python functions and the built-in and C functions they call):
``calls.json`` holds them per thread, and :func:`calls_per_frame` divides them by the frames of the step, a figure
that does not depend on the machine's speed. At low rates a frame's CPU time is about proportional to it (each call
runs with cold caches), so it says what a board's CPU per frame is made of.

Note that the own time of a C call that releases the GIL (``select``, a lock ``acquire``, a socket ``send``)
includes waiting to get the GIL back: on a busy machine that is contention, not work.
"""

from __future__ import annotations

import argparse
import cProfile
import io
import json
import pstats
import re
import sys
import threading
from collections.abc import Sequence
from pathlib import Path
from typing import Any

__all__ = ["CALLS_FILE", "calls_per_frame", "main"]

#: Functions listed per thread in the text summaries.
TOP_FUNCTIONS = 25
#: Per-thread call counts written beside the profiles.
CALLS_FILE = "calls.json"
#: Threads left out of the total of :func:`calls_per_frame`: the main thread starts the daemon (imports, bundle
#: load and self-check) and waits for a signal; neither depends on the frames.
NOT_PER_FRAME = ("main", "signal-watcher")


def main(argv: Sequence[str] | None = None) -> int:
    """Run ``spectro-edge <args>`` with every thread profiled; returns the daemon's exit code."""
    p = argparse.ArgumentParser(prog="python -m benchmarks.daemonprof", description=__doc__.splitlines()[0])
    p.add_argument("--out", type=Path, required=True, help="folder for the per-thread profiles")
    p.add_argument("edge_args", nargs=argparse.REMAINDER, help="arguments of spectro-edge, after --")
    args = p.parse_args(argv)
    edge_args = [a for a in args.edge_args if a != "--"] if args.edge_args[:1] == ["--"] else list(args.edge_args)
    args.out.mkdir(parents=True, exist_ok=True)
    profiles: list[tuple[str, cProfile.Profile]] = []
    lock = threading.Lock()
    original = threading.Thread.run

    def profiled_run(self: threading.Thread) -> None:
        prof = cProfile.Profile()
        with lock:
            profiles.append((self.name, prof))
        prof.enable()
        try:
            original(self)
        finally:
            prof.disable()

    threading.Thread.run = profiled_run  # type: ignore[method-assign]  # profiling: every thread's run, patched
    main_prof = cProfile.Profile()
    profiles.append(("main", main_prof))
    from edge.cli import main as edge_main

    main_prof.enable()
    try:
        return int(edge_main(edge_args))
    finally:
        main_prof.disable()
        threading.Thread.run = original  # type: ignore[method-assign]  # profiling: the original run, back
        _write(profiles, args.out)


def calls_per_frame(out: Path, frames: int) -> dict[str, float]:
    """Calls per frame of each thread profiled into ``out`` over a step of ``frames`` frames, and under ``"all"``
    their sum over every thread but :data:`NOT_PER_FRAME`; {} when ``out`` has no
    :data:`CALLS_FILE` (the daemon did not exit cleanly) or no frames went through.

    >>> import tempfile
    >>> d = Path(tempfile.mkdtemp())
    >>> _ = (d / CALLS_FILE).write_text('{"threads": {"main": {"calls": 9000}, "spectro-reader": {"calls": 1500}}}')
    >>> calls_per_frame(d, 10)
    {'main': 900.0, 'spectro-reader': 150.0, 'all': 150.0}
    """
    try:
        threads = json.loads((out / CALLS_FILE).read_text(encoding="utf-8"))["threads"]
    except (OSError, ValueError, KeyError):
        return {}
    if frames <= 0:
        return {}
    per = {name: int(t["calls"]) / frames for name, t in threads.items()}
    per["all"] = sum(v for name, v in per.items() if name not in NOT_PER_FRAME)
    return per


def _write(profiles: list[tuple[str, Any]], out: Path) -> None:
    calls: dict[str, dict[str, Any]] = {}
    for i, (name, prof) in enumerate(profiles):
        stem = re.sub(r"[^A-Za-z0-9_.-]+", "_", name) or f"thread{i}"
        try:
            prof.dump_stats(str(out / f"{stem}.prof"))
            buf = io.StringIO()
            stats = pstats.Stats(prof, stream=buf)
            stats.sort_stats("tottime").print_stats(TOP_FUNCTIONS)
            (out / f"{stem}.txt").write_text(buf.getvalue(), encoding="utf-8")
            counts = calls.setdefault(name, {"calls": 0, "primitive_calls": 0, "threads": 0})
            counts["calls"] += int(stats.total_calls)  # type: ignore[attr-defined]  # pstats' counters, untyped
            counts["primitive_calls"] += int(stats.prim_calls)  # type: ignore[attr-defined]
            counts["threads"] += 1
        except (TypeError, ValueError, OSError) as exc:  # a thread that never ran has no stats
            print(f"daemonprof: no profile for {name}: {exc}", file=sys.stderr)
    try:
        (out / CALLS_FILE).write_text(json.dumps({"threads": calls}, indent=1), encoding="utf-8")
    except OSError as exc:
        print(f"daemonprof: cannot write {out / CALLS_FILE}: {exc}", file=sys.stderr)


if __name__ == "__main__":  # pragma: no cover
    sys.exit(main())
