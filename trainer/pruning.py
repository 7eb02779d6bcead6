"""Magnitude pruning of Keras 3 models to a target sparsity, with a polynomial schedule and fine-tuning.

Written here rather than taken from ``tensorflow-model-optimization`` because that package only works with legacy
Keras 2 (importing it switches the whole process to ``tf_keras``), while the trainer builds Keras 3 models. The
method is the one of Zhu and Gupta ("To prune, or not to prune", 2017) that TF-MOT implements: during fine-tuning,
every ``frequency_steps`` optimizer steps the smallest-magnitude weights of each prunable kernel are masked so that
its sparsity follows::

    s(t) = s_f + (s_i - s_f) * (1 - (t - t_0) / (t_1 - t_0)) ** power      for t_0 <= t <= t_1

and stays at ``s_f`` afterwards; the masks are re-applied after every batch (a Keras callback), so pruned weights
stay exactly zero whatever the optimizer does. Prunable kernels are those of ``Conv1D``/``Conv2D``/``Dense`` layers,
found recursively through nested models (ensemble members); biases and batch-norm parameters are left dense.

>>> sparsity_at(0, initial=0.0, final=0.5, begin_step=0, end_step=100)
0.0
>>> sparsity_at(100, initial=0.0, final=0.5, begin_step=0, end_step=100)
0.5
"""

from __future__ import annotations

import logging
import math
import time
from dataclasses import asdict, dataclass
from typing import Any

import numpy as np

from trainer.config.tables import record_from_table
from trainer.errors import TrainConfigError

__all__ = ["PruneConfig", "PruneResult", "measure_sparsity", "prunable_kernels", "prune_model", "sparsity_at"]

log = logging.getLogger(__name__)

_PRUNABLE = ("Conv1D", "Conv2D", "Dense")


@dataclass(frozen=True)
class PruneConfig:
    """Pruning schedule and fine-tuning parameters.

    Parameters
    ----------
    target_sparsity : float
        Final fraction of zero weights in every prunable kernel, ``0 <= s < 1``.
    initial_sparsity : float
        Sparsity applied at the first pruning step.
    epochs : int
        Fine-tuning epochs in total (pruning and recovery).
    end_fraction : float
        Fraction of the fine-tuning steps after which the target is reached; the rest recovers accuracy.
    frequency_steps : int
        Masks are recomputed every this many optimizer steps (and applied after every step).
    power : float
        Exponent of the polynomial schedule (3 prunes fast first, then slowly).
    learning_rate : float
        Adam learning rate for fine-tuning.
    batch_size : int
    min_weights : int
        Kernels with fewer weights than this are left dense (tiny layers such as a 1-unit output).
    """

    target_sparsity: float = 0.5
    initial_sparsity: float = 0.0
    epochs: int = 20
    end_fraction: float = 0.6
    frequency_steps: int = 10
    power: float = 3.0
    learning_rate: float = 5e-4
    batch_size: int = 32
    min_weights: int = 64

    def __post_init__(self) -> None:
        if not 0.0 <= self.target_sparsity < 1.0:
            raise TrainConfigError(f"pruning.target_sparsity: expected 0 <= s < 1, got {self.target_sparsity}")
        if not 0.0 <= self.initial_sparsity <= self.target_sparsity:
            raise TrainConfigError(
                f"pruning.initial_sparsity: expected 0 <= s <= target_sparsity ({self.target_sparsity}), "
                f"got {self.initial_sparsity}"
            )
        if not 0.0 < self.end_fraction <= 1.0:
            raise TrainConfigError(f"pruning.end_fraction: expected 0 < f <= 1, got {self.end_fraction}")
        for name in ("epochs", "frequency_steps", "batch_size"):
            if int(getattr(self, name)) < 1:
                raise TrainConfigError(f"pruning.{name}: expected an integer >= 1, got {getattr(self, name)}")
        if self.min_weights < 0:
            raise TrainConfigError(f"pruning.min_weights: expected an integer >= 0, got {self.min_weights}")
        if not (self.power > 0 and math.isfinite(self.power)):
            raise TrainConfigError(f"pruning.power: expected a positive number, got {self.power}")
        if not (self.learning_rate > 0 and math.isfinite(self.learning_rate)):
            raise TrainConfigError(f"pruning.learning_rate: expected a positive number, got {self.learning_rate}")

    @classmethod
    def from_dict(cls, d: dict[str, Any]) -> PruneConfig:
        """Build from the ``[pruning]`` table without its ``enabled`` key (the caller's): unknown keys and values of the
        wrong type are refused, naming the key."""
        return record_from_table(cls, d, "pruning", also_known=("enabled",))

    def to_dict(self) -> dict[str, Any]:
        """Plain-dict form for ``metrics.json`` and reports."""
        return asdict(self)


