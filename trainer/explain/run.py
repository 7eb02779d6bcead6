"""Explaining a fit for its report: the CNN and PLS explained on the model's feature axis, and the HTML section."""

from __future__ import annotations

from collections.abc import Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.explain.attributions import (
    DEFAULT_IG_STEPS,
    DEFAULT_OCCLUSION_WINDOW,
    ExplainError,
    first_layer_kernels,
    importance_profile,
    integrated_gradients,
    occlusion,
    pls_coefficients,
    vip_scores,
)
from trainer.explain.plots import plot_importance, plot_kernels


def explain_cnn(
    keras_model: Any,
    X_pre_train: npt.ArrayLike,
    X_pre_explain: npt.ArrayLike,
    *,
    wavelengths: npt.ArrayLike,
    mean_spectrum: npt.ArrayLike,
    target_names: Sequence[str],
    out_dir: str | Path,
    unit: str = "nm",
    baseline: str = "mean",
    steps: int = DEFAULT_IG_STEPS,
    window: int = DEFAULT_OCCLUSION_WINDOW,
    prefix: str = "cnn",
) -> dict[str, Any]:
    """Integrated gradients, occlusion and first-layer kernels of a CNN, with their PNGs.

    Parameters
    ----------
    keras_model : keras.Model
    X_pre_train : ndarray, shape (m, n_features[, k])
        Preprocessed training spectra (the ``"mean"`` baseline).
    X_pre_explain : ndarray, shape (n, n_features[, k])
        Preprocessed spectra to explain (a few dozen rows of the selection or test split).
    wavelengths : ndarray, shape (n_features,)
        Axis of the features (the model grid), in ``unit``.
    mean_spectrum : ndarray, shape (n_features,)
        Mean absorbance spectrum on that axis, drawn behind the importance.
    target_names : sequence of str
        One per regression output (classification: class names; one panel per class).
    out_dir : str or Path
        Folder of the PNGs.

    Returns
    -------
    dict
        ``ig`` (n_features, n_outputs), ``occlusion`` (n_features, n_outputs), ``kernels``, and the paths
        ``importance_png`` and ``kernels_png`` (None when the model has no Conv1D).
    """
    out = Path(out_dir)
    n_out = int(keras_model.output_shape[-1])
    ig = np.stack(
        [
            importance_profile(
                integrated_gradients(
                    keras_model, X_pre_explain, baseline=baseline, X_train=X_pre_train, steps=steps, output=j
                )
            )
            for j in range(n_out)
        ],
        axis=1,
    )
    occ = occlusion(
        lambda Z: keras_model.predict(np.asarray(Z, dtype=np.float32), verbose=0, batch_size=512),
        X_pre_explain,
        window=window,
        baseline=baseline,
        X_train=X_pre_train,
    )
    png = plot_importance(
        wavelengths,
        mean_spectrum,
        {"integrated gradients": ig, "occlusion": occ},
        out / f"{prefix}_importance.png",
        target_names=target_names,
        unit=unit,
        title="CNN",
    )
    result: dict[str, Any] = {"ig": ig, "occlusion": occ, "importance_png": png, "kernels": None, "kernels_png": None}
    try:
        kernels = first_layer_kernels(keras_model)
    except ExplainError:
        return result
    result["kernels"] = kernels
    result["kernels_png"] = plot_kernels(kernels, out / f"{prefix}_kernels.png")
    return result


def explain_pls(
    pls: Any,
    *,
    wavelengths: npt.ArrayLike,
    mean_spectrum: npt.ArrayLike,
    target_names: Sequence[str],
    out_dir: str | Path,
    unit: str = "nm",
    prefix: str = "pls",
) -> dict[str, Any]:
    """PLS regression coefficients and VIP scores, with their PNGs.

    Parameters
    ----------
    pls : sklearn.cross_decomposition.PLSRegression
        Fitted on preprocessed features of length ``n_features`` (e.g. ``PlsTargetModel.pls``).
    wavelengths, mean_spectrum : ndarray, shape (n_features,)
        Feature axis and mean spectrum on it.
    target_names : sequence of str
        The PLS responses.

    Returns
    -------
    dict
        ``coef`` (n_features, n_targets), ``vip`` (n_features,), ``coef_png``, ``vip_png``.
    """
    out = Path(out_dir)
    coef = pls_coefficients(pls)
    vip = vip_scores(pls)
    coef_png = plot_importance(
        wavelengths, mean_spectrum, coef, out / f"{prefix}_coefficients.png", target_names=target_names, unit=unit,
        title="PLS coefficients", signed=True,
    )
    vip_png = plot_importance(
        wavelengths, mean_spectrum, vip, out / f"{prefix}_vip.png", target_names=[", ".join(target_names)], unit=unit,
        title="PLS VIP",
        reference_line=1.0,
    )
    return {"coef": coef, "vip": vip, "coef_png": coef_png, "vip_png": vip_png}


