"""Shared plumbing of every benchmark: host facts, percentiles, and writing results as JSON plus a markdown table."""

from __future__ import annotations

import json
import os
import platform
import sys
from importlib import metadata
from pathlib import Path
from typing import Any, Callable, Iterable, Mapping, Sequence

import numpy as np

__all__ = [
    "publish","host_facts", "percentiles_us", "write_json", "markdown_table", "peak_rss_mb", "system_load", "jsonable",
    "measure_and_publish"]


def _cpu_model() -> str:
    try:
        with open("/proc/cpuinfo", encoding="utf-8") as fh:
            for line in fh:
                if line.lower().startswith(("model name", "hardware", "cpu model")):
                    return line.split(":", 1)[1].strip()
    except OSError:
        pass
    return platform.processor() or platform.machine()


def _version(dist: str) -> str | None:
    try:
        return metadata.version(dist)
    except metadata.PackageNotFoundError:
        return None


def host_facts() -> dict[str, Any]:
    """What the figures were measured on: CPU model, cores, OS, Python, numpy and runtime versions."""
    return {
        "cpu_model": _cpu_model(),
        "cpu_count": os.cpu_count(),
        "machine": platform.machine(),
        "system": f"{platform.system()} {platform.release()}",
        "python": sys.version.split()[0],
        "numpy": np.__version__,
        "ai_edge_litert": _version("ai-edge-litert"),
        "tflite_runtime": _version("tflite-runtime"),
        "tensorflow": _version("tensorflow"),
    }


def percentiles_us(samples_s: Sequence[float] | np.ndarray) -> dict[str, float]:
    """p50/p95/p99/max/mean of durations given in seconds, in microseconds."""
    us = np.asarray(samples_s, dtype=np.float64) * 1e6
    if us.size == 0:
        raise ValueError("expected at least one timing sample, got none")
    p50, p95, p99 = np.percentile(us, [50, 95, 99])
    return {
        "p50_us": float(p50),
        "p95_us": float(p95),
        "p99_us": float(p99),
        "max_us": float(us.max()),
        "mean_us": float(us.mean()),
        "n": int(us.size),
    }


def markdown_table(header: Sequence[str], rows: Iterable[Sequence[Any]]) -> str:
    """A GitHub markdown table; floats get 4 significant digits."""

    def cell(v: Any) -> str:
        if isinstance(v, float):
            return f"{v:.4g}"
        return "" if v is None else str(v)

    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(cell(v) for v in row) + " |" for row in rows]
    return "\n".join(lines)


def write_json(path: str | os.PathLike[str] | None, result: Mapping[str, Any], markdown: str | None = None) -> None:
    """Write ``result`` (with host facts added under ``host``) to ``path``, and ``markdown`` beside it as ``.md``."""
    if not path:
        return
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    payload = dict(result)
    payload.setdefault("host", host_facts())
    out.write_text(json.dumps(payload, indent=2, sort_keys=True, allow_nan=False) + "\n", encoding="utf-8")
    if markdown is not None:
        out.with_suffix(".md").write_text(markdown + "\n", encoding="utf-8")


def peak_rss_mb() -> float:
    """Peak resident set size of this process so far, in MiB (``getrusage``; kilobytes on Linux, bytes on macOS)."""
    import resource

    peak = float(resource.getrusage(resource.RUSAGE_SELF).ru_maxrss)
    return peak / (1024.0 * 1024.0) if sys.platform == "darwin" else peak / 1024.0


def system_load() -> dict[str, Any]:
    """Load average (1, 5, 15 min) and CPU count right now, to say how busy the machine was during a run."""
    try:
        one, five, fifteen = os.getloadavg()
    except OSError:  # pragma: no cover - not on Linux/macOS
        return {"loadavg_1m": None, "loadavg_5m": None, "loadavg_15m": None, "cpu_count": os.cpu_count()}
    return {"loadavg_1m": one, "loadavg_5m": five, "loadavg_15m": fifteen, "cpu_count": os.cpu_count()}


def jsonable(obj: Any) -> Any:
    """``obj`` with numpy scalars and arrays turned into Python numbers and lists, and non-finite floats into None."""
    if isinstance(obj, Mapping):
        return {str(k): jsonable(v) for k, v in obj.items()}
    if isinstance(obj, (list, tuple)):
        return [jsonable(v) for v in obj]
    if isinstance(obj, np.ndarray):
        return jsonable(obj.tolist())
    if isinstance(obj, (bool, np.bool_)):
        return bool(obj)
    if isinstance(obj, (np.integer,)):
        return int(obj)
    if isinstance(obj, (float, np.floating)):
        v = float(obj)
        return v if np.isfinite(v) else None
    return obj


def publish(args: Any, result: dict[str, Any], text: str, plot: Any = None) -> None:
    """Print ``text``, draw ``plot(result, path)`` beside ``--json`` (or at ``--plot``), and write the JSON + .md."""
    print(text)
    plot_path = getattr(args, "plot", None) or (Path(args.json).with_suffix(".png") if args.json else None)
    if plot is not None and plot_path is not None:
        written = plot(result, plot_path)
        if written is not None:
            result["plot"] = str(written)
    write_json(args.json, result, markdown=text)


def measure_and_publish(args: Any, command: str, measure: Callable[[Any], dict[str, Any]],
                        render: Callable[[dict[str, Any]], str], plot: Callable[[dict[str, Any], Path], Path | None],
                        refused: tuple[type[BaseException], ...]) -> dict[str, Any] | None:
    """Run ``measure(args)`` and publish its result (``render`` for the text, ``plot`` drawn with the result's
    ``_points`` kept out of the JSON); the published result, or None after saying why on stderr when ``measure``
    raised one of ``refused``."""
    try:
        result = measure(args)
    except refused as exc:
        print(f"spectro-bench {command}: {exc}", file=sys.stderr)
        return None
    points = result.pop("_points", None)
    result = jsonable(result)

    def plot_with_points(res: dict[str, Any], path: Path) -> Path | None:
        return plot({**res, "_points": points}, path)

    publish(args, result, render(result), plot_with_points)
    return result
