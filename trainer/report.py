"""The offline HTML report of a training run: ``DIR/report/index.html`` with matplotlib PNG plots beside it.

Plots: predicted vs reference per split and model, residuals, CNN learning curves, PLS cross-validation curves,
Hotelling T2 vs Q with the limits per split; tables: PLS vs CNN (float and int8) per test split, every evaluation
row, float vs int8, sparsity, sizes, interval coverage and timings. Everything is local files (no scripts, no
network), so the folder can be zipped and opened anywhere.
"""

from __future__ import annotations

import html
import logging
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import numpy as np

from trainer.data import SpectralDataset
from trainer.splits import SplitPlan

__all__ = ["ReportInputs", "write_report"]

log = logging.getLogger(__name__)

_MODEL_STYLE = {"pls": ("tab:blue", "o"), "cnn_float": ("tab:green", "^"), "cnn_int8": ("tab:red", "s")}
_DPI = 90


@dataclass
class ReportInputs:
    """Everything the report shows; built by :func:`trainer.pipeline.fit`.

    Parameters
    ----------
    title : str
    config_source : str
        Path of the TOML config.
    dataset : SpectralDataset
    plan : SplitPlan
    metrics : dict
        The ``metrics.json`` content.
    predictions : mapping of (split, model) to ndarray, shape (n_rows_of_split, n_targets)
        Predicted values (class indices for classification).
    histories : list of (str, dict)
        Named Keras histories (CNN training, pruning fine-tuning): ``loss``, ``val_loss``, ... per epoch.
    pls_curves : mapping of target to mapping of candidate to ndarray, shape (K,)
        RMSECV (or CV error rate) against latent variables.
    ood_scores : mapping of split to (t2, q), each ndarray shape (n,)
    ood_limits : (float, float)
        T2 and Q limits.
    intervals : edge.intervals.IntervalModel or None
    units : mapping of target to unit
    extra_html : str
        Ready-made HTML sections appended before the evaluation tables (the interpretability section of
        :func:`trainer.explain.html_section`).
    """

    title: str
    config_source: str
    dataset: SpectralDataset
    plan: SplitPlan
    metrics: Mapping[str, Any]
    predictions: Mapping[tuple[str, str], np.ndarray]
    histories: Sequence[tuple[str, Mapping[str, Sequence[float]]]] = ()
    pls_curves: Mapping[str, Mapping[str, np.ndarray]] = field(default_factory=dict)
    ood_scores: Mapping[str, tuple[np.ndarray, np.ndarray]] = field(default_factory=dict)
    ood_limits: tuple[float, float] = (float("nan"), float("nan"))
    intervals: Any = None
    units: Mapping[str, str] = field(default_factory=dict)
    extra_html: str = ""


def _plt() -> Any:
    import matplotlib

    matplotlib.use("Agg", force=True)
    import matplotlib.pyplot as plt

    return plt


def _fmt(v: Any, digits: int = 4) -> str:
    if v is None:
        return "-"
    if isinstance(v, (float, np.floating)):
        if not np.isfinite(v):
            return "-"
        return f"{float(v):.{digits}g}"
    return html.escape(str(v))


def _per_key(v: Any) -> str:
    """A ``metrics.json`` mapping as text (``fat_pct: sg1_snv, moisture_pct: 12``), numbers as :func:`_fmt` writes
    them; anything else as :func:`_fmt` does."""
    if isinstance(v, Mapping):
        return ", ".join(f"{html.escape(str(k))}: {_per_key(x)}" for k, x in v.items())
    return _fmt(v)


def _shift_word(v: Mapping[str, Any]) -> str:
    """``yes`` for a split whose errors are larger than the calibration rows' (under-coverage), ``smaller`` for
    significantly smaller ones (over-coverage), else ``no``."""
    if v.get("shifted"):
        return "yes (larger errors)"
    from trainer.conformal import SHIFT_P_VALUE

    p, ratio = v.get("p_value"), v.get("ratio")
    return "smaller errors" if p is not None and ratio is not None and p < SHIFT_P_VALUE and ratio < 1 else "no"