@dataclass(frozen=True)
class PruneResult:
    """Outcome of :func:`prune_model`.

    Attributes
    ----------
    model : keras.Model
        The same model object, fine-tuned, with pruned weights exactly zero.
    sparsity : float
        Fraction of zero weights over all prunable kernels (those with at least ``min_weights`` weights).
    layer_sparsity : dict of str to float
        Per pruned kernel (``layer/variable`` path), its fraction of zeros.
    history : dict of str to list of float
        Keras fine-tuning history (``loss``, ``val_loss`` when selection rows were given).
    prune_seconds : float
    """

    model: Any
    sparsity: float
    layer_sparsity: dict[str, float]
    history: dict[str, list[float]]
    prune_seconds: float


def sparsity_at(
    step: int, *, initial: float, final: float, begin_step: int, end_step: int, power: float = 3.0
) -> float:
    """Sparsity of the polynomial schedule at optimizer step ``step`` (constant before and after the ramp)."""
    if end_step <= begin_step:
        return float(final) if step >= begin_step else float(initial)
    frac = min(max((step - begin_step) / (end_step - begin_step), 0.0), 1.0)
    return float(final + (initial - final) * (1.0 - frac) ** power)


def _iter_layers(model: Any) -> list[Any]:
    out = []
    for layer in model.layers:
        if hasattr(layer, "layers"):
            out.extend(_iter_layers(layer))
        else:
            out.append(layer)
    return out


def prunable_kernels(model: Any, *, min_weights: int = 0) -> list[Any]:
    """Kernel variables of the Conv/Dense layers of ``model`` (nested models included), largest-first order kept."""
    seen: set[int] = set()
    kernels = []
    for layer in _iter_layers(model):
        if type(layer).__name__ in _PRUNABLE and getattr(layer, "kernel", None) is not None:
            var = layer.kernel
            if id(var) in seen or int(np.prod(var.shape)) < min_weights:
                continue
            seen.add(id(var))
            kernels.append(var)
    return kernels


def measure_sparsity(model: Any, *, min_weights: int = 0) -> tuple[float, dict[str, float]]:
    """Overall and per-kernel fraction of exactly-zero weights in the prunable kernels of ``model``."""
    total = zeros = 0
    per: dict[str, float] = {}
    for var in prunable_kernels(model, min_weights=min_weights):
        w = np.asarray(var.numpy())
        n0 = int(np.count_nonzero(w == 0))
        per[var.path] = n0 / w.size
        total += w.size
        zeros += n0
    return (zeros / total if total else 0.0), per


def _magnitude_mask(w: np.ndarray, sparsity: float) -> np.ndarray:
    """Mask keeping all but the ``round(sparsity * size)`` smallest-magnitude weights (stable tie order)."""
    k = round(sparsity * w.size)
    mask = np.ones(w.size, dtype=w.dtype)
    if k > 0:
        order = np.argsort(np.abs(w).ravel(), kind="stable")
        mask[order[:k]] = 0
    return mask.reshape(w.shape)


