"""The update's report: ``DIR/update/index.html`` (matplotlib PNGs beside it, as the fit report does) and the
figures behind it, ``DIR/update.json``: the join, the deployed bundle on the line over time, and old vs new."""

from __future__ import annotations

import datetime as _dt
import html
import json
from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np

from trainer.pipeline.scores import clean_json
from trainer.report import _fmt, _plt, _save, _table

__all__ = ["write_update_report", "FIGURE_KEYS"]

#: Figures of one target shown in the tables, in order.
FIGURE_KEYS = ("n", "bias", "rmsep", "sep", "slope", "r2", "bias_trend_per_day")


def _utc(unix_s: np.ndarray) -> list[Any]:
    return [_dt.datetime.fromtimestamp(float(t), _dt.timezone.utc) for t in unix_s]  # not datetime.UTC (Python 3.10)


def _over_time(target: str, t_s: np.ndarray, residual: np.ndarray, rolling: Sequence[Mapping[str, Any]],
               unit: str, out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7.5, 3.6))
    ok = np.isfinite(residual)
    ax.scatter(_utc(t_s[ok]), residual[ok], s=10, color="tab:gray", label="prediction - reference (per spectrum)")
    if rolling:
        ts = np.array([r["unix_s"] for r in rolling])
        ax.plot(_utc(ts), [r["bias"] for r in rolling], color="tab:red", label="rolling bias")
        ax.plot(_utc(ts), [r["rmsep"] for r in rolling], color="tab:blue", ls="--", label="rolling RMSEP")
    ax.axhline(0.0, color="black", lw=0.8)
    ax.set_ylabel(f"{target} error ({unit})" if unit else f"{target} error")
    ax.set_title(f"Deployed model on the line over time: {target}")
    ax.legend(fontsize=7, loc="best")
    fig.autofmt_xdate()
    return _save(fig, out / f"update_drift_{target}.png")


def _pred_vs_ref(target: str, y: np.ndarray, series: Sequence[tuple[str, np.ndarray, str]], unit: str,
                 out: Path) -> str:
    plt = _plt()
    fig, ax = plt.subplots(figsize=(4.6, 4.4))
    for label, p, color in series:
        ok = np.isfinite(y) & np.isfinite(p)
        ax.scatter(y[ok], p[ok], s=12, color=color, label=label, alpha=0.8)
    finite = y[np.isfinite(y)]
    if finite.size:
        lo, hi = float(finite.min()), float(finite.max())
        ax.plot([lo, hi], [lo, hi], color="black", lw=0.8)
    u = f" ({unit})" if unit else ""
    ax.set_xlabel(f"lab reference{u}")
    ax.set_ylabel(f"predicted{u}")
    ax.set_title(f"{target} on the line samples")
    ax.legend(fontsize=7)
    return _save(fig, out / f"update_pred_vs_ref_{target}.png")


def _figure_rows(label: str, figures: Mapping[str, Any]) -> list[list[Any]]:
    return [[label, t, *[f.get(k) for k in FIGURE_KEYS]] for t, f in figures.items()]


