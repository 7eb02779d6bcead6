"""PNG plots of benchmark results (matplotlib, imported lazily; without it the plot is skipped with a log line)."""

from __future__ import annotations

import logging
from collections.abc import Mapping
from pathlib import Path
from typing import Any

log = logging.getLogger(__name__)

__all__ = ["plot_latency", "plot_loop", "plot_throughput", "save_figure"]


def _pyplot() -> Any:
    try:
        import matplotlib

        matplotlib.use("Agg")
        import matplotlib.pyplot as plt
    except ImportError:
        log.warning("matplotlib is not installed: no plot written")
        return None
    return plt


def save_figure(plt: Any, fig: Any, path: str | Path) -> Path:
    """Lay out ``fig``, write it as a PNG at ``path`` (making its folder) and close it; the file written."""
    fig.tight_layout()
    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    fig.savefig(out, dpi=110)
    plt.close(fig)
    return out


def plot_latency(result: Mapping[str, Any], path: str | Path) -> Path | None:
    """Horizontal bars of p50 with p99 whiskers for every stage, the compute span and the references (log scale).

    Parameters
    ----------
    result : dict
        The ``spectro-bench latency`` result (``stages``, ``compute``, ``daemon_stage``, ``references``).
    path : str or Path
        PNG file to write.

    Returns
    -------
    Path or None
        The file written, or None when matplotlib is missing.
    """
    plt = _pyplot()
    if plt is None:
        return None
    rows: list[tuple[str, float, float, str]] = []
    for name, s in result["stages"].items():
        if s.get("p50_us") is not None:
            rows.append((f"stage: {name}", s["p50_us"], s["p99_us"], "tab:blue"))
    for key, label in (("compute", "compute span"), ("compute_cpu", "compute span, CPU time"),
                       ("daemon_stage", "InferenceEngine.process")):
        s = result.get(key)
        if s:
            rows.append((label, s["p50_us"], s["p99_us"], "tab:green"))
    for name, s in result.get("references", {}).items():
        if s.get("available"):
            rows.append((f"ref: {name}", s["p50_us"], s["p99_us"], "tab:orange"))
    rows.reverse()
    fig, ax = plt.subplots(figsize=(8.0, 0.32 * len(rows) + 1.4))
    ys = range(len(rows))
    p50 = [r[1] for r in rows]
    p99 = [r[2] for r in rows]
    ax.barh(list(ys), p50, color=[r[3] for r in rows], alpha=0.85, label="p50")
    ax.errorbar(p99, list(ys), fmt="|", color="black", markersize=10, label="p99")
    ax.set_yticks(list(ys))
    ax.set_yticklabels([r[0] for r in rows], fontsize=8)
    ax.set_xscale("log")
    ax.set_xlabel("microseconds per frame (log scale)")
    bundle = result.get("bundle", {})
    host = result.get("host", {})
    ax.set_title(f"{bundle.get('model_id', '')} on {host.get('cpu_model', '')}\n"
                 f"{result.get('frames')} frames, {result.get('runtime', '')}", fontsize=9)
    ax.legend(loc="upper right", fontsize=8)
    ax.grid(axis="x", which="both", alpha=0.3)
    return save_figure(plt, fig, path)


def plot_throughput(result: Mapping[str, Any], path: str | Path) -> Path | None:
    """Delivered vs offered rate and p99 latency for each step of a ``spectro-bench throughput`` run."""
    plt = _pyplot()
    if plt is None:
        return None
    # A step that delivered fewer than two predictions has no rate or latency: it is left out, never a KeyError.
    steps = [s for s in result.get("steps", []) if s.get("rate_hz") and s.get("delivered_fps") is not None]
    if not steps:
        log.warning("no step delivered predictions: no throughput plot written")
        return None
    fig, (a1, a2) = plt.subplots(1, 2, figsize=(10.0, 3.8))
    offered = [s["rate_hz"] for s in steps]
    a1.plot(offered, [s["delivered_fps"] for s in steps], "o-", label="delivered")
    a1.plot(offered, offered, "k--", lw=0.8, label="offered")
    for s in steps:
        if s.get("lost"):
            a1.annotate(f"lost {s['lost']}", (s["rate_hz"], s["delivered_fps"]), fontsize=7)
    for s in result.get("steps", []):
        if not s.get("rate_hz") and s.get("delivered_fps"):
            a1.text(0.02, 0.97, f"as fast as possible: {s['delivered_fps']:.0f} fps delivered, lost {s.get('lost')}, "
                    f"p99 {s.get('p99_latency_ms') or float('nan'):.3g} ms", transform=a1.transAxes, va="top",
                    fontsize=7)
    a1.set_xlabel("offered frames/s")
    a1.set_ylabel("predictions/s at the subscriber")
    a1.legend(fontsize=8, loc="lower right")
    a2.plot(offered, [s.get("p50_latency_ms") for s in steps], "o-", label="p50")
    a2.plot(offered, [s.get("p99_latency_ms") for s in steps], "s-", label="p99")
    a2.set_yscale("log")
    a2.set_xlabel("offered frames/s")
    a2.set_ylabel("frame -> subscriber latency (ms)")
    a2.legend(fontsize=8)
    for a in (a1, a2):
        a.grid(alpha=0.3)
    return save_figure(plt, fig, path)