def _make_callback(kernels: list[Any], config: PruneConfig, total_steps: int) -> Any:
    import keras

    end_step = max(1, round(config.end_fraction * total_steps))

    class MagnitudePruning(keras.callbacks.Callback):  # type: ignore[misc]  # keras is untyped: its Callback is Any
        def __init__(self) -> None:
            super().__init__()
            self.step = 0
            self.masks: list[np.ndarray] = []

        def _update_masks(self) -> None:
            s = sparsity_at(self.step, initial=config.initial_sparsity, final=config.target_sparsity,
                            begin_step=0, end_step=end_step, power=config.power)
            self.masks = [_magnitude_mask(np.asarray(v.numpy()), s) for v in kernels]

        def _apply(self) -> None:
            for v, m in zip(kernels, self.masks):
                v.assign(np.asarray(v.numpy()) * m)

        def on_train_begin(self, logs: dict[str, float] | None = None) -> None:
            self._update_masks()
            self._apply()

        def on_train_batch_end(self, batch: int, logs: dict[str, float] | None = None) -> None:
            self.step += 1
            if self.step <= end_step and (self.step % config.frequency_steps == 0 or self.step == end_step):
                self._update_masks()
            self._apply()

        def on_epoch_end(self, epoch: int, logs: dict[str, float] | None = None) -> None:
            s_now = sparsity_at(self.step, initial=config.initial_sparsity, final=config.target_sparsity,
                                begin_step=0, end_step=end_step, power=config.power)
            extra = " ".join(f"{k}={float(v):.4g}" for k, v in (logs or {}).items() if k in ("loss", "val_loss"))
            log.info("prune epoch %d/%d sparsity %.3f (target %.3f) %s", epoch + 1, config.epochs, s_now,
                     config.target_sparsity, extra)

        def on_train_end(self, logs: dict[str, float] | None = None) -> None:
            if self.step < end_step:  # stopped early: jump to the target so the result is what was asked
                self.step = end_step
                self._update_masks()
            self._apply()

    return MagnitudePruning()


def prune_model(
    model: Any,
    X_train: np.ndarray,
    y_train: np.ndarray,
    *,
    config: PruneConfig,
    seed: int,
    loss: Any = "mse",
    X_sel: np.ndarray | None = None,
    y_sel: np.ndarray | None = None,
) -> PruneResult:
    """Prune ``model`` in place to ``config.target_sparsity`` while fine-tuning it on the training rows.

    Parameters
    ----------
    model : keras.Model
        A trained model (for example ``TrainedCNN.model``); it is recompiled with Adam and ``loss``.
    X_train : ndarray, shape (n, *input_shape)
        Preprocessed training spectra.
    y_train : ndarray, shape (n,) or (n, n_outputs)
        Targets in the units of the model's output (reference units for a ``train_cnn`` regression model; class
        indices with ``loss="sparse_categorical_crossentropy"`` for a classifier).
    config : PruneConfig
    seed : int
        Seeds shuffling and dropout (deterministic for a seed).
    loss : str or keras loss
    X_sel, y_sel : ndarray or None
        Optional selection rows, only reported as ``val_loss`` (weights are never chosen on them here).

    Returns
    -------
    PruneResult
    """
    import keras

    from trainer.fitting import fit_arrays
    from trainer.models import set_determinism

    X_train = np.asarray(X_train, dtype=np.float32)
    y_train = np.asarray(y_train)
    if y_train.shape[0] != X_train.shape[0]:
        raise ValueError(f"expected {X_train.shape[0]} rows of y_train to match X_train, got {y_train.shape[0]}")
    kernels = prunable_kernels(model, min_weights=config.min_weights)
    if not kernels:
        raise ValueError(f"expected at least one Conv/Dense kernel with >= {config.min_weights} weights, found none")
    set_determinism(seed)
    if y_train.ndim == 1 and loss != "sparse_categorical_crossentropy" and model.output_shape[-1] == 1:
        y_train = y_train.reshape(-1, 1)
    steps = config.epochs * math.ceil(len(X_train) / config.batch_size)
    callback = _make_callback(kernels, config, steps)
    model.compile(optimizer=keras.optimizers.Adam(learning_rate=config.learning_rate), loss=loss)
    val = None
    if X_sel is not None and y_sel is not None:
        ys = np.asarray(y_sel)
        if ys.ndim == 1 and y_train.ndim == 2:
            ys = ys.reshape(-1, 1)
        val = (np.asarray(X_sel, dtype=np.float32), ys)
    t0 = time.perf_counter()
    # steps_per_execution stays 1: the pruning callback updates the masks after every batch
    hist = fit_arrays(model, X_train, y_train, validation=val, epochs=config.epochs, batch_size=config.batch_size,
                      seed=seed, callbacks=[callback])
    seconds = time.perf_counter() - t0
    sparsity, per = measure_sparsity(model, min_weights=config.min_weights)
    log.info("pruning reached sparsity %.3f (target %.3f) over %d kernels in %.1f s", sparsity,
             config.target_sparsity, len(kernels), seconds)
    return PruneResult(
        model=model, sparsity=float(sparsity), layer_sparsity=per,
        history={k: [float(v) for v in vals] for k, vals in hist.history.items()}, prune_seconds=seconds,
    )