def _table(header: Sequence[str], rows: Sequence[Sequence[Any]]) -> str:
    head = "".join(f"<th>{html.escape(h)}</th>" for h in header)
    body = "".join("<tr>" + "".join(f"<td>{_fmt(c)}</td>" for c in r) + "</tr>" for r in rows)
    return f"<table><thead><tr>{head}</tr></thead><tbody>{body}</tbody></table>"


def _save(fig: Any, path: Path) -> str:
    fig.tight_layout()
    fig.savefig(path, dpi=_DPI)
    _plt().close(fig)
    return path.name


def _pred_vs_ref(inp: ReportInputs, out: Path, split: str) -> str | None:
    plt = _plt()
    ds = inp.dataset
    rows = inp.plan.roles()[split]
    t = len(ds.target_names)
    fig, axes = plt.subplots(1, t, figsize=(4.6 * t, 4.2), squeeze=False)
    for j, name in enumerate(ds.target_names):
        ax = axes[0, j]
        ref = ds.y[rows][:, j]
        for model, (color, marker) in _MODEL_STYLE.items():
            pred = inp.predictions.get((split, model))
            if pred is None:
                continue
            rmse = float(np.sqrt(np.mean((pred[:, j] - ref) ** 2)))
            ax.scatter(ref, pred[:, j], s=14, c=color, marker=marker, alpha=0.6, label=f"{model} (RMSEP {rmse:.3g})")
        lo, hi = float(np.min(ref)), float(np.max(ref))
        pad = 0.05 * (hi - lo or 1.0)
        ax.plot([lo - pad, hi + pad], [lo - pad, hi + pad], "k--", lw=1)
        unit = inp.units.get(name, "")
        ax.set_xlabel(f"reference {name}" + (f" ({unit})" if unit else ""))
        ax.set_ylabel("predicted")
        ax.set_title(f"{split}: {name} (n={rows.size})")
        ax.legend(fontsize=7)
    return _save(fig, out / f"pred_vs_ref_{split}.png")


def _residuals(inp: ReportInputs, out: Path, splits: Sequence[str]) -> str:
    plt = _plt()
    ds = inp.dataset
    t = len(ds.target_names)
    fig, axes = plt.subplots(len(splits), t, figsize=(4.6 * t, 3.2 * len(splits)), squeeze=False)
    for i, split in enumerate(splits):
        rows = inp.plan.roles()[split]
        for j, name in enumerate(ds.target_names):
            ax = axes[i, j]
            ref = ds.y[rows][:, j]
            for model in ("pls", "cnn_int8"):
                pred = inp.predictions.get((split, model))
                if pred is None:
                    continue
                color, marker = _MODEL_STYLE[model]
                ax.scatter(ref, pred[:, j] - ref, s=12, c=color, marker=marker, alpha=0.6, label=model)
            if inp.intervals is not None and j < inp.intervals.n_targets:
                q = float(inp.intervals.q_hat[j])
                ax.axhspan(-q, q, color="0.85", zorder=0, label=f"{inp.intervals.coverage:.0%} interval")
            ax.axhline(0, color="k", lw=0.8)
            ax.set_title(f"{split}: {name}")
            ax.set_xlabel("reference")
            ax.set_ylabel("prediction - reference")
            ax.legend(fontsize=7)
    return _save(fig, out / "residuals.png")


def _learning_curves(inp: ReportInputs, out: Path) -> str | None:
    if not inp.histories:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(7, 4))
    offset = 0
    for name, h in inp.histories:
        n_epochs = 0
        for key, values in h.items():
            if not key.endswith("loss") or not values:
                continue
            label = f"{name} " + key.replace("val_loss", "select").replace("loss", "train")
            x = offset + np.arange(1, len(values) + 1)
            ax.plot(x, values, lw=1, ls="--" if key.startswith("val") else "-", label=label)
            n_epochs = max(n_epochs, len(values))
        offset += n_epochs
    ax.set_yscale("log")
    ax.set_xlabel("epoch")
    ax.set_ylabel("loss")
    ax.set_title("CNN learning curves")
    ax.legend(fontsize=7)
    return _save(fig, out / "learning_curves.png")


