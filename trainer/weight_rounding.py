"""Weights fine-tuned onto the int8 grid: the network that the ``int16x8`` conversion quantises
(:mod:`trainer.quant_ranges`).

The TFLite converter rounds every Conv/Dense kernel to int8 per output channel (symmetric, scale
``max|w| / 127``). On ``tecator_fat_moisture`` that rounding alone, with every activation kept in float, moved
int8 / float from 1.00 to 1.03 on fat; random perturbations of the same size moved it anywhere between 0.98 and
1.03: the rounding error is a small random function of the spectrum whose chance correlation with the network's
own residuals decides the test figure. The remedy is to make the error smaller, not to pick a lucky draw.

:func:`fine_tune_rounded` trains a copy of the network whose kernels *are* on that grid (straight-through
estimator: the forward pass uses the rounded kernels, the gradient updates a float shadow of them) to reproduce the
float network's outputs on training spectra (distillation: no reference values, no test rows). It keeps the epoch
whose rounded network is closest to the float one on those spectra, epoch 0 (plain rounding) included, so it never
returns a copy further from the float network than plain rounding on them. The converter then finds the kernels
on its own grid and rounds them to exactly these values.

A BatchNormalization layer after a convolution (the trunk's ``{name}_bn{i}`` after ``{name}_conv{i}``) is folded
into the kernel by the converter before rounding, so the grid is taken on the folded kernel.
"""

from __future__ import annotations

import logging
from typing import Any

import numpy as np

__all__ = ["EPOCHS", "LEARNING_RATE", "MAX_ROWS", "fine_tune_rounded", "round_per_channel"]

log = logging.getLogger(__name__)

#: Fine-tuning epochs over the given spectra (the best epoch is kept).
EPOCHS = 60
#: Adam step size on the standardised outputs.
LEARNING_RATE = 3e-5
BATCH_SIZE = 16
#: At most this many of the given spectra (a seeded subset) are fine-tuned on: the fine-tuning's cost stays bounded
#: (a 5-member tablets ensemble on 460 spectra took 80 s).
MAX_ROWS = 200


def round_per_channel(w: np.ndarray) -> np.ndarray:
    """``w`` rounded to the symmetric int8 grid of each output channel (last axis): ``rint(w / s) * s``,
    ``s = max|w| / 127`` per channel (a channel of zeros stays zero)."""
    axes = tuple(range(w.ndim - 1))
    s = np.max(np.abs(w), axis=axes, keepdims=True) / 127.0
    s = np.where(s > 0, s, 1.0)
    return np.asarray(np.rint(w / s) * s, dtype=w.dtype)


def _weighted_layers(model: Any) -> list[tuple[Any, np.ndarray]]:
    """Every Conv1D/Dense layer (members of an averaged ensemble included) and the per-output-channel factor the
    converter folds into its kernel (a following BatchNormalization's ``gamma / sqrt(var + eps)``, else 1)."""
    import keras

    out: list[tuple[Any, np.ndarray]] = []
    layers = list(model.layers)
    by_name = {layer.name: layer for layer in layers}
    for layer in layers:
        if isinstance(layer, keras.Model):
            out += _weighted_layers(layer)
        elif isinstance(layer, (keras.layers.Conv1D, keras.layers.Dense)):
            factor = np.ones(int(layer.kernel.shape[-1]))
            bn = by_name.get(layer.name.replace("_conv", "_bn")) if "_conv" in layer.name else None
            if isinstance(bn, keras.layers.BatchNormalization):
                var = np.asarray(bn.moving_variance.numpy(), dtype=np.float64)
                gamma = np.asarray(bn.gamma.numpy(), dtype=np.float64) if bn.scale else np.ones_like(var)
                factor = gamma / np.sqrt(var + bn.epsilon)
            out.append((layer, np.where(factor != 0, factor, 1.0)))
    return out


