"""Interpretability of the trained models: integrated gradients and occlusion for the CNN, coefficients and VIP for PLS.

Every function returns plain arrays; the ``plot_*`` functions draw them over the mean spectrum (wavelength axis in
the data's units) with matplotlib's object API (no ``pyplot`` state, Agg canvas) and save PNGs, so the report can
embed them. The aim is the chemist's check: do the regions the model relies on sit on known absorption bands, or
on an acquisition artifact (a detector joint, a lamp line) that merely correlated with the target in training?

- :func:`integrated_gradients` (Sundararajan et al. 2017) with ``tf.GradientTape``: attribution of each input
  feature relative to a baseline (the mean training spectrum by default, or zeros), midpoint Riemann sum over
  ``steps`` points of the straight path.
- :func:`occlusion`: the mean absolute change of the prediction when a sliding window of features is replaced by
  the baseline; model-agnostic (any ``predict`` callable, so it also explains PLS or a ``.tflite`` bundle).
- :func:`pls_coefficients` and :func:`vip_scores` for a fitted scikit-learn ``PLSRegression``.
- :func:`first_layer_kernels`: the first ``Conv1D`` kernels (Bjerrum et al. 2017 observed that they resemble
  derivative and smoothing filters), drawn by :func:`plot_kernels`.

Hand-written because the maths is short and no maintained library covers Keras 3 *and* PLS VIP with plots over a
spectrum (captum is PyTorch-only; alibi pins older TensorFlow).
"""

from __future__ import annotations

from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.errors import TrainerError

__all__ = [
    "DEFAULT_IG_STEPS",
    "DEFAULT_OCCLUSION_WINDOW",
    "ExplainError",
    "explain_cnn",
    "explain_pls",
    "explain_run",
    "first_layer_kernels",
    "html_section",
    "importance_profile",
    "integrated_gradients",
    "occlusion",
    "plot_importance",
    "plot_kernels",
    "pls_coefficients",
    "vip_scores",
]

#: Path points of the integrated-gradients Riemann sum.
DEFAULT_IG_STEPS = 64
#: Width (features) of the occlusion window.
DEFAULT_OCCLUSION_WINDOW = 9
#: Rows per forward/backward pass of integrated gradients (samples x steps).
_IG_BATCH_ROWS = 4096

FloatArray = npt.NDArray[np.float64]


class ExplainError(TrainerError, ValueError):
    """Inputs of an explanation do not fit the model (shapes, output index, missing layer)."""


def _baseline(baseline: str | npt.ArrayLike, X: FloatArray, X_train: npt.ArrayLike | None) -> FloatArray:
    if isinstance(baseline, str):
        if baseline == "zeros":
            return np.zeros(X.shape[1:])
        if baseline == "mean":
            ref = X if X_train is None else np.asarray(X_train, dtype=np.float64)
            return ref.mean(axis=0)
        raise ExplainError(f"unknown baseline {baseline!r}; expected 'mean', 'zeros' or an array")
    b = np.asarray(baseline, dtype=np.float64)
    if b.shape != X.shape[1:]:
        raise ExplainError(f"expected a baseline of shape {X.shape[1:]}, got {b.shape}")
    return b