def _pls_curves(inp: ReportInputs, out: Path) -> str | None:
    if not inp.pls_curves:
        return None
    plt = _plt()
    n = len(inp.pls_curves)
    fig, axes = plt.subplots(1, n, figsize=(4.8 * n, 3.8), squeeze=False)
    classify = inp.dataset.is_classification
    for ax, (target, curves) in zip(axes[0], inp.pls_curves.items()):
        for cand, curve in curves.items():
            ax.plot(np.arange(1, len(curve) + 1), curve, marker=".", label=cand)
        ax.set_xlabel("latent variables")
        ax.set_ylabel("CV error rate" if classify else "RMSECV")
        ax.set_title(f"PLS cross-validation: {target}")
        ax.legend(fontsize=7)
    return _save(fig, out / "pls_cv.png")


def _ood_chart(inp: ReportInputs, out: Path) -> str | None:
    if not inp.ood_scores:
        return None
    plt = _plt()
    fig, ax = plt.subplots(figsize=(6.5, 4.8))
    for split, (t2, q) in inp.ood_scores.items():
        ax.scatter(np.maximum(t2, 1e-12), np.maximum(q, 1e-12), s=10, alpha=0.6, label=split)
    t2l, ql = inp.ood_limits
    ax.axvline(t2l, color="k", ls="--", lw=1, label="T2 limit")
    ax.axhline(ql, color="k", ls=":", lw=1, label="Q limit")
    ax.set_xscale("log")
    ax.set_yscale("log")
    ax.set_xlabel("Hotelling T2")
    ax.set_ylabel("Q residual")
    ax.set_title("Drift statistics of the bundle (edge scoring)")
    ax.legend(fontsize=7)
    return _save(fig, out / "ood_t2_q.png")


def _served_text(model: Any, pls_weight: Any) -> str:
    """``CNN``, ``PLS`` or ``BLEND 0.60 CNN + 0.40 PLS``."""
    if model == "blend" and isinstance(pls_weight, (int, float)):
        return f"BLEND {1 - pls_weight:.2f} CNN + {pls_weight:.2f} PLS"
    return str(model).upper()


def _confusion_counts(inp: ReportInputs, split: str, model: str) -> np.ndarray:
    """Counts (k, k): rows the reference class, columns the class ``model`` predicted on ``split``."""
    rows = inp.plan.roles()[split]
    ref = inp.dataset.y[rows][:, 0].astype(int)
    pred = np.asarray(inp.predictions[(split, model)])[:, 0].astype(int)
    k = len(inp.dataset.class_names or ())
    m = np.zeros((k, k), dtype=int)
    np.add.at(m, (ref, pred), 1)
    return m


def _confusion(inp: ReportInputs, split: str, model: str) -> str:
    names = inp.dataset.class_names or ()
    m = _confusion_counts(inp, split, model)
    return _table(["reference \\ predicted", *names], [[names[i], *m[i].tolist()] for i in range(len(names))])


#: The panels of a classification's confusion figure: the bundle as the edge runs it, then both candidates.
_CONFUSION_PANELS = (("deployed", "deployed (the bundle, edge runtime)"), ("cnn_int8", "CNN int8"), ("pls", "PLS-DA"))


def _confusion_chart(inp: ReportInputs, out: Path, split: str) -> str | None:
    """One heat map per model of ``_CONFUSION_PANELS`` that has predictions on ``split``, accuracy in the title."""
    panels = [(m, label) for m, label in _CONFUSION_PANELS if (split, m) in inp.predictions]
    names = list(inp.dataset.class_names or ())
    if not panels or not names:
        return None
    plt = _plt()
    side = 1.2 + 0.45 * len(names)
    fig, axes = plt.subplots(1, len(panels), figsize=(side * len(panels) + 1.0, side + 0.8), squeeze=False)
    for ax, (model, label) in zip(axes[0], panels):
        m = _confusion_counts(inp, split, model)
        ax.imshow(m, cmap="Blues", vmin=0)
        for (i, j), v in np.ndenumerate(m):
            ax.text(j, i, str(v), ha="center", va="center", fontsize=8,
                    color="white" if v > 0.5 * max(int(m.max()), 1) else "black")
        ax.set_xticks(range(len(names)), names, rotation=45, ha="right", fontsize=7)
        ax.set_yticks(range(len(names)), names, fontsize=7)
        ax.set_xlabel("predicted")
        ax.set_ylabel("reference")
        ax.set_title(f"{label}\naccuracy {np.trace(m) / max(int(m.sum()), 1):.3f} (n={int(m.sum())})", fontsize=8)
    return _save(fig, out / f"confusion_{split}.png")