def fine_tune_rounded(model: Any, X: np.ndarray, *, epochs: int = EPOCHS, lr: float = LEARNING_RATE,
                      seed: int = 0) -> tuple[Any, dict[str, Any]]:
    """A copy of ``model`` whose kernels lie on the converter's int8 grid, fine-tuned to reproduce ``model`` on ``X``.

    Parameters
    ----------
    model : keras.Model
        A functional network (one member or an averaged ensemble), not modified: a regression network's
        standardised outputs, or a classifier's class probabilities, both reproduced by mean squared error.
    X : ndarray, shape (n, *input_shape), float32
        Spectra to reproduce the network on (real preprocessed training spectra; a seeded subset of
        :data:`MAX_ROWS` when more).
    epochs, lr, seed
        Fine-tuning epochs, Adam step size and the seed of the batch order.

    Returns
    -------
    keras.Model, dict
        The copy, and ``{"epochs", "rows", "best_epoch", "rms_rounded", "rms_tuned"}``: the spectra used and the
        RMS difference from ``model`` on them of plain rounding (epoch 0) and of the kept epoch.
    """
    import tensorflow as tf

    rng = np.random.default_rng(seed)
    if X.shape[0] > MAX_ROWS:
        X = X[np.sort(rng.choice(X.shape[0], MAX_ROWS, replace=False))]
    copy = type(model).from_config(model.get_config())
    copy.set_weights(model.get_weights())
    layers = _weighted_layers(copy)
    kernels = [layer.kernel for layer, _ in layers]
    biases = [layer.bias for layer, _ in layers if layer.use_bias]
    factors = [f for _, f in layers]
    params = [np.asarray(k.numpy(), dtype=np.float64) * f for k, f in zip(kernels, factors)]  # folded kernels
    params += [np.asarray(b.numpy(), dtype=np.float64) for b in biases]
    zero = [p == 0 for p in params[: len(kernels)]]  # pruned weights stay zero
    target = np.asarray(model.predict(X, verbose=0, batch_size=256), dtype=np.float64)
    nk = len(kernels)

    def assign(values: list[np.ndarray]) -> None:
        for k, w, f in zip(kernels, values[:nk], factors):
            k.assign((round_per_channel(w) / f).astype(np.float32))
        for b, w in zip(biases, values[nk:]):
            b.assign(w.astype(np.float32))

    def rms() -> float:
        return float(np.sqrt(np.mean((copy.predict(X, verbose=0, batch_size=256) - target) ** 2)))

    assign(params)
    best_rms = first = rms()
    best = [p.copy() for p in params]
    best_epoch = 0
    m1 = [np.zeros_like(p) for p in params]
    m2 = [np.zeros_like(p) for p in params]
    Xf = tf.constant(X, dtype=tf.float32)
    Tf = tf.constant(target, dtype=tf.float32)
    step = 0
    for epoch in range(1, epochs + 1):
        order = rng.permutation(X.shape[0])
        for start in range(0, order.size, BATCH_SIZE):
            idx = tf.constant(order[start : start + BATCH_SIZE])
            assign(params)
            with tf.GradientTape() as tape:
                loss = tf.reduce_mean((copy(tf.gather(Xf, idx), training=False) - tf.gather(Tf, idx)) ** 2)
            grads = tape.gradient(loss, kernels + biases)
            step += 1
            for j, g in enumerate(grads):
                g = np.asarray(g, dtype=np.float64)
                if j < nk:
                    g = g / factors[j]  # d loss / d folded kernel
                m1[j] = 0.9 * m1[j] + 0.1 * g
                m2[j] = 0.999 * m2[j] + 0.001 * g * g
                params[j] -= lr * (m1[j] / (1 - 0.9**step)) / (np.sqrt(m2[j] / (1 - 0.999**step)) + 1e-8)
                if j < nk:
                    params[j][zero[j]] = 0.0
        assign(params)
        now = rms()
        if now < best_rms:
            best_rms, best, best_epoch = now, [p.copy() for p in params], epoch
    assign(best)
    log.info("int8-grid weights: RMS difference from the float network %.4g (plain rounding) -> %.4g (epoch %d of %d)",
             first, best_rms, best_epoch, epochs)
    return copy, {"epochs": epochs, "rows": int(X.shape[0]), "best_epoch": best_epoch, "rms_rounded": first,
                  "rms_tuned": best_rms}