def plot_loop(result: Mapping[str, Any], path: str | Path) -> Path | None:
    """Predicted against reference values per target: the loop's predictions and the same bundle offline (for a
    classification bundle, the two confusion matrices).

    Parameters
    ----------
    result : dict
        The ``spectro-bench loop`` result with its ``_points`` (``loop_pred``, ``loop_ref``, ``offline_pred``,
        ``offline_ref`` (n, n_targets) and ``names``).
    path : str or Path
        PNG file to write.
    """
    import numpy as np

    plt = _pyplot()
    if plt is not None and result.get("task") == "classification":
        from benchmarks.loop_classes import plot_confusions

        fig = plot_confusions(plt, result, path)
        s = result.get("setup", {})
        fig.suptitle(f"{s.get('model_id', '')} {s.get('model_version', '')}: {result.get('predictions')} "
                     f"predictions through the loop,\nlost {result.get('lost')}, "
                     f"OOD alarms {_fmt(result.get('ood_alarm_rate'), pct=True)}", fontsize=9)
        return save_figure(plt, fig, path)
    points = result.get("_points")
    if plt is None or not points or not points.get("names"):
        return None
    names = list(points["names"])

    def arr(key: str) -> Any:
        a = np.asarray([[np.nan if v is None else v for v in row] for row in points.get(key, [])], dtype=float)
        return a.reshape(-1, len(names)) if a.size else np.full((0, len(names)), np.nan)

    lp, lr, op, orf = arr("loop_pred"), arr("loop_ref"), arr("offline_pred"), arr("offline_ref")
    fig, axes = plt.subplots(1, len(names), figsize=(4.6 * len(names), 4.4), squeeze=False)
    for j, (name, ax) in enumerate(zip(names, axes[0])):
        unit = result.get("units", {}).get(name, "")
        ax.scatter(orf[:, j], op[:, j], s=14, marker="s", facecolors="none", edgecolors="tab:gray",
                   label=f"offline (RMSEP {_fmt(result.get('offline_rmsep', {}).get(name))})")
        ax.scatter(lr[:, j], lp[:, j], s=10, color="tab:blue", alpha=0.8,
                   label=f"loop (RMSEP {_fmt(result.get('loop_rmsep', {}).get(name))})")
        both = np.concatenate([v[:, j][np.isfinite(v[:, j])] for v in (lp, lr, op, orf)])
        if both.size:
            lo, hi = float(both.min()), float(both.max())
            ax.plot([lo, hi], [lo, hi], "k--", lw=0.8)
        ax.set_xlabel(f"reference {name} ({unit})")
        ax.set_ylabel(f"predicted {name} ({unit})")
        ax.legend(fontsize=8, loc="upper left")
        ax.grid(alpha=0.3)
    s = result.get("setup", {})
    fig.suptitle(f"{s.get('model_id', '')} {s.get('model_version', '')}: {result.get('predictions')} predictions "
                 f"through the loop, lost {result.get('lost')}, "
                 f"OOD alarms {_fmt(result.get('ood_alarm_rate'), pct=True)}",
                 fontsize=9)
    return save_figure(plt, fig, path)


def _fmt(v: Any, pct: bool = False) -> str:
    if v is None:
        return "-"
    return f"{v:.1%}" if pct else f"{v:.4g}"