_CSS = """
body { font-family: sans-serif; margin: 2em; max-width: 1200px; color: #222; }
table { border-collapse: collapse; margin: 0.6em 0 1.4em; font-size: 0.9em; }
th, td { border: 1px solid #bbb; padding: 3px 8px; text-align: right; }
th { background: #eee; }
td:first-child, th:first-child { text-align: left; }
img { max-width: 100%; border: 1px solid #ddd; margin: 0.4em 0 1.2em; }
.note { color: #555; font-size: 0.9em; }
"""


def _search_paragraph(srch: Mapping[str, Any]) -> str:
    """One paragraph on the CNN recipe search (``metrics.json`` ``search``): which recipe the CNN figures come from."""
    if not srch.get("ran"):
        return (f"<p class='note'>CNN recipe: as configured (no recipe search: "
                f"{html.escape(str(srch.get('reason', 'off')))}).</p>")
    text = (f"CNN recipe search (Optuna, {html.escape(str(srch.get('storage')))} study "
            f"{html.escape(str(srch.get('study_name')))}): {srch.get('trials_run')} trials run here "
            f"({srch.get('trials_pruned')} pruned) in {float(srch.get('budget_used_s') or 0):.0f} s, "
            f"{srch.get('trials_in_study')} in the study. ")
    if srch.get("best_trial") is None:
        note = f" <b>Search budget:</b> {html.escape(str(srch['budget_note']))}." if srch.get("budget_note") else ""
        return f"<p class='note'>{text}No trial completed: the configured recipe was trained.{note}</p>"
    conf = srch.get("configured_score")
    classify = srch.get("cv_error") == "CV error rate"
    text += (f"Trained: trial {srch.get('best_trial')}"
             + (" (the configured recipe)" if srch.get("best_is_configured") else "")
             + f", score {float(srch['best_score']):.4g}"
             + (f" against {float(conf):.4g} for the configured recipe" if conf is not None else "")
             + (" (out-of-fold cross-entropy of the class probabilities)." if classify else
                " (out-of-fold RMSE / target sd, geometric mean)."))
    spread = srch.get("seed_spread") or {}
    if spread.get("mean"):
        what = "CV error rate" if classify else "CV RMSE"
        text += (f" Seed-to-seed spread of its {what} over {len(spread.get('seeds', []))} seeds: "
                 + ", ".join(f"{html.escape(str(t))} {float(v):.4g} +/- {float(spread['std'][t]):.2g}"
                             for t, v in spread["mean"].items()) + ".")
    recipe = srch.get("best_recipe") or {}
    if recipe:
        text += f" Preprocessing {html.escape(str(recipe.get('candidate')))}."
    if srch.get("budget_note"):
        text += f" <b>Search budget:</b> {html.escape(str(srch['budget_note']))}."
    refused = srch.get("refused") or {}
    if refused:
        text = text.replace("Trained: trial", "Best: trial", 1)
        text += (f" <b>Its int8 model was refused</b> ({html.escape(str(refused.get('why')))}): "
                 f"{html.escape(str(srch.get('trained', 'the configured recipe')))} was trained instead.")
    return f"<p class='note'>{text}</p>"


