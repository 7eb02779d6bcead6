"""Line-frame steps of ``spectro-bench throughput``: spectra/s end to end when the device sends LINE frames.

Usage::

    spectro-bench throughput --line-spectra 256 [--line-rates 20000,40000] [--line-seconds 4]
                             [--line-max-spectra 60000] [--line-only] [--json PATH]

The same real processes as the other steps (:func:`benchmarks.throughput.run_step`): the simulator
(:mod:`benchmarks.simproc` with ``--line-spectra N``: LINE frames of N consecutive spectra, the rate still counted
in spectra) on a pty, ``spectro-edge run``, a real mosquitto and the paho subscriber at the run's QoS, on
``.../prediction`` and ``.../line_prediction``: a line message of N predicted spectra counts as N predictions, each
spectrum by its own ``seq`` (the line's plus its index), so loss and duplicates are counted per spectrum whether the
daemon publishes per line (``[lines] publish = "line"``, the default) or per spectrum. Steps: every rate of
``--line-rates`` (spectra/s) upwards for ``--line-seconds`` each, until one loses spectra or falls behind the
simulator, then one step as fast as possible (``--line-max-spectra`` spectra; 0 skips it).  With
``--profile-daemon DIR`` one more, uncounted step as fast as possible runs the daemon under
:mod:`benchmarks.daemonprof` (profiles in ``DIR/lines``).

JSON keys (beside the other steps' keys; ``--line-only`` runs these steps alone): ``line_spectra`` (spectra per
line), ``line_publish`` (the daemon's ``[lines] publish``, ``--line-publish``), ``line_spectra_per_s`` (the
highest delivered rate, unique predictions / time from the first line's device timestamp to the last receipt, among
line steps with zero loss; None when every step lost spectra),
``line_kept_up`` (whether that step also kept up with the simulator: when it did not, the daemon was the limit and
the pty and the frames queue held the backlog, without loss), ``line_lost``, ``line_spectra_sent``,
``line_predictions_received``, ``line_duplicates`` (totals over the line steps), ``line_limited_by``,
``line_daemon_cpu_us_per_spectrum`` (in the step that set ``line_spectra_per_s``), ``line_steps``,
``line_goals`` and, with ``--profile-daemon``, ``line_profiled_step``.
"""

from __future__ import annotations

import argparse
import logging
import shutil
import sys
import tempfile
from pathlib import Path
from typing import Any

from benchmarks.daemonprof import calls_per_frame
from benchmarks.results import host_facts, jsonable, markdown_table, system_load

log = logging.getLogger(__name__)

#: Goal of issue 17 for line frames of 256 or more spectra, spectra per second end to end with zero loss.
GOAL_LINE_SPECTRA_PER_S = 20_000.0
#: The goal holds for lines of at least this many spectra.
GOAL_LINE_MIN_SPECTRA = 256


def add_arguments(parser: argparse.ArgumentParser) -> None:
    """Options of the line-frame steps (``spectro-bench throughput``)."""
    g = parser.add_argument_group("line frames (push-broom lines, many spectra per frame)")
    g.add_argument("--line-spectra", type=int, default=0, metavar="N",
                   help="add line-frame steps with N spectra per LINE frame (0: none; the goal names 256+)")
    g.add_argument("--line-rates", default="20000,40000", help="offered spectra/s of the line steps, searched upwards")
    g.add_argument("--line-seconds", type=float, default=4.0, help="length of each line step (default 4)")
    g.add_argument("--line-max-spectra", type=int, default=60_000,
                   help="spectra of the as-fast-as-possible line step (0: skip it)")
    g.add_argument("--line-only", action="store_true", help="run only the line-frame steps")
    g.add_argument("--line-publish", choices=("line", "spectrum"), default="line",
                   help="the daemon's [lines] publish: one message per line (default) or per spectrum")


