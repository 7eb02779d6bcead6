"""Importance profiles and first-layer kernels drawn over the mean spectrum (matplotlib object API, PNGs)."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.explain.attributions import ExplainError


def _axis_label(unit: str) -> str:
    return {"nm": "wavelength (nm)", "cm-1": "wavenumber (cm$^{-1}$)"}.get(unit, f"axis ({unit})")


def _save(fig: Any, path: str | Path) -> Path:
    from matplotlib.backends.backend_agg import FigureCanvasAgg

    out = Path(path)
    out.parent.mkdir(parents=True, exist_ok=True)
    FigureCanvasAgg(fig)
    fig.savefig(out, dpi=110)
    return out


def plot_importance(
    wavelengths: npt.ArrayLike,
    mean_spectrum: npt.ArrayLike,
    importance: npt.ArrayLike | Mapping[str, npt.ArrayLike],
    path: str | Path,
    *,
    target_names: Sequence[str] | None = None,
    unit: str = "nm",
    title: str = "",
    signed: bool = False,
    highlight: Sequence[tuple[float, float]] = (),
    reference_line: float | None = None,
) -> Path:
    """Draw importance over the mean spectrum, one panel per target, and save a PNG.

    Parameters
    ----------
    wavelengths : ndarray, shape (p,)
        Feature axis in ``unit``.
    mean_spectrum : ndarray, shape (p,)
        Mean spectrum on the same axis (drawn in grey on a second y axis).
    importance : ndarray, shape (p,) or (p, n_targets), or dict of label -> such arrays
        Several labelled methods (e.g. ``{"integrated gradients": ..., "occlusion": ...}``) are each scaled to a
        maximum of 1 so they share an axis.
    path : str or Path
        PNG file to write.
    target_names : sequence of str, optional
        Panel titles.
    unit : {"nm", "cm-1"}
    signed : bool
        Keep the sign (PLS coefficients); otherwise absolute values.
    highlight : sequence of (lo, hi)
        Axis ranges to shade (known bands, suspected artifacts).
    reference_line : float, optional
        Draw a dashed horizontal line at this importance (1.0 for VIP).

    Returns
    -------
    Path
    """
    from matplotlib.figure import Figure

    w = np.asarray(wavelengths, dtype=np.float64)
    ms = np.asarray(mean_spectrum, dtype=np.float64)
    items = dict(importance) if isinstance(importance, Mapping) else {"importance": importance}
    arrays = {}
    for k, v in items.items():
        a = np.asarray(v, dtype=np.float64)
        a = a[:, None] if a.ndim == 1 else a
        if a.shape[0] != w.size:
            raise ExplainError(f"expected {w.size} importance values for {k!r}, got {a.shape[0]}")
        arrays[k] = a
    if ms.shape != w.shape:
        raise ExplainError(f"expected a mean spectrum of {w.size} points, got {ms.shape}")
    n_t = max(a.shape[1] for a in arrays.values())
    names = list(target_names) if target_names is not None else [f"output {j}" for j in range(n_t)]
    fig = Figure(figsize=(8, 2.6 * n_t), layout="constrained")
    axes = fig.subplots(n_t, 1, squeeze=False)[:, 0]
    for j, ax in enumerate(axes):
        for lo, hi in highlight:
            ax.axvspan(lo, hi, color="tab:orange", alpha=0.15, lw=0)
        for k, a in arrays.items():
            col = a[:, min(j, a.shape[1] - 1)]
            col = col if signed else np.abs(col)
            scale = np.max(np.abs(col)) or 1.0
            ax.plot(w, col / scale if len(arrays) > 1 else col, lw=1.2, label=k)
        if reference_line is not None:
            ax.axhline(reference_line, color="0.3", lw=0.8, ls="--")
        ax.set_ylabel("importance" + (" (scaled)" if len(arrays) > 1 else ""))
        ax.set_title(f"{title} {names[j] if j < len(names) else ''}".strip(), fontsize=10)
        twin = ax.twinx()
        twin.plot(w, ms, color="0.6", lw=0.8)
        twin.set_ylabel("mean spectrum", color="0.45")
        ax.set_zorder(twin.get_zorder() + 1)
        ax.patch.set_visible(False)
        if len(arrays) > 1:
            ax.legend(fontsize=8, loc="upper left")
    axes[-1].set_xlabel(_axis_label(unit))
    return _save(fig, path)


def plot_kernels(kernels: npt.ArrayLike, path: str | Path, *, title: str = "first-layer Conv1D kernels") -> Path:
    """Draw first-layer kernels ``(kernel_size, in_channels, filters)`` as small line plots and save a PNG."""
    from matplotlib.figure import Figure

    K = np.asarray(kernels, dtype=np.float64)
    if K.ndim != 3:
        raise ExplainError(f"expected kernels (kernel_size, in_channels, filters), got shape {K.shape}")
    ks, cin, nf = K.shape
    cols = min(8, nf)
    rows = int(np.ceil(nf / cols))
    fig = Figure(figsize=(1.6 * cols, 1.3 * rows + 0.5), layout="constrained")
    axes = fig.subplots(rows, cols, squeeze=False)
    taps = np.arange(ks) - ks // 2
    for f in range(rows * cols):
        ax = axes[f // cols, f % cols]
        if f >= nf:
            ax.set_visible(False)
            continue
        for c in range(cin):
            ax.plot(taps, K[:, c, f], lw=1, marker=".", ms=2)
        ax.axhline(0, color="0.7", lw=0.5)
        ax.set_xticks([])
        ax.set_yticks([])
        ax.set_title(f"filter {f}", fontsize=7)
    fig.suptitle(title, fontsize=10)
    return _save(fig, path)