def _conversion(cal: Mapping[str, Any] | None) -> str:
    """The conversion the bundle's CNN got, and why (``metrics.json`` ``cnn_int8_calibration``)."""
    if not cal:
        return "int8 (plain calibration)"
    gap, flips = cal.get("gap_to_error"), cal.get("flips")
    why = "" if gap is None else (f" (int8 variant {cal.get('int8_chosen')}: gap to the float network / CNN error "
                                  f"{max(gap):.3g}, limit {cal.get('max_gap')})")
    if flips:  # classification: training/selection spectra whose class the conversion changes
        kept, int8 = cal.get("chosen"), cal.get("int8_chosen")
        why = (f" (int8 variant {int8} changes the float network's class on {flips.get(int8)} of {cal.get('rows')} "
               "training/selection spectra" + (f", {kept} on {flips.get(kept)}" if kept != int8 else "") + ")")
    room = cal.get("headroom")
    return f"{cal.get('chosen')}{why}" + (f", ranges with {room:g} headroom" if room else "")


def _pretrain_paragraph(pt: Mapping[str, Any]) -> str:
    """One paragraph on the trunk pretraining (``metrics.json`` ``pretrain``)."""
    if not pt.get("ran"):
        return (f"<p class='note'>CNN trunk: randomly initialised (no pretraining: "
                f"{html.escape(str(pt.get('reason', 'off')))}).</p>")
    return (f"<p class='note'>CNN trunk pretrained ({html.escape('+'.join(pt.get('task') or []))}) on "
            f"{pt.get('rows')} unlabeled spectra from {html.escape(str(pt.get('source')))} for {pt.get('epochs')} "
            f"epochs: reconstruction loss {_fmt(pt.get('reconstruction_loss'))} (returning the corrupted input: "
            f"{_fmt(pt.get('identity_loss'))}), then fine-tuned on the labeled rows with "
            f"{html.escape(str(pt.get('fine_tune')))}.</p>")


