"""The report of ``spectro-bench throughput``: markdown tables of its steps and its summary (:func:`render`)."""

from __future__ import annotations

from typing import Any

from benchmarks import throughput_line  # the line steps' tables, appended when the run had any
from benchmarks.results import markdown_table

__all__ = ["goals", "per_call", "render"]

#: Goals of issue 6 on the development machine (``goals``).
GOAL_SUSTAINED_FPS = 1000.0
GOAL_P99_LATENCY_MS_AT_100 = 10.0
GOAL_DAEMON_CPU_PCT_AT_100 = 15.0
#: Goals of issue 17, same machine, quiet (``goals_17``; its line-frame goal is ``line_goal``).
GOAL17_SUSTAINED_FPS = 4000.0
GOAL17_DAEMON_CPU_PCT_AT_100 = 5.0
GOAL17_OVERHEAD_RATIO = 3.0


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


def goals(best: dict[str, Any] | None, ref: dict[str, Any], compute_us: float | None) -> dict[str, Any]:
    """``goals`` (issue 6) and ``goals_17`` (issue 17) of the run whose best zero-loss step is ``best`` and whose
    reference step is ``ref``; a goal that this run cannot judge (no such step, another reference rate) is None."""
    at_100 = ref.get("rate_hz") == 100
    p99, cpu = ref.get("p99_latency_ms"), ref.get("daemon_cpu_pct")
    fps = None if best is None else best["delivered_fps"]
    per_frame = None if best is None else best.get("daemon_cpu_us_per_frame")
    ratio = per_frame / compute_us if per_frame and compute_us else None
    latency_met = None if p99 is None or not at_100 else p99 <= GOAL_P99_LATENCY_MS_AT_100
    return {
        "goals": {
            "sustained_fps_min": GOAL_SUSTAINED_FPS,
            "p99_latency_ms_max_at_100fps": GOAL_P99_LATENCY_MS_AT_100,
            "daemon_cpu_pct_max_at_100fps": GOAL_DAEMON_CPU_PCT_AT_100,
            "sustained_met": None if fps is None else fps >= GOAL_SUSTAINED_FPS,
            "latency_met": latency_met,
            "cpu_met": None if cpu is None or not at_100 else cpu < GOAL_DAEMON_CPU_PCT_AT_100,
        },
        "goals_17": {
            "sustained_fps_min": GOAL17_SUSTAINED_FPS,
            "daemon_cpu_pct_max_at_100fps": GOAL17_DAEMON_CPU_PCT_AT_100,
            "overhead_ratio_max": GOAL17_OVERHEAD_RATIO,
            "p99_latency_ms_max_at_100fps": GOAL_P99_LATENCY_MS_AT_100,
            "sustained_met": None if fps is None else fps >= GOAL17_SUSTAINED_FPS,
            "cpu_met": None if cpu is None or not at_100 else cpu <= GOAL17_DAEMON_CPU_PCT_AT_100,
            "overhead_met": None if ratio is None else ratio <= GOAL17_OVERHEAD_RATIO,
            "latency_met": latency_met,
        },
    }


def per_call(profiled: dict[str, Any] | None, ref: dict[str, Any]) -> dict[str, Any]:
    """``python_calls_per_frame`` (the profiled step's calls per frame, over every thread but the main thread's
    start-up and the signal watcher: :func:`benchmarks.daemonprof.calls_per_frame`) and
    ``daemon_cpu_us_per_python_call`` (the reference step's daemon CPU per frame over them: what one call costs at
    that rate on this machine); both None without a profiled step at the reference rate."""
    calls = None if profiled is None else (profiled.get("python_calls_per_frame") or {}).get("all")
    same_rate = profiled is not None and profiled.get("rate_hz") == ref.get("rate_hz")
    cpu = ref.get("daemon_cpu_us_per_frame")
    return {"python_calls_per_frame": calls,
            "daemon_cpu_us_per_python_call": cpu / calls if calls and cpu and same_rate else None}


def render(result: dict[str, Any]) -> str:
    """Markdown tables of the steps and the summary."""
    rows = []
    for s in result["steps"]:
        rows.append(["max" if s["rate_hz"] == 0 else s["rate_hz"], s["frames_sent"], s["predictions_received"],
                     s["lost"], s["duplicates"], s.get("delivered_fps"), s.get("simulator_fps"),
                     s.get("p50_latency_ms"), s.get("p99_latency_ms"), s.get("daemon_cpu_pct"),
                     s.get("simulator_cpu_pct"), s.get("broker_cpu_pct")])
    head = ["offered fps", "sent", "received", "lost", "dups", "delivered fps", "sim fps", "p50 ms", "p99 ms",
            "daemon CPU %", "sim CPU %", "broker CPU %"]
    g, g17 = result["goals"], result.get("goals_17") or {}

    def verdict(v: Any) -> str:
        return "n/a" if v is None else ("met" if v else "NOT met")

    summary = [
        ["setup", f"{result['setup']['description']}, QoS {result['setup']['qos']}, mosquitto set_tcp_nodelay "
                  f"{'true' if result['setup'].get('broker_tcp_nodelay', True) else 'false'}"],
        ["producer", result["setup"].get("producer", "simulator")],
        ["sustained fps with zero loss", result["sustained_fps"]],
        ["limited by", result["limited_by"]],
        [f"goal >= {g['sustained_fps_min']:g} fps (issue 6) / >= {g17.get('sustained_fps_min', 0):g} fps (issue 17)",
         f"{verdict(g['sustained_met'])} / {verdict(g17.get('sustained_met'))}"],
        [f"p50 / p99 latency at {result['reference_rate_hz']:g} fps (ms)",
         f"{_num(result['p50_latency_ms'])} / {_num(result['p99_latency_ms'])}"],
        [f"goal p99 <= {g['p99_latency_ms_max_at_100fps']:g} ms at 100 fps", verdict(g["latency_met"])],
        ["daemon CPU % of one core at the reference rate", result["daemon_cpu_pct"]],
        ["daemon CPU % per 100 fps", result["daemon_cpu_pct_per_100fps"]],
        ["daemon CPU per frame at the sustained rate / compute back to back (us)",
         f"{_num(result['daemon_cpu_us_per_frame_at_sustained'])} / {_num(result['compute_us_back_to_back'])}"],
        [f"overhead_ratio (goal <= {g17.get('overhead_ratio_max', 3):g}, issue 17)",
         f"{_num(result['overhead_ratio'])}: {verdict(g17.get('overhead_met'))}"],
        [f"goal daemon < {g['daemon_cpu_pct_max_at_100fps']:g} % (issue 6) / <= "
         f"{g17.get('daemon_cpu_pct_max_at_100fps', 0):g} % (issue 17) at 100 fps",
         f"{verdict(g['cpu_met'])} / {verdict(g17.get('cpu_met'))}"],
        *([["Python calls per frame (profiled step) / daemon CPU per call at the reference rate (us)",
            f"{_num(result['python_calls_per_frame'])} / {_num(result.get('daemon_cpu_us_per_python_call'))}"]]
          if result.get("python_calls_per_frame") else []),
        ["frames sent / received / lost / duplicates",
         f"{result['frames_sent']} / {result['predictions_received']} / {result['lost']} / {result['duplicates']}"],
        ["load average before / after", (f"{result['load']['before']['loadavg_1m']:.2f} / "
                                         f"{result['load']['after']['loadavg_1m']:.2f} on "
                                         f"{result['load']['after']['cpu_count']} CPUs")],
    ]
    return "\n".join(["Steps", markdown_table(head, rows), "", markdown_table(["summary", "value"], summary)]) + (
        throughput_line.render_lines(result))