def integrated_gradients(
    keras_model: Any,
    X: npt.ArrayLike,
    *,
    baseline: str | npt.ArrayLike = "mean",
    X_train: npt.ArrayLike | None = None,
    steps: int = DEFAULT_IG_STEPS,
    output: int = 0,
) -> FloatArray:
    """Integrated-gradients attributions of one model output.

    Parameters
    ----------
    keras_model : keras.Model
        Maps preprocessed spectra ``(batch, *input_shape)`` to ``(batch, n_outputs)``.
    X : ndarray, shape (n, *input_shape)
        Preprocessed spectra to explain.
    baseline : {"mean", "zeros"} or ndarray, shape input_shape
        Reference input: the mean of ``X_train`` (of ``X`` when not given), zeros, or an explicit array.
    X_train : ndarray, shape (m, *input_shape), optional
        Training spectra for the ``"mean"`` baseline.
    steps : int
        Points of the path integral.
    output : int
        Which model output (target or class) to explain.

    Returns
    -------
    ndarray, shape (n, *input_shape)
        Attributions; each row sums (up to the Riemann error) to ``f(x) - f(baseline)``.
    """
    import tensorflow as tf

    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim < 2:
        raise ExplainError(f"expected a batch of spectra (n, *input_shape), got shape {Xa.shape}")
    if steps < 1:
        raise ExplainError(f"expected steps >= 1, got {steps}")
    b = _baseline(baseline, Xa, X_train)
    n_out = int(keras_model.output_shape[-1])
    if not 0 <= output < n_out:
        raise ExplainError(f"expected output in 0..{n_out - 1}, got {output}")
    alphas = ((np.arange(steps) + 0.5) / steps).reshape((steps,) + (1,) * (Xa.ndim - 1))
    per_chunk = max(1, _IG_BATCH_ROWS // steps)
    out = np.empty_like(Xa)
    for start in range(0, Xa.shape[0], per_chunk):
        chunk = Xa[start : start + per_chunk]
        delta = chunk - b  # (c, *shape)
        path = b[None, None] + alphas[None] * delta[:, None]  # (c, steps, *shape)
        flat = tf.convert_to_tensor(path.reshape((-1,) + Xa.shape[1:]), dtype=tf.float32)
        with tf.GradientTape() as tape:
            tape.watch(flat)
            y = keras_model(flat, training=False)[:, output]
        grads = tape.gradient(y, flat)
        g = np.asarray(grads, dtype=np.float64).reshape(path.shape).mean(axis=1)
        out[start : start + chunk.shape[0]] = delta * g
    return out


def occlusion(
    predict: Callable[[FloatArray], npt.ArrayLike],
    X: npt.ArrayLike,
    *,
    window: int = DEFAULT_OCCLUSION_WINDOW,
    stride: int | None = None,
    baseline: str | npt.ArrayLike = "mean",
    X_train: npt.ArrayLike | None = None,
) -> FloatArray:
    """Occlusion importance over sliding spectral windows.

    Each window of ``window`` features (along axis 1 of ``X``; all stacked channels together) is replaced by the
    baseline's values and the mean absolute change of every output over the rows of ``X`` is recorded; a feature's
    importance is the mean over the windows that cover it.

    Parameters
    ----------
    predict : callable
        ``(n, *input_shape) -> (n,)`` or ``(n, n_outputs)``: a Keras ``model.predict``, a PLS ``predict``, a
        ``.tflite`` runtime.
    X : ndarray, shape (n, n_features) or (n, n_features, k)
    window, stride : int
        Window width and step in features (stride defaults to ``max(1, window // 2)``).
    baseline, X_train
        As :func:`integrated_gradients`.

    Returns
    -------
    ndarray, shape (n_features, n_outputs)
        Importance in output units.
    """
    Xa = np.asarray(X, dtype=np.float64)
    if Xa.ndim < 2:
        raise ExplainError(f"expected a batch of spectra (n, n_features[, k]), got shape {Xa.shape}")
    p = Xa.shape[1]
    if not 1 <= window <= p:
        raise ExplainError(f"expected an occlusion window of 1..{p} features, got {window}")
    stride = stride or max(1, window // 2)
    b = _baseline(baseline, Xa, X_train)

    def run(Z: FloatArray) -> FloatArray:
        r = np.asarray(predict(Z), dtype=np.float64)
        return r.reshape(Z.shape[0], -1)

    ref = run(Xa)
    starts = list(range(0, p - window + 1, stride))
    if starts[-1] != p - window:
        starts.append(p - window)
    # One batched call over all windows: (n_windows * n, ...) rows.
    batch = np.repeat(Xa[None], len(starts), axis=0)
    for i, s in enumerate(starts):
        batch[i, :, s : s + window] = b[s : s + window]
    pred = run(batch.reshape((-1,) + Xa.shape[1:])).reshape(len(starts), Xa.shape[0], -1)
    effect = np.abs(pred - ref[None]).mean(axis=1)  # (n_windows, n_outputs)
    total = np.zeros((p, effect.shape[1]))
    count = np.zeros((p, 1))
    for i, s in enumerate(starts):
        total[s : s + window] += effect[i]
        count[s : s + window] += 1
    return total / count


def importance_profile(attributions: npt.ArrayLike) -> FloatArray:
    """Per-feature importance from attributions ``(n, n_features[, k])``: mean absolute value, summed over ``k``."""
    A = np.abs(np.asarray(attributions, dtype=np.float64))
    if A.ndim < 2:
        raise ExplainError(f"expected attributions (n, n_features[, k]), got shape {A.shape}")
    prof = A.mean(axis=0)
    return prof.reshape(prof.shape[0], -1).sum(axis=1)


def pls_coefficients(pls: Any) -> FloatArray:
    """Regression coefficients of a fitted ``PLSRegression``, shape (n_features, n_targets), in X's units."""
    coef = np.asarray(pls.coef_, dtype=np.float64)
    n_features = int(pls.x_weights_.shape[0])
    if coef.shape[0] != n_features:  # scikit-learn >= 1.3 stores (n_targets, n_features)
        coef = coef.T
    return coef


def vip_scores(pls: Any) -> FloatArray:
    """Variable importance in projection of a fitted ``PLSRegression``, shape (n_features,).

    ``VIP_j = sqrt(p * sum_a SS_a (w_ja / |w_a|)^2 / sum_a SS_a)`` with ``SS_a = |q_a|^2 t_a' t_a`` the
    Y variance explained by component ``a``; the mean of ``VIP^2`` is 1, so ``VIP > 1`` marks important features.
    """
    W = np.asarray(pls.x_weights_, dtype=np.float64)  # (p, A)
    T = np.asarray(pls.x_scores_, dtype=np.float64)  # (n, A)
    Q = np.asarray(pls.y_loadings_, dtype=np.float64)  # (t, A)
    p = W.shape[0]
    ss = np.sum(Q**2, axis=0) * np.sum(T**2, axis=0)  # (A,)
    wn = W / np.linalg.norm(W, axis=0, keepdims=True)
    return np.asarray(np.sqrt(p * (wn**2 @ ss) / ss.sum()), dtype=np.float64)


def _conv_layers(model: Any) -> list[Any]:
    import keras

    found: list[Any] = []
    for layer in model.layers:
        if isinstance(layer, keras.layers.Conv1D):
            found.append(layer)
        elif hasattr(layer, "layers"):
            found.extend(_conv_layers(layer))
    return found


def first_layer_kernels(keras_model: Any) -> FloatArray:
    """Kernels of the first ``Conv1D`` layer (of the first ensemble member).

    Shape (kernel_size, in_channels, filters).
    """
    convs = _conv_layers(keras_model)
    if not convs:
        raise ExplainError("the model has no Conv1D layer")
    return np.asarray(convs[0].get_weights()[0], dtype=np.float64)


# ------------------------------------------------------------------------------------------------ plots


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


# ------------------------------------------------------------------------------------------------ report helpers


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
            if any(a is None or a.shape != axes[0].shape for a in axes):  # type: ignore[union-attr]
                return None
            w = axes[0]  # type: ignore[assignment]
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
