"""Fine-tuning the CNN on the transfer samples, the alternative to DS/PDS the evaluation compares against."""

from __future__ import annotations

from typing import Any

import numpy as np
import numpy.typing as npt


def finetune_cnn(
    keras_model: Any,
    X_transfer_pre: npt.ArrayLike,
    y_transfer: npt.ArrayLike,
    *,
    X_anchor_pre: npt.ArrayLike | None = None,
    y_anchor: npt.ArrayLike | None = None,
    epochs: int = 60,
    learning_rate: float = 3e-4,
    batch_size: int = 16,
    freeze_convolutions: bool = False,
    seed: int = 0,
) -> Any:
    """Fine-tune a copy of a regression CNN on slave transfer spectra (the alternative to DS/PDS).

    Parameters
    ----------
    keras_model : keras.Model
        Trained model (preprocessed spectra -> reference units); left unchanged.
    X_transfer_pre : ndarray, shape (n, *input_shape)
        Slave transfer spectra after the model's preprocessing.
    y_transfer : ndarray, shape (n,) or (n, n_outputs)
        Their reference values.
    X_anchor_pre, y_anchor : ndarray, optional
        Master training rows mixed in (each epoch) so the network does not forget instrument 1; recommended with
        few transfer samples.
    epochs, learning_rate, batch_size, seed
        Training settings (Adam, MSE loss on reference units scaled by the training spread).
    freeze_convolutions : bool
        Train only the dense layers.

    Returns
    -------
    keras.Model
        The fine-tuned copy.
    """
    import keras

    from trainer.fitting import compile_steps, fit_arrays

    keras.utils.set_random_seed(int(seed))
    X = np.asarray(X_transfer_pre, dtype=np.float32)
    y = np.asarray(y_transfer, dtype=np.float32).reshape(X.shape[0], -1)
    if X_anchor_pre is not None and y_anchor is not None:
        Xa = np.asarray(X_anchor_pre, dtype=np.float32)
        ya = np.asarray(y_anchor, dtype=np.float32).reshape(Xa.shape[0], -1)
        # Transfer rows repeated so they weigh like the anchor rows together.
        reps = max(1, Xa.shape[0] // max(X.shape[0], 1))
        X = np.concatenate([np.repeat(X, reps, axis=0), Xa])
        y = np.concatenate([np.repeat(y, reps, axis=0), ya])
    model = keras.models.clone_model(keras_model)
    model.set_weights(keras_model.get_weights())
    if freeze_convolutions:
        for layer in _all_layers(model):
            if isinstance(layer, keras.layers.Conv1D):
                layer.trainable = False
    scale = float(np.std(y)) or 1.0
    model.compile(optimizer=keras.optimizers.Adam(learning_rate), loss=_scaled_mse(scale),
                  **compile_steps(len(X), int(batch_size)))
    fit_arrays(model, X, y, epochs=int(epochs), batch_size=int(batch_size), seed=int(seed))
    return model


def _scaled_mse(scale: float) -> Any:
    import keras

    def loss(y_true: Any, y_pred: Any) -> Any:
        return keras.ops.mean(keras.ops.square((y_true - y_pred) / scale))

    return loss


def _all_layers(model: Any) -> list[Any]:
    out: list[Any] = []
    for layer in model.layers:
        out.append(layer)
        if hasattr(layer, "layers"):
            out.extend(_all_layers(layer))
    return out