#: Preprocessing ops whose output channel i still sits at the input's wavelength i.
_AXIS_KEEPING_OPS = frozenset({"counts", "snv", "msc", "emsc", "savgol", "detrend", "normalize", "center", "autoscale"})


def _steps_axis(steps: Sequence[Any], wavelengths: np.ndarray) -> np.ndarray | None:
    """Follow the wavelength axis through crop, resample and stack steps; None once a step remaps channels."""
    w = wavelengths
    for step in steps:
        op = getattr(step, "op", None)
        if op == "crop":
            w = w[step.start : step.stop]
        elif op == "resample":
            w = np.asarray(step.grid, dtype=np.float64)
        elif op == "stack":
            axes = [_steps_axis(branch, w) for branch in step.branches]
            if any(a is None or a.shape != axes[0].shape for a in axes):  # type: ignore[union-attr]  # not None: the any() above tests a first
                return None
            w = axes[0]  # type: ignore[assignment]  # not None: checked just above
        elif op == "linear":
            if np.asarray(step.matrix).shape[0] != np.asarray(step.matrix).shape[1]:
                return None
        elif op not in _AXIS_KEEPING_OPS:
            return None
    return w


def _feature_axis(
    n_features: int, wavelengths: np.ndarray, unit: str, preprocess: Any = None
) -> tuple[np.ndarray, str]:
    """The wavelength axis of the features: the raw axis followed through the preprocessing's crop/resample steps,
    else the feature index (after a step that remaps channels)."""
    if preprocess is not None:
        edge_pipe = preprocess.to_edge() if hasattr(preprocess, "to_edge") else preprocess
        w = _steps_axis(getattr(edge_pipe, "steps", ()), wavelengths)
        if w is not None and w.size == n_features:
            return w, unit
    if wavelengths.size == n_features:
        return wavelengths, unit
    return np.arange(n_features, dtype=np.float64), "index"


def _mean_on_axis(X: np.ndarray, wavelengths: np.ndarray, axis: np.ndarray) -> np.ndarray:
    """Mean raw spectrum on ``axis`` (a crop or resampling of ``wavelengths``)."""
    mean = X.mean(axis=0)
    if axis.shape == wavelengths.shape and np.array_equal(axis, wavelengths):
        return mean
    order = np.argsort(wavelengths)
    return np.interp(axis, wavelengths[order], mean[order])