def line_steps(args: argparse.Namespace, setup: Any, broker: Any, sub: Any, work: Path) -> dict[str, Any]:
    """Run the line steps with the run's broker and subscriber; return their JSON keys."""
    from benchmarks.throughput import _best_limited_by, _keeps_up, _one_line, _rates, _simulator_reached, run_step

    per_line = int(args.line_spectra)
    sim_args = ("--line-spectra", str(per_line))
    sections = {"lines": {"publish": args.line_publish}}
    steps: list[dict[str, Any]] = []
    rates = _rates(args.line_rates)
    for i, rate in enumerate(rates):
        spectra = max(4 * per_line, int(rate * args.line_seconds))
        log.info("line step %d: %d spectra in lines of %d at %g spectra/s", i, spectra, per_line, rate)
        step = run_step(setup, broker, sub, rate=rate, frames=spectra, qos=args.qos, threads=args.threads,
                        workdir=work / f"line{i}-{rate:g}hz", sim_args=sim_args, sections=sections)
        steps.append(step)
        log.info("line step %d: %s", i, _one_line(step))
        if not (_keeps_up(step) and _simulator_reached(step)):
            break
    if args.line_max_spectra > 0:
        log.info("line step %d: %d spectra in lines of %d as fast as possible", len(steps), args.line_max_spectra,
                 per_line)
        step = run_step(setup, broker, sub, rate=0.0, frames=int(args.line_max_spectra), qos=args.qos,
                        threads=args.threads, workdir=work / "line-max", sim_args=sim_args, sections=sections)
        steps.append(step)
        log.info("line max step: %s", _one_line(step))
    profiled = None
    if getattr(args, "profile_daemon", None) is not None:
        prof_dir = args.profile_daemon / "lines"

        def daemon_argv(cfg: Path) -> list[str]:
            return [sys.executable, "-m", "benchmarks.daemonprof", "--out", str(prof_dir), "--", "run", "--config",
                    str(cfg)]

        spectra = max(4 * per_line, int(args.line_max_spectra) or 20 * per_line)
        log.info("profiled line step: %d spectra as fast as possible, profiles in %s", spectra, prof_dir)
        profiled = run_step(setup, broker, sub, rate=0.0, frames=spectra, qos=args.qos, threads=args.threads,
                            workdir=work / "line-profiled", sim_args=sim_args, daemon_argv=daemon_argv,
                            sections=sections)
        log.info("profiled line step (figures include the profiler): %s", _one_line(profiled))
        profiled["python_calls_per_frame"] = calls_per_frame(prof_dir, profiled["frames_sent"])  # per spectrum
    good = [s for s in steps if s["lost"] == 0 and s.get("delivered_fps")]
    best = max(good, key=lambda s: s["delivered_fps"]) if good else None
    limited_by = None
    if best is not None:
        if not _keeps_up(best):
            limited_by = "daemon (behind the simulator without loss: the pty and the frames queue held the backlog)"
        else:
            limited_by = _best_limited_by(best)
    rate = None if best is None else float(best["delivered_fps"])
    return {
        "line_spectra": per_line,
        "line_publish": args.line_publish,
        "line_spectra_per_s": rate,
        "line_step_rate_hz": None if best is None else best["rate_hz"],
        "line_kept_up": None if best is None else _keeps_up(best),
        "line_limited_by": limited_by,
        "line_lost": int(sum(s["lost"] for s in steps)),
        "line_spectra_sent": int(sum(s["frames_sent"] for s in steps)),
        "line_predictions_received": int(sum(s["predictions_received"] for s in steps)),
        "line_duplicates": int(sum(s["duplicates"] for s in steps)),
        "line_daemon_cpu_us_per_spectrum": None if best is None else best.get("daemon_cpu_us_per_frame"),
        "line_steps": steps,
        **({} if profiled is None else {"line_profiled_step": profiled}),
        "line_goals": {
            "spectra_per_s_min": GOAL_LINE_SPECTRA_PER_S,
            "line_spectra_min": GOAL_LINE_MIN_SPECTRA,
            "met": None if per_line < GOAL_LINE_MIN_SPECTRA else (rate is not None and rate >= GOAL_LINE_SPECTRA_PER_S),
        },
    }


