"""Attribution arrays: integrated gradients and occlusion for the CNN, coefficients and VIP for PLS, kernels."""

from __future__ import annotations

from collections.abc import Callable
from typing import Any

import numpy as np
import numpy.typing as npt

from trainer.errors import TrainerError

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