def explain_run(
    out_dir: str | Path,
    *,
    X_abs_train: npt.ArrayLike,
    X_abs_explain: npt.ArrayLike,
    wavelengths: npt.ArrayLike,
    target_names: Sequence[str],
    unit: str = "nm",
    keras_model: Any = None,
    preprocess: Any = None,
    pls_baseline: Any = None,
    n_explain: int = 32,
    steps: int = DEFAULT_IG_STEPS,
    window: int = DEFAULT_OCCLUSION_WINDOW,
) -> dict[str, Path]:
    """All interpretability plots of a training run, for the report.

    Parameters
    ----------
    out_dir : str or Path
        Folder of the PNGs (the report folder).
    X_abs_train : ndarray, shape (m, n_channels)
        Training spectra (absorbance, as the pipeline takes them): the IG/occlusion baseline and the mean spectrum.
    X_abs_explain : ndarray, shape (n, n_channels)
        Spectra to explain (selection or test rows); the first ``n_explain`` are used.
    wavelengths : ndarray, shape (n_channels,)
        Axis of the raw spectra, in ``unit``; used for the features when their count matches (else feature index).
    target_names : sequence of str
        CNN outputs (regression targets, or class names for classification).
    keras_model : keras.Model, optional
        The CNN (preprocessed spectra -> outputs); needs ``preprocess``.
    preprocess : object with ``transform(X)``, optional
        The CNN's fitted preprocessing (trainer pipeline or edge pipeline).
    pls_baseline : trainer.pls.PlsBaseline, optional
        Its per-target models give coefficients and VIP (each over its own preprocessing).

    Returns
    -------
    dict of str to Path
        ``cnn_importance``, ``cnn_kernels``, ``pls_coefficients_<target>``, ``pls_vip_<target>`` (those that apply).
    """
    out = Path(out_dir)
    Xt = np.asarray(X_abs_train, dtype=np.float64)
    Xe = np.asarray(X_abs_explain, dtype=np.float64)[:n_explain]
    w = np.asarray(wavelengths, dtype=np.float64)
    paths: dict[str, Path] = {}
    if keras_model is not None:
        if preprocess is None:
            raise ExplainError("explaining the CNN needs its fitted preprocessing")
        Pt = np.asarray(preprocess.transform(Xt), dtype=np.float64)
        Pe = np.asarray(preprocess.transform(Xe), dtype=np.float64)
        axis, u = _feature_axis(Pt.shape[1], w, unit, preprocess)
        mean = (_mean_on_axis(Xt, w, axis) if u == unit
                else Pt.reshape(Pt.shape[0], Pt.shape[1], -1).mean(axis=(0, 2)))
        res = explain_cnn(keras_model, Pt, Pe, wavelengths=axis, mean_spectrum=mean, target_names=target_names,
                          out_dir=out, unit=u, steps=steps, window=window)
        paths["cnn_importance"] = res["importance_png"]
        if res["kernels_png"] is not None:
            paths["cnn_kernels"] = res["kernels_png"]
    if pls_baseline is not None:
        for m in pls_baseline.models:
            label = "_".join(m.targets) if pls_baseline.task != "classification" else "classes"
            Pt = np.asarray(m.preprocess.transform(Xt), dtype=np.float64)
            n_feat = Pt.shape[1]
            flat = Pt.reshape(Pt.shape[0], -1)
            if flat.shape[1] != n_feat:  # stacked preprocessings: one panel per branch is overkill; use the index
                axis, u = np.arange(flat.shape[1], dtype=np.float64), "index"
                mean = flat.mean(axis=0)
            else:
                axis, u = _feature_axis(n_feat, w, unit, m.preprocess)
                mean = _mean_on_axis(Xt, w, axis) if u == unit else flat.mean(axis=0)
            names = list(m.targets)
            if pls_baseline.task == "classification" and pls_baseline.class_names:
                names = list(pls_baseline.class_names)  # PLS-DA: one response per class
            res = explain_pls(m.pls, wavelengths=axis, mean_spectrum=mean, target_names=names, out_dir=out,
                              unit=u, prefix=f"pls_{_safe(label)}")
            paths[f"pls_coefficients_{label}"] = res["coef_png"]
            paths[f"pls_vip_{label}"] = res["vip_png"]
    return paths


def _safe(name: str) -> str:
    return "".join(c if c.isalnum() or c in "-_" else "_" for c in name)


_CAPTIONS = {
    "cnn_importance": "CNN: integrated gradients (baseline: mean training spectrum) and occlusion over sliding "
    "windows, each scaled to its maximum, over the mean spectrum.",
    "cnn_kernels": "CNN: first-layer Conv1D kernels (often derivative- or smoothing-like).",
    "pls_coefficients": "PLS regression coefficients (on the preprocessed features) over the mean spectrum.",
    "pls_vip": "PLS VIP scores (above 1: important) over the mean spectrum.",
}


def html_section(paths: Mapping[str, Path], report_dir: str | Path) -> str:
    """An HTML ``<section>`` with the plots of :func:`explain_run` (``img`` sources relative to ``report_dir``)."""
    import html

    base = Path(report_dir)
    parts = [
        '<section id="interpretability"><h2>Interpretability</h2>',
        ("<p>Check that the highlighted regions are known absorption bands, not acquisition artifacts "
        "(detector joints, lamp lines, saturated ends).</p>"),
    ]
    for key, p in paths.items():
        cap = next((c for k, c in _CAPTIONS.items() if key == k or key.startswith(k + "_")), key)
        suffix = key.split("_", 2)[-1] if key.startswith("pls_") else ""
        try:
            src = Path(p).relative_to(base).as_posix()
        except ValueError:
            src = Path(p).name
        text = html.escape(cap + (f" Target: {suffix}." if suffix else ""))
        parts.append(
            f'<figure><img src="{html.escape(src)}" alt="{html.escape(key)}">'
            f"<figcaption>{text}</figcaption></figure>"
        )
    parts.append("</section>")
    return "\n".join(parts)
