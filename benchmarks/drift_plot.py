"""The plot of ``spectro-bench drift``: T2 and Q over their limits along each stream, with the drift's onset, its
full size and the moment each detector's alert went up."""

from __future__ import annotations

from collections.abc import Mapping
from pathlib import Path
from typing import Any

from benchmarks.plots import _pyplot, save_figure

__all__ = ["plot_drift"]

#: Marker colour of each detector's alert.
COLOURS = {"t2": "tab:blue", "q": "tab:orange", "autoencoder": "tab:purple", "prediction_cusum": "tab:green",
           "spectrum_level": "tab:brown", "instrument_health": "tab:red"}


def plot_drift(result: Mapping[str, Any], path: str | Path) -> Path | None:
    """One panel per stream: T2 / limit and Q / limit per spectrum (log scale), the limit, the onset and full-size
    marks, and a vertical line where each detector's alert went up.

    Parameters
    ----------
    result : dict
        The ``spectro-bench drift`` result with its ``_points`` (``onset``, ``full_at`` and ``streams``: name ->
        ``ratios`` {detector: (n,) statistic / limit} and ``raised`` {detector: [spectrum index, ...]}).
    path : str or Path
        PNG file to write.
    """
    import numpy as np

    plt = _pyplot()
    points = result.get("_points")
    if plt is None or not points or not points.get("streams"):
        return None
    streams = points["streams"]
    cols = min(3, len(streams))
    rows = -(-len(streams) // cols)
    fig, axes = plt.subplots(rows, cols, figsize=(5.2 * cols, 3.4 * rows), squeeze=False, sharey=True)
    for ax in axes.flat[len(streams):]:
        ax.set_visible(False)
    for ax, (name, run) in zip(axes.flat, streams.items()):
        for det, style in (("t2", "-"), ("q", "-")):
            r = np.asarray(run["ratios"].get(det, []), dtype=float)
            if r.size and np.isfinite(r).any():
                ax.plot(np.arange(r.size), np.clip(r, 1e-3, None), style, lw=0.7, color=COLOURS[det],
                        label=f"{det.upper()} / limit")
        ax.axhline(1.0, color="k", lw=0.8, ls=":")
        if not name.startswith("in_distribution"):
            ax.axvline(points["onset"], color="gray", lw=1.0, ls="--", label="onset")
            ax.axvline(points["full_at"], color="k", lw=1.0, ls="--", label="full size")
        for det, idx in run["raised"].items():
            for k, i in enumerate(idx):
                ax.axvline(i, color=COLOURS.get(det, "k"), lw=2.0, alpha=0.6,
                           label=f"{det} alert" if k == 0 else None)
        ax.set_yscale("log")
        ax.set_title(name, fontsize=9)
        ax.set_xlabel("spectrum")
        ax.grid(alpha=0.3)
        if ax.get_legend_handles_labels()[0]:
            ax.legend(fontsize=6, loc="upper left")
    for ax in axes[:, 0]:
        ax.set_ylabel("statistic / limit")
    s = result.get("setup", {})
    fig.suptitle(f"{s.get('model_id', '')} {s.get('model_version', '')}: drift scenarios through the loop "
                 f"(alerts: vertical bars)", fontsize=9)
    return save_figure(plt, fig, path)