def write_report(report_dir: str | Path, inp: ReportInputs) -> Path:
    """Write ``report_dir/index.html`` and its PNG plots; return the path of ``index.html``."""
    out = Path(report_dir)
    out.mkdir(parents=True, exist_ok=True)
    m = inp.metrics
    ds = inp.dataset
    classify = ds.is_classification
    tests = list(inp.plan.tests)
    key = "accuracy" if classify else "rmsep"
    parts: list[str] = [f"<h1>{html.escape(inp.title)}</h1>"]
    parts.append(
        f"<p class='note'>Config {html.escape(inp.config_source)}; data {html.escape(ds.source)} "
        f"({ds.n_samples} spectra x {ds.n_channels} channels, {ds.wavelengths.min():g}-{ds.wavelengths.max():g} "
        f"{html.escape(ds.axis_unit)}); task {html.escape(str(m.get('task')))}; seed {m.get('seed')}. "
        "cnn_int8 figures come from the quantised CNN as converted (int8, or int16x8 where the conversion line "
        "under Model says so) run by the edge preprocessing and TFLite runtime; deployed "
        "figures from the written bundle, loaded and run by the edge's own code.</p>"
    )
    warned = m.get("warnings") or []
    if warned:  # what the log warned of during the fit, first: the log has scrolled away by the time this is read
        parts.append(f"<h2>Warnings ({len(warned)})</h2><ul>" + "".join(
            f"<li><b>{html.escape(str(w.get('stage') or 'setup'))}</b>: {html.escape(str(w.get('message')))}</li>"
            for w in warned) + "</ul>")
    sel = m.get("selection") or {}
    if sel:
        parts.append("<h2>Deployed model</h2>")
        served = sel.get("per_target") or {}
        classify = m.get("task") == "classification"
        winner = "PLS-DA" if classify and m.get("deployed_model") == "pls" else str(m.get("deployed_model", "")).upper()
        who = (f"<b>{html.escape(winner)}</b> is deployed"
               if m.get("deployed_model") != "per_target" else
               "<b>Each target is served by its winner</b> (" + ", ".join(
                   f"{html.escape(str(t))}: {html.escape(_served_text(v, (sel.get('blend_weights') or {}).get(t)))}"
                   for t, v in served.items()) + ")")
        parts.append(
            f"<p>{who}: "
            f"{html.escape(str(sel.get('reason', '')))}.</p>"
            f"<p class='note'>Rule: {html.escape(str(sel.get('rule', '')))}"
            ".</p>"
        )
        cv = sel.get("cv_rmse") or {}
        if cv:
            models = list(cv)
            names = list(next(iter(cv.values())))
            why = sel.get("per_target_reason") or {}
            heads = ({"pls": "CV error rate PLS-DA", "cnn_float": "CV error rate CNN",
                      "select_error_pls_da": "error rate PLS-DA, selection rows",
                      "select_error_cnn_int8": "error rate CNN int8, selection rows",
                      "pooled_error_pls_da": "error rate PLS-DA, both (the rule's)",
                      "pooled_error_cnn": "error rate CNN, both (the rule's)"} if classify else
                     {"pls": "CV RMSE pls (the CNN's folds)" if "pls_own_folds" in cv else "CV RMSE pls",
                      "pls_own_folds": "CV RMSE pls ([cv] folds)"})
            parts.append(_table(
                ["target", *[heads.get(mname, f"CV RMSE {mname}") for mname in models], "int8 cost", "CNN / PLS",
                 "served by", "why"],
                [[t, *[cv[mname].get(t) for mname in models], (sel.get("int8_cost") or {}).get(t),
                  (sel.get("ratio_cnn_to_pls") or {}).get(t),
                  _served_text(served.get(t, ""), (sel.get("blend_weights") or {}).get(t)), why.get(t, "")]
                 for t in names],
            ))
        if sel.get("int8_cost_rows"):
            basis = sel.get("int8_cost_basis")
            rows_text = {"select": "the selection rows: the final CNN's int8 RMSE / its float RMSE",
                         "train": ("the training rows, out of fold: the RMSE of each row's out-of-fold residual "
                                   "with the final CNN's int8 change of that row added / the out-of-fold RMSE "
                                   if basis == "out_of_fold" else
                                   "the training rows, in sample (the CNN was not cross-validated, or its "
                                   "out-of-fold predictions do not cover every row): the final CNN's int8 RMSE / "
                                   "its float RMSE ")
                         + "([split] names no selection rows)"}.get(
                str(sel["int8_cost_rows"]), str(sel["int8_cost_rows"]))
            parts.append(f"<p class='note'>int8 cost measured on {html.escape(rows_text)}.</p>")
        parts.append(_search_paragraph(m.get("search") or {}))
    parts.append("<h2>Rows</h2>")
    parts.append(_table(["role", "rows"], [[k, v] for k, v in m.get("splits", {}).items()]))

    parts.append("<h2>PLS vs CNN on the test rows</h2>")
    comp = m.get("comparison", [])
    parts.append(_table(
        ["split", "target", f"PLS {key}", f"CNN float {key}", f"CNN int8 {key}", f"deployed {key}", "int8 / PLS",
         "int8 / float", "deployed / PLS"],
        [[c["split"], c["target"], c[f"pls_{key}"], c[f"cnn_float_{key}"], c[f"cnn_int8_{key}"],
          c.get(f"deployed_{key}"), c["ratio_int8_to_pls"], c["ratio_int8_to_float"], c.get("ratio_deployed_to_pls")]
         for c in comp],
    ))
    parts.append("<p class='note'>PLS: preprocessing " + _per_key(m.get("preprocessing", {}).get("pls"))
                 + "; latent variables " + _per_key(m.get("pls_components"))
                 + " (grouped CV on the training rows). CNN preprocessing: "
                 + _per_key(m.get("preprocessing", {}).get("cnn")) + ".</p>")
    parts.append(_line_paragraph(m.get("line_accuracy") or {}, key))

    parts.append("<h2>Model</h2>")
    pr = m.get("pruning", {})
    parts.append(_table(["quantity", "value"], [
        ["CNN parameters", m.get("cnn_params")],
        ["trunk pretraining", "on" if (m.get("pretrain") or {}).get("ran") else "off"],
        ["kernel sparsity reached", m.get("sparsity")],
        ["pruning", "on" if pr.get("enabled") else f"off: {pr['reason']}" if pr.get("reason") else "off"],
        ["deployed model bytes (every model the bundle carries)", m.get("model_bytes")],
        ["CNN model bytes (as converted)", m.get("cnn_model_bytes")],
        ["CNN conversion (docs/training.md, [quantize])", _conversion(m.get("cnn_int8_calibration"))],
        ["bundle bytes", m.get("bundle_bytes")],
        ["best epochs", m.get("cnn_best_epochs")],
        ["CNN training seconds", m.get("cnn_train_seconds")],
        ["runtime", m.get("runtime")],
    ]))
    parts.append(_pretrain_paragraph(m.get("pretrain") or {}))
    if pr.get("accuracy_cost"):
        parts.append(f"<p>Accuracy cost of pruning to sparsity {_fmt(pr.get('sparsity'))} (float models, "
                     f"{key}):</p>")
        parts.append(_table(["split", "target", "dense", "pruned"],
                            [[s, t, *v.values()] for s, per in pr["accuracy_cost"].items() for t, v in per.items()]))

    imgs: list[tuple[str, str | None]] = []
    if classify:
        for split in tests:
            chart = _confusion_chart(inp, out, split)
            if chart:
                parts.append(f"<h2>Confusion, {html.escape(split)}</h2><img src='{html.escape(chart)}' "
                             f"alt='confusion matrices, {html.escape(split)}'>")
            parts.append(f"<h3>Confusion, {html.escape(split)} (cnn_int8)</h3>" + _confusion(inp, split, "cnn_int8"))
            parts.append(f"<h3>Confusion, {html.escape(split)} (PLS-DA)</h3>" + _confusion(inp, split, "pls"))
    else:
        for split in [*tests, *(["select"] if "select" in inp.plan.roles() else [])]:
            imgs.append((f"Predicted vs reference: {split}", _pred_vs_ref(inp, out, split)))
        imgs.append(("Residuals (band: conformal interval)", _residuals(inp, out, tests)))
    imgs.append(("CNN learning curves", _learning_curves(inp, out)))
    imgs.append(("PLS cross-validation", _pls_curves(inp, out)))
    imgs.append(("Hotelling T2 / Q", _ood_chart(inp, out)))
    for title, name in imgs:
        if name:
            parts.append(f"<h2>{html.escape(title)}</h2><img src='{html.escape(name)}' alt='{html.escape(title)}'>")

    ood = m.get("ood", {})
    if ood:
        parts.append("<h2>Drift statistics</h2>")
        parts.append(f"<p>{ood.get('n_components')} principal components; T2 limit {_fmt(ood.get('t2_limit'))}, "
                     f"Q limit {_fmt(ood.get('q_limit'))} at alpha {_fmt(ood.get('alpha'))}. On held-out splits "
                     "of the training instrument a flag is a false alarm (nominal: alpha); on a split of another "
                     "instrument it is a real shift, and a high rate is the monitor working.</p>")
        parts.append(_table(["split", "T2 alarm rate", "Q alarm rate", "flagged (either)"],
                            [[s, v["t2"], v["q"], v.get("either")] for s, v in ood.get("alarm_rate", {}).items()]))
        if ood.get("alarm_rate_line"):
            ln = ood.get("line_noise") or {}
            parts.append(f"<p>The same rows through the declared line detector ([instrument.noise], "
                         f"{ln.get('averages')} scan(s) averaged, {ln.get('copies')} noisy copies each), on which "
                         f"the limits were fitted: what the line alarms on.</p>")
            parts.append(_table(["split", "T2 alarm rate", "Q alarm rate", "flagged (either)"],
                                [[s, v["t2"], v["q"], v.get("either")]
                                 for s, v in ood["alarm_rate_line"].items()]))
        ae = ood.get("autoencoder")
        if ae:
            parts.append(f"<p>Autoencoder (reconstruction error, a third statistic): limit {_fmt(ae.get('limit'))} at "
                         f"alpha {_fmt(ae.get('alpha'))}, from {ae.get('held_out_rows')} held-out training spectra "
                         f"(trained on {ae.get('fit_rows')}).</p>")
            parts.append(_table(["split", "autoencoder alarm rate", "flagged (T2, Q or autoencoder)"],
                                [[s, v["autoencoder"], v["any"]] for s, v in ae.get("alarm_rate", {}).items()]))
    cov = m.get("interval_coverage") or {}
    if cov:
        parts.append("<h2>Prediction intervals (split-conformal on held-out residuals)</h2>")
        parts.append(f"<p>Nominal coverage {_fmt(cov.get('nominal'))} from {cov.get('calibration_rows')} rows "
                     f"({_per_key(cov.get('calibration'))}; training rows out of fold: "
                     f"{_per_key(cov.get('out_of_fold'))}); "
                     f"half-widths {_per_key(cov.get('half_widths'))}. "
                     + ("The selection rows also chose the CNN's stopping epoch, so the coverage measured on the "
                        "test rows below is the honest check.</p>" if (cov.get("calibration") or {}).get("select")
                        else "No selection rows: every calibration row's residual is out of fold; the coverage "
                        "measured on the test rows below is the honest check.</p>"))
        parts.append(_table(["split", *ds.target_names],
                            [[s, *[v.get(t) for t in ds.target_names]] for s, v in cov.items()
                             if isinstance(v, Mapping) and s not in ("half_widths", "calibration", "residual_shift")]))
        shift = cov.get("residual_shift") or {}
        if shift:
            parts.append("<p>The guarantee holds for rows whose errors are exchangeable with the calibration rows'. "
                         "Per test split, the median absolute residual of the deployed model against the calibration "
                         "rows' and a two-sided rank test (Mann-Whitney): a ratio above 1 with p below 0.01 is a "
                         "shift (other reference errors, another design, a slope change between campaigns) that the "
                         "OOD monitor need not see, and the coverage there can fall short for that reason.</p>")
            parts.append(_table(["split", "target", "median |residual| (split)", "median |residual| (calibration)",
                                 "ratio", "p", "shifted"],
                                [[s, t, v.get("median_abs_test"), v.get("median_abs_calibration"), v.get("ratio"),
                                  v.get("p_value"), _shift_word(v)]
                                 for s, per in shift.items() for t, v in per.items()]))
    if inp.extra_html:
        parts.append(inp.extra_html)
    parts.append("<h2>All evaluations</h2>")
    ev = m.get("evaluations", [])
    cols = ["split", "target", "model", "n", *(["accuracy"] if classify else ["rmsep", "bias", "sep", "r2"])]
    parts.append(_table(cols, [[e.get(c) for c in cols] for e in ev]))
    parts.append("<h2>Timings (s)</h2>")
    parts.append(_table(["stage", "seconds"], [[k, v] for k, v in (m.get("timings_s") or {}).items()]))
    doc = ("<!DOCTYPE html><html><head><meta charset='utf-8'><title>" + html.escape(inp.title)
           + "</title><style>" + _CSS + "</style></head><body>" + "\n".join(parts) + "</body></html>\n")
    index = out / "index.html"
    index.write_text(doc, encoding="utf-8")
    log.info("report written to %s", index)
    return index


def _line_paragraph(line: dict[str, Any], key: str) -> str:
    """The deployed bundle through the declared line detector beside offline (``metrics.json`` ``line_accuracy``)."""
    splits = line.get("splits") or {}
    if not splits:
        return ""
    intro = (f"<h3>Through the line detector</h3><p>The deployed bundle on the same rows as the declared line "
             f"detector measures them ([instrument.noise]: {line.get('averages')} scan(s) averaged, "
             f"{line.get('copies')} noisy copies of each row), beside its figure on the spectra as stored. A "
             "ratio well above 1 means the line's accuracy is set by the detector's noise, not by the model: "
             "expect the line figure, which <code>spectro-bench loop</code> measures through the real daemon.</p>")
    rows = [[s, t, v.get(key), v.get(f"offline_{key}"), v.get("ratio")]
            for s, per in splits.items() for t, v in per.items()]
    ratio = "error rate line / offline" if key == "accuracy" else "line / offline"
    return intro + _table(["split", "target", f"line {key}", f"offline {key}", ratio], rows)
