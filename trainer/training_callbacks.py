"""Keras callbacks of the CNN training (:func:`trainer.models.train_cnn`): a progress line every few epochs, and the
weights of the epoch with the lowest selection loss."""

from __future__ import annotations

import logging
import math
from typing import Any

import numpy as np

__all__ = ["best_weights_callback", "progress_callback"]


def progress_callback(n_members: int, epochs: int, every: int, logger: logging.Logger) -> Any:
    """A callback that logs one line on ``logger`` at the first epoch, every ``every`` epochs and at the last."""
    import keras

    class Progress(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped: its Callback is Any
        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            logs = logs or {}
            if (epoch + 1) % every == 0 or epoch + 1 == epochs or epoch == 0:
                keys = ("loss", "val_loss", "learning_rate")
                parts = " ".join(f"{k}={float(logs[k]):.4g}" for k in keys if k in logs)
                logger.info("cnn epoch %d/%d (%d member%s) %s", epoch + 1, epochs, n_members,
                            "" if n_members == 1 else "s", parts)

    return Progress()


def best_weights_callback() -> Any:
    """A callback that remembers the weights of the epoch with the lowest ``val_loss`` (``best``, ``best_epoch``,
    ``weights``)."""
    import keras

    class BestWeights(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped: its Callback is Any
        def __init__(self) -> None:
            super().__init__()
            self.best = math.inf
            self.best_epoch = 0
            self.weights: list[np.ndarray] | None = None

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            val = (logs or {}).get("val_loss")
            if val is not None and val < self.best:
                self.best = float(val)
                self.best_epoch = epoch + 1
                self.weights = self.model.get_weights()

    return BestWeights()