def write_update_report(out_dir: Path, summary: Mapping[str, Any], *, t_s: np.ndarray, y: np.ndarray,
                        old_pred: np.ndarray, new_pred: np.ndarray | None, held_out: np.ndarray,
                        units: Mapping[str, str]) -> tuple[Path, Path]:
    """Write ``update.json`` (``summary``) and ``update/index.html`` with its plots; returns both paths.

    ``t_s`` (m,), ``y``, ``old_pred``, ``new_pred`` (m, t) are per joined spectrum; ``held_out`` (m,) bool marks
    the spectra the new model did not train on."""
    out_dir.mkdir(parents=True, exist_ok=True)
    json_path = out_dir / "update.json"
    json_path.write_text(json.dumps(clean_json(summary), indent=2, allow_nan=False) + "\n")
    rdir = out_dir / "update"
    rdir.mkdir(exist_ok=True)
    targets = list(summary["targets"])
    parts = [f"<h1>Calibration update: {html.escape(str(summary['old_bundle']['model_id']))} "
             f"{html.escape(str(summary['old_bundle']['model_version']))}"
             + (f" &rarr; {html.escape(str(summary['new_bundle']['model_version']))}" if summary.get("new_bundle")
                else "") + "</h1>"]
    j = summary["join"]
    parts.append("<h2>Join of the lab's reference values</h2>")
    parts.append(_table(["what", "count"], [[k, v] for k, v in j.items() if not isinstance(v, list)]))
    if j.get("unmatched_rows"):
        parts.append("<p>Unmatched lab rows:</p><ul>" + "".join(f"<li>{html.escape(m)}</li>"
                                                               for m in j["unmatched_rows"][:50]) + "</ul>")
    if j.get("tagged_sample_ids_without_lab_row"):
        parts.append("<p>Tagged sample ids without a lab row: "
                     + html.escape(", ".join(j["tagged_sample_ids_without_lab_row"][:50])) + "</p>")
    dep = summary["deployed_on_line"]
    parts.append("<h2>The deployed model on the line (as the edge runs it)</h2>")
    rep = dep.get("reproduced")
    if rep:
        parts.append(f"<p>{rep['spectra']} spectra predicted on the device by this bundle; the largest difference "
                     f"from the prediction recomputed here is {_fmt(rep['max_abs_difference'])}.</p>")
    if dep.get("rejected"):
        parts.append("<p>Rejected by the engine: " + html.escape(", ".join(f"{k} {v}" for k, v in
                                                                         dep["rejected"].items())) + "</p>")
    parts.append(_table(["model", "target", *FIGURE_KEYS], _figure_rows("deployed", dep["figures"])))
    for k, target in enumerate(targets):
        unit = units.get(target, "")
        rolling = dep["figures"].get(target, {}).get("rolling", [])
        parts.append(f'<img src="{_over_time(target, t_s, old_pred[:, k] - y[:, k], rolling, unit, rdir)}">')
        series = [("deployed (all joined)", old_pred[:, k], "tab:gray")]
        if new_pred is not None and held_out.any():
            series.append(("new, held-out samples", np.where(held_out, new_pred[:, k], np.nan), "tab:green"))
        parts.append(f'<img src="{_pred_vs_ref(target, y[:, k], series, unit, rdir)}">')
    cmp_ = summary.get("comparison")
    if cmp_:
        parts.append("<h2>Old vs new</h2><p>" + html.escape(cmp_["note"]) + "</p>")
        rows: list[list[Any]] = []
        for where, block in cmp_["line"].items():
            for label in ("old", "new"):
                rows += _figure_rows(f"{label}, line {where}", block[label])
        parts.append(_table(["model / samples", "target", *FIGURE_KEYS], rows))
        rows = [[s, t, v.get("old_rmsep"), v.get("new_rmsep"), v.get("old_bias"), v.get("new_bias")]
                for s, per in cmp_["original_tests"].items() for t, v in per.items()]
        if rows:
            parts.append("<p>On the original test sets (the deployed evaluations of each bundle's metrics):</p>")
            parts.append(_table(["test set", "target", "old RMSEP", "new RMSEP", "old bias", "new bias"], rows))
    page = ("<!doctype html><html><head><meta charset='utf-8'><title>spectrolite update</title><style>"
            "body{font-family:sans-serif;max-width:1100px;margin:2em auto}table{border-collapse:collapse;margin:1em 0}"
            "td,th{border:1px solid #ccc;padding:2px 6px;font-size:13px}img{max-width:100%}</style></head><body>"
            + "\n".join(parts) + "</body></html>\n")
    index = rdir / "index.html"
    index.write_text(page, encoding="utf-8")
    return json_path, index


def link_from_fit_report(fit_report: Path | None) -> None:
    """Add a link to ``../update/index.html`` at the top of the fit's ``report/index.html``."""
    if fit_report is None or not fit_report.is_file():
        return
    text = fit_report.read_text(encoding="utf-8")
    link = ('<p><a href="../update/index.html">Calibration update: the deployed model on the line and old vs '
            "new</a></p>")
    if link not in text and "<body>" in text:
        fit_report.write_text(text.replace("<body>", "<body>" + link, 1), encoding="utf-8")
