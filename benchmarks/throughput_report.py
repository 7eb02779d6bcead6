"""The report of ``spectro-bench throughput``: markdown tables of its steps and its summary (:func:`render`)."""

from __future__ import annotations

from typing import Any

from benchmarks import throughput_line  # the line steps' tables, appended when the run had any
from benchmarks.results import markdown_table

__all__ = ["render"]


def _num(v: Any) -> str:
    return "-" if v is None else f"{v:.4g}"


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
    g = result["goals"]

    def verdict(v: Any) -> str:
        return "n/a" if v is None else ("met" if v else "NOT met")

    summary = [
        ["setup", f"{result['setup']['description']}, QoS {result['setup']['qos']}, mosquitto set_tcp_nodelay "
                  f"{'true' if result['setup'].get('broker_tcp_nodelay', True) else 'false'}"],
        ["producer", result["setup"].get("producer", "simulator")],
        ["sustained fps with zero loss", result["sustained_fps"]],
        ["limited by", result["limited_by"]],
        [f"goal >= {g['sustained_fps_min']:g} fps", verdict(g["sustained_met"])],
        [f"p50 / p99 latency at {result['reference_rate_hz']:g} fps (ms)",
         f"{_num(result['p50_latency_ms'])} / {_num(result['p99_latency_ms'])}"],
        [f"goal p99 <= {g['p99_latency_ms_max_at_100fps']:g} ms at 100 fps", verdict(g["latency_met"])],
        ["daemon CPU % of one core at the reference rate", result["daemon_cpu_pct"]],
        ["daemon CPU % per 100 fps", result["daemon_cpu_pct_per_100fps"]],
        ["daemon CPU per frame at the sustained rate / compute back to back (us)",
         f"{_num(result['daemon_cpu_us_per_frame_at_sustained'])} / {_num(result['compute_us_back_to_back'])}"],
        ["overhead_ratio (goal <= 3)", result["overhead_ratio"]],
        [f"goal daemon < {g['daemon_cpu_pct_max_at_100fps']:g} % at 100 fps", verdict(g["cpu_met"])],
        ["frames sent / received / lost / duplicates",
         f"{result['frames_sent']} / {result['predictions_received']} / {result['lost']} / {result['duplicates']}"],
        ["load average before / after", (f"{result['load']['before']['loadavg_1m']:.2f} / "
                                         f"{result['load']['after']['loadavg_1m']:.2f} on "
                                         f"{result['load']['after']['cpu_count']} CPUs")],
    ]
    return "\n".join(["Steps", markdown_table(head, rows), "", markdown_table(["summary", "value"], summary)]) + (
        throughput_line.render_lines(result))