def measure_lines(args: argparse.Namespace) -> dict[str, Any]:
    """``--line-only``: the line steps alone, with their own broker and subscriber (the result dict, the JSON)."""
    from benchmarks.harness.mosquitto import Mosquitto
    from benchmarks.throughput import Subscriber, check_setup, resolve_setup

    setup = resolve_setup(args)
    check_setup(setup)
    load_before = system_load()
    work = Path(tempfile.mkdtemp(prefix="spectro-bench-tp-line-")) if args.keep is None else args.keep
    work.mkdir(parents=True, exist_ok=True)
    try:
        with Mosquitto(work / "broker", tcp_nodelay=not args.broker_nagle) as broker:
            sub = Subscriber(broker.host, broker.port, "spectrolite", args.qos)
            try:
                keys = line_steps(args, setup, broker, sub, work)
            finally:
                sub.close()
    finally:
        if args.keep is None:
            shutil.rmtree(work, ignore_errors=True)
    return jsonable({
        "benchmark": "throughput",
        "setup": {"bundle": str(setup.bundle), "dataset": None if setup.dataset is None else str(setup.dataset),
                  "description": setup.description, "qos": args.qos, "daemon_threads": args.threads,
                  "broker_tcp_nodelay": not args.broker_nagle},
        **keys,
        "load": {"before": load_before, "after": system_load()},
        "host": host_facts(),
    })


def render_lines(result: dict[str, Any]) -> str:
    """Markdown tables of the line steps and their summary ("" when the run had none)."""
    steps = result.get("line_steps")
    if not steps:
        return ""
    rows = [["max" if s["rate_hz"] == 0 else s["rate_hz"], s["frames_sent"], s["predictions_received"], s["lost"],
             s["duplicates"], s.get("delivered_fps"), s.get("simulator_fps"), s.get("p50_latency_ms"),
             s.get("p99_latency_ms"), s.get("daemon_cpu_pct"), s.get("simulator_cpu_pct"), s.get("broker_cpu_pct")]
            for s in steps]
    head = ["offered spectra/s", "sent", "received", "lost", "dups", "delivered spectra/s", "sim spectra/s",
            "p50 ms", "p99 ms", "daemon CPU %", "sim CPU %", "broker CPU %"]
    goals = result["line_goals"]
    met = goals["met"]
    line_calls = ((result.get("line_profiled_step") or {}).get("python_calls_per_frame") or {}).get("all")
    summary = [
        ["spectra per LINE frame", result["line_spectra"]],
        ["published per", result.get("line_publish", "spectrum")],
        ["spectra/s end to end with zero loss (line_spectra_per_s)", result["line_spectra_per_s"]],
        ["kept up with the simulator", result["line_kept_up"]],
        ["limited by", result["line_limited_by"]],
        [f"goal >= {goals['spectra_per_s_min']:g} spectra/s with lines of {goals['line_spectra_min']}+",
         "n/a" if met is None else ("met" if met else "NOT met")],
        ["daemon CPU per spectrum at that rate (us)", result["line_daemon_cpu_us_per_spectrum"]],
        *([["Python calls per spectrum (profiled step)", line_calls]] if line_calls else []),
        ["spectra sent / received / lost / duplicates",
         f"{result['line_spectra_sent']} / {result['line_predictions_received']} / {result['line_lost']} / "
         f"{result['line_duplicates']}"],
    ]
    if "load" in result and "steps" not in result:  # --line-only: say the load here
        load = result["load"]
        summary.append(["load average before / after", f"{load['before']['loadavg_1m']:.2f} / "
                        f"{load['after']['loadavg_1m']:.2f} on {load['after']['cpu_count']} CPUs"])
    return "\n".join(["", "Line-frame steps", markdown_table(head, rows), "",
                      markdown_table(["line frames", "value"], summary)])
